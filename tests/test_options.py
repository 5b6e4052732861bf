"""QuantizationOptions: validation, equality, copies, serialization."""

from __future__ import annotations

import io

import numpy
import pytest

from intquant import QuantizationOptions, UniformQuantizer, dumps
from intquant.errors import InvalidOptionsError


def test_defaults_and_attributes() -> None:
    options = QuantizationOptions(8)
    assert (options.n_bits, options.is_signed, options.is_symmetric, options.is_qat) == (
        8,
        False,
        False,
        False,
    )
    assert (options.is_narrow, options.is_precomputed_qat) == (False, False)


@pytest.mark.parametrize("n_bits", [8.0, "8", None, True])
def test_n_bits_must_be_an_int(n_bits: object) -> None:
    with pytest.raises(TypeError, match="'n_bits' must be an int in \\[1, 32\\]"):
        QuantizationOptions(n_bits)  # type: ignore[arg-type]


@pytest.mark.parametrize("n_bits", [0, -3, 33])
def test_n_bits_must_be_in_range(n_bits: int) -> None:
    with pytest.raises(ValueError, match=f"got {n_bits}. Use between 1 and 32 bits"):
        QuantizationOptions(n_bits)


def test_numpy_integers_are_accepted() -> None:
    assert QuantizationOptions(numpy.int64(4)).n_bits == 4


def test_flags_must_be_bools() -> None:
    with pytest.raises(TypeError, match="'is_signed' must be True or False; got 1"):
        QuantizationOptions(8, is_signed=1)  # type: ignore[arg-type]


def test_qat_excludes_symmetric() -> None:
    with pytest.raises(AssertionError, match="is_qat=True and is_symmetric=True cannot be combined"):
        QuantizationOptions(8, is_signed=True, is_symmetric=True, is_qat=True)
    with pytest.raises(InvalidOptionsError):  # also a ValueError
        QuantizationOptions(8, is_signed=True, is_symmetric=True, is_qat=True)


def test_symmetric_needs_signed() -> None:
    with pytest.raises(ValueError, match="is_symmetric=True needs is_signed=True"):
        QuantizationOptions(8, is_symmetric=True)


def test_equality_compares_all_six_members() -> None:
    first, second = QuantizationOptions(4, True), QuantizationOptions(4, True)
    assert first == second
    second.is_narrow = True
    assert first != second
    assert first != "not options"


def test_is_equal_ignores_narrow_and_can_ignore_the_sign_of_qat() -> None:
    options = QuantizationOptions(4, is_signed=True, is_qat=True)
    other = QuantizationOptions(4, is_signed=False, is_qat=True)
    other.is_narrow = True
    assert not options.is_equal(other)
    assert options.is_equal(other, ignore_sign_qat=True)


def test_copies_are_independent() -> None:
    options = QuantizationOptions(4, is_signed=True)
    options.is_narrow = True
    copy = options.quant_options
    assert copy == options and copy is not options
    copy.n_bits = 5
    assert options.n_bits == 4


def test_copy_opts_from_a_quantizer() -> None:
    options = QuantizationOptions(2)
    options.copy_opts(UniformQuantizer(QuantizationOptions(7, is_signed=True)))
    assert (options.n_bits, options.is_signed) == (7, True)


def test_copy_opts_changes_nothing_when_the_source_is_incomplete() -> None:
    options = QuantizationOptions(2)
    with pytest.raises(AttributeError):
        options.copy_opts(UniformQuantizer())  # a quantizer made without options has no n_bits
    assert options.n_bits == 2


def test_dump_and_load() -> None:
    options = QuantizationOptions(6, is_signed=True, is_symmetric=True)
    text = options.dumps()
    assert text == dumps(options)
    assert text == (
        '{"type_name": "QuantizationOptions", "serialized_value": {"n_bits": 6, "is_signed": true, '
        '"is_symmetric": true, "is_qat": false, "is_narrow": false, "is_precomputed_qat": false}}'
    )
    buffer = io.StringIO()
    options.dump(buffer)
    assert buffer.getvalue() == text
    assert QuantizationOptions.load_dict(options.dump_dict()) == options


def test_load_dict_needs_every_key() -> None:
    metadata = QuantizationOptions(6).dump_dict()
    del metadata["is_narrow"]
    with pytest.raises(ValueError, match="missing: \\['is_narrow'\\]"):
        QuantizationOptions.load_dict(metadata)

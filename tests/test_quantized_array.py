"""QuantizedArray: float values and codes in sync; errors that leave it unchanged."""

from __future__ import annotations

import numpy
import pytest

from intquant import (
    MinMaxQuantizationStats,
    QuantizationOptions,
    QuantizedArray,
    UniformQuantizationParameters,
    dumps,
    loads,
)
from intquant.errors import InvalidDtypeError, MissingParameterError


def test_values_are_quantized() -> None:
    array = QuantizedArray(2, numpy.array([0.0, 0.3, 0.6, 0.9]))
    assert array().tolist() == [0, 1, 2, 3]
    assert array.dequant().tolist() == pytest.approx([0.0, 0.3, 0.6, 0.9])


def test_options_are_copied_with_n_bits_overridden() -> None:
    options = QuantizationOptions(8, is_signed=True)
    array = QuantizedArray(3, numpy.array([-1.0, 1.0]), options=options)
    assert array.quantizer.n_bits == 3 and options.n_bits == 8


def test_keywords_fill_the_parameter_sets() -> None:
    array = QuantizedArray(
        4, numpy.array([0.0, 1.0]), is_signed=True, rmax=2.0, rmin=-2.0, uvalues=numpy.array([0.0])
    )
    assert (array.quantizer.rmax, array.quantizer.is_signed) == (2.0, True)


def test_given_stats_and_params_are_not_changed() -> None:
    stats = MinMaxQuantizationStats(rmax=1.0, rmin=0.0, uvalues=numpy.array([0.0, 1.0]))
    QuantizedArray(4, numpy.array([0.5]), stats=stats, rmax=3.0)
    assert stats.rmax == 1.0


def test_unexpected_keywords() -> None:
    with pytest.raises(TypeError, match="Unexpected keyword arguments 'colour,size'"):
        QuantizedArray(4, numpy.array([1.0]), colour=1, size=2)


def test_an_incomplete_parameter_set() -> None:
    with pytest.raises(TypeError, match="Missing quantizer parameter zero_point"):
        QuantizedArray(4, numpy.array([1.0]), scale=0.5)


def test_float_values_must_be_float() -> None:
    with pytest.raises(
        InvalidDtypeError, match="Values must be float if value_is_float is set to True; got dtype int64"
    ):
        QuantizedArray(4, numpy.array([1, 2]))


def test_codes_need_parameters() -> None:
    with pytest.raises(MissingParameterError, match="the quantization params must be provided"):
        QuantizedArray(4, numpy.array([1, 2]), value_is_float=False)


def test_codes_must_be_integers() -> None:
    with pytest.raises(AssertionError, match="Quantized values must be integers"):
        QuantizedArray(
            4, numpy.array([1.0]), value_is_float=False, params=UniformQuantizationParameters(1.0, 0, 0)
        )


def test_codes_are_dequantized() -> None:
    array = QuantizedArray(4, numpy.array([1, 3]), value_is_float=False, scale=0.5, zero_point=1, offset=0)
    assert array.values.tolist() == [0.0, 1.0]


def test_values_are_copied() -> None:
    values = numpy.array([0.0, 1.0])
    array = QuantizedArray(4, values)
    values[0] = 7.0
    assert array.values[0] == 0.0


def test_update_values() -> None:
    array = QuantizedArray(2, numpy.array([0.0, 0.9]))
    assert array.update_values(numpy.array([0.3, 2.0])).tolist() == [1, 3]
    assert array.values.tolist() == [0.3, 2.0]


def test_a_failed_update_changes_nothing() -> None:
    array = QuantizedArray(2, numpy.array([0.0, 0.9]))
    before = dumps(array)
    with pytest.raises(ValueError, match="cannot quantize NaN"):
        array.update_values(numpy.array([numpy.nan]))
    with pytest.raises(InvalidDtypeError, match="De-quantized values must be float64; got float32"):
        array.update_quantized_values(numpy.array([1.0], dtype=numpy.float32))
    assert dumps(array) == before


def test_update_quantized_values() -> None:
    array = QuantizedArray(2, numpy.array([0.0, 0.9]))
    restored = array.update_quantized_values(numpy.array([3, 0]))
    assert restored.tolist() == pytest.approx([0.9, 0.0])
    assert array.qvalues.tolist() == [3, 0]


def test_serialization_restores_everything_exactly() -> None:
    array = QuantizedArray(5, numpy.linspace(-1, 1, 7, dtype=numpy.float32), is_signed=True)
    restored = loads(dumps(array))
    assert restored == array
    assert dumps(restored) == dumps(array)
    assert restored.values.dtype == numpy.float32


def test_load_dict_needs_a_quantizer() -> None:
    metadata = QuantizedArray(2, numpy.array([0.0, 1.0])).dump_dict()
    metadata["quantizer"] = "nope"
    with pytest.raises(ValueError, match="needs a UniformQuantizer under 'quantizer'"):
        QuantizedArray.load_dict(metadata)

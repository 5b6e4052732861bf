"""Packing of 1-8-bit codes into bytes (``intquant.packing``): byte cases checkable by hand, a
bit-by-bit reference on random codes, round trips, ONNX's INT4/UINT4 (and INT2/UINT2) packing,
refusals."""

from __future__ import annotations

from typing import Any

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import intquant
from intquant.errors import InvalidDtypeError, InvalidTypeError, InvalidValueError
from intquant.packing import LAYOUT, code_range, pack_codes, packed_size, unpack_codes

INTEGER_DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")


def reference_pack(codes: numpy.ndarray, n_bits: int) -> list[int]:
    """The layout written out bit by bit: each code's n low bits (two's complement), least
    significant first, appended to one stream; the stream cut into bytes, bit 0 the lowest."""
    stream = []
    for code in codes.reshape(-1).tolist():
        field = code % (1 << n_bits)  # Python's % is the two's-complement field for negatives
        stream += [(field >> bit) & 1 for bit in range(n_bits)]
    stream += [0] * (-len(stream) % 8)
    return [sum(stream[k + bit] << bit for bit in range(8)) for k in range(0, len(stream), 8)]


@st.composite
def packing_cases(draw: st.DrawFn) -> tuple[numpy.ndarray, int, bool]:
    n_bits = draw(st.integers(1, 8))
    signed = draw(st.booleans())
    low, high = code_range(n_bits, signed=signed)
    fitting = [
        name for name in INTEGER_DTYPES if numpy.iinfo(name).min <= low and high <= numpy.iinfo(name).max
    ]
    dtype = numpy.dtype(draw(st.sampled_from(fitting)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=11))
    codes = draw(hnp.arrays(dtype, shape, elements=st.integers(low, high)))
    return codes, n_bits, signed


# -- by hand


@pytest.mark.parametrize(
    ("codes", "n_bits", "signed", "expected"),
    [
        # 4 bits: the first code in the low nibble (ONNX's order): 0x21 = (2 << 4) | 1
        ([1, 2, 3], 4, False, [0x21, 0x03]),
        ([-8, 7], 4, True, [0x78]),  # -8 is the field 0b1000
        ([-1], 4, True, [0x0F]),  # one code: the high nibble is padding, zero
        # 3 bits, fields 001 010 011 100 101 110 111 000: byte 0 = 11|010|001 (code 2's low two
        # bits on top), byte 1 = 0|101|100|0 (code 2's high bit at the bottom), byte 2 = 000|111|11
        ([1, 2, 3, 4, 5, 6, 7, 0], 3, False, [0b11010001, 0b01011000, 0b00011111]),
        ([-1, 3, -4], 3, True, [0b00011111, 0b00000001]),  # fields 111, 011, 100: bit 8 holds 1
        ([1, 0, 1, 1, 0, 0, 0, 0, 1], 1, False, [0b00001101, 0b00000001]),
        ([-1, 0, -1], 1, True, [0b00000101]),  # 1 signed bit: -1 is the field 1
        ([127, 1], 7, False, [0xFF, 0x00]),  # code 1's field 0000001 starts at bit 7
        ([-64, -1], 7, True, [0xC0, 0x3F]),  # 1000000 then 1111111: 0b11_1111_1100_0000
        ([31, 31, 31], 5, False, [0xFF, 0x7F]),  # 15 bits used: bit 15 is padding
        ([3, 0, 1, 2], 2, False, [0b10010011]),
        ([-1, -128, 127, 0], 8, True, [0xFF, 0x80, 0x7F, 0x00]),  # 8 bits: int8's bytes
        ([255, 0], 8, False, [0xFF, 0x00]),
    ],
)
def test_bytes_by_hand(codes: list[int], n_bits: int, signed: bool, expected: list[int]) -> None:
    array = numpy.array(codes, dtype=numpy.int64)
    packed = pack_codes(array, n_bits, signed=signed)
    assert packed.dtype == numpy.uint8 and packed.ndim == 1
    assert packed.tolist() == expected
    assert packed.size == packed_size(len(codes), n_bits)
    restored = unpack_codes(packed, n_bits, signed=signed, shape=len(codes))
    assert restored.dtype == numpy.int64
    assert restored.tolist() == codes


def test_packed_size() -> None:
    assert [packed_size(count, 3) for count in range(10)] == [0, 1, 1, 2, 2, 2, 3, 3, 3, 4]
    assert packed_size(3, 4) == 2 and packed_size(8, 7) == 7 and packed_size(5, 8) == 5
    with pytest.raises(InvalidValueError, match=r"'count' must be an int >= 0; got -1"):
        packed_size(-1, 4)
    with pytest.raises(InvalidValueError, match=r"'n_bits' must be an int in \[1, 8\]; got 9"):
        packed_size(3, 9)


def test_code_range() -> None:
    assert [code_range(n, signed=True) for n in (1, 3, 8)] == [(-1, 0), (-4, 3), (-128, 127)]
    assert [code_range(n, signed=False) for n in (1, 3, 8)] == [(0, 1), (0, 7), (0, 255)]


# -- properties


@given(packing_cases())
def test_pack_matches_the_bit_by_bit_reference_and_round_trips(case: tuple[numpy.ndarray, int, bool]) -> None:
    codes, n_bits, signed = case
    before = codes.copy()
    packed = pack_codes(codes, n_bits, signed=signed)
    numpy.testing.assert_array_equal(codes, before)  # the input is not modified
    assert packed.dtype == numpy.uint8 and packed.shape == (packed_size(codes.size, n_bits),)
    assert packed.tolist() == reference_pack(codes, n_bits)
    used = codes.size * n_bits % 8
    if used:
        assert int(packed[-1]) >> used == 0  # the padding bits are zero
    restored = unpack_codes(packed, n_bits, signed=signed, shape=codes.shape)
    assert restored.dtype == numpy.int64 and restored.shape == codes.shape
    numpy.testing.assert_array_equal(restored, codes.astype(numpy.int64))
    assert restored.flags.writeable and not numpy.shares_memory(restored, packed)


@pytest.mark.parametrize("n_bits", range(1, 9))
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 15, 17, 1001])
def test_every_width_round_trips_every_code(n_bits: int, signed: bool, count: int) -> None:
    low, high = code_range(n_bits, signed=signed)
    codes = numpy.resize(numpy.arange(low, high + 1), count)[::-1]  # each code, both range ends
    packed = pack_codes(codes, n_bits, signed=signed)
    assert packed.tolist() == reference_pack(codes, n_bits)
    numpy.testing.assert_array_equal(unpack_codes(packed, n_bits, signed=signed, shape=count), codes)


def test_codes_are_taken_in_c_order() -> None:
    codes = numpy.arange(12).reshape(3, 4)
    transposed = codes.T  # not contiguous: its C order is 0, 4, 8, 1, 5, 9, ...
    packed = pack_codes(transposed, 4, signed=False)
    assert packed.tolist() == reference_pack(numpy.ascontiguousarray(transposed), 4)
    assert packed.tolist()[:2] == [0x40, 0x18]
    restored = unpack_codes(packed, 4, signed=False, shape=(4, 3))
    numpy.testing.assert_array_equal(restored, transposed)


def test_eight_bits_is_the_identity() -> None:
    codes = numpy.arange(-128, 128)
    numpy.testing.assert_array_equal(
        pack_codes(codes, 8, signed=True), codes.astype(numpy.int8).view(numpy.uint8)
    )
    unsigned = numpy.arange(256)
    numpy.testing.assert_array_equal(pack_codes(unsigned, 8, signed=False), unsigned.astype(numpy.uint8))


def test_scalars_empty_arrays_lists_and_bytes() -> None:
    assert pack_codes(numpy.int8(-3), 3, signed=True).tolist() == [0b101]
    assert unpack_codes(bytes([0b101]), 3, signed=True, shape=()).shape == ()
    assert unpack_codes(bytes([0b101]), 3, signed=True, shape=()) == -3
    empty = pack_codes(numpy.zeros((0, 5), dtype=numpy.int16), 4, signed=True)
    assert empty.dtype == numpy.uint8 and empty.shape == (0,)
    assert unpack_codes(empty, 4, signed=True, shape=(0, 5)).shape == (0, 5)
    assert pack_codes([1, 2, 3], 4, signed=False).tolist() == [0x21, 0x03]
    assert unpack_codes(bytearray(b"\x21\x03"), 4, signed=False, shape=[3]).tolist() == [1, 2, 3]


def test_exported_from_intquant() -> None:
    assert intquant.pack_codes is pack_codes
    assert intquant.unpack_codes is unpack_codes
    assert intquant.packed_size is packed_size
    assert {"pack_codes", "unpack_codes", "packed_size"} <= set(intquant.__all__)
    assert LAYOUT == "intquant.packed-le-v1"


# -- ONNX's INT4/UINT4 (and INT2/UINT2)


def _onnx() -> Any:
    return pytest.importorskip(
        "onnx", reason="ONNX IS NOT INSTALLED: agreement with ONNX's INT4/UINT4 packing is NOT tested"
    )


@pytest.mark.parametrize(
    ("type_name", "n_bits", "signed"),
    [("INT4", 4, True), ("UINT4", 4, False), ("INT2", 2, True), ("UINT2", 2, False)],
)
@pytest.mark.parametrize("count", [1, 2, 5, 8, 13])
def test_agrees_with_onnx_packing(type_name: str, n_bits: int, signed: bool, count: int) -> None:
    onnx = _onnx()
    from onnx import helper, numpy_helper

    if not hasattr(onnx.TensorProto, type_name):
        pytest.skip(f"onnx {onnx.__version__} has no {type_name}: NOT compared")
    data_type = getattr(onnx.TensorProto, type_name)
    low, high = code_range(n_bits, signed=signed)
    codes = numpy.random.default_rng(count).integers(low, high + 1, size=count)
    ours = pack_codes(codes, n_bits, signed=signed)
    # ONNX packs the values itself into int32_data, one byte per entry
    tensor = helper.make_tensor("codes", data_type, [count], codes.tolist())
    assert list(tensor.int32_data) == ours.tolist()
    # ... and reads our bytes as raw_data back to the same values
    raw = helper.make_tensor("codes", data_type, [count], ours.tobytes(), raw=True)
    numpy.testing.assert_array_equal(numpy_helper.to_array(raw).astype(numpy.int64), codes)
    # ... and its own raw_data of these values (numpy_helper.from_array) is ours too
    onnx_raw = numpy_helper.from_array(numpy_helper.to_array(tensor)).raw_data
    assert list(onnx_raw) == ours.tolist()
    restored = unpack_codes(onnx_raw, n_bits, signed=signed, shape=count)
    numpy.testing.assert_array_equal(restored, codes)


# -- refusals


@pytest.mark.parametrize(
    ("n_bits", "error", "message"),
    [
        (0, InvalidValueError, r"'n_bits' must be an int in \[1, 8\]; got 0"),
        (9, InvalidValueError, r"'n_bits' must be an int in \[1, 8\]; got 9. Packing takes codes of 1 to 8"),
        (True, InvalidTypeError, r"'n_bits' must be an int in \[1, 8\]; got True of type bool"),
        (4.0, InvalidTypeError, r"got 4.0 of type float"),
    ],
)
def test_widths_outside_1_to_8_are_refused(n_bits: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        pack_codes(numpy.array([0]), n_bits, signed=False)
    with pytest.raises(error, match=message):
        unpack_codes(numpy.zeros(1, numpy.uint8), n_bits, signed=False, shape=1)


def test_signed_must_be_a_bool() -> None:
    with pytest.raises(InvalidTypeError, match=r"'signed' must be True or False; got 1 of type int"):
        pack_codes(numpy.array([0]), 4, signed=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("codes", "n_bits", "signed", "message"),
    [
        ([0, 16], 4, False, r"at 4 bits \(unsigned\) must lie in \[0, 15\]; got 16 at index \(1,\)"),
        ([[0, -1]], 4, False, r"\[0, 15\]; got -1 at index \(0, 1\).*Pack with more bits or signed=True"),
        ([3, -5, 4], 3, True, r"at 3 bits \(signed\) must lie in \[-4, 3\]; got -5 at index \(1,\)"),
        ([1, 2], 1, True, r"\[-1, 0\]; got 2 at index \(1,\)"),
        ([256], 8, False, r"\[0, 255\]; got 256"),
    ],
)
def test_codes_out_of_range_are_refused(codes: list[Any], n_bits: int, signed: bool, message: str) -> None:
    with pytest.raises(InvalidValueError, match=message):
        pack_codes(numpy.array(codes), n_bits, signed=signed)


def test_uint64_codes_beyond_int64_are_refused() -> None:
    with pytest.raises(InvalidValueError, match=r"got 18446744073709551615 at index \(0,\)"):
        pack_codes(numpy.array([2**64 - 1], dtype=numpy.uint64), 8, signed=False)


@pytest.mark.parametrize(
    "codes", [numpy.array([1.0, 2.0]), numpy.array([True, False]), numpy.array(["1"]), []], ids=repr
)
def test_non_integer_dtypes_are_refused(codes: Any) -> None:
    with pytest.raises(InvalidDtypeError, match=r"codes to pack must have an integer dtype; got"):
        pack_codes(codes, 4, signed=False)


def test_other_containers_are_refused() -> None:
    with pytest.raises(InvalidTypeError, match=r"must be a numpy array of integers; got a builtins.set"):
        pack_codes({1, 2}, 4, signed=False)


def test_a_wrong_byte_count_is_refused() -> None:
    packed = pack_codes(numpy.arange(5), 4, signed=False)  # 3 bytes
    with pytest.raises(InvalidValueError, match=r"shape \(7,\) at 4 bits take 4 bytes; got 3"):
        unpack_codes(packed, 4, signed=False, shape=7)
    with pytest.raises(InvalidValueError, match=r"shape \(2, 2\) at 4 bits take 2 bytes; got 3"):
        unpack_codes(packed, 4, signed=False, shape=(2, 2))


def test_padding_bits_must_be_zero() -> None:
    with pytest.raises(
        InvalidValueError, match=r"last packed byte, 0x13, has padding bits set \(bits 4 to 7"
    ):
        unpack_codes(numpy.array([0x21, 0x13], dtype=numpy.uint8), 4, signed=False, shape=3)
    with pytest.raises(InvalidValueError, match=r"0x80, has padding bits set \(bits 7 to 7"):
        unpack_codes(numpy.array([0x80], dtype=numpy.uint8), 7, signed=True, shape=1)


@pytest.mark.parametrize(
    ("packed", "error", "message"),
    [
        (
            numpy.array([1], dtype=numpy.int8),
            InvalidDtypeError,
            r"1-D uint8 array; got dtype int8 with shape \(1,\)",
        ),
        (numpy.zeros((1, 1), dtype=numpy.uint8), InvalidDtypeError, r"got dtype uint8 with shape \(1, 1\)"),
        ([1], InvalidTypeError, r"1-D uint8 numpy array or bytes; got a builtins.list"),
    ],
)
def test_packed_bytes_must_be_uint8(packed: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        unpack_codes(packed, 4, signed=False, shape=1)


@pytest.mark.parametrize(
    ("shape", "error"),
    [
        (-1, InvalidValueError),
        ((2, -1), InvalidValueError),
        (2.0, InvalidTypeError),
        ((True,), InvalidTypeError),
    ],
)
def test_bad_shapes_are_refused(shape: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"'shape' must be an int or a sequence of ints >= 0"):
        unpack_codes(numpy.zeros(1, numpy.uint8), 4, signed=False, shape=shape)

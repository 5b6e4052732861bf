"""Integer codes of 1 to 8 bits packed into bytes: a little-endian bit stream.

The layout, named :data:`LAYOUT` (``"intquant.packed-le-v1"``): the codes, taken in C order,
are written one after another as ``n``-bit fields of a bit stream, and bit ``j`` of the stream
is bit ``j % 8`` (0 = the least significant) of byte ``j // 8``. So code ``i`` occupies the
stream's bits ``[i*n, (i+1)*n)``, its least significant bit first::

    field_i  = code_i mod 2**n              (signed codes: n-bit two's complement)
    byte_k   = sum over j in [8k, 8k + 8) of bit_j(stream) * 2**(j - 8k)
    code_i   = field_i                      (unsigned)
             = field_i - 2**n * (field_i >= 2**(n-1))   (signed)

A field may straddle two bytes (3-bit code 2 holds bits 6 to 8). ``count`` codes take
``packed_size(count, n) = ceil(count * n / 8)`` bytes, and the unused high bits of the last byte
are zero. Four bits is ONNX's ``INT4``/``UINT4`` packing (the first element in the low nibble of
byte 0), two bits ONNX's ``INT2``/``UINT2``; eight bits is the identity (a signed code is its
``int8`` byte). Wider codes are refused: they are whole bytes already.

Packing and unpacking are vectorised: eight codes of ``n`` bits are exactly ``n`` bytes, so the
codes are taken eight at a time into one little-endian 64-bit word (``sum_t field_t << (t*n)``,
at most 64 bits), whose first ``n`` bytes are the packed bytes; unpacking reads the words back
and shifts each field out. Eight shifts over the whole array, no loop per code.

>>> import numpy
>>> pack_codes(numpy.array([1, 2, 3]), 4, signed=False).tolist()
[33, 3]
>>> unpack_codes(numpy.array([0x21, 0x03], dtype=numpy.uint8), 4, signed=False, shape=3).tolist()
[1, 2, 3]
>>> pack_codes(numpy.array([-1, 3, -4]), 3, signed=True).tolist()  # fields 7, 3, 4: 0b00011111, then bit 8
[31, 1]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy

from intquant._core.checks import check_flag, check_int, is_integer
from intquant.errors import InvalidDtypeError, InvalidTypeError, InvalidValueError

__all__ = ["LAYOUT", "MAX_PACKED_BITS", "code_range", "pack_codes", "packed_size", "unpack_codes"]

#: The name of the layout this module writes and reads (recorded beside packed arrays on disk).
LAYOUT = "intquant.packed-le-v1"
#: The widest codes packed (8 bits: the identity).
MAX_PACKED_BITS = 8
#: Codes per group: eight ``n``-bit codes are exactly ``n`` bytes (one 64-bit word).
_GROUP = 8
_WORD = numpy.dtype("<u8")


def packed_size(count: int, n_bits: int) -> int:
    """The bytes ``count`` codes of ``n_bits`` bits take: ``ceil(count * n_bits / 8)``.

    >>> packed_size(3, 4), packed_size(3, 3), packed_size(0, 5)
    (2, 2, 0)

    Raises
    ------
    InvalidTypeError, InvalidValueError
        If ``count`` is not an int >= 0, or ``n_bits`` not an int in [1, 8].
    """
    count = check_int("count", count, minimum=0)
    return -(-count * _checked_bits(n_bits) // 8)


def code_range(n_bits: int, *, signed: bool) -> tuple[int, int]:
    """The codes ``n_bits`` bits hold: ``[-2**(n-1), 2**(n-1) - 1]`` signed, ``[0, 2**n - 1]``
    unsigned.

    >>> code_range(4, signed=True), code_range(4, signed=False)
    ((-8, 7), (0, 15))
    """
    n = _checked_bits(n_bits)
    if check_flag("signed", signed):
        return -(1 << (n - 1)), (1 << (n - 1)) - 1
    return 0, (1 << n) - 1


def pack_codes(codes: Any, n_bits: int, *, signed: bool) -> numpy.ndarray:
    """The codes packed as a little-endian bit stream of ``n_bits``-bit fields (see the module).

    Parameters
    ----------
    codes : numpy array (or list) of integers, any shape
        Taken in C order; each must lie in :func:`code_range` ``(n_bits, signed=signed)``.
        Not modified.
    n_bits : int in [1, 8]
        Bits per code (8: each code is one byte, its low 8 bits).
    signed : bool
        Whether the codes are signed (stored as ``n_bits``-bit two's complement).

    Returns
    -------
    numpy.ndarray
        A new 1-D uint8 array of ``packed_size(codes.size, n_bits)`` bytes; the padding bits of
        the last byte are zero.

    Raises
    ------
    InvalidTypeError
        If ``codes`` is not a numpy array, list, tuple or integer, or ``n_bits``/``signed`` have the
        wrong type.
    InvalidDtypeError
        If the codes are not of an integer dtype (floats, even whole ones, and bools are refused).
    InvalidValueError
        If ``n_bits`` is outside [1, 8], or a code is outside the range (the message shows the
        first such code and its index).

    Examples
    --------
    >>> import numpy
    >>> pack_codes(numpy.array([1, 0, 1, 1, 0, 0, 0, 0, 1]), 1, signed=False).tolist()
    [13, 1]
    >>> pack_codes(numpy.array([-8, 7]), 4, signed=True).tolist()  # fields 8, 7
    [120]
    """
    n = _checked_bits(n_bits)
    low, high = code_range(n, signed=signed)
    array = _integer_codes(codes)
    _check_range(array, n, low, high)
    count = array.size
    fields = numpy.zeros(-(-count // _GROUP) * _GROUP, dtype=numpy.uint8)
    # the low 8 bits (astype wraps modulo 2**8), then the low n: code mod 2**n, two's complement
    fields[:count] = array.reshape(-1).astype(numpy.uint8) & numpy.uint8((1 << n) - 1)
    if n == 8:
        return fields[:count].copy()
    columns = fields.reshape(-1, _GROUP)
    words = numpy.zeros(columns.shape[0], dtype=_WORD)
    shifted = numpy.empty_like(words)
    for position in range(_GROUP):
        shifted[...] = columns[:, position]
        shifted <<= numpy.uint64(position * n)
        words |= shifted
    stream = words.view(numpy.uint8).reshape(-1, 8)[:, :n].reshape(-1)
    return stream[: packed_size(count, n)].copy()


def unpack_codes(packed: Any, n_bits: int, *, signed: bool, shape: int | Sequence[int]) -> numpy.ndarray:
    """The codes :func:`pack_codes` packed, as int64 of ``shape`` (C order).

    Parameters
    ----------
    packed : 1-D uint8 numpy array, or bytes-like
        Exactly ``packed_size(prod(shape), n_bits)`` bytes; not modified.
    n_bits : int in [1, 8]
        Bits per code.
    signed : bool
        Whether the codes are signed (``n_bits``-bit two's complement).
    shape : int or sequence of ints
        The codes' shape (an int ``c`` is the 1-D shape ``(c,)``); the count is its product.

    Returns
    -------
    numpy.ndarray
        A new int64 array of ``shape``, each code in :func:`code_range` ``(n_bits, signed=signed)``.

    Raises
    ------
    InvalidTypeError, InvalidDtypeError
        If ``packed`` is not a 1-D uint8 array or bytes-like, or an argument has the wrong type.
    InvalidValueError
        If ``n_bits`` is outside [1, 8], ``shape`` has a negative extent, the byte count is not
        the one ``shape`` takes, or a padding bit of the last byte is set (the bytes were not
        written by this layout, or with another shape or width).

    Examples
    --------
    >>> import numpy
    >>> unpack_codes(numpy.array([0x78], dtype=numpy.uint8), 4, signed=True, shape=(2,)).tolist()
    [-8, 7]
    >>> unpack_codes(b"\\x1f\\x01", 3, signed=True, shape=(3, 1)).tolist()
    [[-1], [3], [-4]]
    """
    n = _checked_bits(n_bits)
    low, _ = code_range(n, signed=signed)
    target = _checked_shape(shape)
    count = math.prod(target)
    data = _packed_bytes(packed)
    expected = packed_size(count, n)
    if data.size != expected:
        raise InvalidValueError(
            f"packed codes of shape {target} at {n} bits take {expected} bytes; got {data.size}. "
            f"Unpack with the shape and n_bits they were packed with."
        )
    used = count * n % 8
    if used and int(data[-1]) >> used:
        raise InvalidValueError(
            f"the last packed byte, {int(data[-1]):#04x}, has padding bits set (bits {used} to 7 "
            f"should be 0 after {count} codes of {n} bits): these bytes were not packed with this "
            f"shape and n_bits."
        )
    if n == 8:
        codes = data.astype(numpy.int64)
    else:
        groups = -(-count // _GROUP)
        padded = numpy.zeros(groups * n, dtype=numpy.uint8)
        padded[:expected] = data
        raw = numpy.zeros((groups, 8), dtype=numpy.uint8)
        raw[:, :n] = padded.reshape(groups, n)
        words = raw.view(_WORD).reshape(groups)  # a copy's view: shifted in place below
        fields = numpy.empty((groups, _GROUP), dtype=numpy.uint8)
        mask, step = numpy.uint64((1 << n) - 1), numpy.uint64(n)
        for position in range(_GROUP):
            fields[:, position] = words & mask  # cast to uint8: the field fits
            words >>= step
        codes = fields.reshape(-1)[:count].astype(numpy.int64)
    if low < 0:  # sign extension: fields >= 2**(n-1) are negative, f -> (f ^ 2**(n-1)) - 2**(n-1)
        codes ^= -low
        codes -= -low
    return codes.reshape(target)


# -- checks


def _checked_bits(n_bits: Any) -> int:
    return check_int(
        "n_bits",
        n_bits,
        minimum=1,
        maximum=MAX_PACKED_BITS,
        advice="Packing takes codes of 1 to 8 bits; wider codes are whole bytes already.",
    )


def _integer_codes(codes: Any) -> numpy.ndarray:
    """``codes`` as a numpy array of an integer dtype (no copy of an array)."""
    if not isinstance(codes, (numpy.ndarray, numpy.generic, int, list, tuple)):
        raise InvalidTypeError(
            f"codes to pack must be a numpy array of integers; got a {type(codes).__module__}."
            f"{type(codes).__qualname__}. Convert it with numpy.asarray first."
        )
    array = numpy.asarray(codes)
    if array.dtype.kind not in "iu":
        raise InvalidDtypeError(
            f"codes to pack must have an integer dtype; got {array.dtype} with shape {array.shape}. "
            f"Quantize to integer codes first (or cast whole numbers with .astype(numpy.int64))."
        )
    return array


def _check_range(array: numpy.ndarray, n: int, low: int, high: int) -> None:
    if not array.size:
        return
    smallest, largest = int(array.min()), int(array.max())
    if low <= smallest and largest <= high:
        return
    bad = smallest if smallest < low else largest
    index = numpy.unravel_index(int(numpy.argmax(array == bad)), array.shape)
    kind = "signed" if low < 0 else "unsigned"
    raise InvalidValueError(
        f"codes to pack at {n} bits ({kind}) must lie in [{low}, {high}]; got {bad} at index "
        f"{tuple(int(i) for i in index)} (codes of dtype {array.dtype}, shape {array.shape}). "
        f"Pack with more bits{' or signed=True' if low == 0 and smallest < 0 else ''}."
    )


def _checked_shape(shape: Any) -> tuple[int, ...]:
    extents = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    if not all(is_integer(extent) for extent in extents):
        raise InvalidTypeError(f"'shape' must be an int or a sequence of ints >= 0; got {shape!r}.")
    if any(extent < 0 for extent in extents):
        raise InvalidValueError(f"'shape' must be an int or a sequence of ints >= 0; got {shape!r}.")
    return tuple(int(extent) for extent in extents)


def _packed_bytes(packed: Any) -> numpy.ndarray:
    if isinstance(packed, (bytes, bytearray, memoryview)):
        return numpy.frombuffer(packed, dtype=numpy.uint8)
    if not isinstance(packed, numpy.ndarray):
        raise InvalidTypeError(
            f"packed codes must be a 1-D uint8 numpy array or bytes; got a "
            f"{type(packed).__module__}.{type(packed).__qualname__}."
        )
    if packed.dtype != numpy.uint8 or packed.ndim != 1:
        raise InvalidDtypeError(
            f"packed codes must be a 1-D uint8 array; got dtype {packed.dtype} with shape "
            f"{packed.shape}. Pass the array pack_codes returned (or its bytes)."
        )
    return packed

"""Compiled one-pass loops for large arrays (numba, optional: ``pip install intquant[fast]``).

Each loop computes exactly what its plain-numpy twin in :mod:`intquant.kernels` computes, in the
same dtypes and the same order of operations, but in one pass without full-size temporaries.
numba is imported on first use (not by ``import intquant``) and compiled loops are cached on
disk. Set ``INTQUANT_PURE_NUMPY=1`` before importing intquant to never use them.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import numpy

from intquant._numba.status import BEYOND_INT64, NAN_FOUND

__all__ = [
    "BEYOND_INT64",
    "MIN_SIZE",
    "NAN_FOUND",
    "dequantize_codes",
    "enabled",
    "introsort_element_at",
    "quantize_floats",
    "round_cents",
    "unique_cents",
]

#: Arrays this large load numba (about 0.3 s, once per process) to use the compiled loops;
#: smaller ones use them only once numba is loaded, and the plain-numpy path until then.
MIN_SIZE = 50_000
#: Arrays this large are cut into one slice per thread.
PARALLEL_MIN_SIZE = 200_000


_BLOCK = 128  # elements scanned at a time by the partition


#: True when ``INTQUANT_PURE_NUMPY`` was set (to anything but 0) as intquant was imported.
disabled = os.environ.get("INTQUANT_PURE_NUMPY", "") not in ("", "0")
_loaded = False  # numba loaded and the loops importable


def enabled() -> bool:
    """Whether compiled loops may be used: numba is installed and they are not disabled."""
    return not disabled and _loops() is not None


def worthwhile(size: int) -> bool:
    """Whether an array of ``size`` elements should take the compiled loops."""
    if disabled:
        return False
    return _loaded or (size >= MIN_SIZE and _loops() is not None)


@cache
def _loops() -> Any:
    """The numba loops (compiled on first call, cached on disk); None when numba is missing."""
    global _loaded
    try:
        from intquant._numba import loops as _numba_loops
    except ImportError:
        return None
    _loaded = True
    return _numba_loops


def _threads() -> int:
    """How many slices the parallel loops cut an array into: numba's thread count."""
    return int(_loops().numba.get_num_threads())


def quantize_floats(
    values: numpy.ndarray, scale: Any, zero_point: Any, bounds: tuple[int, int] | None
) -> tuple[Any, int]:
    """``clip(rint(values / scale + zero_point))`` as int64, and 0, ``NAN_FOUND`` or ``BEYOND_INT64``.

    ``values`` and ``scale`` must share a float32/float64 dtype (the division's) and
    ``zero_point`` have the addition's dtype, both numpy scalars.
    """
    loops = _loops()
    flat = values.reshape(-1)  # a view when values are contiguous
    codes = numpy.empty(flat.size, dtype=numpy.int64)
    low, high = (float(bounds[0]), float(bounds[1])) if bounds is not None else (0.0, 0.0)
    if flat.size >= PARALLEL_MIN_SIZE:
        status = loops.quantize_loop(
            flat, scale, zero_point, low, high, bounds is not None, codes, _threads()
        )
    else:
        status = loops.quantize_range(
            flat, scale, zero_point, low, high, bounds is not None, codes, 0, flat.size
        )
    return codes.reshape(numpy.shape(values))[()], int(status)  # a 0-d input gives a scalar


def dequantize_codes(codes: numpy.ndarray, scale: numpy.float64, zero_point: numpy.float64) -> Any:
    """``scale * (codes - zero_point)`` in float64, for integer codes and float64 scalars."""
    loops = _loops()
    flat = numpy.ravel(codes)
    values = numpy.empty(flat.size, dtype=numpy.float64)
    if flat.size >= PARALLEL_MIN_SIZE:
        loops.dequantize_loop(flat, scale, zero_point, values, _threads())
    else:
        loops.dequantize_range(flat, scale, zero_point, values, 0, flat.size)
    return values.reshape(numpy.shape(codes))[()]


def unique_cents(values: numpy.ndarray, key_low: int, key_high: int) -> tuple[numpy.ndarray, int, bool, bool]:
    """One pass over float32/float64 ``values``: the sorted distinct keys ``rint(x*100)`` (int64),
    how many rounded values ``rint(x*100)/100`` are below 0, and whether they hold ``+0.0`` and
    ``-0.0``.

    Every key must lie in ``[key_low, key_high]`` (they do for ``rint(rmin*100)`` and
    ``rint(rmax*100)``: rounding is monotonic).
    """
    loops = _loops()
    seen = numpy.zeros((_threads(), key_high - key_low + 1), dtype=numpy.bool_)
    counts = loops.cents_loop(numpy.ravel(values), values.dtype.type(100), key_low, seen)
    negatives, positive_zero, negative_zero = counts
    keys = numpy.flatnonzero(seen.any(axis=0)) + key_low
    return keys, int(negatives), bool(positive_zero), bool(negative_zero)


def round_cents(values: numpy.ndarray) -> numpy.ndarray:
    """``rint(x*100)/100`` of float32/float64 ``values``, flattened, in one pass."""
    rounded = numpy.empty(values.size, dtype=values.dtype)
    _loops().round_loop(numpy.ravel(values), values.dtype.type(100), rounded, _threads())
    return rounded


def introsort_element_at(rounded: numpy.ndarray, position: int) -> Any:
    """Element numpy 1.24's introsort leaves at ``position`` (float32/float64, no NaN).

    ``rounded`` is overwritten (it is the caller's scratch copy).
    """
    left_stops = numpy.empty(_BLOCK, dtype=numpy.int64)
    right_stops = numpy.empty(_BLOCK, dtype=numpy.int64)
    return _loops().introsort_loop(rounded, position, left_stops, right_stops)

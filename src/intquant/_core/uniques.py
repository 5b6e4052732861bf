"""``uvalues``, the distinct rounded calibration values, computed when first read.

``uvalues = unique(rint(x*100)/100)`` costs more than the rest of calibration (a pass marking
keys, then, when the data hold both ``-0.0`` and ``0.0``, numpy 1.24's sort followed to the
first zero), and only QAT parameters, serialization and readers of the attribute need it. So
``compute_quantization_stats`` stores a :class:`PendingUniques`: a private copy of the values, or
for large float arrays their int16 cent keys (never the caller's array, which the caller may
change afterwards), turned into the uniques the first time anything reads ``uvalues``, and then
dropped. :class:`DeferredMember` is the
attribute that does this transparently: what a user reads, compares or serializes is exactly
what the eager computation gives.

Copies of a statistics object share its pending state (it never changes, so sharing is safe and
keeps one private copy of the data); each object stores its own copy of the result once read.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy

from intquant._core.blockwise import block_uniques
from intquant._core.formulas import rounded_uniques
from intquant._core.granularity import grouped
from intquant._numba import dispatch as _compiled
from intquant._numpy124.introsort import AVX512

__all__ = ["DeferredMember", "PendingUniques", "fast_range", "pending_state", "pending_statistics"]

_KEYED_DTYPES = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))
_KEY_LIMIT = 32767


class PendingUniques:
    """The ``uvalues`` of calibration values not computed yet.

    Parameters
    ----------
    values : numpy.ndarray
        The calibration values, checked (real, non-empty, finite). Copied: the caller may change
        its array afterwards.
    rmin, rmax : numpy scalars or arrays
        Their range (per tensor; per block, arrays over the block grid); bounds the keys
        ``rint(x*100)`` the computation marks.
    extent : tuple of int, optional
        The blocks' extent, per axis or per block (then the result is a list, one per block).
    float32_sort : str
        Which numpy 1.24 sort of float32 values decides the sign of a zero kept (see
        :data:`intquant._numpy124.introsort.FLOAT32_SORTS`).

    Large float32/float64 values whose keys fit int16 (``|x| < 327.675``) are held as those keys
    (2 bytes a value instead of 4 or 8; ``-0.0`` as ``-32768``), else as a copy of the values.
    """

    __slots__ = ("_dtype", "_extent", "_lock", "_range", "_result", "_shape", "_sort", "_values")

    def __init__(
        self,
        values: numpy.ndarray,
        rmin: Any,
        rmax: Any,
        extent: tuple[int, ...] | None,
        float32_sort: str = AVX512,
    ) -> None:
        self._dtype, self._shape = values.dtype, values.shape
        self._values: numpy.ndarray | None = (
            _compiled.cent_keys(values)
            if _keys_fit(values, rmin, rmax)
            else numpy.array(values, order="C", copy=True)
        )
        self._range = (rmin, rmax)
        self._extent = extent
        self._sort = float32_sort
        self._result: Any = None
        self._lock = threading.Lock()

    @property
    def held_bytes(self) -> int:
        """Bytes of the private copy still held (0 once :meth:`result` has run): at most the
        values' own size; a quarter or half of it when they are held as int16 cent keys."""
        return 0 if self._values is None else self._values.nbytes

    @property
    def holds_values(self) -> bool:
        """Whether the private copy of the values is still held (until :meth:`result`)."""
        return self._values is not None

    def result(self) -> Any:
        """The ``uvalues`` (computed once, by the first caller; the copy of the values is then
        released). Callers must not change the array returned: it is shared."""
        with self._lock:
            if self._values is not None:
                values = self._rounded_values() if self._values.dtype != self._dtype else self._values
                if self._extent is None:
                    self._result = rounded_uniques(values, *self._range, self._sort)
                else:
                    self._result = block_uniques(grouped(values, self._extent), self._sort)
                self._values = None
            return self._result

    def _rounded_values(self) -> numpy.ndarray:
        """The values rounded to cents, ``key / 100``, rebuilt from the int16 keys held. Rounding
        them again gives them back (``|key| < 2**15``: the error of ``key/100*100`` stays far
        below 1/2), so their ``uvalues`` are those of the values themselves, signed zeros and
        the order numpy 1.24's sort follows included."""
        assert self._values is not None
        keys = self._values
        hundred = self._dtype.type(100)
        rounded = keys.astype(self._dtype)
        rounded[keys == _compiled.NEGATIVE_ZERO_KEY] = -0.0
        numpy.true_divide(rounded, hundred, out=rounded)
        return rounded.reshape(self._shape)

    def __copy__(self) -> PendingUniques:
        return self  # never changes: copies of a statistics object share it

    def __deepcopy__(self, memo: dict[int, Any]) -> PendingUniques:
        return self

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        # Pickle the uniques themselves, not the copy of the data.
        return _identity, (self.result(),)


def pending_statistics(
    values: numpy.ndarray, float32_sort: str = AVX512
) -> tuple[Any, Any, PendingUniques] | None:
    """``(rmin, rmax, pending uvalues)`` of large, finite, C-contiguous float32/float64
    ``values`` per tensor (see :func:`fast_range`); None where that does not apply: then the
    caller computes them as usual, errors included.
    """
    if values.size < _compiled.PARALLEL_MIN_SIZE:  # the usual small array: no call further
        return None
    extremes = fast_range(values)
    if extremes is None:
        return None
    rmin, rmax = extremes
    return rmin, rmax, PendingUniques(values, rmin, rmax, None, float32_sort)


def fast_range(values: numpy.ndarray) -> tuple[Any, Any] | None:
    """``(rmin, rmax)`` of large, finite, C-contiguous float32/float64 ``values``, reduced on
    the compiled loops' threads; None where that does not apply (no compiled loops, small or
    other arrays, NaN or infinite values): then the caller computes them as usual, errors
    included.

    ``rmin``/``rmax`` equal ``numpy.min``/``numpy.max`` exactly: a non-zero extreme has one bit
    pattern; a zero one is asked of numpy, whose choice between ``-0.0`` and ``0.0`` is kept.
    """
    if (
        values.dtype not in _KEYED_DTYPES
        or not values.flags.c_contiguous
        or values.size < _compiled.PARALLEL_MIN_SIZE
        or not _compiled.worthwhile(values.size)
    ):
        return None
    low, high = _compiled.float_range(values)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    rmin = values.min() if low == 0 else low
    rmax = values.max() if high == 0 else high
    return rmin, rmax


def _keys_fit(values: numpy.ndarray, rmin: Any, rmax: Any) -> bool:
    """Whether large float32/float64 ``values`` may be held as int16 cent keys: compiled loops
    are in use and every key ``rint(x*100)`` lies in ``[-32767, 32767]`` (those of ``rmin`` and
    ``rmax`` do: rounding is monotonic)."""
    if values.dtype not in _KEYED_DTYPES or not _compiled.worthwhile(values.size):
        return False
    hundred = values.dtype.type(100)
    with numpy.errstate(over="ignore"):
        low, high = numpy.rint(numpy.min(rmin) * hundred), numpy.rint(numpy.max(rmax) * hundred)
    return bool(low >= -_KEY_LIMIT and high <= _KEY_LIMIT)


def _identity(value: Any) -> Any:
    return value


def _own_copy(value: Any) -> Any:
    if isinstance(value, numpy.ndarray):
        return value.copy()
    if isinstance(value, list):
        return [_own_copy(item) for item in value]
    return value


def pending_state(obj: Any, name: str) -> PendingUniques | None:
    """The pending ``uvalues`` stored under ``name`` on ``obj``, or None (computed or absent)."""
    try:
        state = obj.__dict__[name]
    except (AttributeError, KeyError):
        return None
    return state if type(state) is PendingUniques else None


class DeferredMember:
    """A member attribute that may hold a :class:`PendingUniques`; reading it computes the
    uniques (once) and stores the object's own copy. Unset, it reads as None (the seed's
    class-level default)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return None
        state = obj.__dict__.get(self.name)
        if not isinstance(state, PendingUniques):
            return state
        value = _own_copy(state.result())
        if obj.__dict__.get(self.name) is not state:  # another thread set a new value meanwhile
            return self.__get__(obj, owner)
        obj.__dict__[self.name] = value
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value

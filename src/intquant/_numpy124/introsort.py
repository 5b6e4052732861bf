"""Which signed zero numpy 1.24's ``unique`` keeps, reproduced on any numpy.

``numpy.unique`` sorts and keeps the first element of each run of equal values. ``-0.0`` and
``0.0`` are equal, so when an array holds both, the zero that survives is whichever the sort left
first, and that depends on the sorting algorithm, and so on the CPU numpy 1.24 ran on. On an
x86-64 CPU with AVX-512 (AVX512_SKX) numpy 1.24 sorts float32 arrays with its AVX-512 quicksort
(emulated in ``avx512_sort``); elsewhere float32 arrays, like float16 and float64 arrays on every
CPU, go through its introsort (``npysort/quicksort.cpp``, emulated here). The reference's golden
data come from an AVX-512 machine, so ``"avx512"`` is the default :data:`FLOAT32_SORTS` choice;
``"introsort"`` reproduces any other machine. numpy 2 sorts differently, so intquant never trusts
the sign of a zero that numpy's own sort reports.

Only the element that lands at the first zero's position matters, so the emulation follows the
partitions that contain that position (as a quickselect would) with vectorized numpy steps:
expected O(n) work instead of a full sort. With numba, large arrays take compiled literal ports of
both sorts instead (``introsort_loop``; ``intquant._numba.avx512_loops`` for float32), and
``elements_at_sorted_positions`` runs one compiled loop over a batch of rows (per-block statistics).
"""

from __future__ import annotations

from typing import Any

import numpy

from intquant._numba import dispatch as _compiled
from intquant.errors import InvalidTypeError, InvalidValueError

__all__ = [
    "AVX512",
    "FLOAT32_SORTS",
    "INTROSORT",
    "check_float32_sort",
    "element_at_sorted_position",
    "elements_at_sorted_positions",
    "reference_unique",
    "set_zero_sign",
]

#: numpy 1.24's sort of float32 arrays on an x86-64 CPU with AVX512_SKX (the golden data's).
AVX512 = "avx512"
#: numpy 1.24's sort of float32 arrays on every other CPU (and of float16/float64 on all CPUs).
INTROSORT = "introsort"
#: Which numpy 1.24 sort of float32 arrays to reproduce: the machine the reference ran on.
FLOAT32_SORTS = (AVX512, INTROSORT)

_SORTED_DTYPES = (numpy.dtype(numpy.float16), numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))

_SMALL_PARTITION = 15  # numpy 1.24 quicksort: ranges with pr - pl <= 15 are insertion-sorted


def check_float32_sort(value: Any) -> str:
    """``value`` once checked to be one of :data:`FLOAT32_SORTS`.

    Raises
    ------
    InvalidValueError
        For any other value.
    """
    if not isinstance(value, str) or value not in FLOAT32_SORTS:
        raise InvalidValueError(
            f"'float32_sort' must be {AVX512!r} (numpy 1.24 on an x86-64 CPU with AVX-512, the "
            f"default) or {INTROSORT!r} (numpy 1.24 on any other CPU); got {value!r}."
        )
    return value


def reference_unique(values: numpy.ndarray, float32_sort: str = AVX512) -> numpy.ndarray:
    """Sorted unique values of ``values``, as numpy 1.24's ``numpy.unique`` returns them.

    ``values`` must not hold NaN. The values come from ``numpy.unique``; only the sign of a zero
    is decided by emulating numpy 1.24's sort (for float32, the one ``float32_sort`` names).
    """
    flat = numpy.ravel(values)
    uniques = numpy.unique(flat)
    if uniques.dtype.kind == "f":
        zero_signs = numpy.signbit(flat[flat == 0])
        negatives = int(numpy.count_nonzero(flat < 0)) if zero_signs.size else 0
        set_zero_sign(
            uniques, flat, negatives, not zero_signs.all(), bool(zero_signs.any()), float32_sort=float32_sort
        )
    return uniques


def set_zero_sign(
    uniques: numpy.ndarray,
    sorted_input: numpy.ndarray,
    negatives: int,
    has_positive_zero: bool,
    has_negative_zero: bool,
    scratch: bool = False,
    *,
    float32_sort: str = AVX512,
) -> None:
    """Give the zero of sorted ``uniques`` (if any) the sign numpy 1.24's ``unique`` keeps.

    ``sorted_input`` is the flat array ``unique`` sorted and ``negatives`` the number of its
    values below 0, which is where the first zero lands; with ``scratch`` it may be overwritten.
    ``float32_sort`` names the sort of float32 arrays (see :data:`FLOAT32_SORTS`).
    """
    slots = numpy.flatnonzero(uniques == 0)
    if slots.size == 0:
        return
    negative = has_negative_zero
    if has_positive_zero and has_negative_zero:
        element = element_at_sorted_position(sorted_input, negatives, scratch, float32_sort=float32_sort)
        negative = bool(numpy.signbit(element))
    uniques[slots[0]] = -0.0 if negative else 0.0


def element_at_sorted_position(
    flat: numpy.ndarray, position: int, scratch: bool = False, *, float32_sort: str = AVX512
) -> Any:
    """The element numpy 1.24's ``flat.sort()`` puts at ``position`` (float, no NaN).

    ``flat`` is left unchanged unless ``scratch`` says it may be overwritten. float32 arrays take
    the AVX-512 quicksort, or with ``float32_sort="introsort"`` the introsort (comparisons of
    float32 values are those of the same values in float64, so the introsort of either gives the
    same order).
    """
    if flat.dtype == numpy.float32 and float32_sort == AVX512:
        if _compiled.worthwhile(flat.size):
            return _compiled.avx512_element_at(flat, position, scratch)
        from intquant._numpy124.avx512_sort import element_at_sorted_position as avx512_element_at

        return avx512_element_at(flat, position)
    if _compiled.worthwhile(flat.size):
        work = flat.astype(numpy.float32 if flat.dtype == numpy.float16 else flat.dtype, copy=not scratch)
        return flat.dtype.type(_compiled.introsort_element_at(work, position))
    return _introsort_element_at(flat, position)


def elements_at_sorted_positions(
    rows: numpy.ndarray, positions: numpy.ndarray, float32_sort: str = AVX512
) -> numpy.ndarray:
    """``[sorted(rows[i])[positions[i]] for each row i]`` as numpy 1.24 sorts each row, bit for bit
    (the sign of a zero included): a 1-d array of the rows' dtype. ``rows`` is not modified.

    ``rows``: 2-d float16/float32/float64 without NaN, one block per row (float32 rows take the
    AVX-512 quicksort, or the introsort with ``float32_sort="introsort"``; the others the
    introsort); ``positions``: one integer per row, each in ``[0, row length)``. Compiled (one
    loop over the rows) for large batches.

    Raises
    ------
    InvalidTypeError
        If ``rows`` is not a 2-d array of those dtypes or ``positions`` not integers.
    InvalidValueError
        If ``positions`` does not hold one position in range per row, or ``rows`` holds NaN.
    """
    if not isinstance(rows, numpy.ndarray) or rows.ndim != 2 or rows.dtype not in _SORTED_DTYPES:
        described = f"{rows.ndim}-d {rows.dtype} array" if isinstance(rows, numpy.ndarray) else type(rows)
        raise InvalidTypeError(f"rows must be a 2-d float16, float32 or float64 array, not a {described}.")
    wanted = numpy.asarray(positions)
    if wanted.dtype.kind not in "iu":
        raise InvalidTypeError(f"positions must be integers, not {wanted.dtype}.")
    count, width = rows.shape
    if wanted.shape != (count,):
        raise InvalidValueError(
            f"positions must hold one position per row ({count}), not shape {wanted.shape}."
        )
    if count and not ((wanted >= 0).all() and (wanted < width).all()):
        raise InvalidValueError(
            f"positions must lie in [0, {width}) (the row length); got {wanted.min()}..{wanted.max()}."
        )
    if numpy.isnan(rows).any():
        raise InvalidValueError("rows must not hold NaN (replace them first, e.g. with numpy.nan_to_num).")
    if count == 0:
        return numpy.empty(0, dtype=rows.dtype)
    avx512 = rows.dtype == numpy.float32 and float32_sort == AVX512
    if _compiled.worthwhile(rows.size):
        if rows.dtype == numpy.float32 and not avx512:  # float64 rows take the introsort: same order
            widened = rows.astype(numpy.float64)
            return _compiled.sorted_rows_elements_at(widened, wanted.astype(numpy.int64)).astype(rows.dtype)
        return _compiled.sorted_rows_elements_at(rows, wanted.astype(numpy.int64))
    if avx512:
        from intquant._numpy124.avx512_sort import element_at_sorted_position as avx512_element_at

        elements = [avx512_element_at(row, int(at)) for row, at in zip(rows, wanted, strict=True)]
    else:
        elements = [_introsort_element_at(row, int(at)) for row, at in zip(rows, wanted, strict=True)]
    return numpy.array(elements, dtype=rows.dtype)


def _introsort_element_at(flat: numpy.ndarray, position: int) -> Any:
    """Element numpy 1.24's introsort (``npysort/quicksort.cpp``) leaves at ``position``.

    The partition step is median-of-three on (first, middle, last), the pivot parked at
    ``last - 1``, then a Hoare scan; the smaller side is sorted next without a depth check, the
    larger is pushed and checked when popped (heapsort once the depth budget ``2*floor(log2 n)``
    is spent); ranges of at most 16 elements are insertion-sorted, which is stable.
    """
    work = numpy.array(flat, copy=True)
    low, high = 0, work.size - 1
    depth = 2 * (work.size.bit_length() - 1)
    check_depth = True
    while True:
        if check_depth and depth < 0:
            return _heapsorted(work[low : high + 1])[position - low]
        check_depth = False
        if high - low <= _SMALL_PARTITION:
            block = work[low : high + 1]
            order = sorted(range(block.size), key=block.__getitem__)
            return block[order[position - low]]
        pivot_at = low + _hoare_partition(work[low : high + 1])
        depth -= 1
        if position == pivot_at:
            return work[pivot_at]
        left_is_smaller = pivot_at - low < high - pivot_at
        goes_left = position < pivot_at
        # The smaller side is sorted next (no depth check); the larger one waits on the stack.
        check_depth = goes_left != left_is_smaller
        if goes_left:
            high = pivot_at - 1
        else:
            low = pivot_at + 1


def _hoare_partition(segment: numpy.ndarray) -> int:
    """Partition ``segment`` in place exactly as numpy 1.24 does; return the pivot's index."""
    last = segment.size - 1
    middle = last >> 1
    for first, second in ((middle, 0), (last, middle), (middle, 0)):
        if segment[first] < segment[second]:
            segment[[first, second]] = segment[[second, first]]
    pivot = segment[middle]
    segment[[middle, last - 1]] = segment[[last - 1, middle]]
    # Scanning from the left stops on values >= pivot, from the right on values <= pivot.
    left_stops = numpy.flatnonzero(~(segment[1:last] < pivot)) + 1
    right_stops = numpy.flatnonzero(~(pivot < segment[: last - 1]))[::-1]
    pairs = min(left_stops.size, right_stops.size)
    crossing = int(numpy.flatnonzero(left_stops[:pairs] >= right_stops[:pairs])[0])
    lefts, rights = left_stops[:crossing], right_stops[:crossing]
    segment[lefts], segment[rights] = segment[rights], segment[lefts].copy()
    pivot_at = int(left_stops[crossing])
    if crossing > 0:
        pivot_at = min(pivot_at, int(right_stops[crossing - 1]))
    segment[[pivot_at, last - 1]] = segment[[last - 1, pivot_at]]
    return pivot_at


def _heapsorted(block: numpy.ndarray) -> list[Any]:
    """numpy 1.24's heapsort (not stable) of ``block``, as a list."""
    heap: list[Any] = [None, *block]  # 1-based, as in numpy
    size = block.size

    def sift(start: int, item: Any, end: int) -> None:
        i, j = start, start * 2
        while j <= end:
            if j < end and heap[j] < heap[j + 1]:
                j += 1
            if item < heap[j]:
                heap[i] = heap[j]
                i, j = j, j * 2
            else:
                break
        heap[i] = item

    for start in range(size >> 1, 0, -1):
        sift(start, heap[start], size)
    for end in range(size, 1, -1):
        item = heap[end]
        heap[end] = heap[1]
        sift(1, item, end - 1)
    return heap[1:]

"""numpy 1.24's AVX-512 float32 quicksort, compiled, followed only where one position lands.

A literal simulation of ``x86_quicksort_float_AVX512_SKX`` (numpy/core/src/npysort/
x86-qsort.dispatch.cpp, numpy 1.24.4) on a scratch copy; :mod:`intquant._numpy124.avx512_sort`
is its numpy twin and states every rule. ``qsort_(left, right, max_iters)`` starts with
``max_iters = 2 * floor(log2(n))``; of the two sides of each partition only the one holding the
wanted position is followed (the other side's contents never reach it):

* ``max_iters <= 0``: numpy's ``heapsort_`` on the range, stopped once the wanted slot is written;
* at most 128 elements: the bitonic networks of ``sort_128`` on 16-lane registers, with the
  operand order of ``vminps``/``vmaxps`` (``min(a, b) = a < b ? a : b``: ``b`` for two zeros);
* otherwise pivot = lane 4 of the 9-input median network over the elements gathered at the
  xoroshiro128+ indices, then ``partition_avx512``: ``(right - left) % 16`` scalar steps
  (``> pivot`` swaps with ``arr[--right]``), the two edge vectors loaded first and stored last,
  the middle loaded from the side with less free space, each vector compress-stored (``>= pivot``
  lanes right, the others left, lane order kept), the range's min and max on the way; the left
  side is sorted unless pivot == min, the right side unless pivot == max.

When the pivot is the range's minimum every lane is ``>= pivot``: after the scalar steps the
16-element blocks ``0 .. last`` end up in the order ``[last, 0, 2, 3, ..., last - 1, 1]`` (block
1 is loaded first and stored at the end, every later load comes from the right and is stored
where it was, block 0 lands second and block ``last`` first). A "pivot == minimum" step then
moves 48 elements instead of scanning the range, provided the range's minimum (a lower bound
suffices: it can only miss the shortcut) and its exact maximum (to stop where ``qsort_`` stops)
are known. Runs of such steps (a dominant minimum, zero typically) exhaust the depth budget, so
the heapsort fallback is common; its extraction steps are O(1) once only equal elements are left.

``paths`` counts the steps taken: ``PARTITIONS``, ``MINIMUM_PIVOT_STEPS``, ``BITONIC_SORTS``,
``HEAPSORTS``. numba's disk cache does not notice changes to functions of other files, so after
editing ``introsort_loop`` or ``sift_down`` in :mod:`intquant._numba.loops` delete this module's
``__pycache__`` entries (``select_introsort_rows`` and ``heapsort_select`` call them).
"""
# mypy: ignore-errors

from __future__ import annotations

import numpy

from intquant._numba.loops import introsort_loop, jit, sift_down

LANES = 16
SMALL = 128  # ranges of at most this many elements are sorted by the bitonic networks
#: Indices into ``paths``: how often each step ran.
PARTITIONS, MINIMUM_PIVOT_STEPS, BITONIC_SORTS, HEAPSORTS = 0, 1, 2, 3
PATH_COUNT = 4

_INF = numpy.float32(numpy.inf)
# Lane 2 of get_pivot()'s two xoroshiro128+ seed vectors: the 64-bit lane whose low half
# gives 32-bit random number 4, the lane whose median becomes the pivot.
_SEED0 = numpy.uint64(1324281658759788278)
_SEED1 = numpy.uint64(7874578921548791257)
_LOW32 = numpy.uint64(0xFFFFFFFF)
_INT32_MAX = 2**31 - 1


def _set_epi32(*lanes_high_to_low: int) -> list[int]:
    """Source lane of each result lane of ``_mm512_permutexvar_ps(_mm512_set_epi32(...), z)``
    (``_mm512_set_epi32`` lists lanes from 15 down to 0)."""
    return list(reversed(lanes_high_to_low))


def _shuffle(a: int, b: int, c: int, d: int) -> list[int]:
    """Source lane of each result lane of ``_mm512_shuffle_ps(z, z, SHUFFLE_MASK(a, b, c, d))``:
    in each group of 4 lanes, lane 0 takes lane d, 1 takes c, 2 takes b and 3 takes a."""
    return [group + source for group in range(0, LANES, 4) for source in (d, c, b, a)]


def _mask(bits: int) -> list[bool]:
    """Lanes of a ``__mmask16``: lane i is set when bit i is."""
    return [bool((bits >> lane) & 1) for lane in range(LANES)]


_NETWORK3 = _set_epi32(8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7)
_NETWORK5 = _set_epi32(*range(LANES))
_NETWORK6 = _set_epi32(11, 10, 9, 8, 15, 14, 13, 12, 3, 2, 1, 0, 7, 6, 5, 4)
_NETWORK7 = _set_epi32(7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8)
_SORT_STEPS = [  # sort_zmm: (partner lanes, lanes that take the max)
    (_shuffle(2, 3, 0, 1), 0xAAAA), (_shuffle(0, 1, 2, 3), 0xCCCC), (_shuffle(2, 3, 0, 1), 0xAAAA),
    (_NETWORK3, 0xF0F0), (_shuffle(1, 0, 3, 2), 0xCCCC), (_shuffle(2, 3, 0, 1), 0xAAAA),
    (_NETWORK5, 0xFF00), (_NETWORK6, 0xF0F0), (_shuffle(1, 0, 3, 2), 0xCCCC),
    (_shuffle(2, 3, 0, 1), 0xAAAA),
]  # fmt: skip
_MERGE_STEPS = [  # bitonic_merge_zmm: half cleaners 16, 8, 4, 2
    (_NETWORK7, 0xFF00), (_NETWORK6, 0xF0F0), (_shuffle(1, 0, 3, 2), 0xCCCC), (_shuffle(2, 3, 0, 1), 0xAAAA),
]  # fmt: skip
SORT_PARTNERS = numpy.array([lanes for lanes, _ in _SORT_STEPS], dtype=numpy.int64)
SORT_TAKES_MAX = numpy.array([_mask(bits) for _, bits in _SORT_STEPS], dtype=numpy.bool_)
MERGE_PARTNERS = numpy.array([lanes for lanes, _ in _MERGE_STEPS], dtype=numpy.int64)
MERGE_TAKES_MAX = numpy.array([_mask(bits) for _, bits in _MERGE_STEPS], dtype=numpy.bool_)
#: get_pivot()'s median network over 9 registers: COEX(a, b) puts min in a, max in b.
MEDIAN9_PAIRS = numpy.array(
    [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 2),
     (5, 6), (3, 7), (1, 5), (2, 6), (3, 5), (2, 4), (3, 4), (3, 8), (4, 8)],
    dtype=numpy.int64,
)  # fmt: skip

# Rows of the workspace (``workspace()``): 8 registers, then scratch registers.
_TEMP = 8  # 8 rows: results of min/max steps before they are written back
_SAVED = 16  # 3 rows: the edge vectors of a partition and the current one
WORKSPACE_ROWS = 19


def workspace() -> numpy.ndarray:
    """Scratch registers for ``select``: one per call or thread, reused across calls."""
    return numpy.empty((WORKSPACE_ROWS, LANES), dtype=numpy.float32)


# Register networks (sort_128 and its helpers). A register is a row of the workspace. Lane by
# lane, _mm512_min_ps(a, b) is `a if a < b else b` and _mm512_max_ps(a, b) `a if a > b else b`
# (b for two zeros): written out inline, so that they compile to branch-free selects.
@jit
def apply_network(z, row, partners, takes_max, temp):
    # cmp_merge(z, permuted z, mask) for each step: min/max take the partner lane first.
    for step in range(partners.shape[0]):
        for lane in range(LANES):
            other = z[row, partners[step, lane]]
            own = z[row, lane]
            low = other if other < own else own
            high = other if other > own else own
            temp[lane] = high if takes_max[step, lane] else low
        for lane in range(LANES):
            z[row, lane] = temp[lane]


@jit
def merge_pair(z, first, second, temp):
    # bitonic_merge_two_zmm: min/max(first, reversed second), then half cleaners.
    for lane in range(LANES):
        x = z[first, lane]
        y = z[second, LANES - 1 - lane]
        temp[0, lane] = x if x < y else y
        temp[1, lane] = x if x > y else y
    for lane in range(LANES):
        z[first, lane] = temp[0, lane]
        z[second, lane] = temp[1, lane]
    apply_network(z, first, MERGE_PARTNERS, MERGE_TAKES_MAX, temp[2])
    apply_network(z, second, MERGE_PARTNERS, MERGE_TAKES_MAX, temp[2])


@jit
def merge_four(z, base, temp):
    # bitonic_merge_four_zmm on registers base .. base + 3 (two sorted pairs).
    for lane in range(LANES):
        back = LANES - 1 - lane
        z0, z1 = z[base, lane], z[base + 1, lane]
        z2r, z3r = z[base + 2, back], z[base + 3, back]
        temp[0, lane] = z0 if z0 < z3r else z3r  # t1 = min(z0, z3r)
        temp[1, lane] = z1 if z1 < z2r else z2r  # t2 = min(z1, z2r)
        temp[2, back] = z1 if z1 > z2r else z2r  # t3 = reversed max(z1, z2r)
        temp[3, back] = z0 if z0 > z3r else z3r  # t4 = reversed max(z0, z3r)
    for lane in range(LANES):
        t1, t2, t3, t4 = temp[0, lane], temp[1, lane], temp[2, lane], temp[3, lane]
        z[base, lane] = t1 if t1 < t2 else t2
        z[base + 1, lane] = t1 if t1 > t2 else t2
        z[base + 2, lane] = t3 if t3 < t4 else t4
        z[base + 3, lane] = t3 if t3 > t4 else t4
    for row in range(base, base + 4):
        apply_network(z, row, MERGE_PARTNERS, MERGE_TAKES_MAX, temp[4])


@jit
def coex(t, a, b):
    # COEX(a, b): a = min(a, b), b = max(old a, b), lane by lane.
    for lane in range(LANES):
        x, y = t[a, lane], t[b, lane]
        t[a, lane] = x if x < y else y
        t[b, lane] = x if x > y else y


@jit
def merge_eight(z, temp):
    # bitonic_merge_eight_zmm on registers 0 .. 7 (two sorted quadruples); temp rows t1 .. t8.
    for lane in range(LANES):
        back = LANES - 1 - lane
        for k in range(4):
            x = z[k, lane]
            y = z[7 - k, back]
            temp[k, lane] = x if x < y else y  # t1 .. t4 = min(z[k], reversed z[7 - k])
            temp[7 - k, back] = x if x > y else y  # t8 .. t5 = reversed max(z[k], reversed z[7 - k])
    for a, b in ((0, 2), (1, 3), (4, 6), (5, 7), (0, 1), (2, 3), (4, 5), (6, 7)):
        coex(temp, a, b)
    for row in range(8):
        for lane in range(LANES):
            z[row, lane] = temp[row, lane]
        apply_network(z, row, MERGE_PARTNERS, MERGE_TAKES_MAX, temp[0])


@jit
def sort_small(arr, start, size, ws):
    # sort_128 (through sort_16/32/64) of arr[start:start + size], size <= 128: masked loads
    # fill the unused lanes with +inf, masked stores write back only the size elements.
    registers = 1 if size <= 16 else 2 if size <= 32 else 4 if size <= 64 else 8
    for row in range(registers):
        for lane in range(LANES):
            index = row * LANES + lane
            ws[row, lane] = arr[start + index] if index < size else _INF
    temp = ws[_TEMP : _TEMP + 8]
    for row in range(registers):
        apply_network(ws, row, SORT_PARTNERS, SORT_TAKES_MAX, temp[0])
    for first in range(0, registers if registers >= 2 else 0, 2):
        merge_pair(ws, first, first + 1, temp)
    for base in range(0, registers if registers >= 4 else 0, 4):
        merge_four(ws, base, temp)
    if registers == 8:
        merge_eight(ws, temp)
    for index in range(size):
        arr[start + index] = ws[index // LANES, index % LANES]


# Pivot and partition.
@jit
def rotate_left(value, bits):
    return (value << numpy.uint64(bits)) | (value >> numpy.uint64(64 - bits))


@jit
def pivot_of(arr, left, right, samples):
    # get_pivot(arr, left, right), lane 4: 9 elements at xoroshiro128+ indices seeded from
    # left and right (inclusive), then the median network; samples: scratch of 9 floats.
    s0 = _SEED0 + numpy.uint64(left)
    s1 = _SEED1 - numpy.uint64(right)
    bound = numpy.uint64(min(right - left + 1, _INT32_MAX))
    for i in range(9):
        s1 = s1 ^ s0
        s0 = rotate_left(s0, 24) ^ s1 ^ (s1 << numpy.uint64(16))
        s1 = rotate_left(s1, 37)
        offset = numpy.int64((((s0 + s1) & _LOW32) * bound) >> numpy.uint64(32))
        samples[i] = arr[left + offset] if i < 5 else arr[right - offset]
    for pair in range(MEDIAN9_PAIRS.shape[0]):
        a, b = MEDIAN9_PAIRS[pair, 0], MEDIAN9_PAIRS[pair, 1]
        x, y = samples[a], samples[b]
        samples[a] = x if x < y else y
        samples[b] = x if x > y else y
    return samples[4]


@jit
def partition_vector(arr, low_store, high_end, vec, pivot):
    # partition_vec: `< pivot` lanes compress-stored from low_store, `>= pivot` lanes so that
    # they end at high_end, lane order kept. Returns how many lanes were `>= pivot`.
    amount = 0
    for lane in range(LANES):
        amount += vec[lane] >= pivot
    low = low_store
    high = high_end - amount
    for lane in range(LANES):
        value = vec[lane]
        big = value >= pivot
        arr[high if big else low] = value
        high += big
        low += not big
    return amount


@jit
def load_vector(arr, start, vec):
    for lane in range(LANES):
        vec[lane] = arr[start + lane]


@jit
def partition_range(arr, left, right, pivot, ws):
    # partition_avx512(arr, left, right (exclusive), pivot): returns the pivot index and the
    # range's min and max. The range has more than 128 elements, so at least 8 vectors remain
    # after the scalar steps (the C++ cases of 0 and 1 vectors do not arise).
    smallest = _INF
    biggest = -_INF
    for _ in range((right - left) % LANES):
        value = arr[left]
        smallest = min(smallest, value)
        biggest = max(biggest, value)
        if value > pivot:
            right -= 1
            arr[left] = arr[right]
            arr[right] = value
        else:
            left += 1
    vec_left, vec_right, vec = ws[_SAVED], ws[_SAVED + 1], ws[_SAVED + 2]
    load_vector(arr, left, vec_left)
    load_vector(arr, right - LANES, vec_right)
    r_store = right - LANES
    l_store = left
    left += LANES
    right -= LANES
    while right != left:
        if (r_store + LANES) - right < left - l_store:  # less free space on the right
            right -= LANES
            load_vector(arr, right, vec)
        else:
            load_vector(arr, left, vec)
            left += LANES
        for lane in range(LANES):
            smallest = min(smallest, vec[lane])
            biggest = max(biggest, vec[lane])
        amount = partition_vector(arr, l_store, r_store + LANES, vec, pivot)
        r_store -= amount
        l_store += LANES - amount
    for lane in range(LANES):
        smallest = min(smallest, min(vec_left[lane], vec_right[lane]))
        biggest = max(biggest, max(vec_left[lane], vec_right[lane]))
    amount = partition_vector(arr, l_store, r_store + LANES, vec_left, pivot)
    l_store += LANES - amount
    amount = partition_vector(arr, l_store, l_store + LANES, vec_right, pivot)
    l_store += LANES - amount
    return l_store, smallest, biggest


@jit
def minimum_pivot_step(arr, left, right, pivot, ws):
    # partition_range when pivot is the range's minimum (right exclusive): the scalar steps
    # keep minima and swap the others to the end; then every lane is `>= pivot` and the blocks
    # end in the order [last, 0, 2, 3, ..., last - 1, 1]. Returns the pivot index.
    for _ in range((right - left) % LANES):
        value = arr[left]
        if value > pivot:
            right -= 1
            arr[left] = arr[right]
            arr[right] = value
        else:
            left += 1
    block0, block1 = ws[_SAVED], ws[_SAVED + 1]
    load_vector(arr, left, block0)
    load_vector(arr, left + LANES, block1)
    for lane in range(LANES):
        arr[left + lane] = arr[right - LANES + lane]
        arr[left + LANES + lane] = block0[lane]
        arr[right - LANES + lane] = block1[lane]
    return left


@jit
def heapsort_select(arr, left, size, position):
    # numpy's heapsort_ (strict <) on arr[left:left + size], up to the step that writes
    # `position`: each extraction step writes its heap end for good.
    base = left - 1  # heap slot q (1-based) is arr[base + q]
    for start in range(size >> 1, 0, -1):
        sift_down(arr, base, start, arr[base + start], size)
    target = position - base
    for end in range(size, 1, -1):
        item = arr[base + end]
        arr[base + end] = arr[base + 1]
        if end == target:
            return arr[base + end]
        sift_down(arr, base, 1, item, end - 1)
    return arr[base + 1]


@jit
def select(arr, position, ws, paths):
    # Element at `position` after numpy 1.24's x86_quicksort_float on NaN-free float32 `arr`
    # (overwritten); `ws` from workspace(); paths[k] += 1 for each step of kind k.
    n = arr.size
    if n <= 1:  # numpy sorts only arrays of 2 or more elements
        return arr[position]
    log2 = 0
    count = n
    while count > 1:
        count >>= 1
        log2 += 1
    iters = 2 * log2
    left = 0
    right = n - 1  # inclusive, as in qsort_
    lower = -_INF  # a lower bound of the range's minimum
    upper = _INF  # the range's maximum when upper_known
    upper_known = False
    samples = numpy.empty(9, dtype=numpy.float32)
    while True:
        size = right + 1 - left
        if iters <= 0:
            paths[HEAPSORTS] += 1
            return heapsort_select(arr, left, size, position)
        if size <= SMALL:
            paths[BITONIC_SORTS] += 1
            sort_small(arr, left, size, ws)
            return arr[position]
        pivot = pivot_of(arr, left, right, samples)
        if pivot == lower and upper_known:  # pivot is the minimum: O(1) step
            paths[MINIMUM_PIVOT_STEPS] += 1
            pivot_index = minimum_pivot_step(arr, left, right + 1, pivot, ws)
            smallest = pivot
            biggest = upper
        else:
            paths[PARTITIONS] += 1
            pivot_index, smallest, biggest = partition_range(arr, left, right + 1, pivot, ws)
        iters -= 1
        if position < pivot_index:
            if pivot == smallest:  # qsort_ leaves the left side as it is
                return arr[position]
            right = pivot_index - 1
            lower = smallest  # the minimum is below the pivot: on the left
            upper_known = False
        else:
            if pivot == biggest:  # qsort_ leaves the right side as it is
                return arr[position]
            left = pivot_index
            lower = pivot  # every element on the right is >= pivot
            upper = biggest  # the maximum is above the pivot: on the right
            upper_known = True


@jit
def select_with_nans(values, position, work, ws, paths):
    # x86_quicksort_float: NaNs become +inf before sorting and the last slots NaN after.
    # `work` (may be `values` itself) receives the copy; NaN is returned past the real values.
    nans = 0
    for index in range(values.size):
        value = values[index]
        if value != value:
            nans += 1
            value = _INF
        work[index] = value
    if position >= values.size - nans:
        return numpy.float32(numpy.nan)
    return select(work, position, ws, paths)


@jit
def select_avx512_rows(rows, positions, out, start, stop):
    # select() on rows start .. stop - 1 of NaN-free float32 `rows` (each copied first).
    work = numpy.empty(rows.shape[1], dtype=numpy.float32)
    ws = numpy.empty((WORKSPACE_ROWS, LANES), dtype=numpy.float32)
    paths = numpy.zeros(PATH_COUNT, dtype=numpy.int64)
    for row in range(start, stop):
        for index in range(rows.shape[1]):
            work[index] = rows[row, index]
        out[row] = select(work, positions[row], ws, paths)


@jit
def select_introsort_rows(rows, positions, out, start, stop):
    # introsort_loop (numpy 1.24's introsort of float64, or of float16 widened to float32) on
    # rows start .. stop - 1 of `rows` (each copied first).
    work = numpy.empty(rows.shape[1], dtype=rows.dtype)
    left_stops = numpy.empty(SMALL, dtype=numpy.int64)
    right_stops = numpy.empty(SMALL, dtype=numpy.int64)
    for row in range(start, stop):
        for index in range(rows.shape[1]):
            work[index] = rows[row, index]
        out[row] = introsort_loop(work, positions[row], left_stops, right_stops)

"""numba loops behind :mod:`intquant._numba.dispatch`; importing this module imports numba.

Serial loops only: each ``*_range`` loop computes the elements ``[start, stop)`` of an array and
releases the GIL (``nogil``), so that :mod:`intquant._numba.dispatch` runs the slices of a large
array on its own threads. Nothing here uses numba's ``parallel=True``: its threading layers are
not fork-safe (GNU OpenMP) or not thread-safe (workqueue); see dispatch's docstring.

Module-level functions, so that numba can cache their machine code on disk; when it finds no
writable place for the cache (a read-only install whose user cache directory is read-only too),
they are compiled in memory on each run instead.
"""
# mypy: ignore-errors

from __future__ import annotations

import numba
import numpy

from intquant._numba.status import BEYOND_INT64, NAN_FOUND

_INT64_LIMIT = 2.0**63  # float64 codes in [-2**63, 2**63) convert to int64 exactly
_OPTIONS = {"nogil": True, "error_model": "numpy"}


def jit(function):
    """``numba.njit`` with an on-disk cache, or without one when numba has nowhere to write it."""
    try:
        return numba.njit(cache=True, **_OPTIONS)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available" (read-only install)
        return numba.njit(**_OPTIONS)(function)


# Streaming loops: a serial loop over [start, stop); dispatch runs one slice per thread.
@jit
def quantize_range(values, scale, zero_point, low, high, clip, codes, start, stop):
    # values and scale share the division's dtype; zero_point has the addition's dtype; low and
    # high (0 when not clipping) are in the dtype the codes are clipped in. numba compiles one
    # loop per output dtype: the clipped codes are stored straight into `codes` (int8 to int64,
    # float32, float64), which the caller checked holds [low, high] exactly; without clipping
    # the caller passes int64 codes. Branch-free so that it vectorizes; the loop runs over
    # slices, whose indices numba knows are not negative (indexing values[start:stop] by
    # range(start, stop) instead costs a wraparound check per access, about 2x the time).
    zero = low - low  # 0 in the clipping dtype: code + zero turns -0.0 into 0.0, as int codes hold it
    nan_seen = False
    beyond = False
    source = values[start:stop]
    target = codes[start:stop]
    for index in range(source.size):
        code = numpy.rint(source[index] / scale + zero_point)
        nan_seen |= code != code
        if clip:
            code = min(max(code, low), high)
        else:
            beyond |= not (-_INT64_LIMIT <= code < _INT64_LIMIT)
        target[index] = code + zero
    return NAN_FOUND if nan_seen else (BEYOND_INT64 if beyond else 0)


@jit
def dequantize_range(codes, scale, zero_point, values, start, stop):
    # float64 arithmetic; stored in the dtype of `values` (float64, or float32: rounded to
    # nearest, as astype rounds). Over slices, as quantize_range.
    source = codes[start:stop]
    target = values[start:stop]
    for index in range(source.size):
        target[index] = scale * (numpy.float64(source[index]) - zero_point)


@jit
def cents_range(values, hundred, key_low, seen, start, stop):
    # Marks each key rint(x*100) - key_low, counts the rounded values rint(x*100)/100 below
    # 0 and notes which signed zeros they hold.
    # Over slices, as quantize_range; the key's slot is unsigned (every key is >= key_low), so
    # that no wraparound check guards the store either.
    negatives = 0
    positive_zero = False
    negative_zero = False
    source = values[start:stop]
    for index in range(source.size):
        key = numpy.rint(source[index] * hundred)
        seen[numpy.uint64(numpy.int64(key) - key_low)] = True
        cents = key / hundred
        negatives += cents < 0
        if cents == 0:
            if numpy.signbit(cents):
                negative_zero = True
            else:
                positive_zero = True
    return negatives, positive_zero, negative_zero


@jit
def cent_keys_range(values, hundred, keys, start, stop):
    # keys = rint(x*100) as int16 (every key in [-32767, 32767]), the key -0.0 stored as -32768.
    source = values[start:stop]
    target = keys[start:stop]
    for index in range(source.size):
        key = numpy.rint(source[index] * hundred)
        negative_zero = key == 0 and numpy.signbit(key)
        target[index] = numpy.int16(-32768) if negative_zero else numpy.int16(key)


@jit
def round_range(values, hundred, rounded, start, stop):
    # Over slices, as quantize_range.
    source = values[start:stop]
    target = rounded[start:stop]
    for index in range(source.size):
        target[index] = numpy.rint(source[index] * hundred) / hundred


@jit
def heapsort_range(work, low, high):
    # numpy 1.24's heapsort_ (1-based indices from base = low - 1); not stable.
    base = low - 1
    size = high - low + 1
    for start in range(size >> 1, 0, -1):
        sift_down(work, base, start, work[base + start], size)
    for end in range(size, 1, -1):
        item = work[base + end]
        work[base + end] = work[base + 1]
        sift_down(work, base, 1, item, end - 1)


@jit
def sift_down(work, base, start, item, end):
    # Move `item` down from heap slot `start` to its place in a heap of `end` slots.
    i = start
    j = start * 2
    while j <= end:
        if j < end and work[base + j] < work[base + j + 1]:
            j += 1
        if item < work[base + j]:
            work[base + i] = work[base + j]
            i = j
            j += j
        else:
            break
    work[base + i] = item


@jit
def hoare_partition(work, low, high, left_stops, right_stops):
    # numpy 1.24's median-of-three Hoare partition of work[low:high+1]; returns where the
    # pivot lands. The scan from the left stops on values >= pivot, the scan from the right
    # on values <= pivot, and the k-th stops of the two sides swap while they have not
    # crossed. Stops are found a block at a time without data-dependent branches (as in
    # BlockQuicksort); the last stretch, where the scans meet, runs the scalar loop.
    middle = low + ((high - low) >> 1)
    if work[middle] < work[low]:
        work[middle], work[low] = work[low], work[middle]
    if work[high] < work[middle]:
        work[high], work[middle] = work[middle], work[high]
    if work[middle] < work[low]:
        work[middle], work[low] = work[low], work[middle]
    pivot = work[middle]
    work[middle], work[high - 1] = work[high - 1], work[middle]
    block = left_stops.size
    left = low  # the last left stop swapped (low: none yet)
    right = high - 1  # the last right stop swapped
    next_left = low + 1  # the unscanned stretch is [next_left, next_right]
    next_right = high - 2
    left_count = left_start = right_count = right_start = 0
    while True:
        if left_count == 0:
            if next_right - next_left + 1 < block:
                break
            left_start = 0
            for offset in range(block):
                left_stops[left_count] = next_left + offset
                left_count += not (work[next_left + offset] < pivot)
            next_left += block
        if right_count == 0:
            if next_right - next_left + 1 < block:
                break
            right_start = 0
            for offset in range(block):
                right_stops[right_count] = next_right - offset
                right_count += not (pivot < work[next_right - offset])
            next_right -= block
        pairs = min(left_count, right_count)
        for pair in range(pairs):
            first = left_stops[left_start + pair]
            second = right_stops[right_start + pair]
            work[first], work[second] = work[second], work[first]
        if pairs:
            left = left_stops[left_start + pairs - 1]
            right = right_stops[right_start + pairs - 1]
        left_start += pairs
        left_count -= pairs
        right_start += pairs
        right_count -= pairs
    while True:  # numpy's scalar loop, from the state the blocks reached
        left += 1
        while work[left] < pivot:
            left += 1
        right -= 1
        while pivot < work[right]:
            right -= 1
        if left >= right:
            break
        work[left], work[right] = work[right], work[left]
    work[left], work[high - 1] = work[high - 1], work[left]
    return left


@jit
def introsort_loop(work, position, left_stops, right_stops):
    # Follows numpy 1.24's introsort (npysort/quicksort.cpp) only into the ranges that
    # hold `position`; see intquant._legacy_sort for the rules. `work` is scratch.
    low = 0
    high = work.size - 1
    depth = 0
    count = work.size
    while count > 1:
        count >>= 1
        depth += 1
    depth *= 2
    check_depth = True
    while True:
        if check_depth and depth < 0:
            heapsort_range(work, low, high)
            return work[position]
        check_depth = False
        if high - low <= 15:
            for i in range(low + 1, high + 1):
                item = work[i]
                j = i
                while j > low and item < work[j - 1]:
                    work[j] = work[j - 1]
                    j -= 1
                work[j] = item
            return work[position]
        left = hoare_partition(work, low, high, left_stops, right_stops)
        depth -= 1
        if position == left:
            return work[left]
        left_is_smaller = left - low < high - left
        goes_left = position < left
        check_depth = goes_left != left_is_smaller
        if goes_left:
            high = left - 1
        else:
            low = left + 1


# Integer layers (intquant.integer): the input codes cast for the product with their range, and
# the product turned into output codes in one pass (intquant.integer.fused).
@jit
def cast_codes_range(codes, cast, start, stop):
    # cast[i] = codes[i] (integer codes into the float/int64 product dtype, exact: the caller
    # chose a dtype that holds every accepted code) and the (min, max) of the slice as int64.
    source = codes[start:stop]
    target = cast[start:stop]
    low = numpy.int64(source[0])
    high = low
    for index in range(source.size):
        code = numpy.int64(source[index])
        low = min(low, code)
        high = max(high, code)
        target[index] = source[index]
    return low, high


@jit
def requantize_product_rows(
    product, constant, multiplier, shift, integer_formula, rounding, zero_point, low, high, codes, start, stop
):
    # Rows [start, stop) of product (R, O): acc = int64(product) + constant[o], then the plan's
    # formula (intquant.integer.plan), stored at codes[r // P, o, r % P] (codes is (B, O, P),
    # R = B * P: P = 1 for a linear layer's (..., O), H_out * W_out for a convolution's NCHW).
    # rounding: 0 half_even, 1 half_away, 2 half_up. The same int64/float64 operations, in the
    # same order, as intquant.integer.requantize's numpy executor.
    channels = product.shape[1]
    positions = codes.shape[2]
    bottom = numpy.int64(low - zero_point)
    top = numpy.int64(high - zero_point)
    for row in range(start, stop):
        batch = row // positions
        position = row - batch * positions
        for channel in range(channels):
            acc = numpy.int64(product[row, channel]) + constant[channel]
            steps = shift[channel]
            if integer_formula:
                value = acc * numpy.int64(multiplier[channel])
                rounded_rule = rounding
            else:
                value = acc
                rounded_rule = 2
            if steps <= 0:
                value = value << -steps
            else:
                floor = value >> steps
                remainder = value & ((numpy.int64(1) << steps) - 1)
                half = numpy.int64(1) << (steps - 1)
                if rounded_rule == 0:
                    value = floor + (remainder > half - (floor & 1))
                elif rounded_rule == 1:
                    value = floor + (remainder > half - (value >= 0))
                else:
                    value = floor + (remainder >= half)
            if integer_formula:
                code = min(max(value, bottom), top)
            else:
                scaled = numpy.float64(value) * numpy.float64(multiplier[channel])
                code = numpy.int64(numpy.rint(min(max(scaled, numpy.float64(bottom)), numpy.float64(top))))
            codes[batch, channel, position] = code + zero_point

"""Emulation of numpy 1.24's AVX-512 float32 quicksort, for signed-zero fidelity.

On x86-64 CPUs with AVX512_SKX, numpy 1.24 sorts float32 arrays (``kind='quicksort'``)
with ``x86_quicksort_float_AVX512_SKX`` (numpy/core/src/npysort/x86-qsort.dispatch.cpp).
That sort is not stable and, because ``vminps``/``vmaxps`` return their second operand
when both operands are zeros, it can even duplicate one signed zero over another.  So
which of ``+0.0``/``-0.0`` ends up at a given sorted position (and hence which one
``numpy.unique`` keeps) depends on the exact algorithm.  numpy 2.x sorts differently,
so this module re-derives the numpy 1.24 result with numpy code that is independent of
numpy's own sort order for equal elements.

The emulated algorithm (numpy 1.24.4, validated bit for bit against it by
``tools/check_avx512_sort.py``):

* NaNs are replaced by +inf before sorting and written back as NaN at the end.
* ``qsort_(left, right, max_iters)`` starts with ``max_iters = 2 * floor(log2(n))``.
  When ``max_iters <= 0`` the range is heapsorted (numpy's own ``heapsort_``); else a
  range of at most 128 elements is sorted with bitonic networks in 16-lane registers.
* Otherwise the pivot is lane 4 of a 9-input median network over elements gathered at
  indices drawn from a vectorised xoroshiro128+ generator seeded from ``left`` and
  ``right``.  The range is partitioned: ``(right - left) % 16`` leading elements one at
  a time (``> pivot`` goes right), the rest 16 at a time with ``>= pivot`` compress-stored
  right, loading the next vector from the side with less free space, and the two
  initially loaded edge vectors last.  Each side is recursed into unless the pivot
  equals that range's minimum (left side) or maximum (right side).

Only the path of partitions containing the requested position is followed
(quickselect), each partition vectorised with numpy; only the final block is emulated
lane by lane.  Long runs of "pivot == minimum" partitions (a dominant minimum value,
typically zero) only move a few 16-element blocks at the range ends; they are applied
to a rope without copying the middle.  Those runs are exactly what exhausts the depth
budget, so the heapsort fallback is common and emulated exactly: its heap construction
level by level with numpy, its extraction phase in Python but only while elements other
than the range minimum remain (after that it is a plain rotation).
"""

from __future__ import annotations

import array
import math

import numpy as np
from numpy.typing import NDArray

__all__ = ["element_at_sorted_position"]

F32 = NDArray[np.float32]
IntArr = NDArray[np.intp]

_LANES = 16
_SMALL = 128
_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1
# Lane 2 of the two 4x64-bit xoroshiro128+ seed vectors: it yields 32-bit random
# number 4, the only lane whose median becomes the pivot.
_SEED0 = 1324281658759788278
_SEED1 = 7874578921548791257
# Median network of get_pivot() over 9 registers; the pivot is register 4 afterwards.
_MEDIAN9 = (
    (0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 2),
    (5, 6), (3, 7), (1, 5), (2, 6), (3, 5), (2, 4), (3, 4), (3, 8), (4, 8),
)  # fmt: skip


def _lane_perm(pattern: list[int], group: int) -> IntArr:
    """Permutation repeating ``pattern`` inside each group of ``group`` lanes."""
    base = np.repeat(np.arange(0, _LANES, group), group)
    return (np.tile(np.asarray(pattern), _LANES // group) + base).astype(np.intp)


# Lane permutations (result lane i takes source lane perm[i]) used by the networks:
# _mm512_shuffle_ps immediates and _mm512_permutexvar_ps index vectors.
_SWAP1 = _lane_perm([1, 0, 3, 2], 4)  # SHUFFLE_MASK(2, 3, 0, 1)
_REV4 = _lane_perm([3, 2, 1, 0], 4)  # SHUFFLE_MASK(0, 1, 2, 3)
_SWAP2 = _lane_perm([2, 3, 0, 1], 4)  # SHUFFLE_MASK(1, 0, 3, 2)
_REV8 = _lane_perm([7, 6, 5, 4, 3, 2, 1, 0], 8)  # NETWORK3
_REV16 = np.arange(_LANES - 1, -1, -1, dtype=np.intp)  # NETWORK5
_SWAP4 = _lane_perm([4, 5, 6, 7, 0, 1, 2, 3], 8)  # NETWORK6
_SWAP8 = _lane_perm(list(range(8, 16)) + list(range(8)), 16)  # NETWORK7


def _lanes(mask: int) -> NDArray[np.bool_]:
    return np.array([(mask >> i) & 1 for i in range(_LANES)], dtype=bool)


_M_AAAA, _M_CCCC, _M_F0F0, _M_FF00 = (_lanes(m) for m in (0xAAAA, 0xCCCC, 0xF0F0, 0xFF00))


def _vmin(a: F32, b: F32) -> F32:
    """``_mm512_min_ps(a, b)``: ``a < b ? a : b``, i.e. ``b`` for two zeros."""
    return np.where(a < b, a, b)


def _vmax(a: F32, b: F32) -> F32:
    """``_mm512_max_ps(a, b)``: ``a > b ? a : b``, i.e. ``b`` for two zeros."""
    return np.where(a > b, a, b)


def _cmp_merge(z: F32, perm: IntArr, take_max: NDArray[np.bool_]) -> F32:
    """``cmp_merge(z, permuted z, mask)``: masked lanes get the max, others the min.

    Rows of ``z`` are registers; min/max take the permuted register first, so a lane
    keeps its own value against an equal partner.
    """
    other = z[..., perm]
    return np.where(take_max, _vmax(other, z), _vmin(other, z))


def _sort_zmm(z: F32) -> F32:
    """Bitonic sorting network for each 16-lane register (row) of ``z``."""
    for perm, mask in (
        (_SWAP1, _M_AAAA), (_REV4, _M_CCCC), (_SWAP1, _M_AAAA), (_REV8, _M_F0F0),
        (_SWAP2, _M_CCCC), (_SWAP1, _M_AAAA), (_REV16, _M_FF00), (_SWAP4, _M_F0F0),
        (_SWAP2, _M_CCCC), (_SWAP1, _M_AAAA),
    ):  # fmt: skip
        z = _cmp_merge(z, perm, mask)
    return z


def _bitonic_merge_zmm(z: F32) -> F32:
    """Half cleaners 16, 8, 4, 2 for each bitonic register (row) of ``z``."""
    for perm, mask in ((_SWAP8, _M_FF00), (_SWAP4, _M_F0F0), (_SWAP2, _M_CCCC), (_SWAP1, _M_AAAA)):
        z = _cmp_merge(z, perm, mask)
    return z


def _sort_small(block: F32) -> F32:
    """``sort_128`` (via sort_16/32/64) on at most 128 elements; padding is +inf."""
    n = block.size
    regs = 1 if n <= 16 else 2 if n <= 32 else 4 if n <= 64 else 8
    z = np.full(regs * _LANES, np.inf, dtype=np.float32)
    z[:n] = block
    zz = _sort_zmm(z.reshape(regs, _LANES))
    if regs >= 2:  # bitonic_merge_two_zmm on pairs (0,1), (2,3), ...
        first, second = zz[0::2], zz[1::2][:, _REV16]
        lo, hi = _vmin(first, second), _vmax(first, second)
        zz = np.empty_like(zz)
        zz[0::2], zz[1::2] = _bitonic_merge_zmm(lo), _bitonic_merge_zmm(hi)
    if regs >= 4:  # bitonic_merge_four_zmm on registers 0-3 (and 4-7)
        q = zz.reshape(-1, 4, _LANES)
        r2, r3 = q[:, 2][:, _REV16], q[:, 3][:, _REV16]
        t1, t2 = _vmin(q[:, 0], r3), _vmin(q[:, 1], r2)
        t3, t4 = _vmax(q[:, 1], r2)[:, _REV16], _vmax(q[:, 0], r3)[:, _REV16]
        out = np.stack([_vmin(t1, t2), _vmax(t1, t2), _vmin(t3, t4), _vmax(t3, t4)], axis=1)
        zz = _bitonic_merge_zmm(out).reshape(regs, _LANES)
    if regs == 8:  # bitonic_merge_eight_zmm
        t = [zz[k] for k in range(4)] + [zz[k][_REV16] for k in range(4, 8)]
        lo8 = [_vmin(t[k], t[7 - k]) for k in range(4)]
        hi8 = [_vmax(t[k], t[7 - k])[_REV16] for k in (3, 2, 1, 0)]
        u = lo8 + hi8
        for a, b in ((0, 2), (1, 3), (4, 6), (5, 7), (0, 1), (2, 3), (4, 5), (6, 7)):
            u[a], u[b] = _vmin(u[a], u[b]), _vmax(u[a], u[b])  # COEX
        zz = _bitonic_merge_zmm(np.stack(u))
    return zz.reshape(-1)[:n]


def _pivot_indices(left: int, right: int) -> list[int]:
    """Absolute indices get_pivot() gathers for lane 4 (xoroshiro128+, lane 2 low half)."""
    s0 = (_SEED0 + left) & _MASK64
    s1 = (_SEED1 - right) & _MASK64
    bound = min(right - left + 1, 2**31 - 1)
    out = []
    for i in range(9):
        s1 ^= s0
        s0 = (((s0 << 24) | (s0 >> 40)) & _MASK64) ^ s1 ^ ((s1 << 16) & _MASK64)
        s1 = ((s1 << 37) | (s1 >> 27)) & _MASK64
        rnd = ((((s0 + s1) & _MASK64) & _MASK32) * bound) >> 32
        out.append(left + rnd if i < 5 else right - rnd)
    return out


def _median9(v: list[float]) -> float:
    """Lane 4 of register 4 after the COEX median network (sign of zero irrelevant)."""
    for a, b in _MEDIAN9:
        x, y = v[a], v[b]
        v[a], v[b] = min(x, y), max(x, y)
    return v[4]


def _block_order(ge_count: IntArr) -> IntArr:
    """Order in which partition_avx512 processes the 16-lane blocks of a region.

    ``ge_count[k]`` is the number of ``>= pivot`` lanes of block ``k`` (at least two
    blocks).  Blocks 0 and -1 are loaded first and partitioned last; the middle is
    consumed from the left while the >=-pivot lanes written from left blocks do not
    exceed the <-pivot lanes written from right blocks, else from the right.  With
    prefix sums A (left blocks, >= lanes) and R (right blocks, < lanes), right block j
    is taken after exactly ``min{i : A_i > R_j}`` left blocks.
    """
    nblk = ge_count.size
    mid = nblk - 2
    if mid == 0:
        return np.arange(2, dtype=np.intp)
    gm = ge_count[1:-1]
    a = np.zeros(mid + 1, dtype=np.int64)
    np.cumsum(gm, out=a[1:])
    r = np.zeros(mid, dtype=np.int64)
    np.cumsum(_LANES - gm[::-1][:-1], out=r[1:])
    lefts_before = np.searchsorted(a, r, side="right")
    step_r = lefts_before + np.arange(mid)
    n_right = int(np.count_nonzero(step_r < mid))
    n_left = mid - n_right
    left_ids = np.arange(n_left)
    step_l = left_ids + np.searchsorted(lefts_before[:n_right], left_ids, side="right")
    seq = np.empty(nblk, dtype=np.intp)
    seq[step_l] = 1 + left_ids
    seq[step_r[:n_right]] = nblk - 2 - np.arange(n_right)
    seq[mid], seq[mid + 1] = 0, nblk - 1
    return seq


def _scalar_prefix(front: F32, back: F32, size: int, pivot: float) -> tuple[int, int]:
    """The ``(right - left) % 16`` one-at-a-time steps of partition_avx512, in place.

    ``front``/``back`` are the first/last elements of the range (disjoint, each at least
    15 long).  Returns (elements kept on the left, elements swapped to the end).
    """
    nb = back.size
    left, right = 0, size
    for _ in range(size % _LANES):
        if float(front[left]) > pivot:
            right -= 1
            k = nb - (size - right)
            front[left], back[k] = back[k], front[left]
        else:
            left += 1
    return left, size - right


class _Range:
    """Contents of the current range as ``front + mid + back``; ``mid`` is never copied."""

    def __init__(self, data: F32) -> None:
        self.front: F32 = data[:0]
        self.mid: F32 = data
        self.back: F32 = data[:0]

    @property
    def size(self) -> int:
        return self.front.size + self.mid.size + self.back.size

    def at(self, k: int) -> np.float32:
        nf, nm = self.front.size, self.mid.size
        if k < nf:
            return self.front[k]
        if k < nf + nm:
            return self.mid[k - nf]
        return self.back[k - nf - nm]

    def array(self) -> F32:
        if self.front.size or self.back.size:
            return np.concatenate([self.front, self.mid, self.back])
        return self.mid

    def ensure_ends(self, nfront: int, nback: int) -> None:
        if self.front.size < nfront:
            take = nfront - self.front.size
            self.front = np.concatenate([self.front, self.mid[:take]])
            self.mid = self.mid[take:]
        if self.back.size < nback:
            take = nback - self.back.size
            self.back = np.concatenate([self.mid[self.mid.size - take :], self.back])
            self.mid = self.mid[: self.mid.size - take]


def _partition(seg: F32, pivot: float, want_left_of: int) -> tuple[int, F32, bool]:
    """Vectorised partition_avx512 of ``seg`` (modified).

    Returns the pivot index, the contents of the side containing relative position
    ``want_left_of`` and whether that is the left side.
    """
    size = seg.size
    left, nswap = _scalar_prefix(seg, seg, size, pivot)
    right = size - nswap
    nblk = (right - left) // _LANES
    if nblk == 0:
        in_left = want_left_of < left
        return left, (seg[:left] if in_left else seg[left:]), in_left
    blocks = seg[left:right].reshape(nblk, _LANES)
    ge = blocks >= pivot
    order = np.zeros(1, dtype=np.intp) if nblk == 1 else _block_order(ge.sum(axis=1))
    n_lt = int(blocks.size - np.count_nonzero(ge))
    pivot_index = left + n_lt
    in_left = want_left_of < pivot_index
    if in_left:
        part = blocks[order][~ge[order]]
        return pivot_index, np.concatenate([seg[:left], part]), True
    rev = order[::-1]
    part = blocks[rev][ge[rev]]
    return pivot_index, np.concatenate([part, seg[right:]]), False


def _heapify(h: F32) -> None:
    """Build phase of numpy's ``heapsort_`` in place, one tree level at a time.

    Nodes of one depth have disjoint subtrees and are processed after all deeper ones,
    so sifting them simultaneously equals the sequential ``l = n/2 .. 1`` loop.
    """
    n = h.size
    depth = int(n // 2).bit_length() - 1
    for d in range(depth, -1, -1):
        cur = np.arange(1 << d, min((2 << d) - 1, n // 2) + 1, dtype=np.intp)  # 1-based
        tmp = h[cur - 1]
        while cur.size:
            j = 2 * cur
            live = j <= n
            if not live.all():
                h[cur[~live] - 1] = tmp[~live]
                cur, tmp, j = cur[live], tmp[live], j[live]
            has_r = j < n
            jr = np.where(has_r, j + 1, j)
            j = np.where(has_r & (h[j - 1] < h[jr - 1]), jr, j)
            child = h[j - 1]
            move = tmp < child
            h[cur - 1] = np.where(move, child, tmp)
            cur, tmp = j[move], tmp[move]


def _postorder(nodes: IntArr) -> IntArr:
    """``nodes`` (1-based heap positions, a parent-closed set) in post-order."""
    depth = nodes.astype(np.int64)
    bits = np.zeros(nodes.size, dtype=np.int64)
    np.log2(nodes, out=None)  # placeholder to keep numpy's import warm; no effect
    bits = np.frexp(nodes.astype(np.float64))[1].astype(np.int64) - 1  # floor(log2)
    height = int(bits.max())
    pad = height - bits
    # Extend each path with right turns down to the deepest level; an ancestor and its
    # rightmost descendants then tie and the deeper node comes first.
    leaf = (depth << pad) | ((np.int64(1) << pad) - 1)
    return nodes[np.argsort(leaf * (height + 1) + pad, kind="stable")]


def _heapsort_select(data: F32, pos: int) -> np.float32:
    """Element at ``pos`` after numpy's ``heapsort_`` (strict ``<``) on ``data``.

    Only elements other than the range minimum ("big" ones) steer the extraction
    phase.  Minima move only when taken from the heap end: they then sift down the
    path of larger children to its last big node.  The simulation runs on class codes
    (0 = minimum, k = k-th smallest big value) and tracks the identity (sign) of the
    moved minima.  Three regimes:

    * several big values left: plain step-by-step simulation;
    * one big value left: ties send every sift left, so the set T of big positions
      only ever loses the heap end (a big one comes back to the root) or, for a
      minimum, the first node of T in post-order, a fixed order as T shrinks;
    * only minima left: every sift stops at the root, the steps rotate the heap.
    """
    h = data.copy()
    _heapify(h)
    n = h.size
    target = pos + 1  # 1-based, like heapsort_'s indexing
    if h.min() != 0:
        return _heapsort_select_generic(h, target)
    big = h != 0
    distinct = np.concatenate([np.zeros(1, np.float32), np.unique(h[big])])
    codes = np.zeros(2 * n + 2, dtype=np.uint8 if distinct.size <= 256 else np.int32)
    codes[1 : n + 1] = np.searchsorted(distinct, h)
    remaining = int(np.count_nonzero(big))
    ones = int(np.count_nonzero(codes == 1))
    n_min = n - remaining
    if target < n_min and not big[target]:
        return h[target]  # a minimum below the big subtree never moves before the rotation
    # c[q]: class at heap position q (1-based), 0 beyond the heap end.
    c: bytearray | array.array[int] = (
        bytearray(codes.tobytes()) if codes.dtype == np.uint8 else array.array("i", codes.tobytes())
    )
    del codes
    moved: dict[int, np.float32] = {}
    ident = h[0]
    while remaining > ones:
        if n == target:
            return np.float32(distinct[c[1]])
        t = c[n]
        c[n] = 0
        if t == 0:
            ident = moved.pop(n) if n in moved else h[n - 1]
        n -= 1
        remaining -= 1
        i, j = 1, 2
        while True:
            cj = c[j]
            cr = c[j + 1]
            if cj < cr:
                j += 1
                cj = cr
            if cj <= t:
                break
            c[i] = cj
            i = j
            j += j
        c[i] = t
        if t == 0:
            moved[i] = ident
    if remaining:
        if target > n_min:
            return np.float32(distinct[1])
        order = _postorder(
            np.flatnonzero(
                np.frombuffer(c, dtype=np.uint8 if isinstance(c, bytearray) else np.int32)[: n + 1]
            )
        )
        po: list[int] = order.tolist()
        k = 0
        for m in range(n, n_min, -1):
            if c[m]:
                c[m] = 0
                continue
            ident = moved.pop(m) if m in moved else h[m - 1]
            while not c[po[k]]:
                k += 1
            p = po[k]
            c[p] = 0
            moved[p] = ident
            k += 1
        n = n_min
    if n == 1:
        return moved[1] if 1 in moved else h[0]
    q = 1 if target == n else target + 1
    return moved[q] if q in moved else h[q - 1]


def _heapsort_select_generic(h: F32, target: int) -> np.float32:
    """Extraction phase of ``heapsort_`` on a heapified ``h`` for any minimum value.

    Used when the minimum is not zero, so zeros are among the big elements and are
    tracked as signed Python floats.
    """
    n = h.size
    lowest = h.min()
    big_pos = np.flatnonzero(h != lowest)
    remaining = big_pos.size
    # a[q]: big value at 1-based heap position q, else None (a minimum whose identity
    # is moved[q] if it was relocated, else h[q - 1]).
    a: list[float | None] = [None] * (n + 2)
    for q, v in zip((big_pos + 1).tolist(), h[big_pos].tolist()):
        a[q] = v
    moved: dict[int, np.float32] = {}
    while n > 1:
        if remaining == 0:
            q = 1 if target == n else target + 1
            return moved[q] if q in moved else h[q - 1]
        if n == target:
            return np.float32(a[1])
        tmp = a[n]
        a[n] = None
        n -= 1
        remaining -= 1
        i, j = 1, 2
        if tmp is None:  # a minimum: sifts down along the larger big children
            mtmp = moved.pop(n + 1) if (n + 1) in moved else h[n]
            while j <= n:
                vj = a[j]
                if j < n:
                    vr = a[j + 1]
                    if vr is not None and (vj is None or vj < vr):
                        j += 1
                        vj = vr
                if vj is None:
                    break
                a[i] = vj
                i = j
                j += j
            a[i] = None
            moved[i] = mtmp
        else:
            while j <= n:
                vj = a[j]
                if j < n:
                    vr = a[j + 1]
                    if vr is not None and (vj is None or vj < vr):
                        j += 1
                        vj = vr
                if vj is None or not tmp < vj:
                    break
                a[i] = vj
                i = j
                j += j
            a[i] = tmp
    root = a[1]
    if root is not None:
        return np.float32(root)
    return moved[1] if 1 in moved else h[0]


def _select(arr: F32, pos: int) -> np.float32:
    """Quickselect along qsort_()'s recursion; ``arr`` has no NaN and is owned."""
    left, right = 0, arr.size - 1
    max_iters = 2 * int(math.log2(arr.size))
    rng = _Range(arr)
    smallest, biggest = float(arr.min()), float(arr.max())
    while True:
        size = right - left + 1
        if max_iters <= 0:
            return _heapsort_select(rng.array(), pos - left)
        if size <= _SMALL:
            return _sort_small(rng.array())[pos - left]
        pivot = _median9([float(rng.at(k - left)) for k in _pivot_indices(left, right)])
        max_iters -= 1
        if pivot == smallest:
            # Every element is >= pivot: the one-at-a-time steps keep minima on the
            # left (not sorted further) and swap the rest to the end; the blocks of
            # the remaining region end up in order [last, 0, 2, 3, ..., last-1, 1].
            rng.ensure_ends(3 * _LANES, 2 * _LANES)
            front, back = rng.front.copy(), rng.back.copy()
            kept, nswap = _scalar_prefix(front, back, size, pivot)
            if pos < left + kept:
                return front[pos - left]
            cut = back.size - nswap
            front, back = (
                np.concatenate([back[cut - _LANES : cut], front[kept : kept + _LANES],
                                front[kept + 2 * _LANES :]]),
                np.concatenate([back[: cut - _LANES], front[kept + _LANES : kept + 2 * _LANES],
                                back[cut:]]),
            )  # fmt: skip
            rng.front, rng.back = front, back
            left += kept
            if pivot == biggest:
                return rng.at(pos - left)
            continue
        pivot_index, part, in_left = _partition(rng.array().copy(), pivot, pos - left)
        pivot_index += left
        if in_left:
            right = pivot_index - 1
            biggest = float(part.max())
        else:
            left = pivot_index
            if pivot == biggest:
                return part[pos - left]
            smallest = float(part.min())
        rng = _Range(part)


def element_at_sorted_position(values: np.ndarray, position: int) -> np.float32:
    """Return exactly the element (same bits, including the sign of a zero) that numpy
    1.24's AVX-512 float32 quicksort places at index ``position`` of the sorted 1-d array
    ``values``.  ``values`` is not modified; a negative ``position`` counts from the end.
    """
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.dtype != np.float32:
        raise TypeError("values must be a 1-d float32 array")
    n = arr.size
    if not -n <= position < n:
        raise IndexError(f"position {position} out of range for size {n}")
    pos = position + n if position < 0 else position
    nan = np.isnan(arr)
    n_nan = int(np.count_nonzero(nan))
    if pos >= n - n_nan:  # numpy writes canonical NaNs over the last nan_count slots
        return np.float32(np.nan)
    work = np.where(nan, np.float32(np.inf), arr) if n_nan else arr
    # Equal non-zero floats have equal bits, so only a zero result can depend on the
    # order of equal elements; numpy's partition is safe for everything else.
    value = np.partition(work, pos)[pos]
    if value != 0:
        return np.float32(value)
    zeros = np.signbit(work[work == 0])
    if zeros.all() or not zeros.any():
        return np.float32(value)
    if n <= 1:
        return work[0]
    return _select(work.copy(), pos)

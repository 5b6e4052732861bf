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

Only the partitions overlapping the requested positions are followed (a quickselect),
each vectorised with numpy; blocks of at most 128 elements are emulated lane by lane.
Runs of "pivot == minimum" partitions (a dominant minimum, typically zero: the median
of 9 samples is then the minimum and the range shrinks by at most 15 elements) move
only a few 16-element blocks at the range ends, so they are applied to a rope without
copying the middle.  Such runs exhaust the depth budget, so the fallback does trigger on
realistic data such as ``numpy.round(normal(0, 0.003, n), 2)``.  In numpy 1.24.4 it is
numpy's ``heapsort_`` (not ``std::sort`` as in later x86-simd-sort code), emulated
exactly: heap construction level by level with numpy, extraction with the shortcuts of
``_heapsort_slice``.  Typical cost is well under a second for 10**7 elements; a fallback
heapsort of millions of elements with several distinct values above the minimum is
simulated step by step in Python and takes seconds.
"""

from __future__ import annotations

import array
import bisect
import math
from typing import cast

import numpy as np
from numpy.typing import NDArray

__all__ = ["element_at_sorted_position", "sorted_slice"]

F32 = NDArray[np.float32]
IntArr = NDArray[np.intp]

_LANES = 16
_SMALL = 128
_NESTED_LEVELS = 4  # big values handled by _nested_phase (cost ~ levels per step)
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


def _f32(value: object) -> np.float32:
    """``value`` as a numpy float32 scalar (bits kept), typed for mypy."""
    return cast("np.float32", np.float32(value))  # type: ignore[arg-type]


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

    def at(self, k: int) -> np.float32:
        nf, nm = self.front.size, self.mid.size
        if k < nf:
            return _f32(self.front[k])
        if k < nf + nm:
            return _f32(self.mid[k - nf])
        return _f32(self.back[k - nf - nm])

    def array(self, writable: bool = False) -> F32:
        if self.front.size or self.back.size:
            return np.concatenate([self.front, self.mid, self.back])
        return self.mid.copy() if writable else self.mid

    def ensure_ends(self, nfront: int, nback: int) -> None:
        if self.front.size < nfront:
            take = nfront - self.front.size
            self.front = np.concatenate([self.front, self.mid[:take]])
            self.mid = self.mid[take:]
        if self.back.size < nback:
            take = nback - self.back.size
            self.back = np.concatenate([self.mid[self.mid.size - take :], self.back])
            self.mid = self.mid[: self.mid.size - take]


def _partition(seg: F32, pivot: float, lo: int, hi: int) -> tuple[int, F32 | None, F32 | None]:
    """Vectorised partition_avx512 of ``seg`` (modified in place).

    Returns the pivot index and the contents of the left and right sides, each only if
    it overlaps the wanted positions ``[lo, hi)`` (else None).
    """
    size = seg.size
    left, nswap = _scalar_prefix(seg, seg, size, pivot)
    right = size - nswap
    nblk = (right - left) // _LANES
    if nblk == 0:
        return left, (seg[:left] if lo < left else None), (seg[left:] if hi > left else None)
    blocks = seg[left:right].reshape(nblk, _LANES)
    ge = blocks >= pivot
    order = np.zeros(1, dtype=np.intp) if nblk == 1 else _block_order(ge.sum(axis=1))
    pivot_index = left + int(blocks.size - np.count_nonzero(ge))
    low = high = None
    if lo < pivot_index:  # < pivot lanes in processing order
        low = np.concatenate([seg[:left], blocks[order][~ge[order]]])
    if hi > pivot_index:  # >= pivot lanes, blocks in reverse processing order
        rev = order[::-1]
        high = np.concatenate([blocks[rev][ge[rev]], seg[right:]])
    return pivot_index, low, high


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
    depth = np.frexp(nodes.astype(np.float64))[1].astype(np.int64) - 1  # floor(log2)
    height = int(depth.max())
    pad = height - depth
    # Extend each path with right turns down to the deepest level; an ancestor and its
    # rightmost descendants then tie, and the deeper node comes first.  Keys are unique.
    leaf = (nodes.astype(np.int64) << pad) | ((np.int64(1) << pad) - 1)
    return nodes[np.argsort(leaf * (height + 1) + pad)]


def _single_value_phase(po: IntArr, n: int, n_min: int) -> tuple[IntArr, IntArr]:
    """Moves of minima while all big elements are equal; ``po``: their heap positions,
    in post-order.

    Step ``m = n .. n_min + 1``: a big element at ``m`` leaves T (a "hit"), otherwise
    the minimum at ``m`` moves to the first node of T in post-order.  That node is the
    ``t``-th entry of the post-order without the hits, ``t`` counting non-hit steps, so
    only whether a big position is hit before being consumed needs a (short) loop.
    Returns (destinations, sources) of the moves.
    """
    rank = np.empty(n + 1, dtype=np.int64)
    rank[po] = np.arange(po.size)
    cand = np.sort(po[po > n_min])[::-1]  # heap-end positions in T, in step order
    # x is still in T at its step n - x iff the non-hit steps so far consumed fewer
    # entries than its rank r among the not-yet-hit ones: r + (earlier hits ranked
    # above r) >= n - x.  At most k earlier candidates can be hits: skip hopeless ones.
    need = (n - cand) - rank[cand]
    maybe = need <= np.arange(cand.size)
    neg_hit_ranks: list[int] = []  # negated: hit ranks mostly arrive in decreasing order
    hits: list[int] = []
    for x, r, k in zip(cand[maybe].tolist(), rank[cand[maybe]].tolist(), need[maybe].tolist(), strict=True):
        if k <= 0 or bisect.bisect_left(neg_hit_ranks, -r) >= k:
            bisect.insort(neg_hit_ranks, -r)
            hits.append(x)
    keep = np.ones(po.size, dtype=bool)
    keep[-np.asarray(neg_hit_ranks, dtype=np.int64)] = False
    steps = np.arange(n, n_min, -1)
    step_keep = np.ones(steps.size, dtype=bool)
    step_keep[n - np.asarray(hits, dtype=np.int64)] = False
    return po[keep], steps[step_keep]


def _subtree_sizes(nodes: IntArr) -> IntArr:
    """Number of ``nodes`` (a parent-closed set of 1-based heap positions) in the
    subtree of each node, as an array indexed by position."""
    end = int(nodes.max()) + 1
    size = np.zeros(end, dtype=np.int64)
    size[nodes] = 1
    for d in range(end.bit_length() - 1, -1, -1):  # level d: positions 2**d .. 2**(d+1)-1
        lo, hi = 1 << d, min(2 << d, end)
        left_end, right_end = min(hi, (end + 1) // 2), min(hi, end // 2)  # children < end
        if left_end > lo:
            size[lo:left_end] += size[2 * lo : 2 * left_end : 2]
        if right_end > lo:
            size[lo:right_end] += size[2 * lo + 1 : 2 * right_end : 2]
    return size


def _nested_phase(cls: IntArr, n: int, n_min: int) -> tuple[IntArr, IntArr]:
    """Moves of minima while big classes ``1 .. cls.max()`` are left (``cls[q]``: class
    at heap position q, 0 for a minimum; heap size ``n``, ``n_min`` minima).

    Each set ``T_c`` of positions of class >= c only shrinks, one position per step:
    the heap end ``m`` if its class is >= c, else the last node of class >= c on the
    sift path.  Below the path's exit from ``T_(c+1)`` all of ``T_c`` has class c and
    ties send the path left, so that node is the first one of ``T_c``, in post-order,
    left in the exit's subtree: a union-find "next remaining" query per level, from the
    top class down.  Once ``T_(c+1)`` is empty, level c is ``_single_value_phase``.
    Returns (destinations, sources) of the moves of minima, i.e. of level 1.
    """
    po_all = _postorder(np.flatnonzero(cls))  # post-order of a subset is a subsequence
    cls_po = cls[po_all]
    exit_above = np.zeros(0, dtype=np.int64)  # per step: exit from T_(c+1), -1 if hit
    for c in range(int(cls.max()), 0, -1):
        po = po_all[cls_po >= c]
        exits = np.full(po.size, -1, dtype=np.int64)
        n_above = exit_above.size  # steps while T_(c+1) is not empty
        if n_above:
            flags = np.zeros(n + 2, dtype=np.uint8)
            flags[po] = 1
            member = bytearray(flags.tobytes())
            rank = np.full(n + 1, -1, dtype=np.int64)
            rank[po] = np.arange(po.size)
            # Per step: the heap end m and its rank if m is in T_c (else unused), and
            # the rank of the first T_c node in the subtree of the exit from T_(c+1).
            ends = np.arange(n, n - n_above, -1)
            exit_pos = np.where(exit_above >= 0, exit_above, 0)
            starts = rank[exit_pos] - _subtree_sizes(po)[exit_pos] + 1
            order: list[int] = po.tolist()
            nxt = list(range(po.size + 1))  # nxt[r] == r: rank r still in T_c
            found: list[int] = []
            for m, rm, r in zip(ends.tolist(), rank[ends].tolist(), starts.tolist(), strict=True):
                if member[m]:  # class >= c at the heap end: it leaves T_c
                    member[m] = 0
                    nxt[rm] = rm + 1
                    found.append(-1)
                    continue
                while nxt[r] != r:  # path halving
                    nxt[r] = nxt[nxt[r]]
                    r = nxt[r]
                nxt[r] = r + 1
                q = order[r]
                member[q] = 0
                found.append(q)
            exits[:n_above] = found
            po = po[np.frombuffer(member, dtype=np.uint8)[po] == 1]
        dest, src = _single_value_phase(po, n - n_above, n - exits.size)
        exits[n - src] = dest
        exit_above = exits
    moved = np.flatnonzero(exit_above >= 0)  # steps whose heap end was a minimum
    return exit_above[moved], n - moved


def _rotated_slots(lo: int, hi: int, size: int) -> IntArr:
    """Heap slots (1-based) whose elements a heap of ``size`` equal elements sends to
    sorted positions ``lo .. hi - 1``: every sift stops at the root, so position
    ``size - 1`` gets slot 1 and position ``p`` slot ``p + 2``."""
    p = np.arange(lo, hi, dtype=np.intp)
    return np.where(p + 1 < size, p + 2, 1)


def _heapsort_slice(data: F32, lo: int, hi: int) -> F32:
    """Positions ``[lo, hi)`` of numpy's ``heapsort_`` (strict ``<``) output for ``data``.

    Big elements (above the minimum) end sorted at the top, with bits fixed by their
    values.  Only they steer the extraction phase: a minimum moves only when taken from
    the heap end and sifts down the path of larger children to its last big node.  For
    a zero minimum the phase runs on class codes (0 = minimum, k = k-th smallest big
    value), tracking only where minima move:

    * more than ``_NESTED_LEVELS`` big values left: plain step-by-step simulation;
    * then level by level (``_nested_phase``): with one big value left, ties send every
      sift left, so the set T of big positions only ever loses the heap end (a big one
      comes back to the root) or, for a minimum, the first node of T in post-order, a
      fixed order as T shrinks; more values nest this, one level per value;
    * only minima left: every sift stops at the root, the steps rotate the heap.
    """
    h = data.copy()
    _heapify(h)
    n = h.size
    if h.min() != 0:
        return _heapsort_slice_generic(h, lo, hi)
    out = np.empty(hi - lo, dtype=np.float32)
    big = h != 0
    n_min = n - int(np.count_nonzero(big))
    if hi > n_min:  # equal non-zero floats have equal bits: their order is immaterial
        top = max(lo, n_min)
        out[top - lo :] = np.sort(h[big])[top - n_min : hi - n_min]
    if lo >= n_min:
        return out
    slots = _rotated_slots(lo, min(hi, n_min), n_min)
    if n_min == n or not big[slots - 1].any():
        out[: slots.size] = h[slots - 1]  # minima below the big subtree never move
        return out
    moved, (dest, src) = _zero_min_extraction(h, n_min)
    came_from = np.arange(n + 1)
    came_from[dest] = src  # a minimum moved from src to dest (src > dest)
    while True:
        earlier = came_from[slots]
        if np.array_equal(earlier, slots):
            break
        slots = earlier
    values = h[slots - 1]
    if moved:
        where = np.full(n + 1, -1, dtype=np.intp)
        where[np.fromiter(moved, dtype=np.intp)] = np.arange(len(moved))
        found = where[slots]
        hit = found >= 0
        values[hit] = np.array(list(moved.values()), dtype=np.float32)[found[hit]]
    out[: slots.size] = values
    return out


def _zero_min_extraction(h: F32, n_min: int) -> tuple[dict[int, np.float32], tuple[IntArr, IntArr]]:
    """Extraction phase of ``heapsort_`` on heap ``h`` whose minimum is zero, up to the
    point where only its ``n_min`` minima are left.  Returns where minima were moved by
    the step-by-step part (slot -> element) and the (destinations, sources) of the moves
    made after it."""
    n = h.size
    distinct = np.unique(h[h != 0])
    codes = np.zeros(2 * n + 2, dtype=np.uint8 if distinct.size < 256 else np.int32)
    codes[1 : n + 1] = np.searchsorted(distinct, h, side="right")  # 0 for the minimum
    remaining = n - n_min
    # Step by step while more than _NESTED_LEVELS big values are left, then by levels.
    low = int(np.count_nonzero((codes >= 1) & (codes <= _NESTED_LEVELS)))
    # c[q]: class at heap position q (1-based), 0 beyond the heap end.
    c: bytearray | array.array[int] = (
        bytearray(codes.tobytes()) if codes.dtype == np.uint8 else array.array("i", codes.tobytes())
    )
    del codes
    moved: dict[int, np.float32] = {}
    ident = h[0]
    while remaining > low:
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
    view = np.frombuffer(c, dtype=np.uint8 if isinstance(c, bytearray) else np.int32)
    return moved, _nested_phase(view[: n + 1].astype(np.intp), n, n_min)


def _heapsort_slice_generic(h: F32, lo: int, hi: int) -> F32:
    """``_heapsort_slice`` for a heapified ``h`` whose minimum is not zero.

    Zeros are then big elements whose signs matter, so every step is simulated, on
    signed Python floats (``-0.0 == 0.0`` there, as in the C comparisons).
    """
    n = h.size
    out = np.empty(hi - lo, dtype=np.float32)
    big_pos = np.flatnonzero(h != h.min())
    remaining = big_pos.size
    # a[q]: big value at 1-based heap position q, else None (a minimum whose identity
    # is moved[q] if it was relocated, else h[q - 1]).
    a: list[float | None] = [None] * (n + 2)
    for q, v in zip((big_pos + 1).tolist(), h[big_pos].tolist(), strict=True):
        a[q] = v
    moved: dict[int, np.float32] = {}
    while remaining:
        if lo < n <= hi:
            out[n - 1 - lo] = a[1]
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
    if lo < n:
        slots = _rotated_slots(lo, min(hi, n), n).tolist()
        out[: len(slots)] = [moved[q] if q in moved else h[q - 1] for q in slots]
    return out


def _emit(
    rng: _Range, left: int, right: int, iters: int, bounds: tuple[float, float], lo: int, hi: int, out: F32
) -> None:
    """Write ``qsort_(left, right, iters)``'s output at positions ``[lo, hi)`` into
    ``out[pos - lo]``; ``rng`` holds the range, ``bounds`` its (min, max)."""
    smallest, biggest = bounds
    while True:
        a, b = max(lo, left), min(hi, right + 1)
        if a >= b:
            return
        size = right - left + 1
        if iters <= 0:
            out[a - lo : b - lo] = _heapsort_slice(rng.array(), a - left, b - left)
            return
        if size <= _SMALL:
            out[a - lo : b - lo] = _sort_small(rng.array())[a - left : b - left]
            return
        pivot = _median9([float(rng.at(k - left)) for k in _pivot_indices(left, right)])
        iters -= 1
        if pivot != smallest:
            seg = rng.array(writable=True)
            pivot_index, low, high = _partition(seg, pivot, a - left, b - left)
            pivot_index += left
            if low is not None:
                _emit(_Range(low), left, pivot_index - 1, iters, (smallest, float(low.max())), lo, hi, out)
            if high is None:
                return
            left, rng = pivot_index, _Range(high)
            if pivot == biggest:  # elements equal to the maximum are not sorted further
                c, d = max(lo, left), min(hi, right + 1)
                out[c - lo : d - lo] = high[c - left : d - left]
                return
            smallest = float(high.min())
            continue
        # pivot == smallest, so every element is >= pivot: the one-at-a-time steps keep
        # minima on the left (not sorted further) and swap the rest to the end, and the
        # blocks of the remaining region end up in order [last, 0, 2, 3, ..., last-1, 1].
        # Only the range ends move, so the middle of the rope is left alone.
        rng.ensure_ends(3 * _LANES, 2 * _LANES)
        front, back = rng.front.copy(), rng.back.copy()
        kept, nswap = _scalar_prefix(front, back, size, pivot)
        c, d = max(lo, left), min(hi, left + kept)
        if c < d:
            out[c - lo : d - lo] = front[c - left : d - left]
        cut = back.size - nswap
        rng.front = np.concatenate(
            [back[cut - _LANES : cut], front[kept : kept + _LANES], front[kept + 2 * _LANES :]]
        )
        rng.back = np.concatenate(
            [back[: cut - _LANES], front[kept + _LANES : kept + 2 * _LANES], back[cut:]]
        )
        left += kept
        if pivot == biggest:
            c, d = max(lo, left), min(hi, right + 1)
            if c < d:
                out[c - lo : d - lo] = rng.array()[c - left : d - left]
            return


def _sorted_slice(values: F32, lo: int, hi: int) -> F32:
    """Positions ``[lo, hi)`` of numpy 1.24's AVX-512 sort of NaN-free float32 ``values``."""
    n = values.size
    out = np.empty(hi - lo, dtype=np.float32)
    if n == 1:
        out[:] = values[lo:hi]
        return out
    bounds = (float(values.min()), float(values.max()))
    _emit(_Range(values.copy()), 0, n - 1, 2 * int(math.log2(n)), bounds, lo, hi, out)
    return out


def sorted_slice(values: np.ndarray, lo: int, hi: int) -> F32:
    """Positions ``lo .. hi - 1`` (``0 <= lo <= hi <= len(values)``) of numpy 1.24's
    AVX-512 float32 sort of the 1-d ``values``, bit for bit; ``values`` is not modified.

    Follows every partition that overlaps the slice: for a long slice this costs about
    as much as sorting it.  ``element_at_sorted_position`` is the one-element case.
    """
    arr = _check(values)
    if not 0 <= lo <= hi <= arr.size:
        raise IndexError(f"slice [{lo}, {hi}) out of range for size {arr.size}")
    nan = np.isnan(arr)
    n_real = arr.size - int(np.count_nonzero(nan))
    out = np.full(hi - lo, np.nan, dtype=np.float32)  # canonical NaNs fill the tail
    if lo < n_real:
        work = np.where(nan, np.float32(np.inf), arr) if n_real < arr.size else arr
        out[: min(hi, n_real) - lo] = _sorted_slice(work, lo, min(hi, n_real))
    return out


def _check(values: np.ndarray) -> F32:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.dtype != np.float32:
        raise TypeError("values must be a 1-d float32 array")
    return arr


def element_at_sorted_position(values: np.ndarray, position: int) -> np.float32:
    """Return exactly the element (same bits, including the sign of a zero) that numpy
    1.24's AVX-512 float32 quicksort places at index ``position`` of the sorted 1-d array
    ``values``.  ``values`` is not modified; a negative ``position`` counts from the end.
    """
    arr = _check(values)
    n = arr.size
    if not -n <= position < n:
        raise IndexError(f"position {position} out of range for size {n}")
    pos = position + n if position < 0 else position
    nan = np.isnan(arr)
    if pos >= n - int(np.count_nonzero(nan)):  # numpy writes NaNs over the last slots
        return _f32(np.nan)
    work = np.where(nan, np.float32(np.inf), arr) if nan.any() else arr
    # Equal non-zero floats have equal bits, so only a zero result can depend on the
    # order of equal elements; numpy's partition is safe for everything else.
    value = np.partition(work, pos)[pos]
    if value != 0:
        return _f32(value)
    signs = np.signbit(work[work == 0])
    if signs.all() or not signs.any():
        return _f32(value)
    return _f32(_sorted_slice(work, pos, pos + 1)[0])

"""The per-tensor formulas over a grid of blocks at once: per-axis and per-block statistics and
parameters without a Python call per block.

Blocks arrive grouped (:func:`intquant._core.granularity.grouped`): an array of shape
``grid + (block elements,)``, one row per block. Every block's results are exactly those of the
per-tensor formulas (:mod:`intquant._core.formulas`) on the block as a tensor of its own: the
same values, dtypes and errors.

* ranges: ``rmin = min(row)``, ``rmax = max(row)`` (numpy reductions over the last axis);
* uniques: ``unique(rint(row*100)/100)``: all rows rounded at once, sorted along the last axis,
  split at the starts of runs of equal values; the sign of a zero as numpy 1.24's sort leaves it;
* parameters: ``choose_uniform_parameters`` (with the ``zero_in_range`` and ``power_of_two_scale``
  adjustments) as array operations over the grid.

The per-tensor formulas run on numpy *scalars*, and numpy 1.24 combines two scalars by their
dtypes alone (value-based casting applies to an array with a scalar only). So each step here is an
operation between arrays (never an array with a scalar of a smaller kind), in the dtype the scalar
step has: ``float32 / int64`` is a float64 division, ``int8 - int8`` wraps in int8. Integer
statistics are exact where the per-tensor formulas are (their range, magnitude and zero-point
numerator; in int64, or in Python integers beyond it).

The per-tensor formulas import this module (for their per-block forms), so it does not import
them: :func:`choose_block_parameters` takes the per-tensor computation of one block as an
argument, for the few blocks it hands over (see there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy

from intquant._numpy124.introsort import AVX512, elements_at_sorted_positions
from intquant.errors import InvalidValueError

__all__ = ["block_ranges", "block_uniques", "choose_block_parameters"]

#: Statistics dtypes whose parameters are computed over the grid; others go block by block.
_VECTORIZED_DTYPES = frozenset(
    numpy.dtype(name)
    for name in (
        "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64",
    )
)  # fmt: skip
_INT64_LIMIT = 2.0**63  # float64 values in [-2**63, 2**63) convert to int64 exactly

#: One block's ``(scale, zero_point, offset)`` from its ``(rmin, rmax, uvalues)``.
BlockFormula = Callable[[Any, Any, Any], tuple[Any, Any, Any]]


# -- statistics


def block_ranges(rows: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray]:
    """``(rmin, rmax)`` of each block of grouped ``rows`` (shape ``grid + (elements,)``): arrays
    of the grid's shape in the rows' dtype, ``min(row)`` and ``max(row)``.

    numpy reduces each row along the last axis as it reduces the row alone, so a block holding
    both ``-0.0`` and ``0.0`` gets the zero ``numpy.min(row)`` (``numpy.max``) gives
    (``tests/test_blockwise.py`` checks it).

    Raises
    ------
    InvalidValueError
        If a block holds NaN or an infinity (the first such block, in grid order, is named).
    """
    rmin, rmax = rows.min(axis=-1), rows.max(axis=-1)
    if rows.dtype.kind == "f":
        _check_finite(rmin, rmax, rows.dtype)
    return rmin.astype(rows.dtype, copy=False), rmax.astype(rows.dtype, copy=False)


def _check_finite(rmin: numpy.ndarray, rmax: numpy.ndarray, dtype: numpy.dtype[Any]) -> None:
    """Refuse blocks whose range is not finite, naming the first in grid order."""
    finite = numpy.isfinite(rmin) & numpy.isfinite(rmax)
    if finite.all():
        return
    first = int(numpy.argmin(finite.reshape(-1)))
    block = tuple(int(index) for index in numpy.unravel_index(first, rmin.shape))
    low, high = rmin.reshape(-1)[first], rmax.reshape(-1)[first]
    bad = "NaN" if numpy.isnan(low) or numpy.isnan(high) else "an infinity"
    raise InvalidValueError(
        f"cannot calibrate on values containing {bad}: block {block} of the block grid "
        f"{rmin.shape} (dtype {dtype}) holds one, so its range would not be finite. Remove or "
        f"replace non-finite values first, e.g. with numpy.nan_to_num."
    )


def block_uniques(rows: numpy.ndarray, float32_sort: str = AVX512) -> list[numpy.ndarray]:
    """Each block's ``uvalues`` (grid order): the sorted distinct values of the row rounded to
    cents (``rint(x*100)/100`` in the row's float dtype; integers unchanged), in the rows' dtype.

    Rows must hold no NaN (see :func:`block_ranges`). A row holding both ``-0.0`` and ``0.0`` after
    rounding keeps the zero numpy 1.24's sort leaves first: the element it puts where the first
    zero lands, the position after the row's negative values (for float32 rows, numpy 1.24's sort
    on the machine ``float32_sort`` names: see :data:`intquant._numpy124.introsort.FLOAT32_SORTS`).
    """
    flat = rows.reshape(-1, rows.shape[-1])
    rounded = _rounded_to_cents(flat)
    ordered = numpy.sort(rounded, axis=-1)
    starts = numpy.ones(ordered.shape, dtype=bool)
    numpy.not_equal(ordered[:, 1:], ordered[:, :-1], out=starts[:, 1:])
    uniques = numpy.compress(starts.reshape(-1), ordered.reshape(-1))  # faster than ordered[starts]
    counts = numpy.count_nonzero(starts, axis=1)
    if uniques.dtype.kind == "f":
        _set_zero_signs(uniques, counts, rounded, float32_sort)
    return numpy.split(uniques, numpy.cumsum(counts)[:-1])


def _rounded_to_cents(rows: numpy.ndarray) -> numpy.ndarray:
    """``rint(rows * 100) / 100`` in the rows' float dtype (the formula of
    ``formulas.round_to_cents``); integer rows unchanged."""
    if rows.dtype.kind != "f":
        return rows
    hundred = rows.dtype.type(100)
    with numpy.errstate(over="ignore"):
        return numpy.rint(rows * hundred) / hundred


def _set_zero_signs(
    uniques: numpy.ndarray, counts: numpy.ndarray, rounded: numpy.ndarray, float32_sort: str
) -> None:
    """Give each row's zero in ``uniques`` (rows concatenated, ``counts`` values each) the sign
    numpy 1.24's ``unique`` of the rounded row keeps, in place."""
    slots = numpy.flatnonzero(uniques == 0)
    if slots.size == 0:
        return
    rows_of_slots = numpy.searchsorted(numpy.cumsum(counts), slots, side="right")
    candidates = rounded[rows_of_slots]
    zeros, signs = candidates == 0, numpy.signbit(candidates)
    has_negative, has_positive = (zeros & signs).any(axis=1), (zeros & ~signs).any(axis=1)
    negative = has_negative
    both = numpy.flatnonzero(has_negative & has_positive)
    if both.size:
        positions = numpy.count_nonzero(candidates[both] < 0, axis=1)
        elements = elements_at_sorted_positions(candidates[both], positions, float32_sort)
        negative[both] = numpy.signbit(elements)
    uniques[slots] = numpy.where(negative, -0.0, 0.0).astype(uniques.dtype)


# -- parameters


def choose_block_parameters(
    rmin: numpy.ndarray,
    rmax: numpy.ndarray,
    n_bits: int,
    *,
    is_signed: bool,
    is_symmetric: bool,
    is_qat: bool,
    is_precomputed_qat: bool,
    uvalues: Sequence[Any] | None,
    scale: Any,
    zero_in_range: bool,
    power_of_two_scale: bool,
    single_value_width: float,
    alone: BlockFormula,
    full_range: bool = False,
) -> tuple[numpy.ndarray, numpy.ndarray, Any]:
    """Per-block ``(scale, zero_point, offset)`` for ranges ``rmin``/``rmax`` of one shape (the
    block grid), each block's what ``alone(rmin[i], rmax[i], uvalues[i])``, the per-tensor
    computation, gives.

    With ``n = n_bits``, ``offset = 2**(n-1)`` if signed else 0, ``[low, high]`` the block's range
    (widened to hold 0 with ``zero_in_range``) and ``spread = high - low``:

    * ``spread < single_value_width``: ``offset = 0`` and ``scale, zero_point = 1.0,
      rint(-low)`` if ``|high| < single_value_width`` else ``high, 0``;
    * symmetric: ``scale = max(|high|, |low|) / (2**n - 1 - offset)``, ``zero_point = 0``; with
      ``full_range`` (signed symmetric grids) ``scale = max(|high|, |low|) / ((2**n - 1) / 2)``;
    * asymmetric: ``scale`` (a preset scalar) or ``spread / (2**n - 1)``; ``zero_point = 0`` for
      QAT, else ``round((high * -offset - low * (2**n - 1 - offset)) / spread)``;
    * ``power_of_two_scale``: a positive scale becomes ``2**ceil(log2(scale))`` and, for
      asymmetric non-QAT blocks, ``zero_point = round(-offset - low / scale)``.

    ``scale`` is a float64 array and ``zero_point`` an int64 array of the grid's shape;
    ``offset`` is an int when every block has the same one (a single-valued block has offset 0),
    else an int64 array.

    Some blocks go through ``alone``, one by one: QAT blocks whose ``uvalues`` may lie on a uniform
    grid (at most ``2**n`` values, more than one; then the scale is their smallest step), integer
    blocks whose range overflows their dtype under ``power_of_two_scale`` and single-valued
    blocks at the integer dtype's minimum (where the per-tensor computation warns of an overflow),
    and the first block (in grid order) whose parameters are refused, which raises its error.
    Statistics of two dtypes, or of a dtype other than a numpy integer or float16/32/64, and a
    preset scale that is not a real number, go block by block entirely.

    Raises
    ------
    InvalidValueError
        As ``alone`` raises for the first block (grid order) it refuses: 1-bit symmetric
        quantization, a scale that would not be finite, a zero point beyond int64.
    """
    lows, highs = numpy.asarray(rmin).reshape(-1), numpy.asarray(rmax).reshape(-1)
    grid = numpy.shape(rmin)

    def settle(index: int) -> tuple[Any, Any, Any]:
        return alone(lows[index], highs[index], None if uvalues is None else uvalues[index])

    if (
        lows.dtype != highs.dtype
        or lows.dtype not in _VECTORIZED_DTYPES
        or lows.size != highs.size
        or not (scale is None or _is_real_scalar(scale))
    ):
        return _assembled(grid, [settle(index) for index in range(lows.size)])
    grid_formula = _GridFormula(n_bits, is_signed, is_symmetric, is_qat, single_value_width, full_range)
    blocks = grid_formula.parameters(lows, highs, scale, zero_in_range, power_of_two_scale)
    handed_over = blocks.handed_over
    if is_qat and not is_precomputed_qat and uvalues is not None and not is_symmetric:
        handed_over |= _uniform_grid_candidates(uvalues, ~blocks.single, n_bits)
    failed = blocks.failed & ~handed_over
    order = numpy.flatnonzero(handed_over)
    first_failure = int(numpy.argmax(failed)) if failed.any() else None
    if first_failure is not None:
        order = numpy.append(order[order < first_failure], first_failure)
    results = {int(index): settle(int(index)) for index in order}
    if first_failure is not None:  # ``alone`` accepted the block after all: settle the rest alone
        results.update({index: settle(index) for index in range(first_failure + 1, lows.size)})
    return blocks.merged(results, grid)


def _is_real_scalar(value: Any) -> bool:
    """A preset scale the grid computation takes: a real number that float64 holds."""
    if isinstance(value, (float, numpy.floating, numpy.integer)):
        return True
    return isinstance(value, int) and -(2**63) <= value < 2**63


def _uniform_grid_candidates(uvalues: Sequence[Any], candidates: numpy.ndarray, n_bits: int) -> numpy.ndarray:
    """Blocks among ``candidates`` whose ``uvalues`` ``is_uniform_grid`` must look at: the others
    (one value, or more than ``2**n_bits``) are not on a grid."""
    chosen = numpy.zeros(candidates.shape, dtype=bool)
    for index in numpy.flatnonzero(candidates):
        size = numpy.size(uvalues[int(index)])
        chosen[index] = size <= 2**n_bits and size != 1
    return chosen


def _assembled(
    grid: tuple[int, ...], blocks: list[tuple[Any, Any, Any]]
) -> tuple[numpy.ndarray, numpy.ndarray, Any]:
    """Per-block results gathered: float64 scales, int64 zero points, one offset or an array."""
    scale = numpy.array([block[0] for block in blocks], dtype=numpy.float64).reshape(grid)
    zero_point = numpy.array([block[1] for block in blocks], dtype=numpy.int64).reshape(grid)
    offsets = {block[2] for block in blocks}
    if len(offsets) == 1:
        return scale, zero_point, offsets.pop()
    return scale, zero_point, numpy.array([block[2] for block in blocks], dtype=numpy.int64).reshape(grid)


class _GridBlocks:
    """Parameters of every block computed over the grid (flat, grid order), with the blocks the
    grid computation refuses (``failed``) or leaves to the per-tensor one (``handed_over``)."""

    def __init__(
        self,
        scale: numpy.ndarray,
        zero_point: numpy.ndarray,
        single: numpy.ndarray,
        offset: int,
        failed: numpy.ndarray,
        handed_over: numpy.ndarray,
    ) -> None:
        self.scale, self.zero_point, self.single, self.offset = scale, zero_point, single, offset
        self.failed, self.handed_over = failed, handed_over

    def merged(
        self, settled: dict[int, tuple[Any, Any, Any]], grid: tuple[int, ...]
    ) -> tuple[numpy.ndarray, numpy.ndarray, Any]:
        """The grid's parameters with the blocks ``settled`` one by one put in."""
        scale, zero_point = self.scale, self.zero_point
        offsets = numpy.where(self.single, 0, self.offset).astype(numpy.int64)
        if settled:
            indices = numpy.fromiter(settled, dtype=numpy.intp, count=len(settled))
            scale[indices], zero_point[indices], offsets[indices] = _assembled(
                (len(settled),), list(settled.values())
            )
        offset: Any = offsets.reshape(grid)
        if offsets.min() == offsets.max():
            offset = int(offsets[0])
        return scale.reshape(grid), zero_point.reshape(grid), offset


class _GridFormula:
    """``choose_uniform_parameters`` for every block of the grid at once (see
    :func:`choose_block_parameters`)."""

    def __init__(
        self, n_bits: int, is_signed: bool, is_symmetric: bool, is_qat: bool, width: float, full_range: bool
    ) -> None:
        self.offset = 2 ** (n_bits - 1) if is_signed else 0
        self.levels = 2**n_bits - 1
        self.is_symmetric, self.is_qat, self.width = is_symmetric, is_qat, width
        self.full_range = full_range

    def parameters(
        self, lows: numpy.ndarray, highs: numpy.ndarray, scale: Any, zero_in_range: bool, power_of_two: bool
    ) -> _GridBlocks:
        dtype = lows.dtype
        if zero_in_range:  # range_including_zero, in the statistics' dtype
            zero = numpy.zeros(1, dtype=dtype)
            lows, highs = numpy.minimum(lows, zero), numpy.maximum(highs, zero)
        with numpy.errstate(all="ignore"):  # the blocks that overflow fail, and go through ``alone``
            return self._parameters(lows, highs, scale, power_of_two)

    def _parameters(
        self, lows: numpy.ndarray, highs: numpy.ndarray, preset: Any, power_of_two: bool
    ) -> _GridBlocks:
        dtype = lows.dtype
        low64, high64 = lows.astype(numpy.float64), highs.astype(numpy.float64)
        spread_in_dtype = highs - lows  # wraps (integers) or overflows (floats) as the scalar does
        if dtype.kind == "f":
            spread64 = spread_in_dtype.astype(numpy.float64)
            # ``high * int64(-offset) - low * int64(levels - offset)``: float64 for every float
            numerator64 = high64 * float(-self.offset) - low64 * float(self.levels - self.offset)
            overflowed = ~numpy.isfinite(spread_in_dtype)
        else:
            spread, numerator = _exact_spread_and_numerator(lows, highs, self.offset, self.levels)
            spread64, numerator64 = spread.astype(numpy.float64), numerator.astype(numpy.float64)
            overflowed = (spread > numpy.iinfo(dtype).max).astype(bool)
        single = spread64 < self.width
        handed_over = numpy.zeros(lows.shape, dtype=bool)
        if power_of_two:  # ``high - low`` outside errstate: the per-tensor computation warns
            handed_over |= overflowed
        # One value: scale 1.0 and zero point rint(-low) near zero, else scale high.
        tiny = numpy.abs(highs).astype(numpy.float64) < self.width
        if dtype.kind == "i":  # abs and -x wrap at the minimum (-x warns): per tensor
            handed_over |= single & (highs == numpy.iinfo(dtype).min)
        single_zero_point = numpy.rint(numpy.negative(lows)).astype(numpy.float64)
        scale64 = numpy.where(tiny, 1.0, high64)
        zero_point64 = numpy.where(single & tiny, single_zero_point, 0.0)
        failed = single & tiny & ~_fits_int64(single_zero_point)
        several = ~single
        if self.is_symmetric:
            positive_levels = self.levels - self.offset
            if positive_levels == 0:  # 1 bit, signed: no level above zero
                failed |= several
            else:
                magnitude = numpy.maximum(numpy.abs(high64), numpy.abs(low64))
                # full range: full_range_divisor, (2**n - 1) / 2, exact in float64
                divisor = self.levels / 2 if self.full_range else float(positive_levels)
                scale64 = numpy.where(several, magnitude / divisor, scale64)
        else:
            asymmetric = spread64 / float(self.levels) if preset is None else numpy.float64(preset)
            scale64 = numpy.where(several, asymmetric, scale64)
            if not self.is_qat:
                quotient = numpy.round(numerator64 / spread64)
                failed |= several & ~_fits_int64(quotient)
                zero_point64 = numpy.where(several, quotient, zero_point64)
        failed |= ~numpy.isfinite(scale64)
        if power_of_two:
            scale64, zero_point64, refused = self._power_of_two(scale64, zero_point64, single, low64)
            failed |= refused
        zero_point = numpy.where(failed, 0.0, zero_point64).astype(numpy.int64)
        return _GridBlocks(scale64, zero_point, single, self.offset, failed, handed_over)

    def _power_of_two(
        self, scale64: numpy.ndarray, zero_point64: numpy.ndarray, single: numpy.ndarray, low64: numpy.ndarray
    ) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
        """``adjust_parameters_to_power_of_two`` of every block: a positive scale becomes
        ``2**ceil(log2(scale))``; asymmetric non-QAT ranges of several values get the zero point
        ``round(-offset - low / power)``."""
        positive = numpy.flatnonzero(numpy.isfinite(scale64) & (scale64 > 0))
        power = numpy.ldexp(1.0, numpy.ceil(numpy.log2(scale64[positive])).astype(numpy.int64))
        scale64 = scale64.copy()
        scale64[positive] = power
        refused = ~numpy.isfinite(scale64)
        if not (self.is_symmetric or self.is_qat):
            recompute = positive[~single[positive]]
            zero_point64 = zero_point64.copy()
            zero_point64[recompute] = numpy.round(float(-self.offset) - low64[recompute] / scale64[recompute])
            refused[recompute] |= ~_fits_int64(zero_point64[recompute])
        return scale64, zero_point64, refused


def _fits_int64(values: numpy.ndarray) -> numpy.ndarray:
    """Whether float64 ``values`` convert to int64 exactly: finite and in ``[-2**63, 2**63)``."""
    return numpy.isfinite(values) & (values >= -_INT64_LIMIT) & (values < _INT64_LIMIT)


def _exact_spread_and_numerator(
    lows: numpy.ndarray, highs: numpy.ndarray, offset: int, levels: int
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """``high - low`` and ``high * -offset - low * (levels - offset)`` of integer statistics,
    exactly: in int64 when they surely fit it, else in Python integers."""
    bound = max(abs(int(lows.min())), abs(int(lows.max())), abs(int(highs.min())), abs(int(highs.max())))
    wide: Any = numpy.int64 if bound * max(levels, 2) < 2**63 else object
    low, high = lows.astype(wide), highs.astype(wide)
    return high - low, high * -offset - low * (levels - offset)

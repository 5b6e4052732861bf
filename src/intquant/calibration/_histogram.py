"""What the histogram methods share: one histogram per block (all blocks at once), its state,
their base class, and the argument checks and loading helpers.

The histogram rule (how the first batch sets the grid, how later batches widen it, how counts move
to another grid when widening or merging) is stated in the package docstring,
:mod:`intquant.calibration`; it applies to each block on its own. Every operation here works on
all blocks at once: a ``(G, B)`` array of counts for ``G`` blocks of ``B`` bins, one
``numpy.bincount`` over ``block * B + bin`` to fill it, array operations to widen it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Optional

import numpy

from intquant._core.calibrator import Calibrator, Range
from intquant._core.checks import (
    check_flag,
    check_int,
    check_n_bits,
    check_option_combination,
    is_integer,
)
from intquant._core.extras import check_full_range
from intquant._core.granularity import PER_TENSOR, Granularity, PerAxis, PerBlock
from intquant.calibration._blocks import (
    Rows,
    asked_granularity,
    block_range,
    check_options_granularity,
    describe,
    granularity_keywords,
    matches,
    rows_of,
)
from intquant.errors import (
    IntquantError,
    InvalidTypeError,
    InvalidValueError,
    MissingParameterError,
    SerializationError,
)

__all__ = [
    "Collected",
    "HistogramCalibration",
    "HistogramState",
    "Histograms",
    "RangeOptions",
    "check_bins",
    "check_keys",
    "check_loaded_grid",
    "check_mergeable",
    "check_range_options",
    "holding",
    "load_float",
    "load_granularity",
    "no_values_error",
]

_MIN_BINS = 16
#: Widening keeps the grid aligned on the old bins while the shift and factor stay below this.
_MAX_ALIGNED = 2.0**32
#: Counts above this would not stay exact through float64 arithmetic.
_MAX_COUNT = 2**53
#: Values binned per pass (bounds the float64 temporaries of a large batch).
_CHUNK = 2**16
_STATE_KEYS = ("counts", "low", "high", "minimum", "maximum")
_GRANULARITY_KEYS = ("axis", "block_size")


# -- argument checks


#: The most bins a histogram method takes: 2**24 int64 counts are 128 MiB.
MAX_BINS = 2**24


def check_bins(bins: Any, maximum: int = MAX_BINS) -> int:
    """``bins`` as an int in ``[16, maximum]`` (more would take memory or time without bound)."""
    return check_int(
        "bins",
        bins,
        minimum=_MIN_BINS,
        maximum=maximum,
        advice=f"Use {_MIN_BINS} to {maximum} bins; 2048 is the default.",
    )


@dataclass(frozen=True)
class RangeOptions:
    """The options a range depends on, checked."""

    n_bits: int
    is_signed: bool
    is_symmetric: bool
    is_narrow: bool
    full_range: bool = False


#: The options ``rmin``/``rmax`` give the range for: ``QuantizationOptions(8)``.
DEFAULT_OPTIONS = RangeOptions(8, False, False, False)


def check_range_options(options: Any) -> RangeOptions:
    """Check an options-like object (``n_bits``, ``is_signed``, ``is_symmetric``; ``is_narrow``
    is optional and defaults to False)."""
    missing = [name for name in ("n_bits", "is_signed", "is_symmetric") if not hasattr(options, name)]
    if missing:
        raise InvalidTypeError(
            f"range_for expects quantization options with n_bits, is_signed and is_symmetric; got "
            f"{type(options).__name__} without {', '.join(missing)}. Pass e.g. QuantizationOptions(8)."
        )
    n_bits = check_n_bits(options.n_bits)
    is_signed = check_flag("is_signed", options.is_signed)
    is_symmetric = check_flag("is_symmetric", options.is_symmetric)
    is_narrow = check_flag("is_narrow", getattr(options, "is_narrow", False))
    check_option_combination(is_signed, is_symmetric, False)
    full_range = check_flag("full_range", getattr(options, "full_range", False))
    check_full_range(is_signed, is_symmetric, is_narrow, full_range)
    return RangeOptions(n_bits, is_signed, is_symmetric, is_narrow, full_range)


def check_mergeable(this: Any, other: Any, config: dict[str, Any], other_config: dict[str, Any]) -> None:
    owner = type(this).__name__
    if type(other) is not type(this):
        raise InvalidTypeError(
            f"{owner}.merge expects another {owner}; got {type(other).__name__}. Only statistics "
            f"collected by the same method can be merged."
        )
    if config != other_config:
        mine = ", ".join(f"{name}={value!r}" for name, value in config.items())
        theirs = ", ".join(f"{name}={value!r}" for name, value in other_config.items())
        raise InvalidValueError(
            f"{owner}.merge expects statistics with the same configuration; this object has "
            f"{mine}, the other {theirs}. Create both with the same arguments."
        )


def check_same_blocks(
    owner: str,
    mine: tuple[Optional[Granularity], Optional[tuple[int, ...]]],
    theirs: tuple[Optional[Granularity], Optional[tuple[int, ...]]],
) -> None:
    """Refuse to merge statistics of other blocks: ``(granularity, grid)`` of each side (a grid
    of None: nothing collected; a granularity of None: not set)."""
    (granularity, grid), (other_granularity, other_grid) = mine, theirs
    if other_grid is None or (granularity is None and grid is None):
        return
    if (grid is None or grid == other_grid) and matches(granularity, other_grid, other_granularity):
        return
    raise InvalidValueError(
        f"{owner}.merge expects statistics collected over the same blocks; this object collects "
        f"{describe(granularity)}{'' if grid is None else f' over a grid of shape {grid}'}, the "
        f"other {describe(other_granularity)} over a grid of shape {other_grid}."
    )


def no_values_error(owner: str) -> MissingParameterError:
    return MissingParameterError(
        f"this {owner} has no values yet, so it has no range; call update(values) or "
        f"compute_quantization_stats(values) first."
    )


# -- one histogram per block


def _bin_indices(values: numpy.ndarray, low: numpy.ndarray, high: numpy.ndarray, bins: int) -> numpy.ndarray:
    """``clip(floor((values - low) / (high - low) * bins), 0, bins - 1)`` per row of ``values``
    (``low``/``high`` one per row); all 0 in a row whose ``low == high``. ``values`` is float64
    and is overwritten."""
    span = high - low
    safe = numpy.where(span == 0, 1.0, span)[:, None]  # such a row holds only ``low``: 0 / 1
    numpy.subtract(values, low[:, None], out=values)
    numpy.divide(values, safe, out=values)
    numpy.multiply(values, bins, out=values)
    numpy.floor(values, out=values)
    numpy.clip(values, 0, bins - 1, out=values)
    return values.astype(numpy.intp)


@dataclass(frozen=True, eq=False)
class Histograms:
    """``counts`` (int64, shape ``(G, B)``) of ``B`` equal bins over ``[low[g], high[g]]`` for
    each of ``G`` blocks. Never changed: methods return new ones."""

    counts: numpy.ndarray
    low: numpy.ndarray
    high: numpy.ndarray

    @staticmethod
    def of(
        rows: numpy.ndarray, low: numpy.ndarray, high: numpy.ndarray, bins: int, split_zeros: bool
    ) -> tuple[Histograms, Optional[numpy.ndarray]]:
        """The histograms of ``rows`` (shape ``(G, E)``, every row within its ``[low, high]``),
        and, with ``split_zeros``, each row's count of exact zeros, which are then left out of
        the bins."""
        blocks, elements = rows.shape
        counts = numpy.zeros((blocks, bins), dtype=numpy.int64)
        # Whole rows at a time (a long row in slices): the temporaries stay near _CHUNK values.
        rows_per_part = max(1, _CHUNK // max(elements, 1))
        columns_per_part = max(1, min(elements, _CHUNK))
        for first in range(0, blocks, rows_per_part):
            part_rows = slice(first, first + rows_per_part)
            count = min(rows_per_part, blocks - first)
            offsets = (numpy.arange(count, dtype=numpy.intp) * bins)[:, None]
            for start in range(0, elements, columns_per_part):
                part = numpy.array(rows[part_rows, start : start + columns_per_part], dtype=numpy.float64)
                indices = _bin_indices(part, low[part_rows], high[part_rows], bins)  # overwrites part
                indices += offsets
                added = numpy.bincount(indices.reshape(-1), minlength=count * bins)
                counts[part_rows] += added.reshape(count, bins)
        zeros = None
        if split_zeros:
            zeros = numpy.count_nonzero(rows == 0, axis=1).astype(numpy.int64)
            holding = numpy.flatnonzero(zeros)
            if holding.size:  # a zero's bin, by the same formula (-0.0 and 0.0 alike)
                where = _bin_indices(numpy.zeros((holding.size, 1)), low[holding], high[holding], bins)[:, 0]
                counts[holding, where] -= zeros[holding]
        return Histograms(counts, low, high), zeros

    @property
    def bins(self) -> int:
        return int(self.counts.shape[1])

    def width(self) -> numpy.ndarray:
        """Each block's bin width ``(high - low) / B``."""
        return (self.high - self.low) / self.bins

    def centres(self) -> numpy.ndarray:
        """Each bin's centre ``low + (k + 0.5) * width`` (shape ``(G, B)``)."""
        return self.low[:, None] + (numpy.arange(self.bins) + 0.5) * self.width()[:, None]

    def rebinned(self, low: numpy.ndarray, high: numpy.ndarray) -> Histograms:
        """These counts on the grids ``[low, high]``: each bin's count goes to the bin holding its
        centre (blocks whose grid is unchanged keep their counts)."""
        moving = numpy.flatnonzero((low != self.low) | (high != self.high))
        counts = self.counts.copy()
        if moving.size:
            bins = self.bins
            part = Histograms(self.counts[moving], self.low[moving], self.high[moving])
            targets = _bin_indices(part.centres(), low[moving], high[moving], bins)
            counts[moving] = _regrouped(targets, part.counts)
        return Histograms(counts, low.copy(), high.copy())

    def widened(self, need_low: numpy.ndarray, need_high: numpy.ndarray) -> Histograms:
        """These histograms on grids covering ``[need_low, need_high]``, which must hold every
        value counted so far (see the package docstring); blocks whose grid already does keep it."""
        inside = (self.low <= need_low) & (need_high <= self.high)
        if inside.all():
            return self
        low, high = self._covering_grids(need_low, need_high)
        return self.rebinned(numpy.where(inside, self.low, low), numpy.where(inside, self.high, high))

    def _covering_grids(
        self, need_low: numpy.ndarray, need_high: numpy.ndarray
    ) -> tuple[numpy.ndarray, numpy.ndarray]:
        """Each block's aligned grid covering ``[need_low, need_high]`` and its occupied bins."""
        bins, width = self.bins, self.width()
        occupied = self.counts > 0
        any_occupied = occupied.any(axis=1)
        first_occupied = numpy.argmax(occupied, axis=1).astype(numpy.float64)
        last_occupied = (bins - 1 - numpy.argmax(occupied[:, ::-1], axis=1)).astype(numpy.float64)
        with numpy.errstate(all="ignore"):
            start = (need_low - self.low) / width  # in old bins from low
            aligned = (width > 0) & any_occupied & numpy.isfinite(start) & (numpy.abs(start) < _MAX_ALIGNED)
            first = numpy.minimum(first_occupied, numpy.floor(numpy.where(aligned, start, 0.0)))
            aligned_low = numpy.where(first != 0, self.low + first * width, self.low)
            last = last_occupied + 1
            top = numpy.where(last == bins, self.high, self.low + last * width)
            factor = (numpy.maximum(top, need_high) - aligned_low) / (bins * width)  # new width / old
            aligned &= numpy.isfinite(factor) & (factor < _MAX_ALIGNED)
            multiple = numpy.maximum(1.0, numpy.ceil(numpy.where(aligned, factor, 1.0)))
            aligned_high = aligned_low + (bins * multiple) * width
        low = numpy.where(aligned, numpy.minimum(aligned_low, need_low), need_low)
        high = numpy.where(aligned, numpy.maximum(aligned_high, need_high), need_high)
        return low, high

    def plus(self, other: Histograms) -> Histograms:
        """Both histograms' counts on these grids (``other`` rebinned by centres)."""
        moved = other.rebinned(self.low, self.high)
        return Histograms(self.counts + moved.counts, self.low, self.high)

    def quantiles(self, *fractions: float) -> list[numpy.ndarray]:
        """For each fraction, each block's value below which ``fraction`` of its counts lie,
        interpolated linearly in its bin.

        With edges ``e_k = low + k * width`` and cumulative counts ``C_k = c_0 + ... + c_{k-1}``:
        ``e_k + (fraction * N - C_k) / c_k * width`` for the first bin ``k`` with
        ``C_{k+1} >= fraction * N``.
        """
        cumulative = numpy.cumsum(self.counts, axis=1).astype(numpy.float64)
        rows = numpy.arange(self.counts.shape[0])
        width = self.width()
        results = []
        for fraction in fractions:
            target = fraction * cumulative[:, -1]
            index = numpy.count_nonzero(cumulative < target[:, None], axis=1)  # searchsorted, left
            index = numpy.minimum(index, self.bins - 1)
            count = self.counts[rows, index].astype(numpy.float64)
            below = cumulative[rows, index] - count
            with numpy.errstate(divide="ignore", invalid="ignore"):
                inside = (target - below) / count
            # an empty bin only for fraction 0 with an empty first bin: then ``low``
            results.append(numpy.where(count == 0, self.low, self.low + (index + inside) * width))
        return results

    def same_as(self, other: Histograms) -> bool:
        return (
            numpy.array_equal(self.low, other.low)
            and numpy.array_equal(self.high, other.high)
            and numpy.array_equal(self.counts, other.counts)
        )


def _regrouped(targets: numpy.ndarray, counts: numpy.ndarray) -> numpy.ndarray:
    """``counts`` (shape ``(G, B)``) summed into the bins ``targets`` (same shape, non-decreasing
    along each row), exactly in int64."""
    blocks, bins = counts.shape
    keys = (targets + (numpy.arange(blocks, dtype=numpy.intp) * bins)[:, None]).reshape(-1)
    starts = numpy.flatnonzero(numpy.diff(keys, prepend=-1))
    regrouped = numpy.zeros(blocks * bins, dtype=numpy.int64)
    regrouped[keys[starts]] = numpy.add.reduceat(counts.reshape(-1), starts)
    return regrouped.reshape(blocks, bins)


@dataclass(frozen=True, eq=False)
class Collected:
    """Histograms over a block grid (``()`` per tensor) and each block's exact extremes, as
    float64 arrays of shape ``(G,)``; with zeros split off, each block's count of exact zeros,
    which the histograms do not hold."""

    grid: tuple[int, ...]
    histograms: Histograms
    minimum: numpy.ndarray
    maximum: numpy.ndarray
    zeros: Optional[numpy.ndarray] = None

    def totals(self) -> numpy.ndarray:
        """How many values each block holds."""
        totals = self.histograms.counts.sum(axis=1)
        return totals if self.zeros is None else totals + self.zeros


@dataclass(frozen=True, eq=False)
class HistogramState:
    """What the histogram methods collect: the granularity (None until set), and the histograms
    with the values' extremes (``collected``; None before any values).

    With ``split_zeros``, exact zeros are counted apart from the bins. Never changed: methods
    return new states, so a failed call leaves its owner as it was.
    """

    bins: int
    split_zeros: bool
    granularity: Optional[Granularity] = None
    collected: Optional[Collected] = None

    def is_empty(self) -> bool:
        return self.collected is None

    def empty(self) -> HistogramState:
        """No values, the same granularity."""
        return HistogramState(self.bins, self.split_zeros, self.granularity)

    @property
    def grid(self) -> Optional[tuple[int, ...]]:
        return None if self.collected is None else self.collected.grid

    def rows(self, values: Any, axis: Any, block_size: Any, owner: str) -> Rows:
        """A batch checked and split into this state's blocks (``axis``/``block_size``: the batch's
        keywords)."""
        return rows_of(values, self.granularity, self.grid, asked_granularity(axis, block_size), owner)

    def _needed(self, minimum: numpy.ndarray, maximum: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray]:
        """The grid span that the values so far and values with these extremes need."""
        if self.collected is not None:
            minimum = numpy.minimum(self.collected.minimum, minimum)
            maximum = numpy.maximum(self.collected.maximum, maximum)
        with numpy.errstate(over="ignore"):
            spread = maximum - minimum
        wide = ~numpy.isfinite(spread)
        if wide.any():
            first = int(numpy.argmax(wide))
            where = "" if minimum.size == 1 else f" (block {first}, grid order)"
            raise InvalidValueError(
                f"cannot histogram values from {float(minimum[first])!r} to "
                f"{float(maximum[first])!r}{where}: their spread overflows float64. Rescale the "
                f"values first."
            )
        return minimum, maximum

    def _with(
        self, grid: tuple[int, ...], histograms: Histograms, minimum: Any, maximum: Any, zeros: Any
    ) -> HistogramState:
        """A state holding ``histograms`` and the extremes and zeros widened by these."""
        if self.collected is not None:
            minimum = numpy.minimum(self.collected.minimum, minimum)
            maximum = numpy.maximum(self.collected.maximum, maximum)
            if zeros is not None and self.collected.zeros is not None:
                zeros = self.collected.zeros + zeros
        collected = Collected(grid, histograms, minimum, maximum, zeros)
        return HistogramState(self.bins, self.split_zeros, self.granularity, collected)

    def with_rows(self, rows: Rows) -> HistogramState:
        """This state with a validated batch folded in (the batch's blocks were checked)."""
        # The first batch sets the granularity (a configured one, with its axis counted from the front)
        state = self if self.collected is not None else self._granted(rows.granularity)
        low, high = state._needed(rows.minimum, rows.maximum)
        if state.collected is None:
            histograms, zeros = Histograms.of(rows.values, low, high, self.bins, self.split_zeros)
            return state._with(rows.grid, histograms, rows.minimum, rows.maximum, zeros)
        grown = state.collected.histograms.widened(low, high)
        added, zeros = Histograms.of(rows.values, grown.low, grown.high, self.bins, self.split_zeros)
        total = Histograms(grown.counts + added.counts, grown.low, grown.high)
        return state._with(rows.grid, total, rows.minimum, rows.maximum, zeros)

    def _granted(self, granularity: Granularity) -> HistogramState:
        return HistogramState(self.bins, self.split_zeros, granularity, self.collected)

    def merged(self, other: HistogramState, owner: str) -> HistogramState:
        """This state with another's folded in: widen to cover the other's extremes, then add its
        bins by their centres. ``other`` is not changed."""
        check_same_blocks(owner, (self.granularity, self.grid), (other.granularity, other.grid))
        theirs = other.collected
        if theirs is None:
            return self
        if self.collected is None:
            return HistogramState(self.bins, self.split_zeros, other.granularity, theirs)
        grown = self.collected.histograms.widened(*self._needed(theirs.minimum, theirs.maximum))
        return self._with(
            theirs.grid, grown.plus(theirs.histograms), theirs.minimum, theirs.maximum, theirs.zeros
        )

    def require(self, owner: str) -> Collected:
        if self.collected is None:
            raise no_values_error(owner)
        return self.collected

    def dump(self) -> dict[str, Any]:
        """``axis``, ``block_size``, then the state: per tensor ``counts`` (shape ``(B,)``) and
        ``numpy.float64`` scalars; per axis or block ``counts`` of shape ``grid + (B,)`` and
        float64 arrays of the grid's shape (all None before any values); with split zeros,
        ``zeros`` too (int64)."""
        names = _state_keys(self.split_zeros)
        dumped = granularity_keywords(self.granularity)
        if self.collected is None:
            return {**dumped, **dict.fromkeys(names)}
        collected, grid = self.collected, self.collected.grid
        histograms = collected.histograms
        state = {
            "counts": histograms.counts.reshape((*grid, self.bins)).copy(),
            "low": _shaped(histograms.low, grid),
            "high": _shaped(histograms.high, grid),
            "minimum": _shaped(collected.minimum, grid),
            "maximum": _shaped(collected.maximum, grid),
        }
        if self.split_zeros:
            zeros = collected.zeros if collected.zeros is not None else numpy.zeros(1, dtype=numpy.int64)
            state["zeros"] = numpy.int64(zeros[0]) if grid == () else zeros.reshape(grid).copy()
        return {**dumped, **state}

    def same_as(self, other: HistogramState) -> bool:
        if self.granularity != other.granularity:
            return False
        mine, theirs = self.collected, other.collected
        if mine is None or theirs is None:
            return mine is None and theirs is None
        if mine.zeros is None or theirs.zeros is None:
            same_zeros = mine.zeros is None and theirs.zeros is None
        else:
            same_zeros = bool(numpy.array_equal(mine.zeros, theirs.zeros))
        return (
            mine.grid == theirs.grid
            and mine.histograms.same_as(theirs.histograms)
            and numpy.array_equal(mine.minimum, theirs.minimum)
            and numpy.array_equal(mine.maximum, theirs.maximum)
            and same_zeros
        )

    def describe(self) -> str:
        if self.collected is None:
            return "no values"
        collected = self.collected
        total = int(collected.totals().sum())
        low, high = float(collected.minimum.min()), float(collected.maximum.max())
        if collected.grid == ():
            return f"{total} values in [{low!r}, {high!r}]"
        return (
            f"{total} values {describe(self.granularity)}, {collected.minimum.size} blocks of grid "
            f"{collected.grid}, in [{low!r}, {high!r}]"
        )


def _shaped(values: numpy.ndarray, grid: tuple[int, ...]) -> Any:
    return numpy.float64(values[0]) if grid == () else values.reshape(grid).copy()


def _state_keys(split_zeros: bool) -> tuple[str, ...]:
    return (*_STATE_KEYS, "zeros") if split_zeros else _STATE_KEYS


# -- loading


def load_float(value: Any, name: str, owner: str) -> numpy.float64:
    if not (is_integer(value) or isinstance(value, (float, numpy.floating))):
        raise SerializationError(
            f"{owner}.load_dict: '{name}' must be a number or None; got {value!r} of type "
            f"{type(value).__name__}."
        )
    try:
        number = numpy.float64(value)
    except OverflowError:  # a Python int beyond float64
        number = numpy.float64(numpy.inf)
    if not numpy.isfinite(number):
        shown = float(value) if isinstance(value, numpy.floating) else value
        raise SerializationError(f"{owner}.load_dict: '{name}' must be a finite float64; got {shown!r}.")
    return number


def _load_floats(value: Any, name: str, owner: str, grid: tuple[int, ...]) -> numpy.ndarray:
    """A per-block float field: a number per tensor, a real array of the grid's shape per block
    (finite), as a float64 array of shape ``(G,)``."""
    if grid == ():
        return numpy.array([load_float(value, name, owner)])
    if not isinstance(value, numpy.ndarray) or value.dtype.kind not in "iuf":
        got = f"an array of dtype {value.dtype}" if isinstance(value, numpy.ndarray) else type(value).__name__
        raise SerializationError(
            f"{owner}.load_dict: '{name}' must be a numpy array of numbers, one per block; got {got}."
        )
    if value.shape != grid:
        raise SerializationError(
            f"{owner}.load_dict: '{name}' must have the block grid's shape {grid}; got shape {value.shape}."
        )
    floats = value.astype(numpy.float64).reshape(-1)
    if not numpy.isfinite(floats).all():
        raise SerializationError(f"{owner}.load_dict: '{name}' must hold finite float64 values.")
    return floats


def _load_counts(counts: Any, bins: int, owner: str) -> numpy.ndarray:
    if not isinstance(counts, numpy.ndarray) or counts.dtype.kind not in "iu":
        got = (
            f"an array of dtype {counts.dtype}"
            if isinstance(counts, numpy.ndarray)
            else type(counts).__name__
        )
        raise SerializationError(
            f"{owner}.load_dict: 'counts' must be a numpy integer array, one count per bin; got {got}."
        )
    if counts.ndim == 0 or counts.shape[-1] != bins:
        raise SerializationError(
            f"{owner}.load_dict: 'counts' must have shape ({bins},), one count per bin (per axis or "
            f"block: the block grid's shape, then {bins}); got shape {counts.shape}."
        )
    if counts.size and (counts.min() < 0 or counts.max() >= _MAX_COUNT):
        raise SerializationError(
            f"{owner}.load_dict: 'counts' must be non-negative integers below 2**53; got values "
            f"from {counts.min()} to {counts.max()}."
        )
    return counts.astype(numpy.int64).reshape(-1, bins)


def _load_zeros(value: Any, grid: tuple[int, ...], owner: str) -> numpy.ndarray:
    array = numpy.asarray(value) if is_integer(value) else value
    if not isinstance(array, numpy.ndarray) or array.dtype.kind not in "iu" or array.shape != grid:
        raise SerializationError(
            f"{owner}.load_dict: 'zeros' must be a non-negative integer (per axis or block, an "
            f"integer array of the block grid's shape {grid}), the count of exact zeros; got {value!r}."
        )
    if array.size and (array.min() < 0 or array.max() >= _MAX_COUNT):
        raise SerializationError(
            f"{owner}.load_dict: 'zeros' must be non-negative integers below 2**53; got {value!r}."
        )
    return array.astype(numpy.int64).reshape(-1)


def load_granularity(metadata: dict[str, Any], owner: str) -> Optional[Granularity]:
    """The granularity ``axis``/``block_size`` of serialized metadata name (None: not set).

    Raises
    ------
    SerializationError
        For keywords :func:`intquant.granularity.granularity_of` refuses.
    """
    try:
        return asked_granularity(metadata["axis"], metadata["block_size"])
    except IntquantError as error:
        raise SerializationError(f"{owner}.load_dict: invalid granularity: {error}") from error


def check_loaded_grid(granularity: Optional[Granularity], grid: tuple[int, ...], owner: str) -> Granularity:
    """The granularity of a loaded state, checked against its block grid (the shape of its
    per-block arrays; ``()`` for scalars, per tensor)."""
    if granularity is None or granularity == PER_TENSOR:
        if grid != ():
            raise SerializationError(
                f"{owner}.load_dict: a per-tensor state holds one value per field (counts: one per "
                f"bin); got fields over a block grid of shape {grid}. Set 'axis' or 'block_size' "
                f"for per-block state."
            )
        return PER_TENSOR
    fits = False
    if isinstance(granularity, PerAxis):
        ndim = len(grid)
        fits = (
            bool(ndim)
            and -ndim <= granularity.axis < ndim
            and all(size == 1 for dimension, size in enumerate(grid) if dimension != granularity.axis % ndim)
        )
    elif isinstance(granularity, PerBlock):
        fits = len(granularity.block_size) == len(grid) and len(grid) > 0
    if not fits or 0 in grid:
        raise SerializationError(
            f"{owner}.load_dict: a state over a block grid of shape {grid} does not fit "
            f"{describe(granularity)}."
        )
    return granularity


def load_state(
    state: HistogramState, metadata: dict[str, Any], granularity: Optional[Granularity], owner: str
) -> HistogramState:
    """A state rebuilt from :meth:`HistogramState.dump` output, checked for consistency."""
    names = _state_keys(state.split_zeros)
    values = {name: metadata[name] for name in names}
    if all(value is None for value in values.values()):
        return HistogramState(state.bins, state.split_zeros, granularity)
    if any(value is None for value in values.values()):
        raise SerializationError(
            f"{owner}.load_dict needs either all of {', '.join(names)} set or all None "
            f"(no values yet); got None for "
            f"{', '.join(name for name, value in values.items() if value is None)}."
        )
    counts = _load_counts(values["counts"], state.bins, owner)
    grid = tuple(values["counts"].shape[:-1])
    granularity = check_loaded_grid(granularity, grid, owner)
    low, high, minimum, maximum = (_load_floats(values[name], name, owner, grid) for name in _STATE_KEYS[1:])
    zeros = _load_zeros(values["zeros"], grid, owner) if state.split_zeros else None
    if not ((low <= minimum) & (minimum <= maximum) & (maximum <= high)).all():
        first = int(numpy.argmin((low <= minimum) & (minimum <= maximum) & (maximum <= high)))
        raise SerializationError(
            f"{owner}.load_dict needs low <= minimum <= maximum <= high; got low={float(low[first])!r}, "
            f"high={float(high[first])!r}, minimum={float(minimum[first])!r}, "
            f"maximum={float(maximum[first])!r}."
        )
    with numpy.errstate(over="ignore"):
        spread = high - low
    if not numpy.isfinite(spread).all():
        first = int(numpy.argmin(numpy.isfinite(spread)))
        raise SerializationError(
            f"{owner}.load_dict: high - low overflows float64 ({float(low[first])!r} to "
            f"{float(high[first])!r})."
        )
    collected = Collected(grid, Histograms(counts, low, high), minimum, maximum, zeros)
    if (collected.totals() == 0).any():
        raise SerializationError(
            f"{owner}.load_dict: 'counts' must not be all 0 (every block holds at least one value)."
        )
    return HistogramState(state.bins, state.split_zeros, granularity, collected)


def check_keys(metadata: Any, names: tuple[str, ...], owner: str) -> dict[str, Any]:
    """Serialized ``metadata`` after checking it is a dict with exactly the keys ``names``."""
    if not isinstance(metadata, dict):
        raise SerializationError(f"{owner}.load_dict expects a dict; got {type(metadata).__name__}.")
    missing = [name for name in names if name not in metadata]
    unknown = [name for name in metadata if name not in names]
    if missing or unknown:
        raise SerializationError(
            f"{owner}.load_dict expects the keys {', '.join(names)}; "
            f"missing: {missing or 'none'}, unknown: {unknown or 'none'}."
        )
    return metadata


def load_histogram_calibration(
    owner: str, factory: Any, metadata: dict[str, Any], names: tuple[str, ...], format_version: int
) -> Any:
    """``factory(**config)`` for the configuration ``names`` of ``metadata`` (keys checked),
    holding the state that ``metadata`` describes. Format versions 0 and 1 (per tensor only)
    have no ``axis``/``block_size`` keys."""
    granular = format_version >= 2
    sample = factory()
    state_names = _state_keys(sample._state.split_zeros) if granular else _STATE_KEYS
    check_keys(metadata, (*names, *(_GRANULARITY_KEYS if granular else ()), *state_names), owner)
    try:
        stats = factory(**{name: metadata[name] for name in names})
    except (InvalidTypeError, InvalidValueError) as error:
        raise SerializationError(f"{owner}.load_dict: invalid configuration: {error}") from error
    granularity = load_granularity(metadata, owner) if granular else None
    stats._set_state(load_state(stats._state, metadata, granularity, owner))
    return stats


def holding(stats: HistogramCalibration, state: HistogramState) -> None:
    """Give a histogram method a loaded state (its cached ranges cleared)."""
    stats._set_state(state)


# -- the base of the histogram methods


#: Updates and merges of the histogram methods are atomic under this lock (the batch is checked
#: before it is taken).
UPDATES = threading.RLock()


class HistogramCalibration(Calibrator):
    """What the histogram methods share: collecting batches (:meth:`update`, :meth:`merge`) per
    tensor, axis or block, equality and serialization of the collected state. A subclass holds
    its configuration (``_config``) and computes each block's range from the histograms
    (``_block_ranges``, arrays of shape ``(G,)``), which this class caches per options; every
    change of the state clears that cache."""

    _state: HistogramState
    _ranges: dict[Any, tuple[numpy.ndarray, numpy.ndarray]]

    def _config(self) -> dict[str, Any]:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def _block_ranges(
        self, collected: Collected, options: RangeOptions
    ) -> tuple[numpy.ndarray, numpy.ndarray]:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def _set_state(self, state: HistogramState) -> None:
        self._state, self._ranges = state, {}

    def _start(self, bins: int, split_zeros: bool, axis: Any, block_size: Any) -> None:
        """Set the configuration's granularity (None when neither keyword is given)."""
        self._set_state(HistogramState(bins, split_zeros, asked_granularity(axis, block_size)))

    @property
    def axis(self) -> int | None:
        """The axis of a per-axis calibrator (given, or taken from its first batch), else None."""
        return granularity_keywords(self._state.granularity)["axis"]

    @property
    def block_size(self) -> tuple[int, ...] | None:
        """The block size of a per-block calibrator (given, or taken from its first batch), else None."""
        return granularity_keywords(self._state.granularity)["block_size"]

    def compute_quantization_stats(
        self, values: Any, *, axis: int | None = None, block_size: tuple[int, ...] | None = None
    ) -> None:
        """Forget what was collected (not the granularity), then :meth:`update` with ``values``."""
        owner = type(self).__name__
        with UPDATES:
            empty = self._state.empty()
            self._set_state(empty.with_rows(empty.rows(values, axis, block_size, owner)))

    def update(
        self, values: Any, *, axis: int | None = None, block_size: tuple[int, ...] | None = None
    ) -> None:
        """Fold a batch in (non-empty, finite, real values; not changed). Atomic: threads may
        update one object together.

        ``axis``/``block_size`` give the batch's granularity: the calibrator's, or for one made
        without a granularity and holding no values yet, the one it takes (see
        :mod:`intquant.calibration`); None: the calibrator's (per tensor if it has none).

        Raises
        ------
        InvalidOptionsError
            For keywords naming another granularity than the calibrator's.
        InvalidValueError
            For empty or non-finite values, or values making another block grid than those
            collected so far.
        """
        owner = type(self).__name__
        with UPDATES:
            self._set_state(self._state.with_rows(self._state.rows(values, axis, block_size, owner)))

    def merge(self, other: Any) -> None:
        """Fold in what ``other`` (same class, configuration and blocks) collected; ``other`` is
        unchanged."""
        check_mergeable(self, other, self._config(), other._config())
        with UPDATES:
            self._set_state(self._state.merged(other._state, type(self).__name__))

    def is_empty(self) -> bool:
        """Whether no values were collected yet."""
        return self._state.is_empty()

    def range_for(self, options: Any) -> Range:
        """The clipping range for ``options``: ``numpy.float64`` scalars per tensor, float64
        arrays of the block grid's shape per axis or block.

        Raises
        ------
        MissingParameterError
            If no values were collected yet.
        InvalidOptionsError
            If the options' ``axis``/``block_size`` do not match the calibrator's granularity.
        """
        checked = check_range_options(options)
        collected = self._state.require(type(self).__name__)
        check_options_granularity(self._state.granularity, collected.grid, options, type(self).__name__)
        return block_range(collected.grid, *self._cached(collected, checked))

    def _cached(self, collected: Collected, options: RangeOptions) -> tuple[numpy.ndarray, numpy.ndarray]:
        ranges = self._ranges
        if options not in ranges:
            ranges[options] = self._block_ranges(collected, options)
        return ranges[options]

    def _default_range(self) -> Optional[Range]:
        collected = self._state.collected
        if collected is None:
            return None
        return block_range(collected.grid, *self._cached(collected, DEFAULT_OPTIONS))

    @property
    def rmin(self) -> Any:
        """The range's low end for ``QuantizationOptions(8)`` at this calibrator's granularity (a
        float64 array over the block grid per axis or block), or None before any values."""
        default = self._default_range()
        return None if default is None else default[0]

    @property
    def rmax(self) -> Any:
        """The range's high end for ``QuantizationOptions(8)`` (see :attr:`rmin`), or None before
        any values."""
        default = self._default_range()
        return None if default is None else default[1]

    @property
    def uvalues(self) -> None:
        """Always None: no distinct values are kept."""
        return None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, type(self)) or type(other) is not type(self):
            return NotImplemented
        return self._config() == other._config() and self._state.same_as(other._state)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def _repr_config(self) -> str:
        config = {
            **self._config(),
            **{k: v for k, v in granularity_keywords(self._state.granularity).items() if v is not None},
        }
        return ", ".join(f"{name}={value!r}" for name, value in config.items())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._repr_config()}; {self._state.describe()})"

    def dump_dict(self) -> dict[str, Any]:
        """The configuration, ``axis`` and ``block_size`` (the granularity; both None per tensor
        or when not set yet), then the state: ``counts`` (int64; shape ``(bins,)`` per tensor,
        the block grid's shape then ``bins`` per axis or block), ``low``, ``high`` (the grids),
        ``minimum``, ``maximum`` (numpy.float64 per tensor, float64 arrays of the grid's shape
        per axis or block; all None before any values)."""
        return {**self._config(), **self._state.dump()}

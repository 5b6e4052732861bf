"""What the calibration methods share: the histogram of the percentile, MSE and entropy methods,
its state, their base class, and the argument checks and loading helpers.

The histogram rule (how the first batch sets the grid, how later batches widen it, how counts move
to another grid when widening or merging) is stated in the package docstring,
:mod:`intquant.calibration`.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Optional

import numpy

from intquant._core.calibrator import Calibrator, Range
from intquant._core.checks import (
    check_calibration_values,
    check_flag,
    check_int,
    check_n_bits,
    check_option_combination,
    is_integer,
)
from intquant.errors import (
    InvalidTypeError,
    InvalidValueError,
    MissingParameterError,
    SerializationError,
)
from intquant.options import QuantizationOptions

__all__ = [
    "Batch",
    "Collected",
    "Histogram",
    "HistogramCalibration",
    "HistogramState",
    "RangeOptions",
    "as_range",
    "check_batch",
    "check_bins",
    "check_keys",
    "check_mergeable",
    "check_range_options",
    "load_float",
    "load_histogram_calibration",
    "no_values_error",
]

_MIN_BINS = 16
#: Widening keeps the grid aligned on the old bins while the shift and factor stay below this.
_MAX_ALIGNED = 2**32
#: Counts above this would not stay exact through float64 arithmetic.
_MAX_COUNT = 2**53
_STATE_KEYS = ("counts", "low", "high", "minimum", "maximum")


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
    return RangeOptions(n_bits, is_signed, is_symmetric, is_narrow)


@dataclass(frozen=True, eq=False)
class Batch:
    """A validated calibration batch (never written to) and its extremes, as float64."""

    values: numpy.ndarray
    minimum: numpy.float64
    maximum: numpy.float64


def check_batch(values: Any) -> Batch:
    """Check that calibration values are non-empty, real and finite; return them as a batch."""
    array = check_calibration_values(values)
    minimum, maximum = numpy.float64(numpy.min(array)), numpy.float64(numpy.max(array))
    if not (numpy.isfinite(minimum) and numpy.isfinite(maximum)):  # NaN propagates into min/max
        bad = "NaN" if numpy.isnan(minimum) or numpy.isnan(maximum) else "an infinity"
        raise InvalidValueError(
            f"cannot calibrate on values containing {bad} (shape {array.shape}, dtype "
            f"{array.dtype}): the range would not be finite. Remove or replace non-finite "
            f"values first, e.g. with numpy.nan_to_num."
        )
    return Batch(array, minimum, maximum)


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


def no_values_error(owner: str) -> MissingParameterError:
    return MissingParameterError(
        f"this {owner} has no values yet, so it has no range; call update(values) or "
        f"compute_quantization_stats(values) first."
    )


# -- the histogram


def _bin_indices(values: numpy.ndarray, low: float, high: float, bins: int) -> numpy.ndarray:
    """``clip(floor((values - low) / (high - low) * bins), 0, bins - 1)``; all 0 if ``low == high``."""
    span = high - low
    if span == 0:
        return numpy.zeros(values.shape, dtype=numpy.intp)
    position = numpy.floor((values - low) / span * bins)
    return numpy.clip(position, 0, bins - 1).astype(numpy.intp)


@dataclass(frozen=True, eq=False)
class Histogram:
    """``counts`` (int64) of equal bins over ``[low, high]``. Never changed: methods return new ones."""

    counts: numpy.ndarray
    low: float
    high: float

    @staticmethod
    def of(values: numpy.ndarray, low: float, high: float, bins: int) -> Histogram:
        """The histogram of ``values`` (all within ``[low, high]``) on that grid."""
        counts = numpy.bincount(_bin_indices(values.ravel(), low, high, bins), minlength=bins)
        return Histogram(counts.astype(numpy.int64), low, high)

    @property
    def bins(self) -> int:
        return int(self.counts.size)

    @property
    def width(self) -> float:
        return (self.high - self.low) / self.bins

    def centres(self) -> numpy.ndarray:
        return self.low + (numpy.arange(self.bins) + 0.5) * self.width

    def rebinned(self, low: float, high: float) -> Histogram:
        """These counts on the grid ``[low, high]``: each bin's count goes to the bin holding its centre."""
        if (low, high) == (self.low, self.high):
            return self
        occupied = numpy.flatnonzero(self.counts)
        centres = self.low + (occupied + 0.5) * self.width
        counts = numpy.zeros(self.bins, dtype=numpy.int64)
        numpy.add.at(counts, _bin_indices(centres, low, high, self.bins), self.counts[occupied])
        return Histogram(counts, low, high)

    def widened(self, need_low: float, need_high: float) -> Histogram:
        """This histogram on a grid covering ``[need_low, need_high]``, which must hold every value
        counted so far (see the package docstring); itself when its grid already does."""
        if self.low <= need_low and need_high <= self.high:
            return self
        return self.rebinned(*self._covering_grid(need_low, need_high))

    def _covering_grid(self, need_low: float, need_high: float) -> tuple[float, float]:
        """The aligned grid covering ``[need_low, need_high]`` and the occupied bins."""
        width = self.width
        occupied = numpy.flatnonzero(self.counts)
        if width > 0 and occupied.size:
            start = (need_low - self.low) / width  # in old bins from low
            if math.isfinite(start) and abs(start) < _MAX_ALIGNED:
                first = min(int(occupied[0]), math.floor(start))
                aligned_low = self.low + first * width if first else self.low
                last = int(occupied[-1]) + 1
                top = self.high if last == self.bins else self.low + last * width
                factor = (max(top, need_high) - aligned_low) / (self.bins * width)  # new width / old
                if math.isfinite(factor) and factor < _MAX_ALIGNED:
                    aligned_high = aligned_low + self.bins * max(1, math.ceil(factor)) * width
                    return min(aligned_low, need_low), max(aligned_high, need_high)
        return need_low, need_high

    def plus(self, other: Histogram) -> Histogram:
        """Both histograms' counts on this grid (``other`` rebinned by centres)."""
        moved = other.rebinned(self.low, self.high)
        return Histogram(self.counts + moved.counts, self.low, self.high)

    def quantile(self, fraction: float) -> float:
        """The value below which ``fraction`` of the counts lie, interpolated linearly in its bin.

        With edges ``e_k = low + k * width`` and cumulative counts ``C_k = c_0 + ... + c_{k-1}``:
        ``e_k + (fraction * N - C_k) / c_k * width`` for the first bin ``k`` with
        ``C_{k+1} >= fraction * N``.
        """
        cumulative = numpy.cumsum(self.counts).astype(numpy.float64)
        target = fraction * cumulative[-1]
        k = min(int(numpy.searchsorted(cumulative, target, side="left")), self.bins - 1)
        count = float(self.counts[k])
        if count == 0:  # only for fraction 0 with an empty first bin
            return self.low
        below = float(cumulative[k]) - count
        return self.low + (k + (target - below) / count) * self.width

    def same_as(self, other: Histogram) -> bool:
        return (
            self.low == other.low
            and self.high == other.high
            and bool(numpy.array_equal(self.counts, other.counts))
        )


@dataclass(frozen=True, eq=False)
class Collected:
    """A histogram and the exact extremes of the values it was built from."""

    histogram: Histogram
    minimum: numpy.float64
    maximum: numpy.float64


@dataclass(frozen=True, eq=False)
class HistogramState:
    """What the histogram methods collect: a histogram and the exact extremes of the values
    (``collected``; None before any values).

    ``absolute`` histograms hold ``|x|`` on a grid starting at 0; the extremes are those of ``x``.
    Never changed: methods return new states, so a failed call leaves its owner as it was.
    """

    bins: int
    absolute: bool
    collected: Optional[Collected] = None

    def is_empty(self) -> bool:
        return self.collected is None

    def empty(self) -> HistogramState:
        return HistogramState(self.bins, self.absolute)

    def _span(self, minimum: float, maximum: float) -> tuple[float, float]:
        """The part of the grid that values with these extremes need."""
        if self.absolute:
            return 0.0, max(abs(minimum), abs(maximum))
        return minimum, maximum

    def _needed(self, minimum: Any, maximum: Any) -> tuple[float, float]:
        """The grid span that the values so far and values with these extremes need."""
        if self.collected is not None:
            minimum = min(self.collected.minimum, minimum)
            maximum = max(self.collected.maximum, maximum)
        low, high = self._span(float(minimum), float(maximum))
        if not math.isfinite(high - low):
            raise InvalidValueError(
                f"cannot histogram values from {low!r} to {high!r}: their spread overflows "
                f"float64. Rescale the values first."
            )
        return low, high

    def _with(self, histogram: Histogram, minimum: Any, maximum: Any) -> HistogramState:
        """A state holding ``histogram`` and the extremes widened by ``minimum``, ``maximum``."""
        if self.collected is not None:
            minimum = min(self.collected.minimum, minimum)
            maximum = max(self.collected.maximum, maximum)
        collected = Collected(histogram, numpy.float64(minimum), numpy.float64(maximum))
        return HistogramState(self.bins, self.absolute, collected)

    def with_values(self, batch: Batch) -> HistogramState:
        """This state with a validated batch folded in."""
        minimum, maximum = batch.minimum, batch.maximum
        needed = self._needed(minimum, maximum)
        values = numpy.asarray(batch.values, dtype=numpy.float64)  # a copy unless float64 already
        points = numpy.abs(values) if self.absolute else values
        if self.collected is None:
            return self._with(Histogram.of(points, *needed, self.bins), minimum, maximum)
        grown = self.collected.histogram.widened(*needed)
        added = Histogram.of(points, grown.low, grown.high, self.bins)
        return self._with(Histogram(grown.counts + added.counts, grown.low, grown.high), minimum, maximum)

    def merged(self, other: HistogramState) -> HistogramState:
        """This state with another's folded in: widen to cover the other's extremes, then add its
        bins by their centres. ``other`` is not changed."""
        theirs = other.collected
        if theirs is None:
            return self
        if self.collected is None:
            return other
        grown = self.collected.histogram.widened(*self._needed(theirs.minimum, theirs.maximum))
        return self._with(grown.plus(theirs.histogram), theirs.minimum, theirs.maximum)

    def require(self, owner: str) -> Collected:
        if self.collected is None:
            raise no_values_error(owner)
        return self.collected

    def dump(self) -> dict[str, Any]:
        if self.collected is None:
            return dict.fromkeys(_STATE_KEYS)
        histogram = self.collected.histogram
        return {
            "counts": histogram.counts.copy(),
            "low": numpy.float64(histogram.low),
            "high": numpy.float64(histogram.high),
            "minimum": self.collected.minimum,
            "maximum": self.collected.maximum,
        }

    def load(self, metadata: dict[str, Any], owner: str) -> HistogramState:
        """A state rebuilt from :meth:`dump` output, checked for consistency."""
        values = {name: metadata[name] for name in _STATE_KEYS}
        if all(value is None for value in values.values()):
            return self.empty()
        if any(value is None for value in values.values()):
            raise SerializationError(
                f"{owner}.load_dict needs either all of {', '.join(_STATE_KEYS)} set or all None "
                f"(no values yet); got None for "
                f"{', '.join(name for name, value in values.items() if value is None)}."
            )
        counts = _load_counts(values["counts"], self.bins, owner)
        low, high, minimum, maximum = (load_float(values[name], name, owner) for name in _STATE_KEYS[1:])
        if self.absolute:
            consistent = low == 0 and minimum <= maximum and max(-minimum, maximum) <= high
            rule = "low == 0, minimum <= maximum and max(-minimum, maximum) <= high"
        else:
            consistent = low <= minimum <= maximum <= high
            rule = "low <= minimum <= maximum <= high"
        if not consistent:
            raise SerializationError(
                f"{owner}.load_dict needs {rule}; got low={float(low)!r}, high={float(high)!r}, "
                f"minimum={float(minimum)!r}, maximum={float(maximum)!r}."
            )
        with numpy.errstate(over="ignore"):
            spread = high - low
        if not numpy.isfinite(spread):
            raise SerializationError(
                f"{owner}.load_dict: high - low overflows float64 ({float(low)!r} to {float(high)!r})."
            )
        collected = Collected(Histogram(counts, float(low), float(high)), minimum, maximum)
        return HistogramState(self.bins, self.absolute, collected)

    def same_as(self, other: HistogramState) -> bool:
        mine, theirs = self.collected, other.collected
        if mine is None or theirs is None:
            return mine is None and theirs is None
        return (
            mine.histogram.same_as(theirs.histogram)
            and mine.minimum == theirs.minimum
            and mine.maximum == theirs.maximum
        )

    def describe(self) -> str:
        if self.collected is None:
            return "no values"
        total = int(self.collected.histogram.counts.sum())
        return f"{total} values in [{float(self.collected.minimum)!r}, {float(self.collected.maximum)!r}]"


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
    if counts.shape != (bins,):
        raise SerializationError(
            f"{owner}.load_dict: 'counts' must have shape ({bins},), one count per bin; got shape "
            f"{counts.shape}."
        )
    if counts.min() < 0 or counts.max() >= _MAX_COUNT or counts.sum() == 0:
        raise SerializationError(
            f"{owner}.load_dict: 'counts' must be non-negative integers below 2**53, not all 0; "
            f"got values from {counts.min()} to {counts.max()}."
        )
    return counts.astype(numpy.int64)


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
    owner: str, factory: Any, metadata: dict[str, Any], names: tuple[str, ...]
) -> Any:
    """``factory(**config)`` for the configuration ``names`` of ``metadata`` (keys checked),
    holding the state that ``metadata`` describes (:meth:`HistogramState.load`)."""
    check_keys(metadata, (*names, *_STATE_KEYS), owner)
    try:
        stats = factory(**{name: metadata[name] for name in names})
    except (InvalidTypeError, InvalidValueError) as error:
        raise SerializationError(f"{owner}.load_dict: invalid configuration: {error}") from error
    stats._set_state(stats._state.load(metadata, owner))
    return stats


def as_range(low: Any, high: Any) -> Range:
    return numpy.float64(low), numpy.float64(high)


# -- the base of the histogram methods


#: Updates and merges of the histogram methods are atomic under this lock (the batch is checked
#: before it is taken).
UPDATES = threading.RLock()


class HistogramCalibration(Calibrator):
    """What the histogram methods share: collecting batches (:meth:`update`, :meth:`merge`),
    equality and serialization of the collected state. A subclass holds its configuration
    (``_config``) and reads a clipping range from the histogram (``range_for``), which it may
    cache in ``_ranges`` per options; every change of the state clears that cache."""

    _state: HistogramState
    _ranges: dict[Any, Range]

    def _config(self) -> dict[str, Any]:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def range_for(self, options: Any) -> Range:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def _set_state(self, state: HistogramState) -> None:
        self._state, self._ranges = state, {}

    def compute_quantization_stats(self, values: Any) -> None:
        """Forget what was collected, then :meth:`update` with ``values``."""
        batch = check_batch(values)
        with UPDATES:
            self._set_state(self._state.empty().with_values(batch))

    def update(self, values: Any) -> None:
        """Fold a batch in (non-empty, finite, real values; not changed). Atomic: threads may
        update one object together."""
        batch = check_batch(values)
        with UPDATES:
            self._set_state(self._state.with_values(batch))

    def merge(self, other: Any) -> None:
        """Fold in what ``other`` (same class and configuration) collected; ``other`` is unchanged."""
        check_mergeable(self, other, self._config(), other._config())
        with UPDATES:
            self._set_state(self._state.merged(other._state))

    def is_empty(self) -> bool:
        """Whether no values were collected yet."""
        return self._state.is_empty()

    @property
    def rmin(self) -> Optional[numpy.float64]:
        """``range_for(QuantizationOptions(8))[0]``, or None before any values."""
        return None if self.is_empty() else self.range_for(QuantizationOptions(8))[0]

    @property
    def rmax(self) -> Optional[numpy.float64]:
        """``range_for(QuantizationOptions(8))[1]``, or None before any values."""
        return None if self.is_empty() else self.range_for(QuantizationOptions(8))[1]

    @property
    def uvalues(self) -> None:
        """Always None: no distinct values are kept."""
        return None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, type(self)) or type(other) is not type(self):
            return NotImplemented
        return self._config() == other._config() and self._state.same_as(other._state)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def dump_dict(self) -> dict[str, Any]:
        """The configuration, then the state: ``counts`` (int64 array), ``low``, ``high`` (the
        grid), ``minimum``, ``maximum`` (numpy.float64; all five None before any values)."""
        return {**self._config(), **self._state.dump()}

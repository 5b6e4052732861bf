"""Calibration methods: clipping ranges from percentiles, moving averages, MSE and entropy.

Each class collects statistics of calibration batches and turns them into a clipping range
``(rmin, rmax)``, in ONNX Runtime's calibrator shape: ``update(values)`` folds a batch in and
may be called any number of times, ``merge(other)`` folds in the statistics another object
collected, and ``range_for(options)`` computes the range. ``rmin`` and ``rmax`` give the range
for 8-bit unsigned asymmetric options (``QuantizationOptions(8)``), so an object can stand
where a :class:`~intquant.statistics.MinMaxQuantizationStats` is read; ``uvalues`` is always
None, since these methods keep no distinct values (QAT scale inference therefore never applies to
them: the scale comes from ``rmin``/``rmax``).

* :class:`PercentileStats` -- the values at percentiles ``100 - p`` and ``p``.
* :class:`MovingAverageMinMaxStats` -- an exponential moving average of the batches' extremes.
* :class:`MSEStats` -- the shrunk range whose quantization error is smallest.
* :class:`EntropyStats` -- the threshold whose quantized distribution is closest in KL divergence.

The last three keep a histogram with a fixed number of equal bins, so memory does not grow with
the data, and the exact minimum and maximum of the values seen (float64).

Histogram rule
--------------
The first batch sets the grid ``[low, high]`` to ``[min, max]`` of its values (``[0, max|x|]`` of
their absolute values for :class:`EntropyStats`). A value ``x`` goes to bin ``min(floor((x - low)
/ (high - low) * bins), bins - 1)`` (every value to bin 0 when ``low == high``). A later batch
that falls outside the grid *widens* it so that it covers all the values seen: the new grid
starts on an old bin edge at or below both the first occupied old bin and the batch's minimum
(empty old bins may be dropped), and its bins are ``f`` old bins wide, for the smallest whole
``f >= 1`` that reaches the last occupied old bin and the batch's maximum. Every old bin then lies
inside one new bin and moves there with its count: counts never drift between bins, however many
widenings there are, and the grid stays under twice the span of the values plus a few bins.
Only when the old grid has zero width, or the shift or ``f`` would exceed ``2**32`` old bins, is
the new grid exactly the values' span. Whenever counts move to another grid (widening,
merging), each old bin's count goes to the new bin containing its centre (clipped to the first
or last bin) -- on an aligned grid, exactly the new bin that contains the old one.
:meth:`merge` widens this object's grid to cover the other's values, then adds the other's bins
that way; when both grids are the same (say, both objects saw the same minimum and maximum
first) the counts simply add up, and ``a.merge(b)`` equals updating with both batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy

from intquant._core.calibrator import Calibrator
from intquant._core.checks import (
    check_calibration_values,
    check_flag,
    check_n_bits,
    check_option_combination,
)
from intquant._core.execute import dequantize, quantize
from intquant._core.formulas import choose_uniform_parameters, integer_bounds
from intquant.errors import (
    InvalidTypeError,
    InvalidValueError,
    MissingParameterError,
    SerializationError,
)
from intquant.options import QuantizationOptions

__all__ = ["PercentileStats", "MovingAverageMinMaxStats", "MSEStats", "EntropyStats"]

Range = tuple[numpy.float64, numpy.float64]

_MIN_BINS = 16
#: Widening keeps the grid aligned on the old bins while the shift and factor stay below this.
_MAX_ALIGNED = 2**32
#: Counts above this would not stay exact through float64 arithmetic.
_MAX_COUNT = 2**53
#: Smoothing constant of the entropy method (ONNX Runtime's and MXNet's ``smooth_distribution``).
_SMOOTHING = 1e-4
_STATE_KEYS = ("counts", "low", "high", "minimum", "maximum")


# -- argument checks


def _check_real(name: str, value: Any, expected: str, advice: str) -> float:
    """Return ``value`` as a finite Python float after checking it is a real number (not a bool)."""
    if isinstance(value, (bool, numpy.bool_)) or not isinstance(
        value, (int, float, numpy.integer, numpy.floating)
    ):
        raise InvalidTypeError(
            f"'{name}' must be {expected}; got {value!r} of type {type(value).__name__}. {advice}"
        )
    number = float(value)
    if not math.isfinite(number):
        raise InvalidValueError(f"'{name}' must be {expected}; got {value!r}. {advice}")
    return number


def _check_int(name: str, value: Any, minimum: int, advice: str) -> int:
    """Return ``value`` as an int after checking it is an integer (not a bool) ``>= minimum``."""
    if isinstance(value, (bool, numpy.bool_)) or not isinstance(value, (int, numpy.integer)):
        raise InvalidTypeError(
            f"'{name}' must be an int >= {minimum}; got {value!r} of type {type(value).__name__}. {advice}"
        )
    if value < minimum:
        raise InvalidValueError(f"'{name}' must be an int >= {minimum}; got {value}. {advice}")
    return int(value)


def _check_bins(bins: Any) -> int:
    return _check_int("bins", bins, _MIN_BINS, f"Use at least {_MIN_BINS} bins; 2048 is the default.")


def _check_percentile(percentile: Any) -> float:
    expected = "a number in (50, 100]"
    advice = "Use e.g. 99.99 to clip the 0.01% most extreme values at each end, or 100 to keep all."
    number = _check_real("percentile", percentile, expected, advice)
    if not 50 < number <= 100:
        raise InvalidValueError(f"'percentile' must be {expected}; got {percentile!r}. {advice}")
    return number


def _check_averaging_constant(constant: Any) -> float:
    expected = "a number in (0, 1]"
    advice = "Use e.g. 0.01 (torch's default); 1 keeps only the last batch's range."
    number = _check_real("averaging_constant", constant, expected, advice)
    if not 0 < number <= 1:
        raise InvalidValueError(f"'averaging_constant' must be {expected}; got {constant!r}. {advice}")
    return number


def _check_candidates(candidates: Any) -> int:
    return _check_int("candidates", candidates, 1, "Use e.g. 100 candidate ranges (the default).")


@dataclass(frozen=True)
class _Options:
    """The options a range depends on, checked."""

    n_bits: int
    is_signed: bool
    is_symmetric: bool
    is_narrow: bool


def _check_options(options: Any) -> _Options:
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
    return _Options(n_bits, is_signed, is_symmetric, is_narrow)


@dataclass(frozen=True, eq=False)
class _Batch:
    """A validated calibration batch (never written to) and its extremes, as float64."""

    values: numpy.ndarray
    minimum: numpy.float64
    maximum: numpy.float64


def _check_batch(values: Any) -> _Batch:
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
    return _Batch(array, minimum, maximum)


def _check_mergeable(this: Any, other: Any, config: dict[str, Any], other_config: dict[str, Any]) -> None:
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


def _no_values_error(owner: str) -> MissingParameterError:
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
class _Histogram:
    """``counts`` (int64) of equal bins over ``[low, high]``. Never changed: methods return new ones."""

    counts: numpy.ndarray
    low: float
    high: float

    @staticmethod
    def of(values: numpy.ndarray, low: float, high: float, bins: int) -> _Histogram:
        """The histogram of ``values`` (all within ``[low, high]``) on that grid."""
        counts = numpy.bincount(_bin_indices(values.ravel(), low, high, bins), minlength=bins)
        return _Histogram(counts.astype(numpy.int64), low, high)

    @property
    def bins(self) -> int:
        return int(self.counts.size)

    @property
    def width(self) -> float:
        return (self.high - self.low) / self.bins

    def centres(self) -> numpy.ndarray:
        return self.low + (numpy.arange(self.bins) + 0.5) * self.width

    def rebinned(self, low: float, high: float) -> _Histogram:
        """These counts on the grid ``[low, high]``: each bin's count goes to the bin holding its centre."""
        if (low, high) == (self.low, self.high):
            return self
        occupied = numpy.flatnonzero(self.counts)
        centres = self.low + (occupied + 0.5) * self.width
        counts = numpy.zeros(self.bins, dtype=numpy.int64)
        numpy.add.at(counts, _bin_indices(centres, low, high, self.bins), self.counts[occupied])
        return _Histogram(counts, low, high)

    def widened(self, need_low: float, need_high: float) -> _Histogram:
        """This histogram on a grid covering ``[need_low, need_high]``, which must hold every value
        counted so far (see the module docstring); itself when its grid already does."""
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

    def plus(self, other: _Histogram) -> _Histogram:
        """Both histograms' counts on this grid (``other`` rebinned by centres)."""
        moved = other.rebinned(self.low, self.high)
        return _Histogram(self.counts + moved.counts, self.low, self.high)

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

    def same_as(self, other: _Histogram) -> bool:
        return (
            self.low == other.low
            and self.high == other.high
            and bool(numpy.array_equal(self.counts, other.counts))
        )


@dataclass(frozen=True, eq=False)
class _Collected:
    """A histogram and the exact extremes of the values it was built from."""

    histogram: _Histogram
    minimum: numpy.float64
    maximum: numpy.float64


@dataclass(frozen=True, eq=False)
class _HistogramState:
    """What the histogram methods collect: a histogram and the exact extremes of the values
    (``collected``; None before any values).

    ``absolute`` histograms hold ``|x|`` on a grid starting at 0; the extremes are those of ``x``.
    Never changed: methods return new states, so a failed call leaves its owner as it was.
    """

    bins: int
    absolute: bool
    collected: Optional[_Collected] = None

    def is_empty(self) -> bool:
        return self.collected is None

    def empty(self) -> _HistogramState:
        return _HistogramState(self.bins, self.absolute)

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

    def _with(self, histogram: _Histogram, minimum: Any, maximum: Any) -> _HistogramState:
        """A state holding ``histogram`` and the extremes widened by ``minimum``, ``maximum``."""
        if self.collected is not None:
            minimum = min(self.collected.minimum, minimum)
            maximum = max(self.collected.maximum, maximum)
        collected = _Collected(histogram, numpy.float64(minimum), numpy.float64(maximum))
        return _HistogramState(self.bins, self.absolute, collected)

    def with_values(self, batch: _Batch) -> _HistogramState:
        """This state with a validated batch folded in."""
        minimum, maximum = batch.minimum, batch.maximum
        needed = self._needed(minimum, maximum)
        values = numpy.asarray(batch.values, dtype=numpy.float64)  # a copy unless float64 already
        points = numpy.abs(values) if self.absolute else values
        if self.collected is None:
            return self._with(_Histogram.of(points, *needed, self.bins), minimum, maximum)
        grown = self.collected.histogram.widened(*needed)
        added = _Histogram.of(points, grown.low, grown.high, self.bins)
        return self._with(_Histogram(grown.counts + added.counts, grown.low, grown.high), minimum, maximum)

    def merged(self, other: _HistogramState) -> _HistogramState:
        """This state with another's folded in: widen to cover the other's extremes, then add its
        bins by their centres. ``other`` is not changed."""
        theirs = other.collected
        if theirs is None:
            return self
        if self.collected is None:
            return other
        grown = self.collected.histogram.widened(*self._needed(theirs.minimum, theirs.maximum))
        return self._with(grown.plus(theirs.histogram), theirs.minimum, theirs.maximum)

    def require(self, owner: str) -> _Collected:
        if self.collected is None:
            raise _no_values_error(owner)
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

    def load(self, metadata: dict[str, Any], owner: str) -> _HistogramState:
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
        low, high, minimum, maximum = (_load_float(values[name], name, owner) for name in _STATE_KEYS[1:])
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
        collected = _Collected(_Histogram(counts, float(low), float(high)), minimum, maximum)
        return _HistogramState(self.bins, self.absolute, collected)

    def same_as(self, other: _HistogramState) -> bool:
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


def _load_float(value: Any, name: str, owner: str) -> numpy.float64:
    if isinstance(value, (bool, numpy.bool_)) or not isinstance(
        value, (int, float, numpy.integer, numpy.floating)
    ):
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


def _check_keys(metadata: Any, names: tuple[str, ...], owner: str) -> dict[str, Any]:
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


def _build(owner: str, factory: Any, metadata: dict[str, Any], names: tuple[str, ...]) -> Any:
    """``factory(**config)`` for the configuration ``names`` of ``metadata`` (keys checked)."""
    _check_keys(metadata, (*names, *_STATE_KEYS), owner)
    try:
        return factory(**{name: metadata[name] for name in names})
    except (InvalidTypeError, InvalidValueError) as error:
        raise SerializationError(f"{owner}.load_dict: invalid configuration: {error}") from error


def _as_range(low: Any, high: Any) -> Range:
    return numpy.float64(low), numpy.float64(high)


def _batch_range(values: Any) -> Range:
    """``(min, max)`` of a validated calibration batch, as float64."""
    batch = _check_batch(values)
    return batch.minimum, batch.maximum


# -- percentile


class _HistogramCalibration(Calibrator):
    """What the histogram methods share: collecting batches (:meth:`update`, :meth:`merge`),
    equality and serialization of the collected state. A subclass holds its configuration
    (``_config``) and reads a clipping range from the histogram (``range_for``), which it may
    cache in ``_ranges`` per options; every change of the state clears that cache."""

    _state: _HistogramState
    _ranges: dict[Any, Range]

    def _config(self) -> dict[str, Any]:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def range_for(self, options: Any) -> Range:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def _set_state(self, state: _HistogramState) -> None:
        self._state, self._ranges = state, {}

    def compute_quantization_stats(self, values: Any) -> None:
        """Forget what was collected, then :meth:`update` with ``values``."""
        self._set_state(self._state.empty().with_values(_check_batch(values)))

    def update(self, values: Any) -> None:
        """Fold a batch in (non-empty, finite, real values; not changed)."""
        self._set_state(self._state.with_values(_check_batch(values)))

    def merge(self, other: Any) -> None:
        """Fold in what ``other`` (same class and configuration) collected; ``other`` is unchanged."""
        _check_mergeable(self, other, self._config(), other._config())
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


class PercentileStats(
    _HistogramCalibration,
    versioned_tag="intquant.PercentileStats",
    format_version=1,
    legacy_tags=("PercentileStats",),
):
    """Clipping range from percentiles of a histogram of the values.

    ``range = (v((100 - p) / 100), v(p / 100))`` with ``p = percentile``, where ``v(q)`` is read
    from the histogram's cumulative counts with linear interpolation inside a bin: with bin
    edges ``e_k = low + k * w``, counts ``c_k`` and ``C_k = c_0 + ... + c_{k-1}`` (``N`` values
    in all), ``v(q) = e_k + (q * N - C_k) / c_k * w`` for the first bin ``k`` with
    ``C_{k+1} >= q * N``, clamped to the observed ``[min, max]``. ``percentile=100`` gives the
    observed ``(min, max)``. Everything is float64. The range does not depend on the options.
    See the module docstring for how batches widen the histogram.

    Parameters
    ----------
    percentile : float
        In (50, 100]; the share of values kept below the upper end (and above the lower end).
    bins : int
        Number of histogram bins, at least 16.

    Raises
    ------
    TypeError, ValueError
        For a percentile that is not a number in (50, 100] or bins that are not an int >= 16.

    Examples
    --------
    >>> import numpy
    >>> stats = PercentileStats(percentile=90, bins=16)
    >>> stats.update(numpy.arange(17.0))  # one value per bin of width 1, 16.0 in the last bin
    >>> low, high = stats.range_for(QuantizationOptions(8))
    >>> round(float(low), 6), round(float(high), 6)  # 0.1*17 = 1.7 -> 1 + 0.7/1; 15.3 -> 15 + 0.3/2
    (1.7, 15.15)
    """

    def __init__(self, percentile: float = 99.99, bins: int = 2048) -> None:
        self._percentile = _check_percentile(percentile)
        self._bins = _check_bins(bins)
        self._set_state(_HistogramState(self._bins, absolute=False))

    @property
    def percentile(self) -> float:
        return self._percentile

    @property
    def bins(self) -> int:
        return self._bins

    def _config(self) -> dict[str, Any]:
        return {"percentile": self._percentile, "bins": self._bins}

    def range_for(self, options: Any) -> Range:
        """The clipping range ``(rmin, rmax)`` (the same for all options, which are checked).

        Raises
        ------
        MissingParameterError
            If no values were collected yet.
        """
        _check_options(options)
        collected = self._state.require(type(self).__name__)
        minimum, maximum = float(collected.minimum), float(collected.maximum)
        lower = collected.histogram.quantile((100 - self._percentile) / 100)
        upper = collected.histogram.quantile(self._percentile / 100)
        return _as_range(min(max(lower, minimum), maximum), min(max(upper, minimum), maximum))

    def __repr__(self) -> str:
        return (
            f"PercentileStats(percentile={self._percentile!r}, bins={self._bins!r}; {self._state.describe()})"
        )

    @staticmethod
    def load_dict(metadata: dict[str, Any], format_version: int = 1) -> PercentileStats:
        """Rebuild from :meth:`dump_dict` output.

        Raises
        ------
        SerializationError
            For missing or unknown keys, a bad configuration or an inconsistent state.
        """
        owner = "PercentileStats"
        stats = _build(owner, PercentileStats, metadata, ("percentile", "bins"))
        stats._set_state(stats._state.load(metadata, owner))
        return stats


# -- moving average


class MovingAverageMinMaxStats(
    Calibrator,
    versioned_tag="intquant.MovingAverageMinMaxStats",
    format_version=1,
    legacy_tags=("MovingAverageMinMaxStats",),
):
    """Clipping range from an exponential moving average of the batches' minima and maxima.

    The first batch sets ``(rmin, rmax) = (min(x), max(x))``; every later batch applies, with
    ``c = averaging_constant``, ``rmin += c * (min(x) - rmin)`` and ``rmax += c * (max(x) -
    rmax)`` in float64 (as ``torch.ao.quantization.MovingAverageMinMaxObserver``). No histogram
    is kept; the exact observed minimum and maximum are kept too (``dump_dict``). The range
    does not depend on the options. :meth:`merge` applies the other object's averaged range as
    one batch (or copies it when this object is empty), so ``a.merge(b)`` equals ``a.update(x)``
    for a batch ``x`` whose extremes are ``b``'s range.

    Parameters
    ----------
    averaging_constant : float
        In (0, 1]; the weight of each new batch.

    Raises
    ------
    TypeError, ValueError
        For an averaging constant that is not a number in (0, 1].

    Examples
    --------
    >>> import numpy
    >>> stats = MovingAverageMinMaxStats(averaging_constant=0.5)
    >>> stats.update(numpy.array([0.0, 4.0]))
    >>> stats.update(numpy.array([-2.0, 8.0]))  # 0 + 0.5 * (-2 - 0), 4 + 0.5 * (8 - 4)
    >>> float(stats.rmin), float(stats.rmax)
    (-1.0, 6.0)
    """

    def __init__(self, averaging_constant: float = 0.01) -> None:
        self._constant = _check_averaging_constant(averaging_constant)
        self._average: Optional[Range] = None
        self._observed: Optional[Range] = None

    @property
    def averaging_constant(self) -> float:
        return self._constant

    def _config(self) -> dict[str, Any]:
        return {"averaging_constant": self._constant}

    def _fold(self, low: numpy.float64, high: numpy.float64, observed: Range) -> None:
        if self._average is None or self._observed is None:
            self._average, self._observed = (low, high), observed
            return
        average_low, average_high = self._average
        self._average = (
            numpy.float64(average_low + self._constant * (low - average_low)),
            numpy.float64(average_high + self._constant * (high - average_high)),
        )
        self._observed = (min(self._observed[0], observed[0]), max(self._observed[1], observed[1]))

    def compute_quantization_stats(self, values: Any) -> None:
        """Forget what was collected, then :meth:`update` with ``values``."""
        low, high = _batch_range(values)
        self._average = self._observed = None
        self._fold(low, high, (low, high))

    def update(self, values: Any) -> None:
        """Fold a batch in (non-empty, finite, real values; not changed)."""
        low, high = _batch_range(values)
        self._fold(low, high, (low, high))

    def merge(self, other: MovingAverageMinMaxStats) -> None:
        """Apply ``other``'s averaged range as one batch; ``other`` is unchanged."""
        _check_mergeable(self, other, self._config(), other._config())
        if other._average is not None and other._observed is not None:
            self._fold(*other._average, other._observed)

    def is_empty(self) -> bool:
        """Whether no values were collected yet."""
        return self._average is None

    def range_for(self, options: Any) -> Range:
        """The averaged ``(rmin, rmax)`` (the same for all options, which are checked).

        Raises
        ------
        MissingParameterError
            If no values were collected yet.
        """
        _check_options(options)
        if self._average is None:
            raise _no_values_error(type(self).__name__)
        return self._average

    @property
    def rmin(self) -> Optional[numpy.float64]:
        """The averaged minimum, or None before any values."""
        return None if self._average is None else self._average[0]

    @property
    def rmax(self) -> Optional[numpy.float64]:
        """The averaged maximum, or None before any values."""
        return None if self._average is None else self._average[1]

    @property
    def uvalues(self) -> None:
        """Always None: no distinct values are kept."""
        return None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MovingAverageMinMaxStats):
            return NotImplemented
        return (
            self._config() == other._config()
            and self._average == other._average
            and self._observed == other._observed
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return f"MovingAverageMinMaxStats(averaging_constant={self._constant!r}; {self._describe()})"

    def _describe(self) -> str:
        if self._average is None or self._observed is None:
            return "no values"
        average = ", ".join(repr(float(end)) for end in self._average)
        observed = ", ".join(repr(float(end)) for end in self._observed)
        return f"average range ({average}), values in [{observed}]"

    def dump_dict(self) -> dict[str, Any]:
        """``averaging_constant``, then ``average_min``, ``average_max``, ``minimum``,
        ``maximum`` (numpy.float64; all None before any values)."""
        average = self._average or (None, None)
        observed = self._observed or (None, None)
        return {
            **self._config(),
            "average_min": average[0],
            "average_max": average[1],
            "minimum": observed[0],
            "maximum": observed[1],
        }

    @staticmethod
    def load_dict(metadata: dict[str, Any], format_version: int = 1) -> MovingAverageMinMaxStats:
        """Rebuild from :meth:`dump_dict` output.

        Raises
        ------
        SerializationError
            For missing or unknown keys, a bad configuration or an inconsistent state.
        """
        owner = "MovingAverageMinMaxStats"
        state_keys = ("average_min", "average_max", "minimum", "maximum")
        _check_keys(metadata, ("averaging_constant", *state_keys), owner)
        try:
            stats = MovingAverageMinMaxStats(metadata["averaging_constant"])
        except (InvalidTypeError, InvalidValueError) as error:
            raise SerializationError(f"{owner}.load_dict: invalid configuration: {error}") from error
        values = [metadata[name] for name in state_keys]
        if all(value is None for value in values):
            return stats
        if any(value is None for value in values):
            raise SerializationError(
                f"{owner}.load_dict needs either all of {', '.join(state_keys)} set or all None "
                f"(no values yet); got {dict(zip(state_keys, values, strict=True))!r}."
            )
        average_min, average_max, minimum, maximum = (
            _load_float(value, name, owner) for name, value in zip(state_keys, values, strict=True)
        )
        if not minimum <= average_min <= average_max <= maximum:
            raise SerializationError(
                f"{owner}.load_dict needs minimum <= average_min <= average_max <= maximum; got "
                f"{float(minimum)!r}, {float(average_min)!r}, {float(average_max)!r}, {float(maximum)!r}."
            )
        stats._average, stats._observed = (average_min, average_max), (minimum, maximum)
        return stats


# -- minimum squared error


def _candidate_ranges(minimum: float, maximum: float, candidates: int) -> list[tuple[float, float]]:
    """The candidate ranges of :class:`MSEStats`, widest (``k = K``, the observed range) first."""
    ranges = []
    for k in range(candidates, 0, -1):
        if minimum < 0 < maximum:
            reach = max(-minimum, maximum) * (k / candidates)
            ranges.append((max(minimum, -reach), min(maximum, reach)))
        else:
            shrink = (candidates - k) / candidates
            if minimum >= 0:
                ranges.append((minimum, maximum - shrink * (maximum - minimum)))
            else:
                ranges.append((minimum + shrink * (maximum - minimum), maximum))
    return ranges


def _mse_range(collected: _Collected, options: _Options, candidates: int) -> Range:
    histogram = collected.histogram
    occupied = numpy.flatnonzero(histogram.counts)
    centres = histogram.centres()[occupied]
    weights = histogram.counts[occupied].astype(numpy.float64)
    ranges = _candidate_ranges(float(collected.minimum), float(collected.maximum), candidates)
    best_range, best_error = ranges[0], math.inf
    for low, high in ranges:
        scale, zero_point, offset = choose_uniform_parameters(
            numpy.float64(low),
            numpy.float64(high),
            options.n_bits,
            is_signed=options.is_signed,
            is_symmetric=options.is_symmetric,
            is_qat=False,
            is_precomputed_qat=False,
            uvalues=None,
            scale=None,
        )
        codes = quantize(
            centres, scale, zero_point, integer_bounds(options.n_bits, offset, options.is_narrow)
        )
        with numpy.errstate(over="ignore"):  # an infinite error (near the float64 limit) never wins
            error = float(numpy.dot(weights, (dequantize(codes, scale, zero_point) - centres) ** 2))
        if error < best_error:
            best_range, best_error = (low, high), error
    return _as_range(*best_range)


class MSEStats(
    _HistogramCalibration, versioned_tag="intquant.MSEStats", format_version=1, legacy_tags=("MSEStats",)
):
    """Clipping range that minimises the quantization error for the options in use.

    Let ``m, M`` be the observed minimum and maximum and ``K = candidates``. For ``k = K..1``
    the candidate range is, for data of both signs (``m < 0 < M``), the observed range clipped
    to the magnitude ``r_k = max(-m, M) * (k/K)``: ``(max(m, -r_k), min(M, r_k))`` -- so outliers on
    either side are clipped while a short side stays whole; for data of one sign only the end far
    from 0 moves, toward the near end: ``(m, M - s (M - m))`` when ``m >= 0`` and ``(m + s (M -
    m), M)`` when ``M <= 0``, with ``s = (K - k)/K``. ``k = K`` is exactly ``(m, M)``.

    For each candidate, ``scale, zero_point, offset`` come from
    ``intquant.kernels.choose_uniform_parameters`` for the options (``n_bits``, ``is_signed``,
    ``is_symmetric``; not QAT, no ``uvalues``, no preset scale), the centres ``c_j`` of the
    occupied histogram bins are quantized (``intquant.kernels.quantize``, clipped to
    ``integer_bounds(n_bits, offset, is_narrow)``, ``is_narrow`` False when the options lack it)
    and dequantized (``intquant.kernels.dequantize``), and the error is ``sum_j n_j (deq(c_j) -
    c_j)**2`` with ``n_j`` the bin counts (float64; the mean squared error times ``N``). The
    candidate with the smallest error wins; ties go to the widest. Results are cached per
    options until the next update.

    Parameters
    ----------
    bins : int
        Number of histogram bins, at least 16.
    candidates : int
        Number of candidate ranges ``K``, at least 1 (1 gives the observed range).

    Raises
    ------
    TypeError, ValueError
        For bins that are not an int >= 16 or candidates that are not an int >= 1.

    Examples
    --------
    >>> import numpy
    >>> values = numpy.append(numpy.linspace(-1, 1, 100_001), 100.0)  # one outlier
    >>> stats = MSEStats()
    >>> stats.update(values)
    >>> low, high = stats.range_for(QuantizationOptions(4, is_signed=True, is_symmetric=True))
    >>> round(float(low), 2), round(float(high), 2)  # the outlier is clipped
    (-1.0, 1.0)
    >>> low, high = stats.range_for(QuantizationOptions(4))  # other options, another range
    >>> round(float(low), 2), round(float(high), 2)
    (-1.0, 2.0)
    >>> one = MSEStats(candidates=1)  # a single candidate: the observed range
    >>> one.update(values)
    >>> [float(end) for end in one.range_for(QuantizationOptions(4))]
    [-1.0, 100.0]
    """

    def __init__(self, bins: int = 2048, candidates: int = 100) -> None:
        self._bins = _check_bins(bins)
        self._candidates = _check_candidates(candidates)
        self._set_state(_HistogramState(self._bins, absolute=False))

    @property
    def bins(self) -> int:
        return self._bins

    @property
    def candidates(self) -> int:
        return self._candidates

    def _config(self) -> dict[str, Any]:
        return {"bins": self._bins, "candidates": self._candidates}

    def range_for(self, options: Any) -> Range:
        """The candidate range with the smallest quantization error for ``options``.

        Raises
        ------
        MissingParameterError
            If no values were collected yet.
        InvalidValueError
            If the options cannot quantize (1-bit symmetric quantization has no positive level).
        """
        checked = _check_options(options)
        collected = self._state.require(type(self).__name__)
        if checked not in self._ranges:
            self._ranges[checked] = _mse_range(collected, checked, self._candidates)
        return self._ranges[checked]

    def __repr__(self) -> str:
        return f"MSEStats(bins={self._bins!r}, candidates={self._candidates!r}; {self._state.describe()})"

    @staticmethod
    def load_dict(metadata: dict[str, Any], format_version: int = 1) -> MSEStats:
        """Rebuild from :meth:`dump_dict` output.

        Raises
        ------
        SerializationError
            For missing or unknown keys, a bad configuration or an inconsistent state.
        """
        owner = "MSEStats"
        stats = _build(owner, MSEStats, metadata, ("bins", "candidates"))
        stats._set_state(stats._state.load(metadata, owner))
        return stats


# -- entropy (KL divergence)


def _smoothed(counts: numpy.ndarray) -> Optional[numpy.ndarray]:
    """Counts with ``eps = 1e-4`` added to zero bins and ``eps * zeros / non-zeros`` taken from
    the others; None when nothing is left strictly positive."""
    zero = counts == 0
    zeros = int(zero.sum())
    nonzeros = counts.size - zeros
    if nonzeros == 0:
        return None
    smoothed = counts + numpy.where(zero, _SMOOTHING, -_SMOOTHING * zeros / nonzeros)
    return None if (smoothed <= 0).any() else smoothed


def _divergence(reference: numpy.ndarray, candidate: numpy.ndarray) -> float:
    """``KL(P || Q) = sum p log(p / q)`` of the smoothed, normalised counts (+inf if impossible)."""
    p, q = _smoothed(reference), _smoothed(candidate)
    if p is None or q is None:
        return math.inf
    p, q = p / p.sum(), q / q.sum()
    return float(numpy.sum(p * numpy.log(p / q)))


def _entropy_bins(counts: numpy.ndarray, levels: int) -> int:
    """The number of bins ``i`` (``levels..bins``) kept by the KL-divergence search."""
    bins = counts.size
    if levels >= bins:
        return bins
    tail = numpy.append(numpy.cumsum(counts[::-1])[::-1], 0)  # tail[i] = sum(counts[i:])
    level_index = numpy.arange(levels)
    best_kept, best_divergence = bins, math.inf
    for kept in range(levels, bins + 1):
        clipped = counts[:kept]
        reference = clipped.astype(numpy.float64)
        reference[-1] += tail[kept]
        nonzero = reference != 0
        starts = level_index * kept // levels
        merged = numpy.add.reduceat(clipped, starts).astype(numpy.float64)
        occupied = numpy.add.reduceat(nonzero.astype(numpy.int64), starts)
        sizes = numpy.diff(numpy.append(starts, kept))
        per_bin = numpy.divide(merged, occupied, out=numpy.zeros(levels), where=occupied > 0)
        candidate = numpy.repeat(per_bin, sizes) * nonzero
        divergence = _divergence(reference, candidate)
        if divergence < best_divergence:
            best_kept, best_divergence = kept, divergence
    return best_kept


class EntropyStats(
    _HistogramCalibration,
    versioned_tag="intquant.EntropyStats",
    format_version=1,
    legacy_tags=("EntropyStats",),
):
    """Clipping range ``(-t, t)`` whose threshold ``t`` minimises the KL divergence, as TensorRT's
    entropy calibration (and ONNX Runtime's, MXNet's) define it.

    A histogram of ``|x|`` over ``[0, high]`` with ``B = bins`` bins of width ``w`` is kept. With
    ``m = num_quantized_bins = 2**(n_bits - 1)`` (128 at 8 bits, as TensorRT: the levels on one
    side of a signed grid), for each candidate ``i = m..B``:

    * ``P = counts[:i]`` with the outliers ``sum(counts[i:])`` added to its last bin;
    * ``Q``: the *clipped* counts ``counts[:i]`` (without the outliers) merged into ``m`` groups
      of consecutive bins -- group ``j`` is bins ``floor(j i / m)`` to ``floor((j+1) i / m) -
      1`` -- and each group's sum spread evenly over the bins of the group where ``P`` is
      non-zero (0 elsewhere);
    * both smoothed (on counts, ``eps = 1e-4``: zero bins get ``eps``, non-zero bins lose
      ``eps * zeros / non-zeros``), normalised to sum 1, and ``D_i = KL(P || Q) = sum p ln(p /
      q)`` (``+inf`` when a smoothed ``P`` or ``Q`` is not strictly positive, e.g. all zero).

    The threshold is the upper edge of the last kept bin, ``t = i* w`` for the first ``i*``
    with the smallest ``D_i``, capped at the observed ``max|x|``; with ``m >= B`` there is no
    search and ``t = max|x|``. The range is ``(-t, t)``, or ``(0, t)`` when the observed
    minimum is ``>= 0``, or ``(-t, 0)`` when the observed maximum is ``<= 0``. It depends on the
    options through ``n_bits`` only; results are cached per ``n_bits`` until the next update.

    Differences from the sources, on purpose: ``Q`` is merged from the clipped counts as in
    TensorRT's pseudocode (were the outliers folded into ``Q`` too, ``Q`` would equal ``P`` at
    ``i = m`` and the search would always stop there); groups differ in size by at most one bin
    (ONNX Runtime and MXNet give all remaining bins to the last group, and spread it over only
    the first ``i // m`` of them); ``Q`` stays float64 (ONNX Runtime truncates it to integers);
    ``t`` is the bin's upper edge, as ONNX Runtime (TensorRT's slides say ``(i + 0.5) w``).

    Parameters
    ----------
    bins : int
        Number of histogram bins, at least 16.

    Raises
    ------
    TypeError, ValueError
        For bins that are not an int >= 16.

    Examples
    --------
    >>> import numpy
    >>> values = numpy.random.default_rng(0).normal(size=10_000)
    >>> stats = EntropyStats()
    >>> stats.update(numpy.append(values, [-40.0, 40.0]))  # two far outliers
    >>> low, high = stats.range_for(QuantizationOptions(8, is_signed=True))
    >>> bool(float(low) == -float(high)), 2 < float(high) < 10
    (True, True)
    """

    def __init__(self, bins: int = 2048) -> None:
        self._bins = _check_bins(bins)
        self._set_state(_HistogramState(self._bins, absolute=True))

    @property
    def bins(self) -> int:
        return self._bins

    def _config(self) -> dict[str, Any]:
        return {"bins": self._bins}

    @staticmethod
    def num_quantized_bins(n_bits: int) -> int:
        """``2**(n_bits - 1)``: the number of levels ``Q`` is merged into."""
        return int(2 ** (check_n_bits(n_bits) - 1))

    def range_for(self, options: Any) -> Range:
        """The range ``(-t, t)`` (or one-sided) of the KL-divergence threshold for ``options.n_bits``.

        Raises
        ------
        MissingParameterError
            If no values were collected yet.
        """
        n_bits = _check_options(options).n_bits
        collected = self._state.require(type(self).__name__)
        if n_bits not in self._ranges:
            minimum, maximum = float(collected.minimum), float(collected.maximum)
            kept = _entropy_bins(collected.histogram.counts, self.num_quantized_bins(n_bits))
            threshold = min(kept * collected.histogram.width, max(-minimum, maximum))
            low = 0.0 if minimum >= 0 else -threshold
            high = 0.0 if maximum <= 0 and minimum < 0 else threshold
            self._ranges[n_bits] = _as_range(low, high)
        return self._ranges[n_bits]

    def __repr__(self) -> str:
        return f"EntropyStats(bins={self._bins!r}; {self._state.describe()})"

    @staticmethod
    def load_dict(metadata: dict[str, Any], format_version: int = 1) -> EntropyStats:
        """Rebuild from :meth:`dump_dict` output.

        Raises
        ------
        SerializationError
            For missing or unknown keys, a bad configuration or an inconsistent state.
        """
        owner = "EntropyStats"
        stats = _build(owner, EntropyStats, metadata, ("bins",))
        stats._set_state(stats._state.load(metadata, owner))
        return stats

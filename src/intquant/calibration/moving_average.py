"""Moving-average calibration: an exponential moving average of the batches' extremes."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Optional

import numpy

from intquant._core.calibrator import Calibrator, Range
from intquant._core.checks import check_real
from intquant._core.granularity import Granularity
from intquant.calibration._blocks import (
    Rows,
    asked_granularity,
    block_range,
    check_options_granularity,
    describe,
    granularity_keywords,
    rows_of,
)
from intquant.calibration._histogram import (
    check_keys,
    check_loaded_grid,
    check_mergeable,
    check_range_options,
    check_same_blocks,
    load_float,
    load_granularity,
    no_values_error,
)
from intquant.errors import InvalidTypeError, InvalidValueError, SerializationError

__all__ = ["MovingAverageMinMaxStats"]


def _check_averaging_constant(constant: Any) -> float:
    expected = "a number in (0, 1]"
    advice = "Use e.g. 0.01 (torch's default); 1 keeps only the last batch's range."
    number = check_real("averaging_constant", constant, expected, advice)
    if not 0 < number <= 1:
        raise InvalidValueError(f"'averaging_constant' must be {expected}; got {constant!r}. {advice}")
    return number


@dataclass(frozen=True, eq=False)
class _Averages:
    """Each block's averaged range and exact observed extremes (float64 arrays of shape ``(G,)``)
    over a block grid (``()`` per tensor)."""

    grid: tuple[int, ...]
    average_min: numpy.ndarray
    average_max: numpy.ndarray
    minimum: numpy.ndarray
    maximum: numpy.ndarray

    def folded(
        self, low: numpy.ndarray, high: numpy.ndarray, minimum: Any, maximum: Any, constant: float
    ) -> _Averages:
        return _Averages(
            self.grid,
            _moved(self.average_min, low, constant),
            _moved(self.average_max, high, constant),
            numpy.minimum(self.minimum, minimum),
            numpy.maximum(self.maximum, maximum),
        )

    def same_as(self, other: _Averages) -> bool:
        return self.grid == other.grid and all(
            numpy.array_equal(getattr(self, name), getattr(other, name))
            for name in ("average_min", "average_max", "minimum", "maximum")
        )


class MovingAverageMinMaxStats(
    Calibrator,
    versioned_tag="intquant.MovingAverageMinMaxStats",
    format_version=2,
    legacy_tags=("MovingAverageMinMaxStats",),
):
    """Clipping range from an exponential moving average of the batches' minima and maxima.

    The first batch sets ``(rmin, rmax) = (min(x), max(x))``; every later batch applies, with
    ``c = averaging_constant``, ``rmin += c * (min(x) - rmin)`` and ``rmax += c * (max(x) -
    rmax)`` in float64 (as ``torch.ao.quantization.MovingAverageMinMaxObserver``; per axis, as
    its ``MovingAveragePerChannelMinMaxObserver``). No histogram is kept; the exact observed
    minimum and maximum are kept too (``dump_dict``). The range does not depend on the options.
    :meth:`merge` applies the other object's averaged range as one batch (or copies it when this
    object is empty), so ``a.merge(b)`` equals ``a.update(x)`` for a batch ``x`` whose extremes
    are ``b``'s range. Per axis or block, every block's range moves on its own (all at once).

    Parameters
    ----------
    averaging_constant : float
        In (0, 1]; the weight of each new batch.
    axis, block_size : optional
        Calibrate per axis or per block (see :mod:`intquant.calibration`); by default the first
        batch's keywords decide, per tensor without them.

    Raises
    ------
    TypeError, ValueError
        For an averaging constant that is not a number in (0, 1], or an invalid granularity.

    Examples
    --------
    >>> import numpy
    >>> stats = MovingAverageMinMaxStats(averaging_constant=0.5)
    >>> stats.update(numpy.array([0.0, 4.0]))
    >>> stats.update(numpy.array([-2.0, 8.0]))  # 0 + 0.5 * (-2 - 0), 4 + 0.5 * (8 - 4)
    >>> float(stats.rmin), float(stats.rmax)
    (-1.0, 6.0)
    >>> rows = MovingAverageMinMaxStats(averaging_constant=0.5, axis=0)
    >>> rows.update(numpy.array([[0.0, 4.0], [1.0, 2.0]]))
    >>> rows.update(numpy.array([[-2.0, 8.0], [1.0, 4.0]]))
    >>> rows.rmin.tolist(), rows.rmax.tolist()
    ([[-1.0], [1.0]], [[6.0], [3.0]])
    """

    def __init__(
        self,
        averaging_constant: float = 0.01,
        *,
        axis: int | None = None,
        block_size: tuple[int, ...] | None = None,
    ) -> None:
        self._constant = _check_averaging_constant(averaging_constant)
        self._granularity: Optional[Granularity] = asked_granularity(axis, block_size)
        self._averages: Optional[_Averages] = None

    @property
    def averaging_constant(self) -> float:
        return self._constant

    @property
    def axis(self) -> int | None:
        """The axis of a per-axis calibrator (given, or taken from its first batch), else None."""
        return granularity_keywords(self._granularity)["axis"]

    @property
    def block_size(self) -> tuple[int, ...] | None:
        """The block size of a per-block calibrator (given, or taken from its first batch), else None."""
        return granularity_keywords(self._granularity)["block_size"]

    def _config(self) -> dict[str, Any]:
        return {"averaging_constant": self._constant}

    def _rows(self, values: Any, axis: Any, block_size: Any, averages: Optional[_Averages]) -> Rows:
        grid = None if averages is None else averages.grid
        owner = type(self).__name__
        return rows_of(values, self._granularity, grid, asked_granularity(axis, block_size), owner)

    def _fold(self, rows: Rows, low: numpy.ndarray, high: numpy.ndarray, start: bool) -> None:
        """Fold a batch's block ranges ``low``/``high`` in (``start``: forget the averages first)."""
        averages = None if start else self._averages
        if averages is None:  # the first batch sets the granularity (its axis from the front)
            self._granularity = rows.granularity
        if averages is None:
            self._averages = _Averages(rows.grid, low, high, rows.minimum, rows.maximum)
        else:
            self._averages = averages.folded(low, high, rows.minimum, rows.maximum, self._constant)

    def compute_quantization_stats(
        self, values: Any, *, axis: int | None = None, block_size: tuple[int, ...] | None = None
    ) -> None:
        """Forget what was collected (not the granularity), then :meth:`update` with ``values``."""
        with _UPDATES:
            rows = self._rows(values, axis, block_size, None)
            self._fold(rows, rows.minimum, rows.maximum, start=True)

    def update(
        self, values: Any, *, axis: int | None = None, block_size: tuple[int, ...] | None = None
    ) -> None:
        """Fold a batch in (non-empty, finite, real values; not changed); ``axis``/``block_size``
        as for the histogram methods (see :mod:`intquant.calibration`)."""
        with _UPDATES:
            rows = self._rows(values, axis, block_size, self._averages)
            self._fold(rows, rows.minimum, rows.maximum, start=False)

    def merge(self, other: MovingAverageMinMaxStats) -> None:
        """Apply ``other``'s averaged range as one batch; ``other`` is unchanged."""
        check_mergeable(self, other, self._config(), other._config())
        with _UPDATES:
            theirs = other._averages
            mine = self._averages
            check_same_blocks(
                type(self).__name__,
                (self._granularity, None if mine is None else mine.grid),
                (other._granularity, None if theirs is None else theirs.grid),
            )
            if theirs is None:
                return
            if mine is None:
                self._granularity, self._averages = other._granularity, theirs
                return
            self._averages = mine.folded(
                theirs.average_min, theirs.average_max, theirs.minimum, theirs.maximum, self._constant
            )

    def is_empty(self) -> bool:
        """Whether no values were collected yet."""
        return self._averages is None

    def range_for(self, options: Any) -> Range:
        """The averaged ``(rmin, rmax)`` (the same for all options, which are checked; float64
        arrays of the block grid's shape per axis or block).

        Raises
        ------
        MissingParameterError
            If no values were collected yet.
        InvalidOptionsError
            If the options' ``axis``/``block_size`` do not match the calibrator's granularity.
        """
        check_range_options(options)
        averages = self._averages
        if averages is None:
            raise no_values_error(type(self).__name__)
        check_options_granularity(self._granularity, averages.grid, options, type(self).__name__)
        return block_range(averages.grid, averages.average_min, averages.average_max)

    @property
    def rmin(self) -> Any:
        """The averaged minimum (per block: an array of the grid's shape), or None before any values."""
        averages = self._averages
        return (
            None
            if averages is None
            else block_range(averages.grid, averages.average_min, averages.average_max)[0]
        )

    @property
    def rmax(self) -> Any:
        """The averaged maximum (per block: an array of the grid's shape), or None before any values."""
        averages = self._averages
        return (
            None
            if averages is None
            else block_range(averages.grid, averages.average_min, averages.average_max)[1]
        )

    @property
    def uvalues(self) -> None:
        """Always None: no distinct values are kept."""
        return None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MovingAverageMinMaxStats):
            return NotImplemented
        mine, theirs = self._averages, other._averages
        same_state = (mine is None and theirs is None) or (
            mine is not None and theirs is not None and mine.same_as(theirs)
        )
        return self._config() == other._config() and self._granularity == other._granularity and same_state

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        config = {
            **self._config(),
            **{k: v for k, v in granularity_keywords(self._granularity).items() if v is not None},
        }
        shown = ", ".join(f"{name}={value!r}" for name, value in config.items())
        return f"MovingAverageMinMaxStats({shown}; {self._describe()})"

    def _describe(self) -> str:
        averages = self._averages
        if averages is None:
            return "no values"
        if averages.grid != ():
            return (
                f"{averages.minimum.size} blocks {describe(self._granularity)} of grid {averages.grid}, "
                f"values in [{float(averages.minimum.min())!r}, {float(averages.maximum.max())!r}]"
            )
        average = f"{float(averages.average_min[0])!r}, {float(averages.average_max[0])!r}"
        observed = f"{float(averages.minimum[0])!r}, {float(averages.maximum[0])!r}"
        return f"average range ({average}), values in [{observed}]"

    def dump_dict(self) -> dict[str, Any]:
        """``averaging_constant``, ``axis``, ``block_size`` (the granularity; None per tensor or
        when not set yet), then ``average_min``, ``average_max``, ``minimum``, ``maximum``
        (numpy.float64 per tensor, float64 arrays of the block grid's shape per axis or block;
        all None before any values)."""
        granularity = granularity_keywords(self._granularity)
        averages = self._averages
        if averages is None:
            return {**self._config(), **granularity, **dict.fromkeys(_STATE_KEYS)}
        values = (averages.average_min, averages.average_max, averages.minimum, averages.maximum)
        return {
            **self._config(),
            **granularity,
            **{name: _shaped(value, averages.grid) for name, value in zip(_STATE_KEYS, values, strict=True)},
        }

    @staticmethod
    def load_dict(metadata: dict[str, Any], format_version: int = 2) -> MovingAverageMinMaxStats:
        """Rebuild from :meth:`dump_dict` output (format versions 0 and 1: per tensor, without
        the ``axis``/``block_size`` keys).

        Raises
        ------
        SerializationError
            For missing or unknown keys, a bad configuration or an inconsistent state.
        """
        owner = "MovingAverageMinMaxStats"
        granular = format_version >= 2
        check_keys(
            metadata,
            ("averaging_constant", *(("axis", "block_size") if granular else ()), *_STATE_KEYS),
            owner,
        )
        try:
            stats = MovingAverageMinMaxStats(metadata["averaging_constant"])
        except (InvalidTypeError, InvalidValueError) as error:
            raise SerializationError(f"{owner}.load_dict: invalid configuration: {error}") from error
        stats._granularity = load_granularity(metadata, owner) if granular else None
        values = [metadata[name] for name in _STATE_KEYS]
        if all(value is None for value in values):
            return stats
        if any(value is None for value in values):
            raise SerializationError(
                f"{owner}.load_dict needs either all of {', '.join(_STATE_KEYS)} set or all None "
                f"(no values yet); got {dict(zip(_STATE_KEYS, values, strict=True))!r}."
            )
        grid = tuple(values[0].shape) if isinstance(values[0], numpy.ndarray) else ()
        stats._granularity = check_loaded_grid(stats._granularity, grid, owner)
        average_min, average_max, minimum, maximum = (
            _load_block_floats(value, name, owner, grid)
            for name, value in zip(_STATE_KEYS, values, strict=True)
        )
        ordered = (minimum <= average_min) & (average_min <= average_max) & (average_max <= maximum)
        if not ordered.all():
            first = int(numpy.argmin(ordered))
            raise SerializationError(
                f"{owner}.load_dict needs minimum <= average_min <= average_max <= maximum; got "
                f"{float(minimum[first])!r}, {float(average_min[first])!r}, "
                f"{float(average_max[first])!r}, {float(maximum[first])!r}."
            )
        stats._averages = _Averages(tuple(grid), average_min, average_max, minimum, maximum)
        return stats


_STATE_KEYS = ("average_min", "average_max", "minimum", "maximum")

#: Folding a batch in is atomic (threads may update one object together).
_UPDATES = threading.RLock()


def _shaped(values: numpy.ndarray, grid: tuple[int, ...]) -> Any:
    return numpy.float64(values[0]) if grid == () else values.reshape(grid).copy()


def _load_block_floats(value: Any, name: str, owner: str, grid: tuple[int, ...]) -> numpy.ndarray:
    if grid == ():
        return numpy.array([load_float(value, name, owner)])
    if not isinstance(value, numpy.ndarray) or value.dtype.kind not in "iuf" or value.shape != grid:
        raise SerializationError(
            f"{owner}.load_dict: '{name}' must be a numpy array of numbers of the block grid's shape "
            f"{grid}; got {value!r}."
        )
    floats = value.astype(numpy.float64).reshape(-1)
    if not numpy.isfinite(floats).all():
        raise SerializationError(f"{owner}.load_dict: '{name}' must hold finite float64 values.")
    return floats


def _moved(average: numpy.ndarray, value: numpy.ndarray, constant: float) -> numpy.ndarray:
    """``average + constant * (value - average)`` (torch's update), in float64. Where the
    difference overflows (ranges near the float maximum), the same point is computed as
    ``(1 - constant) * average + constant * value``, which stays between the two."""
    with numpy.errstate(over="ignore", invalid="ignore"):
        moved = average + constant * (value - average)
        moved = numpy.where(numpy.isfinite(moved), moved, (1 - constant) * average + constant * value)
    return numpy.minimum(numpy.maximum(moved, numpy.minimum(average, value)), numpy.maximum(average, value))

"""Moving-average calibration: an exponential moving average of the batches' extremes."""

from __future__ import annotations

import threading
from typing import Any, Optional

import numpy

from intquant._core.calibrator import Calibrator, Range
from intquant._core.checks import check_real
from intquant.calibration._histogram import (
    check_batch,
    check_keys,
    check_mergeable,
    check_range_options,
    load_float,
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


def _batch_range(values: Any) -> Range:
    """``(min, max)`` of a validated calibration batch, as float64."""
    batch = check_batch(values)
    return batch.minimum, batch.maximum


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
        with _UPDATES:
            if self._average is None or self._observed is None:
                self._average, self._observed = (low, high), observed
                return
            average_low, average_high = self._average
            self._average = (
                _moved(average_low, low, self._constant),
                _moved(average_high, high, self._constant),
            )
            self._observed = (min(self._observed[0], observed[0]), max(self._observed[1], observed[1]))

    def compute_quantization_stats(self, values: Any) -> None:
        """Forget what was collected, then :meth:`update` with ``values``."""
        low, high = _batch_range(values)
        with _UPDATES:
            self._average = self._observed = None
            self._fold(low, high, (low, high))

    def update(self, values: Any) -> None:
        """Fold a batch in (non-empty, finite, real values; not changed)."""
        low, high = _batch_range(values)
        self._fold(low, high, (low, high))

    def merge(self, other: MovingAverageMinMaxStats) -> None:
        """Apply ``other``'s averaged range as one batch; ``other`` is unchanged."""
        check_mergeable(self, other, self._config(), other._config())
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
        check_range_options(options)
        if self._average is None:
            raise no_values_error(type(self).__name__)
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
        check_keys(metadata, ("averaging_constant", *state_keys), owner)
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
            load_float(value, name, owner) for name, value in zip(state_keys, values, strict=True)
        )
        if not minimum <= average_min <= average_max <= maximum:
            raise SerializationError(
                f"{owner}.load_dict needs minimum <= average_min <= average_max <= maximum; got "
                f"{float(minimum)!r}, {float(average_min)!r}, {float(average_max)!r}, {float(maximum)!r}."
            )
        stats._average, stats._observed = (average_min, average_max), (minimum, maximum)
        return stats


#: Folding a batch in is atomic (threads may update one object together).
_UPDATES = threading.RLock()


def _moved(average: Any, value: Any, constant: float) -> numpy.float64:
    """``average + constant * (value - average)`` (torch's update), in float64. Where the
    difference overflows (ranges near the float maximum), the same point is computed as
    ``(1 - constant) * average + constant * value``, which stays between the two."""
    with numpy.errstate(over="ignore", invalid="ignore"):
        moved = numpy.float64(average + constant * (value - average))
        if not numpy.isfinite(moved):
            moved = numpy.float64((1 - constant) * average + constant * value)
    low, high = min(average, value), max(average, value)
    return numpy.float64(min(max(moved, low), high))

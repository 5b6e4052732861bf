"""Percentile calibration: the clipping range from percentiles of a histogram of the values."""

from __future__ import annotations

from typing import Any

import numpy

from intquant._core.checks import check_real
from intquant.calibration._histogram import (
    Collected,
    HistogramCalibration,
    RangeOptions,
    check_bins,
    load_histogram_calibration,
)
from intquant.errors import InvalidValueError
from intquant.options import QuantizationOptions  # noqa: F401  # the examples use it

__all__ = ["PercentileStats"]


def _check_percentile(percentile: Any) -> float:
    expected = "a number in (50, 100]"
    advice = "Use e.g. 99.99 to clip the 0.01% most extreme values at each end, or 100 to keep all."
    number = check_real("percentile", percentile, expected, advice)
    if not 50 < number <= 100:
        raise InvalidValueError(f"'percentile' must be {expected}; got {percentile!r}. {advice}")
    return number


class PercentileStats(
    HistogramCalibration,
    versioned_tag="intquant.PercentileStats",
    format_version=2,
    legacy_tags=("PercentileStats",),
):
    """Clipping range from percentiles of a histogram of the values.

    ``range = (v((100 - p) / 100), v(p / 100))`` with ``p = percentile``, where ``v(q)`` is read
    from the histogram's cumulative counts with linear interpolation inside a bin: with bin
    edges ``e_k = low + k * w``, counts ``c_k`` and ``C_k = c_0 + ... + c_{k-1}`` (``N`` values
    in all), ``v(q) = e_k + (q * N - C_k) / c_k * w`` for the first bin ``k`` with
    ``C_{k+1} >= q * N``, clamped to the observed ``[min, max]``. ``percentile=100`` gives the
    observed ``(min, max)``. Everything is float64. The range does not depend on the options.
    See the package docstring for how batches widen the histogram. Per axis or block, each
    block has its own histogram and range (all computed at once).

    Parameters
    ----------
    percentile : float
        In (50, 100]; the share of values kept below the upper end (and above the lower end).
    bins : int
        Number of histogram bins, at least 16.
    axis, block_size : optional
        Calibrate per axis or per block (see :mod:`intquant.calibration`); by default the first
        batch's keywords decide, per tensor without them.

    Raises
    ------
    TypeError, ValueError
        For a percentile that is not a number in (50, 100], bins that are not an int >= 16, or
        an invalid granularity.

    Examples
    --------
    >>> import numpy
    >>> stats = PercentileStats(percentile=90, bins=16)
    >>> stats.update(numpy.arange(17.0))  # one value per bin of width 1, 16.0 in the last bin
    >>> low, high = stats.range_for(QuantizationOptions(8))
    >>> round(float(low), 6), round(float(high), 6)  # 0.1*17 = 1.7 -> 1 + 0.7/1; 15.3 -> 15 + 0.3/2
    (1.7, 15.15)
    """

    def __init__(
        self,
        percentile: float = 99.99,
        bins: int = 2048,
        *,
        axis: int | None = None,
        block_size: tuple[int, ...] | None = None,
    ) -> None:
        self._percentile = _check_percentile(percentile)
        self._bins = check_bins(bins)
        self._start(self._bins, False, axis, block_size)

    @property
    def percentile(self) -> float:
        return self._percentile

    @property
    def bins(self) -> int:
        return self._bins

    def _config(self) -> dict[str, Any]:
        return {"percentile": self._percentile, "bins": self._bins}

    def _block_ranges(
        self, collected: Collected, options: RangeOptions
    ) -> tuple[numpy.ndarray, numpy.ndarray]:
        """Each block's ``(v((100 - p) / 100), v(p / 100))``, clamped to its observed range."""
        minimum, maximum = collected.minimum, collected.maximum
        lower, upper = collected.histograms.quantiles((100 - self._percentile) / 100, self._percentile / 100)
        lower = numpy.minimum(numpy.maximum(lower, minimum), maximum)
        return lower, numpy.minimum(numpy.maximum(upper, minimum), maximum)

    @staticmethod
    def load_dict(metadata: dict[str, Any], format_version: int = 2) -> PercentileStats:
        """Rebuild from :meth:`dump_dict` output (format versions 0 and 1: per tensor, without
        the ``axis``/``block_size`` keys).

        Raises
        ------
        SerializationError
            For missing or unknown keys, a bad configuration or an inconsistent state.
        """
        owner = "PercentileStats"
        return load_histogram_calibration(
            owner, PercentileStats, metadata, ("percentile", "bins"), format_version
        )

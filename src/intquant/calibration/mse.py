"""Minimum-squared-error calibration: the shrunk range whose quantization error is smallest."""

from __future__ import annotations

import math
from typing import Any

import numpy

from intquant._core.calibrator import Range
from intquant._core.checks import check_int
from intquant._core.execute import dequantize, quantize
from intquant._core.formulas import choose_uniform_parameters, integer_bounds
from intquant.calibration._histogram import (
    Collected,
    HistogramCalibration,
    HistogramState,
    RangeOptions,
    as_range,
    check_bins,
    check_range_options,
    load_histogram_calibration,
)
from intquant.options import QuantizationOptions  # noqa: F401  # the examples use it

__all__ = ["MSEStats"]


def _check_candidates(candidates: Any) -> int:
    return check_int(
        "candidates", candidates, minimum=1, advice="Use e.g. 100 candidate ranges (the default)."
    )


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


def _mse_range(collected: Collected, options: RangeOptions, candidates: int) -> Range:
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
    return as_range(*best_range)


class MSEStats(
    HistogramCalibration, versioned_tag="intquant.MSEStats", format_version=1, legacy_tags=("MSEStats",)
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
        self._bins = check_bins(bins)
        self._candidates = _check_candidates(candidates)
        self._set_state(HistogramState(self._bins, absolute=False))

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
        checked = check_range_options(options)
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
        return load_histogram_calibration(owner, MSEStats, metadata, ("bins", "candidates"))

"""Minimum-squared-error calibration: the shrunk range whose quantization error is smallest."""

from __future__ import annotations

from typing import Any

import numpy

from intquant._core.checks import check_int
from intquant.calibration._histogram import (
    Collected,
    HistogramCalibration,
    RangeOptions,
    check_bins,
    load_histogram_calibration,
)
from intquant.calibration._search import Compacted, candidate_ranges, squared_errors
from intquant.options import QuantizationOptions  # noqa: F401  # the examples use it

__all__ = ["MSEStats"]


def _check_candidates(candidates: Any) -> int:
    return check_int(
        "candidates", candidates, minimum=1, advice="Use e.g. 100 candidate ranges (the default)."
    )


class MSEStats(
    HistogramCalibration, versioned_tag="intquant.MSEStats", format_version=2, legacy_tags=("MSEStats",)
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
    options until the next update. Per axis or block, each block has its own histogram and
    search, with its own extremes ``m, M``; all blocks and candidates are evaluated at once
    (each block's error summed over its bins in ascending order, so its range is the one it
    gets calibrated alone).

    Parameters
    ----------
    bins : int
        Number of histogram bins, at least 16.
    candidates : int
        Number of candidate ranges ``K``, at least 1 (1 gives the observed range).
    axis, block_size : optional
        Calibrate per axis or per block (see :mod:`intquant.calibration`); by default the first
        batch's keywords decide, per tensor without them.

    Raises
    ------
    TypeError, ValueError
        For bins that are not an int >= 16, candidates that are not an int >= 1, or an invalid
        granularity.

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
    >>> rows = MSEStats(axis=0)  # one range per row
    >>> rows.update(numpy.stack([values, values / 10]))
    >>> low, high = rows.range_for(QuantizationOptions(4, is_signed=True, is_symmetric=True, axis=0))
    >>> low.shape, numpy.round(high[:, 0], 2).tolist()
    ((2, 1), [1.0, 0.1])
    """

    def __init__(
        self,
        bins: int = 2048,
        candidates: int = 100,
        *,
        axis: int | None = None,
        block_size: tuple[int, ...] | None = None,
    ) -> None:
        self._bins = check_bins(bins)
        self._candidates = _check_candidates(candidates)
        self._start(self._bins, False, axis, block_size)

    @property
    def bins(self) -> int:
        return self._bins

    @property
    def candidates(self) -> int:
        return self._candidates

    def _config(self) -> dict[str, Any]:
        return {"bins": self._bins, "candidates": self._candidates}

    def _block_ranges(
        self, collected: Collected, options: RangeOptions
    ) -> tuple[numpy.ndarray, numpy.ndarray]:
        """Each block's candidate range with the smallest quantization error for ``options``
        (refused, as ``range_for``, for options that cannot quantize)."""
        lows, highs = candidate_ranges(collected.minimum, collected.maximum, self._candidates)
        best = numpy.argmin(
            squared_errors(Compacted.of(collected), lows, highs, options), axis=1
        )  # ties: the widest
        rows = numpy.arange(best.size)
        return lows[rows, best], highs[rows, best]

    @staticmethod
    def load_dict(metadata: dict[str, Any], format_version: int = 2) -> MSEStats:
        """Rebuild from :meth:`dump_dict` output (format versions 0 and 1: per tensor, without
        the ``axis``/``block_size`` keys).

        Raises
        ------
        SerializationError
            For missing or unknown keys, a bad configuration or an inconsistent state.
        """
        owner = "MSEStats"
        return load_histogram_calibration(owner, MSEStats, metadata, ("bins", "candidates"), format_version)

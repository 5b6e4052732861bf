"""Entropy calibration: the threshold whose quantized distribution is closest in KL divergence."""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy

from intquant._core.calibrator import Range
from intquant._core.checks import check_n_bits
from intquant.calibration._histogram import (
    HistogramCalibration,
    HistogramState,
    as_range,
    check_bins,
    check_range_options,
    load_histogram_calibration,
)
from intquant.options import QuantizationOptions  # noqa: F401  # the examples use it

__all__ = ["EntropyStats"]

#: Smoothing constant of the entropy method (ONNX Runtime's and MXNet's ``smooth_distribution``).
_SMOOTHING = 1e-4


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


#: The threshold search costs about ``bins**2`` operations per range: 8192 bins take seconds,
#: 65536 would take hours.
MAX_ENTROPY_BINS = 8192


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
    HistogramCalibration,
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
        self._bins = check_bins(bins, MAX_ENTROPY_BINS)
        self._set_state(HistogramState(self._bins, absolute=True))

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
        n_bits = check_range_options(options).n_bits
        collected = self._state.require(type(self).__name__)
        if n_bits not in self._ranges:
            minimum, maximum = float(collected.minimum), float(collected.maximum)
            kept = _entropy_bins(collected.histogram.counts, self.num_quantized_bins(n_bits))
            threshold = min(kept * collected.histogram.width, max(-minimum, maximum))
            low = 0.0 if minimum >= 0 else -threshold
            high = 0.0 if maximum <= 0 and minimum < 0 else threshold
            self._ranges[n_bits] = as_range(low, high)
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
        return load_histogram_calibration(owner, EntropyStats, metadata, ("bins",))

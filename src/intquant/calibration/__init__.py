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
* :class:`EntropyStats` -- the range whose quantized distribution is closest in KL divergence,
  guarded by the quantization error.

The last three keep a histogram with a fixed number of equal bins, so memory does not grow with
the data, and the exact minimum and maximum of the values seen (float64).

Granularity
-----------
Every method calibrates per tensor, per axis or per block (:mod:`intquant.granularity`): one
summary and one range per block, all blocks at once (one ``numpy.bincount`` fills every block's
histogram; the searches are array operations over blocks and candidates), each block's range
exactly the one the method gives the block calibrated alone. The ranges are then float64 arrays
of the block grid's shape -- ``(1, .., C, .., 1)`` per axis, ``(n0 // b0, ..)`` per block, the
shapes :class:`~intquant.statistics.MinMaxQuantizationStats` gives -- so the per-block parameter
formulas apply to them.

The granularity is given to the constructor (``MSEStats(axis=0)``) or taken from the
``axis``/``block_size`` keywords of the first batch (``update(values, axis=0)``); a
:class:`~intquant.QuantizedArray` calibrating a method passes its options' keywords, so
``QuantizedArray(8, x, axis=0, stats=MSEStats())`` is calibrated per channel. Without either it
is per tensor. Once values are collected it is fixed: a batch with other keywords, or of another
block grid, is refused, and so are options whose ``axis``/``block_size`` differ from it in
``range_for`` (a per-tensor range for a per-axis quantizer would be silently wrong). A
per-block granularity whose blocks span a dimension accepts batches of any length along it
(chunks of rows of blocks spanning all rows, say).

Histogram rule
--------------
Each block has its own grid. The first batch sets the grid ``[low, high]`` to ``[min, max]`` of
its values (:class:`EntropyStats` counts exact zeros apart from the bins). A value ``x`` goes to
bin ``min(floor((x - low) / (high - low) * bins), bins - 1)`` (every value to bin 0 when
``low == high``). A later batch
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

from intquant.calibration.entropy import EntropyStats
from intquant.calibration.moving_average import MovingAverageMinMaxStats
from intquant.calibration.mse import MSEStats
from intquant.calibration.percentile import PercentileStats

__all__ = ["PercentileStats", "MovingAverageMinMaxStats", "MSEStats", "EntropyStats"]

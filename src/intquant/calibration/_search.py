"""Candidate clipping ranges, their parameters, and their quantization error on a histogram, for
every block at once (what :class:`MSEStats` searches and :class:`EntropyStats` guards with).

* :func:`candidate_ranges`: for each block, ``K`` ranges shrinking from the observed one;
* :func:`range_parameters`: ``choose_uniform_parameters`` of every candidate at once;
* :func:`squared_errors`: ``sum_j n_j (deq(q(c_j)) - c_j)**2`` over each block's occupied bins
  (centres ``c_j``, counts ``n_j``) and its exact zeros, summed bin after bin in ascending order
  (a sequential sum, so a block's error is the same whichever blocks it is computed with).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy

from intquant._core.blockwise import choose_block_parameters
from intquant._core.formulas import STABILITY_CONST, choose_uniform_parameters, integer_bounds
from intquant.calibration._histogram import Collected, RangeOptions

__all__ = ["Compacted", "Parameters", "candidate_ranges", "range_parameters", "restored", "squared_errors"]

#: Elements of the largest temporary array of a vectorized search (bounds its memory).
CHUNK_ELEMENTS = 2**17


def candidate_ranges(
    minimum: numpy.ndarray, maximum: numpy.ndarray, candidates: int
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Each block's ``K = candidates`` ranges, widest (``k = K``, the observed range) first:
    arrays of shape ``(G, K)``.

    With ``m, M`` the block's extremes and ``k = K..1``: for data of both signs the observed
    range clipped to the magnitude ``r_k = max(-m, M) * (k/K)``, ``(max(m, -r_k), min(M, r_k))``;
    for data of one sign the end far from 0 moves toward the near end: ``(m, M - s (M - m))``
    when ``m >= 0`` and ``(m + s (M - m), M)`` when ``M <= 0``, with ``s = (K - k)/K``.
    """
    k = numpy.arange(candidates, 0, -1)
    fraction, shrink = k / candidates, (candidates - k) / candidates
    low, high = minimum[:, None], maximum[:, None]
    reach = numpy.maximum(-low, high) * fraction
    spread = high - low
    both = (low < 0) & (high > 0)
    positive = ~both & (low >= 0)
    lows = numpy.where(both, numpy.maximum(low, -reach), numpy.where(positive, low, low + shrink * spread))
    highs = numpy.where(both, numpy.minimum(high, reach), numpy.where(positive, high - shrink * spread, high))
    return lows, highs


@dataclass(frozen=True, eq=False)
class Parameters:
    """``scale``, ``zero_point`` (float64) and code bounds ``lowest``/``highest`` (float64) of
    candidate ranges, arrays of their shape."""

    scale: numpy.ndarray
    zero_point: numpy.ndarray
    lowest: numpy.ndarray
    highest: numpy.ndarray


def range_parameters(lows: numpy.ndarray, highs: numpy.ndarray, options: RangeOptions) -> Parameters:
    """``choose_uniform_parameters`` of every range (not QAT, no ``uvalues``, no preset scale)
    and ``integer_bounds`` of its offset, computed for all ranges at once. Options with
    ``full_range`` (signed symmetric) get the full-range grid's scale, so each candidate range is
    judged on the grid it will be quantized with.

    Raises
    ------
    InvalidValueError
        As ``choose_uniform_parameters`` does for the first range it refuses (1-bit symmetric
        quantization has no level above zero).
    """

    full_range = bool(getattr(options, "full_range", False))

    def alone(low: Any, high: Any, uvalues: Any) -> tuple[Any, Any, int]:
        return choose_uniform_parameters(
            numpy.float64(low),
            numpy.float64(high),
            options.n_bits,
            is_signed=options.is_signed,
            is_symmetric=options.is_symmetric,
            is_qat=False,
            is_precomputed_qat=False,
            uvalues=None,
            scale=None,
            full_range=full_range,
        )

    shape = lows.shape
    scale, zero_point, offset = choose_block_parameters(
        lows.reshape(-1),
        highs.reshape(-1),
        options.n_bits,
        is_signed=options.is_signed,
        is_symmetric=options.is_symmetric,
        is_qat=False,
        is_precomputed_qat=False,
        uvalues=None,
        scale=None,
        zero_in_range=False,
        power_of_two_scale=False,
        single_value_width=STABILITY_CONST,
        alone=alone,
        full_range=full_range,
    )
    lowest, highest = integer_bounds(
        options.n_bits, numpy.asarray(offset, dtype=numpy.int64), options.is_narrow
    )
    full = numpy.ones(lows.size)
    return Parameters(
        numpy.asarray(scale, dtype=numpy.float64).reshape(shape),
        numpy.asarray(zero_point).astype(numpy.float64).reshape(shape),
        (full * lowest).reshape(shape),
        (full * highest).reshape(shape),
    )


def restored(values: numpy.ndarray, parameters: Parameters, index: Any = ...) -> numpy.ndarray:
    """``scale * (clip(rint(values / scale + zero_point), bounds) - zero_point)``, the values
    quantized and dequantized as ``quant``/``dequant`` do (float64; ``parameters`` broadcast
    against ``values``, selected by ``index``)."""
    scale, zero_point = parameters.scale[index], parameters.zero_point[index]
    codes = numpy.rint(values / scale + zero_point)
    numpy.clip(codes, parameters.lowest[index], parameters.highest[index], out=codes)
    codes -= zero_point
    codes *= scale
    return codes


@dataclass(frozen=True, eq=False)
class Compacted:
    """Each block's occupied bins, in ascending order, padded to the longest: centres and
    counts (0 in the padding, whose centre repeats a real one) of shape ``(G, O)``; with split
    zeros, a first column holding the zeros (value 0)."""

    centres: numpy.ndarray
    counts: numpy.ndarray

    @staticmethod
    def of(collected: Collected) -> Compacted:
        histograms = collected.histograms
        occupied = histograms.counts > 0
        width = max(int(occupied.sum(axis=1).max()), 1)
        order = numpy.argsort(~occupied, axis=1, kind="stable")[:, :width]
        rows = numpy.arange(order.shape[0])[:, None]
        centres = histograms.low[:, None] + (order + 0.5) * histograms.width()[:, None]
        counts = histograms.counts[rows, order].astype(numpy.float64)
        padding = counts == 0
        centres[padding] = numpy.broadcast_to(centres[:, :1], centres.shape)[padding]
        if collected.zeros is not None:
            centres = numpy.concatenate([numpy.zeros((centres.shape[0], 1)), centres], axis=1)
            counts = numpy.concatenate([collected.zeros[:, None].astype(numpy.float64), counts], axis=1)
        return Compacted(centres, counts)


def squared_errors(
    compacted: Compacted, lows: numpy.ndarray, highs: numpy.ndarray, options: RangeOptions
) -> numpy.ndarray:
    """Each candidate range's quantization error ``sum_j n_j (deq(q(c_j)) - c_j)**2`` on its
    block's histogram (``lows``/``highs`` of shape ``(G, K)``; the result too), float64; an
    error that overflows is ``inf``.

    Raises
    ------
    InvalidValueError
        For options that cannot quantize (see :func:`range_parameters`).
    """
    parameters = range_parameters(lows, highs, options)
    centres, counts = compacted.centres, compacted.counts
    blocks, candidates = lows.shape
    errors = numpy.empty((blocks, candidates))
    step = max(1, CHUNK_ELEMENTS // max(candidates * centres.shape[1], 1))
    with numpy.errstate(over="ignore", invalid="ignore"):
        for start in range(0, blocks, step):
            part = slice(start, start + step)
            values = centres[part, None, :]
            expanded = Parameters(*(field[part, :, None] for field in _fields(parameters)))
            error = restored(values, expanded) - values
            error *= error
            error *= counts[part, None, :]
            total = numpy.cumsum(error, axis=2)[:, :, -1]  # in bin order, whatever the padding
            errors[part] = numpy.where(numpy.isnan(total), numpy.inf, total)
    return errors


def _fields(parameters: Parameters) -> tuple[numpy.ndarray, ...]:
    return parameters.scale, parameters.zero_point, parameters.lowest, parameters.highest

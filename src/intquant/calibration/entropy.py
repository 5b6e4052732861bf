"""Entropy calibration: the clipping range whose quantized distribution is closest in KL
divergence, guarded by the quantization error so that more bits never do worse."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy

from intquant._core.checks import check_int
from intquant._core.formulas import STABILITY_CONST
from intquant._core.granularity import PER_TENSOR
from intquant.calibration._histogram import (
    Collected,
    HistogramCalibration,
    Histograms,
    HistogramState,
    RangeOptions,
    check_bins,
    check_keys,
    holding,
    load_float,
    load_histogram_calibration,
    load_state,
)
from intquant.calibration._search import Compacted, candidate_ranges, range_parameters, squared_errors
from intquant.errors import InvalidTypeError, InvalidValueError, SerializationError
from intquant.options import QuantizationOptions  # noqa: F401  # the examples use it

__all__ = ["EntropyStats"]

#: The most bins :class:`EntropyStats` takes: a candidate's work grows with the codes it spans,
#: up to the bins.
MAX_ENTROPY_BINS = 8192


def _check_candidates(candidates: Any) -> int:
    return check_int(
        "candidates", candidates, minimum=1, advice="Use e.g. 128 candidate ranges (the default)."
    )


def _xlogx(values: numpy.ndarray) -> numpy.ndarray:
    """``x ln x`` (0 at 0) of non-negative float64 values."""
    return values * numpy.log(numpy.where(values > 0, values, 1.0))


@dataclasses.dataclass(frozen=True, eq=False)
class _Search:
    """What the searches of one ``range_for`` read, computed once: the histograms' grids, the
    cumulative sums along each block's bins (flattened, ``B + 1`` per block, starting at 0) of the
    counts, of the occupied bins and of ``c ln c``, and the compacted bins of the errors."""

    collected: Collected
    low: numpy.ndarray
    width: numpy.ndarray
    counts: numpy.ndarray
    occupied: numpy.ndarray
    xlogx: numpy.ndarray
    compacted: Compacted

    @staticmethod
    def of(collected: Collected) -> _Search:
        histograms = collected.histograms
        floats = histograms.counts.astype(numpy.float64)

        def cumulative(values: numpy.ndarray) -> numpy.ndarray:
            sums = numpy.zeros((values.shape[0], values.shape[1] + 1))
            numpy.cumsum(values, axis=1, out=sums[:, 1:])
            return sums.reshape(-1)

        return _Search(
            collected,
            histograms.low,
            histograms.width(),
            cumulative(floats),
            cumulative((floats > 0).astype(numpy.float64)),
            cumulative(_xlogx(floats)),
            Compacted.of(collected),
        )

    @property
    def bins(self) -> int:
        return self.collected.histograms.bins


def _divergences(
    search: _Search,
    blocks: numpy.ndarray,
    lows: numpy.ndarray,
    highs: numpy.ndarray,
    observed: numpy.ndarray,
    options: RangeOptions,
) -> numpy.ndarray:
    """``D`` of the candidate ranges ``lows``/``highs`` (shape ``(g, k)``) of the blocks
    ``blocks`` (``observed``: which candidates are the observed range), as
    :class:`EntropyStats` defines it (``inf`` for candidates that are not searched), from
    cumulative sums: a candidate costs one step per code it spans, not per bin."""
    bins = search.bins
    parameters = range_parameters(lows, highs, options)
    width, low = search.width[blocks, None], search.low[blocks, None]
    first, last = _bin_of(lows, low, width, bins), _bin_of(highs, low, width, bins)
    first_code = _code(low + (first + 0.5) * width, parameters)
    groups = _code(low + (last + 0.5) * width, parameters) - first_code + 1
    searched = (highs - lows >= STABILITY_CONST) & (parameters.scale >= width) & (last > first)
    searched |= observed  # the caller checked that the observed range's steps are resolved
    divergences = numpy.full(lows.shape, numpy.inf)
    flat = numpy.flatnonzero(searched)
    order = flat[numpy.argsort(groups.reshape(-1)[flat], kind="stable")]  # similar spans together
    spans = groups.reshape(-1)[order]
    start = 0
    while start < order.size:
        count = min(order.size - start, max(1, _CHUNK // int(spans[start] + 1)))
        while count > 1 and count * int(spans[start + count - 1] + 1) > _CHUNK:
            count = max(1, _CHUNK // int(spans[start + count - 1] + 1))
        chosen = order[start : start + count]
        start += count
        rows, columns = numpy.divmod(chosen, lows.shape[1])
        divergences[rows, columns] = _chunk_divergences(
            search,
            blocks[rows],
            first[rows, columns],
            last[rows, columns],
            groups[rows, columns],
            parameters.scale[rows, columns],
            (
                (first_code[rows, columns] - 0.5 - parameters.zero_point[rows, columns])
                * parameters.scale[rows, columns]
            ),
        )
    return divergences


#: Group edges per chunk of the divergence computation (bounds its temporaries).
_CHUNK = 2**16


def _bin_of(values: numpy.ndarray, low: numpy.ndarray, width: numpy.ndarray, bins: int) -> numpy.ndarray:
    """The bin holding each value: ``clip(floor((v - low) / w), 0, B - 1)`` (0 for a zero width)."""
    with numpy.errstate(divide="ignore", invalid="ignore"):
        position = numpy.floor((values - low) / numpy.where(width > 0, width, 1.0))
    return numpy.clip(numpy.nan_to_num(position), 0, bins - 1).astype(numpy.int64)


def _code(values: numpy.ndarray, parameters: Any) -> numpy.ndarray:
    """``clip(floor(v / s + z + 1/2), lowest, highest)``: the code of a bin centre, rounding half up."""
    with numpy.errstate(divide="ignore", invalid="ignore", over="ignore"):
        codes = numpy.floor(values / parameters.scale + parameters.zero_point + 0.5)
    codes = numpy.clip(numpy.nan_to_num(codes), parameters.lowest, parameters.highest)
    return codes.astype(numpy.int64)


def _chunk_divergences(
    search: _Search,
    blocks: numpy.ndarray,
    first: numpy.ndarray,
    last: numpy.ndarray,
    groups: numpy.ndarray,
    scale: numpy.ndarray,
    start: numpy.ndarray,
) -> numpy.ndarray:
    """``D`` of a chunk of candidates (1-d arrays, one entry per candidate: its block, kept bins
    ``first..last``, number of code groups, scale, and ``(q_first - 1/2 - z) s``, where the
    values of its second group start)."""
    count, span = blocks.size, int(groups.max())
    low, width = search.low[blocks], search.width[blocks]
    # Group t >= 1 starts at the first bin whose centre low + (j + 1/2) w reaches start + t s.
    edges = numpy.empty((count, span + 1), dtype=numpy.float64)
    inner = edges[:, 1:span]
    numpy.multiply(numpy.arange(1, span), (scale / width)[:, None], out=inner)
    inner += ((start - low) / width - 0.5)[:, None]
    numpy.ceil(inner, out=inner)
    # Each group holds its bins: group 0 the first kept bin, group ``groups - 1`` the last; the
    # edges past the last group (codes the bounds clip) close at ``last + 1``.
    past = numpy.arange(1, span) >= groups[:, None]
    numpy.minimum(inner, last[:, None] + past, out=inner)
    numpy.maximum(inner, numpy.where(past, last[:, None] + 1, first[:, None] + 1), out=inner)
    edges[:, 0], edges[:, span] = first, last + 1
    flat = edges.astype(numpy.int64)
    flat += (blocks * (search.bins + 1))[:, None]
    counts, occupied = numpy.take(search.counts, flat), numpy.take(search.occupied, flat)
    group_counts = counts[:, 1:] - counts[:, :-1]  # G_t
    group_occupied = occupied[:, 1:] - occupied[:, :-1]  # n_t, before the clipped values
    base = blocks * (search.bins + 1)
    total = search.counts[base + search.bins]
    left, right = counts[:, 0], total - counts[:, -1]  # values below and above the kept bins
    first_count = search.counts[base + first + 1] - search.counts[base + first]
    last_count = search.counts[base + last + 1] - search.counts[base + last]
    single = first == last
    first_reference = first_count + left + numpy.where(single, right, 0.0)  # P_a
    last_reference = last_count + right  # P_b
    index, last_group = numpy.arange(count), groups - 1
    group_occupied[:, 0] += (first_count == 0) & (first_reference > 0)
    group_occupied[index, last_group] += ~single & (last_count == 0) & (last_reference > 0)
    reference = (  # sum P ln P
        search.xlogx[base + last + 1]
        - search.xlogx[base + first]
        + _xlogx(first_reference)
        - _xlogx(first_count)
        + numpy.where(single, 0.0, _xlogx(last_reference) - _xlogx(last_count))
    )
    with numpy.errstate(divide="ignore", invalid="ignore"):
        level = group_counts / group_occupied  # Q on the group's occupied bins (NaN if none)
        logs = numpy.log(numpy.where(group_counts > 0, level, 1.0))
        logs *= group_counts
        cross = logs.sum(axis=1)  # sum over the kept bins of P ln Q, but the clipped values'
        first_level, last_level = level[:, 0], level[index, last_group]
        cross += left * numpy.log(numpy.where(left > 0, first_level, 1.0))
        cross += right * numpy.log(numpy.where(right > 0, last_level, 1.0))
        kept = counts[:, -1] - counts[:, 0]
        divergence = (reference - cross) / total - numpy.log(total) + numpy.log(kept)
    impossible = (kept <= 0) | ((left > 0) & ~(first_level > 0)) | ((right > 0) & ~(last_level > 0))
    return numpy.where(impossible | ~numpy.isfinite(divergence), numpy.inf, numpy.maximum(divergence, 0.0))


#: The search tries every ``_STRIDE``-th candidate, then the candidates near the best of those.
_STRIDE = 4


def _kl_ranges(
    search: _Search, options: RangeOptions, candidates: int
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Each block's candidate range with the smallest divergence among those searched (ties: the
    widest); the observed range where the histogram cannot resolve the options' steps or the
    values are one."""
    collected = search.collected
    lows, highs = candidate_ranges(collected.minimum, collected.maximum, candidates)
    full = range_parameters(lows[:, :1], highs[:, :1], options)
    resolved = (collected.maximum - collected.minimum >= STABILITY_CONST) & (full.scale[:, 0] >= search.width)
    resolved &= collected.histograms.counts.sum(axis=1) > 0
    best = numpy.zeros(lows.shape[0], dtype=numpy.int64)
    part = numpy.flatnonzero(resolved)
    if part.size:
        best[part] = _search_divergences(search, part, lows[part], highs[part], options)
    rows = numpy.arange(lows.shape[0])
    return lows[rows, best], highs[rows, best]


def _search_divergences(
    search: _Search, blocks: numpy.ndarray, lows: numpy.ndarray, highs: numpy.ndarray, options: RangeOptions
) -> numpy.ndarray:
    """The index of each block's candidate of smallest divergence: every ``_STRIDE``-th
    candidate first (the observed range among them), then those within ``_STRIDE - 1`` of the
    best of these; the smallest divergence tried wins (ties: the widest)."""
    count, candidates = lows.shape
    rows = numpy.arange(count)[:, None]
    divergences = numpy.full((count, candidates), numpy.inf)

    def tried(columns: numpy.ndarray) -> None:
        divergences[rows, columns] = _divergences(
            search, blocks, lows[rows, columns], highs[rows, columns], columns == 0, options
        )

    coarse = numpy.broadcast_to(numpy.arange(0, candidates, _STRIDE), (count, -(-candidates // _STRIDE)))
    tried(coarse)
    centre = numpy.argmin(divergences, axis=1)[:, None]
    near = numpy.concatenate([numpy.arange(1 - _STRIDE, 0), numpy.arange(1, _STRIDE)])
    tried(numpy.clip(centre + near, 0, candidates - 1))
    return numpy.argmin(divergences, axis=1)


def _guarded(
    search: _Search,
    options: RangeOptions,
    previous: tuple[numpy.ndarray, numpy.ndarray] | None,
    candidates: int,
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """The KL range for ``options``, unless the range chosen for one bit fewer (``previous``) or
    the observed range has a smaller quantization error for ``options`` (ties: the KL range)."""
    collected = search.collected
    kl_low, kl_high = _kl_ranges(search, options, candidates)
    lows = [kl_low, collected.minimum]
    highs = [kl_high, collected.maximum]
    if previous is not None:
        lows.insert(1, previous[0])
        highs.insert(1, previous[1])
    low, high = numpy.stack(lows, axis=1), numpy.stack(highs, axis=1)
    best = numpy.argmin(squared_errors(search.compacted, low, high, options), axis=1)
    rows = numpy.arange(best.size)
    return low[rows, best], high[rows, best]


class EntropyStats(
    HistogramCalibration,
    versioned_tag="intquant.EntropyStats",
    format_version=2,
    legacy_tags=("EntropyStats",),
):
    """Clipping range whose quantized distribution is closest to the values' in KL divergence
    (TensorRT's entropy calibration, adapted to the grid the options give), guarded by the
    quantization error so that one more bit never gives a worse range.

    A histogram of the values that are not exactly 0 is kept (``bins`` equal bins over the
    observed range, widened as batches arrive; see :mod:`intquant.calibration`), with the count
    of exact zeros apart: 0 lies on every grid these ranges give, so zeros are never in error and
    say nothing about where to clip (ReLU outputs hold a spike of them, which would otherwise
    pull the threshold down).

    **The divergence of a candidate range** ``(lo, hi)`` (the ranges :class:`MSEStats` tries:
    ``K = candidates`` ranges shrinking from the observed ``(m, M)``, symmetrically for data of
    both signs, from the end far from 0 for data of one sign). With ``scale, zero_point``
    and the code bounds for the options (``choose_uniform_parameters``, ``integer_bounds``), the
    bins ``a..b`` holding ``lo`` and ``hi`` are kept and the bins are grouped by the code of
    their centre ``c``, ``clip(floor(c / scale + zero_point + 1/2), bounds)``. Then (TensorRT):

    * ``P``: the kept counts, with the counts below bin ``a`` added to ``P_a`` and those above
      bin ``b`` to ``P_b`` (the clipped values pile up at the ends);
    * ``Q``: each group's kept count (without the clipped values) spread evenly over the group's
      bins where ``P > 0`` (0 elsewhere);
    * ``D = KL(P || Q) = sum_{P_j > 0} p_j ln(p_j / q_j)`` with ``p``, ``q`` normalised to sum 1;
      ``+inf`` when some ``P_j > 0`` has ``Q_j = 0`` (no smoothing is needed otherwise).

    Only candidates whose quantization step is at least a bin wide (narrower steps the
    histogram cannot resolve; TensorRT starts its search at 128 bins for 128 levels) and that
    keep two bins or more are searched, and the observed range always is. The search tries every
    4th candidate (the observed range first), then the candidates within 3 places of the best of
    those; the *KL range* is the candidate tried with the smallest ``D`` (ties: the widest). When
    even the observed range's step is narrower than a bin, or the values are one, the KL range is
    the observed range.

    **The guard.** For ``n`` bits the range is, among the KL range for ``n`` bits, the range
    chosen for ``n - 1`` bits (none for the first width: 1 bit, or 2 when symmetric) and the
    observed range, the one with the smallest quantization error ``sum_j n_j (deq(q(c_j)) -
    c_j)**2`` on the histogram (bin centres ``c_j``, counts ``n_j``, and the zeros; as
    :class:`MSEStats` measures it), ties going to the KL range. So, by induction, the range for
    ``n`` bits is never worse on the histogram than the one for ``n - 1`` bits, nor than the
    observed range: KL alone clips weights' tails at 8 bits and loses up to 20 dB to min/max,
    and its thresholds can shrink as bits grow.

    The range depends on the options (``n_bits``, ``is_signed``, ``is_symmetric``,
    ``is_narrow``); results are cached per options until the next update. Per axis or block,
    each block has its own histogram and search, all computed at once.

    Differences from TensorRT, on purpose: the groups are the options' codes over ``(lo, hi)``
    (TensorRT merges ``i`` bins of ``|x|`` into 128 equal groups whatever the bit width, ONNX
    Runtime likewise), exact zeros are left out, ``Q`` stays float64 and unsmoothed, and the
    guard.

    Parameters
    ----------
    bins : int
        Number of histogram bins, 16 to 8192.
    candidates : int
        Number of candidate ranges ``K``, at least 1 (1 gives the observed range).
    axis, block_size : optional
        Calibrate per axis or per block (see :mod:`intquant.calibration`); by default the first
        batch's keywords decide, per tensor without them.

    Raises
    ------
    TypeError, ValueError
        For bins that are not an int in [16, 8192], candidates that are not an int >= 1, or an
        invalid granularity.

    Examples
    --------
    >>> import numpy
    >>> values = numpy.random.default_rng(0).normal(size=10_000)
    >>> stats = EntropyStats()
    >>> stats.update(numpy.append(values, [-40.0, 40.0]))  # two far outliers
    >>> low, high = stats.range_for(QuantizationOptions(4, is_signed=True))
    >>> bool(float(low) == -float(high)), 2 < float(high) < 10
    (True, True)
    >>> relu = numpy.maximum(values, 0)  # half exact zeros: they do not pull the range to 0
    >>> stats.compute_quantization_stats(relu)
    >>> low, high = stats.range_for(QuantizationOptions(8))
    >>> float(low), bool(3 < float(high) <= relu.max())
    (0.0, True)
    >>> rows = EntropyStats(axis=0)  # one range per row
    >>> rows.update(numpy.stack([relu, relu / 100]))
    >>> rows.range_for(QuantizationOptions(8, axis=0))[1].shape
    (2, 1)
    """

    def __init__(
        self,
        bins: int = 2048,
        candidates: int = 128,
        *,
        axis: int | None = None,
        block_size: tuple[int, ...] | None = None,
    ) -> None:
        self._bins = check_bins(bins, MAX_ENTROPY_BINS)
        self._candidates = _check_candidates(candidates)
        self._start(self._bins, True, axis, block_size)

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
        """The guarded ranges of every width from the first up to ``options.n_bits`` (each
        cached), returning the last. Refused, as ``range_for``, for options that cannot quantize."""
        chosen, search = None, None
        for n_bits in range(2 if options.is_symmetric else 1, options.n_bits + 1):
            step = dataclasses.replace(options, n_bits=n_bits)
            if step not in self._ranges:
                search = search or _Search.of(collected)
                self._ranges[step] = _guarded(search, step, chosen, self._candidates)
            chosen = self._ranges[step]
        if chosen is None:  # 1-bit symmetric: refused as the parameters refuse it
            lows, highs = collected.minimum[:, None], collected.maximum[:, None]
            range_parameters(lows, highs, options)
            raise AssertionError("unreachable: 1-bit symmetric parameters are refused")  # pragma: no cover
        return chosen

    @staticmethod
    def load_dict(metadata: dict[str, Any], format_version: int = 2) -> EntropyStats:
        """Rebuild from :meth:`dump_dict` output.

        Format versions 0 and 1 (intquant 0.1 and 0.2) kept a histogram of ``|x|`` over
        ``[0, high]``, exact zeros included, and no ``candidates``: it is read as a histogram of
        ``x`` (mirrored for data of one sign; split evenly between ``-x`` and ``x``, each bin's
        count by its centre, for data of both signs), holding the zeros in its bins, with the
        default ``candidates``.

        Raises
        ------
        SerializationError
            For missing or unknown keys, a bad configuration or an inconsistent state.
        """
        owner = "EntropyStats"
        if format_version >= 2:
            return load_histogram_calibration(
                owner, EntropyStats, metadata, ("bins", "candidates"), format_version
            )
        return _load_absolute(metadata, owner)


def _load_absolute(metadata: dict[str, Any], owner: str) -> EntropyStats:
    """An entropy state of format version 0 or 1 (a histogram of ``|x|``), read as one of ``x``."""
    names = ("bins", "counts", "low", "high", "minimum", "maximum")
    check_keys(metadata, names, owner)
    try:
        stats = EntropyStats(metadata["bins"])
    except (InvalidTypeError, InvalidValueError) as error:
        raise SerializationError(f"{owner}.load_dict: invalid configuration: {error}") from error
    values = {name: metadata[name] for name in names[1:]}
    if all(value is None for value in values.values()):
        return stats
    if any(value is None for value in values.values()):
        raise SerializationError(
            f"{owner}.load_dict needs either all of {', '.join(names[1:])} set or all None "
            f"(no values yet); got None for "
            f"{', '.join(name for name, value in values.items() if value is None)}."
        )
    low, high, minimum, maximum = (load_float(values[name], name, owner) for name in names[2:])
    if not (low == 0 and minimum <= maximum and max(-minimum, maximum) <= high):
        raise SerializationError(
            f"{owner}.load_dict needs low == 0, minimum <= maximum and max(-minimum, maximum) <= "
            f"high; got low={float(low)!r}, high={float(high)!r}, minimum={float(minimum)!r}, "
            f"maximum={float(maximum)!r}."
        )
    # The magnitudes' counts, checked as a signed state over [0, high] would be.
    magnitudes = load_state(
        HistogramState(stats.bins, False),
        {"counts": values["counts"], "low": low, "high": high, "minimum": low, "maximum": high},
        None,
        owner,
    ).require(owner)
    counts = magnitudes.histograms.counts
    one, zero, top = numpy.ones(1), numpy.zeros(1), numpy.array([float(high)])
    if minimum >= 0:
        signed = Histograms(counts, zero, top)
    elif maximum <= 0:
        signed = Histograms(counts[:, ::-1].copy(), -top, zero)
    else:  # each magnitude bin's count split between -x and x, moved to the bins of their centres
        negative = counts // 2
        below = Histograms(negative[:, ::-1].copy(), -top, zero).rebinned(-top, top)
        above = Histograms(counts - negative, zero, top).rebinned(-top, top)
        signed = Histograms(below.counts + above.counts, -top, top)
    collected = Collected((), signed, minimum * one, maximum * one, numpy.zeros(1, dtype=numpy.int64))
    holding(stats, HistogramState(stats.bins, True, PER_TENSOR, collected))
    return stats

"""Calibration statistics: the range (and rounded distinct values) of a calibration set."""

from __future__ import annotations

import copy
import threading
from typing import Any, ClassVar, Optional

import numpy

from intquant._core.blockwise import block_ranges
from intquant._core.calibrator import Calibrator
from intquant._core.checks import check_calibration_values, check_loaded_statistics, check_n_bits
from intquant._core.codec import JSONSerializable
from intquant._core.extras import statistics_need_intquant_tag
from intquant._core.foreign import dask_statistics, dask_update, is_dask_array
from intquant._core.formulas import (
    block_statistics,
    is_uniform_grid,
    merge_uniques,
    minmax_range,
    minmax_statistics,
)
from intquant._core.granularity import granularity_of, grouped
from intquant._core.members import (
    RANGE_MEMBERS,
    STATS_MEMBERS,
    copy_members,
    has_members,
    members_repr,
    require_keys,
    same_members,
)
from intquant._core.plan import CONCRETE_ML_1_7, CONCRETE_ML_1_9
from intquant._core.uniques import DeferredMember, PendingUniques, fast_range, pending_statistics
from intquant._numpy124.introsort import AVX512, check_float32_sort
from intquant.errors import InvalidTypeError, InvalidValueError, MissingParameterError

__all__ = [
    "MinMaxQuantizationStats",
    "calibrate",
    "calibrate_range",
    "copy_float32_sort",
    "fold_in",
    "fold_range",
    "merge_range",
    "merge_statistics",
    "uniform_grid_check",
]


class MinMaxQuantizationStats(
    JSONSerializable, tag="MinMaxQuantizationStats", versioned_tag="intquant.MinMaxQuantizationStats"
):
    """Statistics of a calibration set: ``rmin``, ``rmax`` and ``uvalues``.

    ``uvalues`` are the sorted distinct values rounded to 2 decimals; QAT quantization uses them
    to recognise values that already lie on a uniform grid.

    Parameters
    ----------
    rmax, rmin : float, optional
        The range, when known in advance.
    uvalues : numpy.ndarray, optional
        Sorted distinct values, rounded to 2 decimals.
    float32_sort : {"avx512", "introsort"}, keyword-only
        Which machine's numpy 1.24 to reproduce in the sign of a zero that ``uvalues`` keeps when
        float32 values round to both ``-0.0`` and ``0.0``: ``"avx512"`` (the default, an x86-64
        CPU with AVX-512, as the golden data), or ``"introsort"`` (any other CPU). Not written by
        ``dumps`` (``uvalues`` are data); copied with the statistics, to quantizers too, and
        honoured by :meth:`compute_quantization_stats` and :meth:`update` (see
        ``docs/compat.md``).

    Examples
    --------
    >>> import numpy
    >>> stats = MinMaxQuantizationStats()
    >>> stats.compute_quantization_stats(numpy.array([0.5, -1.0, 0.254]))
    >>> float(stats.rmin), float(stats.rmax), stats.uvalues.tolist()
    (-1.0, 0.5, [-1.0, 0.25, 0.5])
    """

    #: The behaviour this object follows (:data:`intquant._core.plan.CONVENTIONS`).
    convention: ClassVar[str] = CONCRETE_ML_1_7
    #: The numpy 1.24 sort of float32 values ``uvalues`` follows (an instance may set its own).
    float32_sort: ClassVar[str] = AVX512

    rmax: Optional[float] = None
    rmin: Optional[float] = None
    #: Computed when first read after compute_quantization_stats (see intquant._core.uniques).
    uvalues: DeferredMember = DeferredMember()

    def __init__(
        self,
        rmax: Optional[float] = None,
        rmin: Optional[float] = None,
        uvalues: Optional[numpy.ndarray] = None,
        *,
        float32_sort: str = AVX512,
    ) -> None:
        self.rmax = rmax
        self.rmin = rmin
        self.uvalues = uvalues
        if float32_sort is not AVX512 and not (type(float32_sort) is str and float32_sort == AVX512):
            self.float32_sort = check_float32_sort(float32_sort)  # type: ignore[misc]

    def __eq__(self, other: object) -> bool:
        if not has_members(other, STATS_MEMBERS):
            return NotImplemented
        return same_members(self, other, STATS_MEMBERS)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return members_repr(self, STATS_MEMBERS)

    @staticmethod
    def convention_of_text(payload: Any) -> str | None:
        """The convention serialized statistics show: Concrete ML 1.8 and later write no
        ``uvalues`` (``"concrete-ml-1.9"``); None for a 1.7 text."""
        return CONCRETE_ML_1_9 if isinstance(payload, dict) and "uvalues" not in payload else None

    def compute_quantization_stats(
        self, values: numpy.ndarray, *, axis: int | None = None, block_size: tuple[int, ...] | None = None
    ) -> None:
        """Compute the statistics of ``values`` (see :func:`calibrate`), per tensor by default.

        ``uvalues`` is computed when first read (by QAT parameters, serialization, comparisons
        or the attribute itself), from a private copy of ``values`` held until then, with this
        object's ``float32_sort``. A dask array's statistics are computed now, chunk by chunk,
        by :func:`intquant.dask.compute_statistics` (``update``: :func:`intquant.dask.update_statistics`).
        """
        self.rmin, self.rmax, self.uvalues = calibrate(
            values, axis, block_size, defer_uniques=True, float32_sort=self.float32_sort
        )

    def is_empty(self) -> bool:
        """Whether no range has been computed or given yet."""
        return self.rmin is None and self.rmax is None

    def update(
        self, values: numpy.ndarray, *, axis: int | None = None, block_size: tuple[int, ...] | None = None
    ) -> None:
        """Fold a batch of values into the statistics (callable many times).

        The result equals one :meth:`compute_quantization_stats` over all batches concatenated:
        ``rmin``/``rmax`` exactly, ``uvalues`` exactly but for the sign of a zero when the data
        hold both ``-0.0`` and ``0.0`` (see :func:`intquant.kernels.merge_uniques`). Memory is
        bounded by the number of distinct rounded values. Batches must share one dtype (and, per
        axis or block, one block grid).
        """
        if type(values) is not numpy.ndarray and is_dask_array(values):
            dask_update(self, values, axis, block_size)  # a tree reduction (intquant.dask)
        else:
            fold_in(self, calibrate(values, axis, block_size, float32_sort=self.float32_sort))

    def merge(self, other: Any) -> None:
        """Fold another statistics object in, as if its data had been passed to :meth:`update`.

        ``other`` is not changed. Statistics without ``uvalues`` (Concrete ML 1.9's) fold in their
        range, and ``uvalues`` become None (unknown).

        Raises
        ------
        InvalidTypeError
            If ``other`` is a calibration method (its clipped range and missing distinct values
            would be folded in as if they were data: merge calibration methods with their own
            ``merge``), or its statistics have another dtype or block grid.
        """
        check_mergeable(other)
        with _UPDATES:
            rmin, rmax, uvalues = other.rmin, other.rmax, copy.deepcopy(getattr(other, "uvalues", None))
        if rmin is None and rmax is None:
            return
        fold_in(self, (rmin, rmax, uvalues))

    def check_is_uniform_quantized(self, options: Any) -> bool:
        """Whether ``uvalues`` lie on a uniform grid of at most ``2**n_bits`` values."""
        return uniform_grid_check(self.uvalues, options)

    def copy_stats(self, stats: Any) -> None:
        """Copy ``rmax``, ``rmin`` and ``uvalues`` (and ``float32_sort``) from ``stats``;
        statistics without ``uvalues`` (Concrete ML 1.9's) give ``uvalues`` None."""
        copy_statistics(self, stats)

    @property
    def quant_stats(self) -> MinMaxQuantizationStats:
        """A copy of these statistics."""
        return copy_stats(self)

    def serial_tag(self) -> str:
        """``"MinMaxQuantizationStats"`` (Concrete ML's tag), or
        ``"intquant.MinMaxQuantizationStats"`` for per-axis or per-block statistics (arrays of
        ranges), which Concrete ML would read and then fail on (the payload is the same)."""
        return (
            "intquant.MinMaxQuantizationStats"
            if statistics_need_intquant_tag(self)
            else "MinMaxQuantizationStats"
        )

    def dump_dict(self) -> dict[str, Any]:
        """The three members, in order ``rmax, rmin, uvalues``."""
        return {name: getattr(self, name) for name in STATS_MEMBERS}

    @staticmethod
    def load_dict(metadata: dict[str, Any], format_version: int = 0) -> MinMaxQuantizationStats:
        """Rebuild statistics from :meth:`dump_dict` output; the payload is the same under both
        tags (``format_version`` 0 or 1).

        Raises
        ------
        SerializationError
            For missing or unknown keys, or a field that would give wrong results or a raw error
            later: ``rmin``/``rmax`` that are not numbers (or arrays of them, of one shape),
            ``uvalues`` that are not a numeric array (or, per block, a list of one per block; see
            ``docs/serialization.md``).
        """
        require_keys(metadata, STATS_MEMBERS, "MinMaxQuantizationStats")
        check_loaded_statistics("MinMaxQuantizationStats", metadata)
        return MinMaxQuantizationStats(metadata["rmax"], metadata["rmin"], metadata["uvalues"])


def copy_stats(source: Any) -> MinMaxQuantizationStats:
    """A new :class:`MinMaxQuantizationStats` holding the statistics members of ``source``."""
    stats = MinMaxQuantizationStats()
    stats.copy_stats(source)
    return stats


def copy_statistics(target: Any, source: Any) -> None:
    """``target``'s ``rmax``, ``rmin``, ``uvalues`` (Concrete ML 1.7's members) and
    ``float32_sort`` set from ``source``, all or nothing; a source without ``uvalues``
    (Concrete ML 1.9's statistics) gives None."""
    try:
        copy_members(target, source, STATS_MEMBERS)
    except AttributeError:
        if not has_members(source, RANGE_MEMBERS):
            raise
        copy_members(target, source, RANGE_MEMBERS)
        target.uvalues = None
    sort = getattr(source, "float32_sort", AVX512)
    if sort is not target.float32_sort:  # the usual default, shared: nothing to do
        target.float32_sort = check_float32_sort(sort)


def copy_float32_sort(target: Any, source: Any) -> None:
    """Give ``target`` the ``float32_sort`` of ``source`` (the default when it has none)."""
    sort = getattr(source, "float32_sort", AVX512)
    if sort is not target.float32_sort:
        target.float32_sort = check_float32_sort(sort)


#: Updates and merges of statistics are atomic: the batch's statistics (the costly part) are
#: computed outside this lock, then folded into the object under it.
_UPDATES = threading.RLock()


def check_mergeable(other: Any) -> None:
    """Refuse a calibration method as statistics to merge (its range is clipped)."""
    if isinstance(other, Calibrator):
        raise InvalidTypeError(
            f"MinMaxQuantizationStats.merge folds in the statistics of data; got a "
            f"{type(other).__name__}, whose range is clipped and which keeps no distinct "
            f"values. Merge it into another {type(other).__name__}, or update these "
            f"statistics with the data itself."
        )


def merge_range(stats: Any, other: Any) -> None:
    """Fold the range of statistics ``other`` into ``stats``, which keep no ``uvalues``
    (Concrete ML 1.9's), as :meth:`MinMaxQuantizationStats.merge` does; ``other`` is not
    changed."""
    check_mergeable(other)
    with _UPDATES:
        rmin, rmax = other.rmin, other.rmax
    if rmin is None and rmax is None:
        return
    fold_range(stats, (rmin, rmax))


def fold_range(stats: Any, batch: tuple[Any, Any]) -> None:
    """Fold ``(rmin, rmax)`` of a batch into statistics that keep no ``uvalues`` (Concrete ML
    1.9's), atomically: ``rmin = min``, ``rmax = max`` (elementwise per block)."""
    with _UPDATES:
        if stats.rmin is None and stats.rmax is None:
            stats.rmin, stats.rmax = batch
        else:
            stats.rmin, stats.rmax, _ = merge_statistics((stats.rmin, stats.rmax, None), (*batch, None))


def fold_in(stats: Any, batch: tuple[Any, Any, Any]) -> None:
    """Fold ``(rmin, rmax, uvalues)`` of a batch into ``stats``, atomically (threads may update
    one object together: no batch is lost)."""
    with _UPDATES:
        if stats.rmin is None and stats.rmax is None:
            stats.rmin, stats.rmax, stats.uvalues = batch
        else:
            stats.rmin, stats.rmax, stats.uvalues = merge_statistics(
                (stats.rmin, stats.rmax, stats.uvalues), batch
            )


def calibrate(
    values: Any,
    axis: int | None = None,
    block_size: tuple[int, ...] | None = None,
    *,
    defer_uniques: bool = False,
    float32_sort: str = AVX512,
) -> tuple[Any, Any, Any]:
    """Validated ``(rmin, rmax, uvalues)`` of calibration values.

    ``rmin = numpy.min(values)`` and ``rmax = numpy.max(values)`` are numpy scalars of the values'
    dtype; ``uvalues = numpy.unique(numpy.round(values, 2))`` in the same dtype (the sign of a
    zero as numpy 1.24 keeps it on the machine ``float32_sort`` names). With ``axis`` or
    ``block_size`` (see :mod:`intquant.granularity`), ``rmin``/``rmax`` are arrays over the block
    grid and ``uvalues`` a list of each block's, every block computed as a tensor of its own.

    Raises
    ------
    ValueError
        For an empty array or values with NaN or an infinity.
    TypeError
        For values that are not integers or floats.
    """
    if type(values) is not numpy.ndarray and is_dask_array(values):
        return dask_statistics(values, axis, block_size, float32_sort)  # a tree reduction (intquant.dask)
    array = check_calibration_values(values)
    if axis is None and block_size is None:
        if not defer_uniques:
            return minmax_statistics(array, float32_sort)
        fused = pending_statistics(array, float32_sort)  # one compiled pass, where it applies
        if fused is not None:
            return fused
        rmin, rmax = minmax_range(array)
        return rmin, rmax, PendingUniques(array, rmin, rmax, None, float32_sort)
    extent = granularity_of(axis, block_size).extent(array.shape)
    if not defer_uniques:
        return block_statistics(array, extent, float32_sort)
    rmin, rmax = block_ranges(grouped(array, extent))
    return rmin, rmax, PendingUniques(array, rmin, rmax, extent, float32_sort)


def calibrate_range(
    values: Any, axis: int | None = None, block_size: tuple[int, ...] | None = None
) -> tuple[Any, Any]:
    """Validated ``(rmin, rmax)`` of calibration values, as :func:`calibrate` gives them (the
    statistics of Concrete ML 1.8 and later: no ``uvalues``, nothing kept of the values).

    Raises
    ------
    ValueError, TypeError
        As :func:`calibrate`.
    """
    if type(values) is not numpy.ndarray and is_dask_array(values):
        rmin, rmax, _ = dask_statistics(values, axis, block_size)  # a tree reduction (intquant.dask)
        return rmin, rmax
    array = check_calibration_values(values)
    if axis is None and block_size is None:
        fast = fast_range(array)  # compiled, on threads, where it applies
        return fast if fast is not None else minmax_range(array)
    return block_ranges(grouped(array, granularity_of(axis, block_size).extent(array.shape)))


def merge_statistics(first: tuple[Any, Any, Any], second: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
    """``(rmin, rmax, uvalues)`` of two summaries of data with one dtype (and block grid).

    ``rmin = min``, ``rmax = max`` (elementwise per block); ``uvalues`` merged with
    :func:`intquant.kernels.merge_uniques` (None when either side has none).
    """
    (low, high, uniques), (other_low, other_high, other_uniques) = first, second
    dtypes = numpy.asarray(low).dtype, numpy.asarray(other_low).dtype
    shapes = numpy.shape(low), numpy.shape(other_low)
    if dtypes[0] != dtypes[1] or shapes[0] != shapes[1]:
        raise InvalidTypeError(
            f"cannot merge statistics of {dtypes[1]} values with block grid {shapes[1]} into "
            f"statistics of {dtypes[0]} values with block grid {shapes[0]}; cast every batch to "
            f"one dtype and use one granularity."
        )
    merged_low, merged_high = numpy.minimum(low, other_low), numpy.maximum(high, other_high)
    if uniques is None or other_uniques is None:
        return merged_low, merged_high, None
    if isinstance(uniques, list):
        return (
            merged_low,
            merged_high,
            [merge_uniques(a, b) for a, b in zip(uniques, other_uniques, strict=True)],
        )
    return merged_low, merged_high, merge_uniques(uniques, other_uniques)


def uniform_grid_check(uvalues: Any, options: Any) -> bool:
    """:func:`intquant.kernels.is_uniform_grid` of ``uvalues`` for ``options.n_bits``."""
    if uvalues is None:
        raise MissingParameterError(
            "uvalues is None: compute the statistics with compute_quantization_stats(values) "
            "before checking whether they are uniformly quantized."
        )
    values = numpy.asarray(uvalues)
    if values.size == 0:
        raise InvalidValueError(
            "uvalues is empty, so there is no grid to check; compute the statistics from at "
            "least one value with compute_quantization_stats(values)."
        )
    return is_uniform_grid(values, check_n_bits(options.n_bits))

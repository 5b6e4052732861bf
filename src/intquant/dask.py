"""Dask arrays: calibrate, quantize and dequantize arrays larger than memory, or than a machine.

Needs the ``dask`` extra (``pip install "intquant[dask]"``: ``dask[array]`` and ``distributed``),
imported when one of these functions is first called; without it they raise
:class:`MissingDependencyError`.

* :func:`compute_statistics` and :func:`update_statistics` — ``rmin = min(x)``, ``rmax = max(x)``
  and ``uvalues = unique(round(x, 2))`` (per tensor, per axis or per block) as one tree reduction
  of chunk summaries: the data are read once and never gathered.
* :func:`quantizer_from` — a calibrated :class:`~intquant.UniformQuantizer` in one call.
* :func:`quant` and :func:`dequant` — lazy, chunk by chunk (``map_blocks``):
  ``q = clip(round(x / scale + zero_point), low, high)`` and ``x = scale * (q - zero_point)``.

Results equal the numpy path's: codes and dequantized values bit for bit, ``uvalues`` exactly
but for the sign of a zero. Stochastic rounding is refused.

The seed API comes here when given a dask array: ``UniformQuantizer.quant``/``dequant`` return
:func:`quant`/:func:`dequant`'s lazy arrays, and ``compute_quantization_stats``/``update`` (of
:class:`~intquant.MinMaxQuantizationStats` and :class:`~intquant.UniformQuantizer`) compute
:func:`compute_statistics`/:func:`update_statistics` when called (see
:mod:`intquant._core.foreign`).

See docs/dask.md for the tutorial (clusters, memory).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy

from intquant._core.checks import check_options, is_integer
from intquant._core.counter_noise import CounterNoise
from intquant._core.execute import dequantize_with, quantize_with
from intquant._core.formulas import code_dtype, fitting_code_dtype, minmax_statistics
from intquant._core.granularity import BlockLayout, granularity_of
from intquant._core.plan import DequantPlan, QuantPlan, restricted_dequant_plan, restricted_quant_plan
from intquant._numpy124.introsort import AVX512, check_float32_sort
from intquant.errors import (
    InvalidTypeError,
    InvalidValueError,
    MissingDependencyError,
)
from intquant.parameters import UniformQuantizationParameters
from intquant.quantizer import UniformQuantizer
from intquant.statistics import MinMaxQuantizationStats, fold_in, merge_statistics

if TYPE_CHECKING:
    import dask.array

__all__ = [
    "MissingDependencyError",
    "compute_statistics",
    "update_statistics",
    "quantizer_from",
    "quant",
    "dequant",
]

#: How many summaries one merge task takes (the fan-in of the reduction tree).
DEFAULT_SPLIT_EVERY = 8

# A chunk's summary: block index (in the block grid) -> (rmin, rmax, uvalues) of its piece.
_Summary = dict[tuple[int, ...], tuple[Any, Any, Any]]


def _dask() -> ModuleType:
    """The ``dask`` package, with ``dask.array`` loaded; imported on first use."""
    try:
        import dask
        import dask.array
    except ImportError as error:
        raise MissingDependencyError(
            f'intquant.dask needs dask with dask.array; install them with pip install "intquant[dask]" '
            f"(dask[array] and distributed). Importing dask failed: {error}"
        ) from error
    return dask


# -- statistics


def compute_statistics(
    array: dask.array.Array | numpy.ndarray,
    *,
    axis: int | None = None,
    block_size: tuple[int, ...] | None = None,
    split_every: int = DEFAULT_SPLIT_EVERY,
    float32_sort: str = AVX512,
) -> MinMaxQuantizationStats:
    """Statistics of a dask array, computed on the current dask scheduler.

    ``rmin = min(x)`` and ``rmax = max(x)`` are numpy scalars of the array's dtype and
    ``uvalues = unique(rint(x * 100) / 100)`` (rounding half to even, in the array's float dtype)
    a sorted array of that dtype: what
    :meth:`~intquant.MinMaxQuantizationStats.compute_quantization_stats` gives for the computed
    array. With ``axis`` or ``block_size`` (see :mod:`intquant.granularity`), ``rmin``/``rmax``
    are arrays over the block grid and ``uvalues`` the list of each block's, in grid order.

    One tree reduction computes all three: each chunk (each piece of a block, for per-axis or
    per-block statistics) is summarized by :func:`intquant.kernels.minmax_statistics`, and
    ``split_every`` summaries at a time are merged, in chunk order, by
    :func:`intquant.statistics.merge_statistics`: ``min``, ``max`` and
    :func:`intquant.kernels.merge_uniques`. The array is read once and never gathered.

    ``uvalues`` are exact but for the sign of a zero: when a tensor or block spread over several
    chunks holds both ``-0.0`` and ``0.0`` after rounding, the zero of its first chunk (C order of
    the chunk grid) that holds one is kept; numpy 1.24 would keep the one its sort left first.

    Parameters
    ----------
    array : dask.array.Array
        Real (integer or float) values; a numpy array is wrapped with ``dask.array.asarray``.
    axis : int, optional
        One set of statistics per index along this axis.
    block_size : tuple of int, optional
        One set of statistics per block of this extent; the blocks must tile the array (the
        dask chunks need not follow them).
    split_every : int
        How many summaries one merge task takes (at least 2).
    float32_sort : {"avx512", "introsort"}
        Which machine's numpy 1.24 the sign of a zero in a chunk's float32 ``uvalues`` follows
        (see :class:`~intquant.MinMaxQuantizationStats`); the statistics keep it.

    Returns
    -------
    MinMaxQuantizationStats

    Raises
    ------
    MissingDependencyError
        Without dask.
    InvalidTypeError
        For values that are not integers or floats.
    InvalidValueError
        For an empty array or one of unknown shape, values with NaN or an infinity, or an
        ``axis``/``block_size`` that does not fit the shape.

    Examples
    --------
    >>> import numpy, dask.array as da
    >>> values = da.from_array(numpy.array([[0.5, -1.0], [0.254, 3.0]]), chunks=1)
    >>> stats = compute_statistics(values)
    >>> float(stats.rmin), float(stats.rmax), stats.uvalues.tolist()
    (-1.0, 3.0, [-1.0, 0.25, 0.5, 3.0])
    >>> compute_statistics(values, axis=0).rmax.tolist()
    [[0.5], [3.0]]
    """
    sort = check_float32_sort(float32_sort)
    values, extent = _calibration_values(array, axis, block_size)
    rmin, rmax, uvalues = _summarize(values, extent, split_every, sort)
    return MinMaxQuantizationStats(rmax=rmax, rmin=rmin, uvalues=uvalues, float32_sort=sort)


def update_statistics(
    stats: MinMaxQuantizationStats | UniformQuantizer,
    array: dask.array.Array | numpy.ndarray,
    *,
    axis: int | None = None,
    block_size: tuple[int, ...] | None = None,
    split_every: int = DEFAULT_SPLIT_EVERY,
    float32_sort: str | None = None,
) -> None:
    """Fold a dask array into ``stats``, like :meth:`~intquant.MinMaxQuantizationStats.update`.

    The array's statistics (:func:`compute_statistics`) are merged in as
    :meth:`~intquant.MinMaxQuantizationStats.merge` does, atomically: ``rmin = min(rmin, min(x))``,
    ``rmax = max(rmax, max(x))``, ``uvalues`` the union (the zero already in ``stats`` is kept).
    Empty statistics simply take the array's. ``stats`` may also be a
    :class:`~intquant.UniformQuantizer`, whose statistics members are updated
    (:meth:`UniformQuantizer.update <intquant.UniformQuantizer.update>` on a dask array comes here).
    ``float32_sort`` is :func:`compute_statistics`'s; None (default): that of ``stats``.

    Raises
    ------
    InvalidTypeError
        If ``stats`` is neither a :class:`~intquant.MinMaxQuantizationStats` nor a
        :class:`~intquant.UniformQuantizer`, or holds statistics of another dtype or block grid
        (checked before anything is computed).

    Other errors are those of :func:`compute_statistics`; on any error ``stats`` is unchanged.

    Examples
    --------
    >>> import numpy, dask.array as da
    >>> from intquant import MinMaxQuantizationStats
    >>> stats = MinMaxQuantizationStats()
    >>> update_statistics(stats, da.from_array(numpy.array([0.5, 1.0]), chunks=1))
    >>> update_statistics(stats, da.from_array(numpy.array([-2.0, 0.5]), chunks=1))
    >>> float(stats.rmin), float(stats.rmax), stats.uvalues.tolist()
    (-2.0, 1.0, [-2.0, 0.5, 1.0])
    """
    if not isinstance(stats, (MinMaxQuantizationStats, UniformQuantizer)):
        raise InvalidTypeError(
            f"update_statistics folds values into a MinMaxQuantizationStats (or a "
            f"UniformQuantizer); got {type(stats).__name__}. Create one with "
            f"intquant.MinMaxQuantizationStats()."
        )
    if float32_sort is None:
        float32_sort = getattr(stats, "float32_sort", AVX512)
    sort = check_float32_sort(float32_sort)
    values, extent = _calibration_values(array, axis, block_size)
    if not (stats.rmin is None and stats.rmax is None):
        low = numpy.asarray(stats.rmin)
        dtype, shape = low.dtype, low.shape
        grid = BlockLayout.of(values.shape, extent).grid if extent is not None else ()
        if dtype != values.dtype or shape != grid:
            raise InvalidTypeError(
                f"cannot merge statistics of {values.dtype} values with block grid {grid} into "
                f"statistics of {dtype} values with block grid {shape}; cast every batch to one "
                f"dtype (array.astype) and use one granularity."
            )
    fold_in(stats, _summarize(values, extent, split_every, sort))


def quantizer_from(
    array: dask.array.Array | numpy.ndarray,
    options: Any,
    *,
    no_clipping: bool = False,
    split_every: int = DEFAULT_SPLIT_EVERY,
) -> UniformQuantizer:
    """A :class:`~intquant.UniformQuantizer` calibrated on a dask array.

    Statistics come from :func:`compute_statistics` (per axis or per block when ``options``
    say so), parameters from ``compute_quantization_parameters(options, stats)``: asymmetric
    ``scale = (rmax - rmin) / (2**n - 1)`` and
    ``zero_point = round((rmax * -offset - rmin * (2**n - 1 - offset)) / (rmax - rmin))``, or
    symmetric ``scale = max(|rmax|, |rmin|) / (2**n - 1 - offset)`` and ``zero_point = 0``.
    The result equals the quantizer built from the computed array with the numpy API.

    Parameters
    ----------
    array : dask.array.Array
        Calibration values.
    options : QuantizationOptions
        ``n_bits``, the flags and the extra options (``axis``, ``block_size``, ...).
    no_clipping : bool
        Do not clip codes to the ``n_bits`` range.
    split_every : int
        Fan-in of the statistics' reduction tree.

    Raises
    ------
    InvalidOptionsError, MissingParameterError, InvalidTypeError, InvalidValueError
        For invalid options (checked before anything is computed), and as
        :func:`compute_statistics` and ``compute_quantization_parameters`` raise.

    Examples
    --------
    >>> import numpy, dask.array as da
    >>> from intquant import QuantizationOptions
    >>> values = da.from_array(numpy.array([-1.0, 0.0, 0.5, 2.0]), chunks=2)
    >>> quantizer = quantizer_from(values, QuantizationOptions(4))
    >>> float(quantizer.scale), int(quantizer.zero_point)
    (0.2, 5)
    """
    check_options(options)
    stats = compute_statistics(
        array,
        axis=getattr(options, "axis", None),
        block_size=getattr(options, "block_size", None),
        split_every=split_every,
    )
    params = UniformQuantizationParameters()
    params.compute_quantization_parameters(options, stats)
    return UniformQuantizer(options, stats, params, no_clipping=no_clipping)


def _calibration_values(
    array: Any, axis: int | None, block_size: tuple[int, ...] | None
) -> tuple[Any, tuple[int, ...] | None]:
    """The validated dask array and its block extent (None for per-tensor statistics)."""
    values = _dask_values(array, "calibration values")
    if values.dtype.kind == "b":
        raise InvalidTypeError(
            f"calibration values must be integers or floats; got a bool array of shape "
            f"{values.shape}. Convert it with values.astype(numpy.float64)."
        )
    _require_real(values, "calibration values")
    if values.size == 0:
        raise InvalidValueError(
            f"cannot calibrate on an empty array (shape {values.shape}, dtype {values.dtype}); "
            f"pass at least one value."
        )
    if axis is None and block_size is None:
        return values, None
    return values, granularity_of(axis, block_size).extent(values.shape)


def _summarize(
    values: Any, extent: tuple[int, ...] | None, split_every: int, float32_sort: str
) -> tuple[Any, Any, Any]:
    """``(rmin, rmax, uvalues)`` of validated values, by a tree reduction of chunk summaries."""
    if not is_integer(split_every) or split_every < 2:
        raise InvalidValueError(
            f"'split_every' must be an int of at least 2 (summaries merged per task); got {split_every!r}."
        )
    dask = _dask()
    if values.ndim == 0:
        values = values.reshape(1)  # one chunk of one value: map_blocks needs a dimension
    pieces = values.map_blocks(
        _chunk_summary,
        extent=extent,
        float32_sort=float32_sort,
        dtype=object,
        chunks=(1,) * values.ndim,
        meta=numpy.empty((0,) * values.ndim, dtype=object),
    )
    merge = dask.delayed(_merge_summaries, pure=True)
    level = list(pieces.to_delayed().ravel())  # C order of the chunk grid
    while True:
        level = [merge(*level[start : start + split_every]) for start in range(0, len(level), split_every)]
        if len(level) == 1:
            break
    summary: _Summary = level[0].compute()
    if extent is None:
        rmin, rmax, uvalues = summary[(0,) * values.ndim]
    else:
        grid = BlockLayout.of(values.shape, extent).grid
        order = list(numpy.ndindex(grid))
        rmin = numpy.array([summary[index][0] for index in order], dtype=values.dtype).reshape(grid)
        rmax = numpy.array([summary[index][1] for index in order], dtype=values.dtype).reshape(grid)
        uvalues = [summary[index][2] for index in order]
    if not (numpy.all(numpy.isfinite(rmin)) and numpy.all(numpy.isfinite(rmax))):
        bad = "NaN" if numpy.any(numpy.isnan(rmin)) or numpy.any(numpy.isnan(rmax)) else "an infinity"
        raise InvalidValueError(
            f"cannot calibrate on values containing {bad} (dask array of shape {values.shape}, "
            f"dtype {values.dtype}): the range would not be finite. Remove or replace non-finite "
            f"values first, e.g. with dask.array.nan_to_num."
        )
    return rmin, rmax, uvalues


def _chunk_summary(
    chunk: numpy.ndarray, extent: tuple[int, ...] | None, float32_sort: str, block_info: Any = None
) -> numpy.ndarray:
    """The summary of one chunk, as the single element of an object array (one per chunk).

    Per tensor, the chunk's :func:`minmax_statistics`; per axis or block, that of each piece of
    a block in the chunk, the piece flattened in C order as :func:`intquant.granularity.grouped`
    does. A piece with NaN or an infinity gets ``(min, max, None)``: the caller reports it.
    """
    summary: _Summary = {}
    if extent is None:
        if chunk.size:
            summary[(0,) * chunk.ndim] = _piece_statistics(chunk, float32_sort)
    else:
        for index, local in _pieces(block_info[0]["array-location"], extent):
            piece = chunk[local]
            if piece.size:
                summary[index] = _piece_statistics(numpy.ascontiguousarray(piece).reshape(-1), float32_sort)
    box = numpy.empty((1,) * chunk.ndim, dtype=object)
    box[(0,) * chunk.ndim] = summary
    return box


def _piece_statistics(values: numpy.ndarray, float32_sort: str) -> tuple[Any, Any, Any]:
    try:
        return minmax_statistics(values, float32_sort)
    except InvalidValueError:  # NaN or an infinity: keep them in rmin/rmax, reported at the end
        return numpy.min(values), numpy.max(values), None


def _merge_summaries(*parts: Any) -> _Summary:
    """Merge summaries in order (each a dict, or a chunk's object array holding one)."""
    merged: _Summary = {}
    for part in parts:
        summary: _Summary = part.reshape(-1)[0] if isinstance(part, numpy.ndarray) else part
        for index, statistics in summary.items():
            merged[index] = merge_statistics(merged[index], statistics) if index in merged else statistics
    return merged


def _pieces(
    location: list[tuple[int, int]], extent: tuple[int, ...]
) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """``(block index, slices within the chunk)`` of each block a chunk at ``location`` meets.

    ``location`` gives the chunk's ``(start, stop)`` along each dimension and ``extent`` a
    block's size; a block ``k`` along a dimension covers ``[k * size, (k + 1) * size)``.
    """
    ranges = [
        [
            (block, slice(max(start, block * size) - start, min(stop, (block + 1) * size) - start))
            for block in range(start // size, -(-stop // size))
        ]
        for (start, stop), size in zip(location, extent, strict=True)
    ]
    for combination in itertools.product(*ranges):
        yield (
            tuple(block for block, _ in combination),
            tuple(piece for _, piece in combination),
        )


# -- quantization


def quant(
    quantizer: UniformQuantizer, array: dask.array.Array | numpy.ndarray, dtype: Any = None
) -> dask.array.Array:
    """Quantize a dask array lazily, chunk by chunk: ``quantizer.quant`` of each chunk.

    ``q = clip(round(x / scale + zero_point), low, high)`` as int64, where ``round`` is the
    quantizer's rounding (half to even by default), the division and addition run in the dtypes
    numpy 1.24 chooses (a float32 array is divided in float32), and
    ``[low, high] = [-offset (+1 if is_narrow), 2**n_bits - 1 - offset]`` (no clipping with
    ``no_clipping``, nor for QAT values whose parameters were inferred). Quantization is
    elementwise, so each chunk's codes are those :meth:`~intquant.UniformQuantizer.quant` gives
    for the whole array; per-axis or per-block parameters are sliced for each piece of a block
    in a chunk, so the chunks need not follow the blocks. Stochastic rounding's noise is a
    function of the quantizer's seed and of each element's flat index in the whole array
    (:attr:`~intquant.UniformQuantizer.rng`), so the codes are those of the numpy call too.

    Parameters
    ----------
    quantizer : UniformQuantizer
        A quantizer with parameters (e.g. from :func:`quantizer_from`).
    array : dask.array.Array
        Values to quantize; a numpy array is wrapped with ``dask.array.asarray``.
    dtype : optional
        The codes' dtype: int64 (default), int8, uint8, int16, uint16, int32, uint32, float32,
        float64 (each must hold every code exactly), or ``"smallest"`` (the smallest integer
        dtype holding the clipping range). Each chunk's codes are computed and stored in it in
        one pass, as :meth:`~intquant.UniformQuantizer.quant` does.

    Returns
    -------
    dask.array.Array
        The codes, with the chunks of ``array``; nothing is computed yet.

    Raises
    ------
    MissingParameterError, InvalidTypeError, InvalidValueError
        As :meth:`~intquant.UniformQuantizer.quant` raises, checked now where the data are not
        needed (parameters, scale, dtypes, block grid); a NaN value or a code that ``dtype``
        cannot hold is reported when the codes are computed. ``"smallest"`` without clipping is
        refused: the dtype would depend on every code.

    Examples
    --------
    >>> import numpy, dask.array as da
    >>> from intquant import QuantizationOptions
    >>> values = da.from_array(numpy.array([-1.0, 0.0, 0.5, 2.0]), chunks=2)
    >>> quantizer = quantizer_from(values, QuantizationOptions(4))
    >>> quant(quantizer, values).compute().tolist()
    [0, 5, 8, 15]
    >>> quant(quantizer, values, dtype="smallest").dtype
    dtype('int8')
    """
    values = _dask_values(array, "values to quantize")
    _require_real(values, "values to quantize")
    checked = _quantizer(quantizer)
    plan = checked.quant_plan(values.dtype, values.shape)  # every check, now
    noise = checked.rng  # None, or stochastic rounding's noise: each chunk takes its region
    if plan.generic:
        raise _unchunkable(plan.scale, plan.zero_point)
    out_dtype = numpy.dtype(numpy.int64)
    if dtype is not None:  # checked now against the clipping range (without clipping: by each chunk)
        requested = code_dtype(dtype)
        if plan.span is not None:
            out_dtype = fitting_code_dtype(requested, *plan.span)
        elif isinstance(requested, str):  # "smallest"
            raise InvalidValueError(
                "quant cannot choose the 'smallest' dtype for a dask array without clipping: it "
                "would depend on every code. Pass an explicit dtype (int64 holds every code)."
            )
        else:
            out_dtype = requested
    meta = numpy.empty((0,) * values.ndim, dtype=out_dtype)
    return values.map_blocks(
        _quantize_chunk, plan, out_dtype, noise, values.shape, dtype=out_dtype, meta=meta
    )


def dequant(
    quantizer: UniformQuantizer, array: dask.array.Array | numpy.ndarray, dtype: Any = None
) -> dask.array.Array:
    """Dequantize a dask array lazily, chunk by chunk: ``x = scale * (q - float64(zero_point))``.

    Each chunk's values are those :meth:`~intquant.UniformQuantizer.dequant` gives for the whole
    array: integer codes give float64, float16/float32 codes keep their precision (numpy 1.24's
    dtypes). Per-axis or per-block parameters are sliced for each piece of a block in a chunk.

    Parameters
    ----------
    quantizer : UniformQuantizer
        A quantizer with a scale and zero point.
    array : dask.array.Array
        Codes; a numpy array is wrapped with ``dask.array.asarray``.
    dtype : optional
        None (default): the formula's dtype. float32 or float64: the same values cast to it,
        bit for bit, as :meth:`~intquant.UniformQuantizer.dequant` casts them.

    Returns
    -------
    dask.array.Array
        The values, with the chunks of ``array``; nothing is computed yet.

    Raises
    ------
    MissingParameterError, InvalidDtypeError, InvalidTypeError, InvalidValueError
        As :meth:`~intquant.UniformQuantizer.dequant` raises, checked now (a value that
        overflows to an infinity: when the values are computed).

    Examples
    --------
    >>> import numpy, dask.array as da
    >>> from intquant import QuantizationOptions
    >>> values = da.from_array(numpy.array([-1.0, 0.0, 0.5, 2.0]), chunks=2)
    >>> quantizer = quantizer_from(values, QuantizationOptions(4))
    >>> dequant(quantizer, quant(quantizer, values)).compute().tolist()
    [-1.0, 0.0, 0.6000000000000001, 2.0]
    """
    values = _dask_values(array, "quantized values")
    _require_real(values, "quantized values")
    plan = _quantizer(quantizer).dequant_plan(values.dtype, values.shape)  # every check, now
    if plan.generic or plan.dtype is None:
        raise _unchunkable(plan.scale, plan.zero_point)
    target = _values_dtype(dtype)
    out_dtype = plan.dtype if target is None else target
    meta = numpy.empty((0,) * values.ndim, dtype=out_dtype)
    return values.map_blocks(_dequantize_chunk, plan, target, dtype=out_dtype, meta=meta)


def _quantizer(quantizer: Any) -> UniformQuantizer:
    if not isinstance(quantizer, UniformQuantizer):
        raise InvalidTypeError(
            f"expected a UniformQuantizer; got {type(quantizer).__name__}. Build one with "
            f"intquant.dask.quantizer_from(array, options)."
        )
    return quantizer


def _unchunkable(scale: Any, zero_point: Any) -> InvalidValueError:
    return InvalidValueError(
        f"the quantizer holds {numpy.size(scale)} scales and {numpy.size(zero_point)} zero "
        f"points but no axis or block_size, so which value takes which parameters depends "
        f"on broadcasting over the whole array, not chunk by chunk. Calibrate it per axis "
        f"or per block (QuantizationOptions(..., axis=k))."
    )


def _region(block_info: Any) -> tuple[slice, ...]:
    """The chunk's place in the whole array, from dask's ``block_info``."""
    return tuple(slice(start, stop) for start, stop in block_info[0]["array-location"])


def _quantize_chunk(
    chunk: numpy.ndarray,
    plan: QuantPlan,
    out_dtype: numpy.dtype[Any],
    noise: CounterNoise | None,
    whole: tuple[int, ...],
    block_info: Any = None,
) -> numpy.ndarray:
    """Codes of one chunk, of ``out_dtype`` (the whole array's, never ``"smallest"``, which a
    chunk's narrower bounds could resolve otherwise): the whole array's plan restricted to the
    chunk's blocks, and for stochastic rounding the noise of the chunk's region."""
    if chunk.size == 0:
        return numpy.empty(chunk.shape, dtype=out_dtype)
    region = _region(block_info)
    if noise is not None:
        noise = noise.region(tuple(piece.start for piece in region), whole)
    codes = quantize_with(restricted_quant_plan(plan, region), chunk, noise, dtype=out_dtype)
    return numpy.asarray(codes)


def _dequantize_chunk(
    chunk: numpy.ndarray, plan: DequantPlan, target: numpy.dtype[Any] | None, block_info: Any = None
) -> numpy.ndarray:
    """Values of one chunk, cast to ``target`` unless None: the whole array's plan restricted to
    the chunk's blocks."""
    if chunk.size == 0:
        return numpy.empty(chunk.shape, dtype=plan.dtype if target is None else target)
    values = dequantize_with(restricted_dequant_plan(plan, _region(block_info)), chunk, target)
    return numpy.asarray(values)


def _values_dtype(dtype: Any) -> numpy.dtype[Any] | None:
    """``dtype`` as the float32/float64 dtype dequantized values are cast to (None: no cast)."""
    if dtype is None:
        return None
    try:
        target = numpy.dtype(dtype)
    except (TypeError, ValueError):  # not a dtype at all
        target = None
    if target is None or target not in (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64)):
        raise InvalidTypeError(
            f"dequant can return values as float32 or float64 (None: the dtype of the formula, "
            f"float64 for integer codes); got {dtype!r}."
        )
    return target


# -- inputs


def _dask_values(array: Any, what: str) -> Any:
    """``array`` as a dask array of known shape (numpy arrays and the like are wrapped)."""
    dask = _dask()
    values = array if isinstance(array, dask.array.Array) else dask.array.asarray(array)
    if any(math.isnan(size) for size in values.shape):
        raise InvalidValueError(
            f"{what} have unknown chunk sizes (shape {values.shape}); call array.compute_chunk_sizes() first."
        )
    return values


def _require_real(values: Any, what: str) -> None:
    if values.dtype.kind not in "biuf":
        raise InvalidTypeError(
            f"{what} must be real numbers (a bool, integer or float array); got dtype "
            f"{values.dtype} with shape {values.shape}. Convert them with "
            f"array.astype(numpy.float64) first."
        )

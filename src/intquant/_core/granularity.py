"""Granularity: which elements share a scale and zero point.

Per-tensor (the seed's), per-axis (``axis=k``: one set per index along axis ``k``) or per-block
(``block_size=(b0, b1, ...)``: one set per block of that extent, torchao's convention; per-axis
``k`` is the block ``(n0, .., 1, .., nd)`` with 1 at ``k``). Blocks tile the array exactly. A
*grouped* array has shape ``grid + (block elements,)``: row ``g`` holds the elements of block
``g``, in the C order they have within the block, so that quantizing a block per-group gives
exactly what quantizing that block alone per-tensor gives.
"""

from __future__ import annotations

import math
from typing import Any

import numpy

from intquant._core.formulas import minmax_statistics
from intquant.errors import InvalidValueError

__all__ = [
    "block_extent",
    "check_grid",
    "dequantize_grouped",
    "grid_shape",
    "grouped",
    "grouped_parameters",
    "grouped_statistics",
    "quantize_grouped",
    "ungrouped",
]


def block_extent(
    shape: tuple[int, ...], axis: int | None, block_size: tuple[int, ...] | None
) -> tuple[int, ...]:
    """The extent of one block along each dimension of an array of ``shape``.

    Raises
    ------
    InvalidValueError
        If ``axis`` is out of range, or ``block_size`` does not have one extent per dimension
        or does not tile ``shape``.
    """
    if axis is not None:
        if not -len(shape) <= axis < len(shape):
            raise InvalidValueError(
                f"axis {axis} is out of range for values of shape {shape}; use 0 to {len(shape) - 1}."
            )
        extent = list(shape)
        extent[axis % len(shape)] = 1
        return tuple(extent)
    if block_size is None:
        return tuple(shape)
    if len(block_size) != len(shape) or any(
        size % block for size, block in zip(shape, block_size, strict=True)
    ):
        raise InvalidValueError(
            f"block_size {block_size} must give one extent per dimension of the values (shape "
            f"{shape}), each dividing that dimension."
        )
    return tuple(block_size)


def grid_shape(shape: tuple[int, ...], extent: tuple[int, ...]) -> tuple[int, ...]:
    """How many blocks lie along each dimension."""
    return tuple(size // block for size, block in zip(shape, extent, strict=True))


def grouped(values: numpy.ndarray, extent: tuple[int, ...]) -> numpy.ndarray:
    """``values`` rearranged to shape ``grid + (block elements,)`` (a copy unless trivial)."""
    grid = grid_shape(values.shape, extent)
    split = values.reshape(tuple(dimension for pair in zip(grid, extent, strict=True) for dimension in pair))
    order = tuple(range(0, 2 * len(grid), 2)) + tuple(range(1, 2 * len(grid), 2))
    return numpy.ascontiguousarray(split.transpose(order)).reshape((*grid, math.prod(extent)))


def ungrouped(rows: Any, shape: tuple[int, ...], extent: tuple[int, ...]) -> numpy.ndarray:
    """The inverse of :func:`grouped`: rows of blocks back to an array of ``shape``."""
    grid = grid_shape(shape, extent)
    blocks = numpy.asarray(rows).reshape(grid + extent)
    order = tuple(index for dimension in range(len(grid)) for index in (dimension, len(grid) + dimension))
    return numpy.ascontiguousarray(blocks.transpose(order)).reshape(shape)


# -- per-group versions of the kernels: each block is handled exactly as a tensor of its own


def grouped_statistics(
    values: numpy.ndarray, extent: tuple[int, ...]
) -> tuple[numpy.ndarray, numpy.ndarray, list[Any]]:
    """Per-block ``(rmin, rmax, uvalues)``: two arrays of the grid's shape in the values' dtype,
    and the list of each block's ``uvalues`` (in grid order)."""
    rows = grouped(values, extent)
    grid = rows.shape[:-1]
    flat = rows.reshape(-1, rows.shape[-1])
    statistics = [minmax_statistics(row) for row in flat]
    rmin = numpy.array([low for low, _, _ in statistics], dtype=values.dtype).reshape(grid)
    rmax = numpy.array([high for _, high, _ in statistics], dtype=values.dtype).reshape(grid)
    return rmin, rmax, [uvalues for _, _, uvalues in statistics]


def grouped_parameters(
    rmin: numpy.ndarray, rmax: numpy.ndarray, uvalues: list[Any] | None, choose: Any
) -> tuple[numpy.ndarray, numpy.ndarray, Any]:
    """Per-block ``(scale, zero_point, offset)``: ``choose(rmin, rmax, uvalues)`` of each block.

    ``scale`` is a float64 array and ``zero_point`` an int64 array of the grid's shape;
    ``offset`` is an int when every block has the same one (a single-valued block has offset 0),
    else an int64 array.
    """
    lows, highs = rmin.reshape(-1), rmax.reshape(-1)
    blocks = [
        choose(lows[index], highs[index], None if uvalues is None else uvalues[index])
        for index in range(lows.size)
    ]
    scale = numpy.array([block[0] for block in blocks], dtype=numpy.float64).reshape(rmin.shape)
    zero_point = numpy.array([block[1] for block in blocks], dtype=numpy.int64).reshape(rmin.shape)
    offsets = {block[2] for block in blocks}
    offset = (
        offsets.pop()
        if len(offsets) == 1
        else numpy.array([b[2] for b in blocks], dtype=numpy.int64).reshape(rmin.shape)
    )
    return scale, zero_point, offset


def check_grid(values_shape: tuple[int, ...], extent: tuple[int, ...], scale: numpy.ndarray) -> None:
    """Refuse values whose block grid is not the one the parameters were computed for."""
    grid = grid_shape(values_shape, extent)
    if scale.shape != grid:
        raise InvalidValueError(
            f"the quantizer holds parameters for a block grid of shape {scale.shape}, but values "
            f"of shape {values_shape} make a grid of shape {grid}; quantize values shaped like the "
            f"calibration data."
        )


def quantize_grouped(
    values: numpy.ndarray,
    extent: tuple[int, ...],
    scale: numpy.ndarray,
    zero_point: numpy.ndarray,
    bounds_of: Any,
    quantize_block: Any,
) -> numpy.ndarray:
    """Codes of ``values``, each block quantized with its own scale, zero point and bounds.

    ``bounds_of(index)`` gives block ``index``'s clipping bounds (or None) and
    ``quantize_block(row, scale, zero_point, bounds)`` quantizes one block's row.
    """
    check_grid(values.shape, extent, scale)
    rows = grouped(values, extent)
    flat = rows.reshape(-1, rows.shape[-1])
    scales, zero_points = scale.reshape(-1), zero_point.reshape(-1)
    codes = (
        numpy.stack(
            [
                quantize_block(row, scales[index], zero_points[index], bounds_of(index))
                for index, row in enumerate(flat)
            ]
        )
        if flat.shape[0]
        else numpy.zeros(flat.shape, dtype=numpy.int64)
    )
    return ungrouped(codes, values.shape, extent)


def dequantize_grouped(
    codes: numpy.ndarray,
    extent: tuple[int, ...],
    scale: numpy.ndarray,
    zero_point: numpy.ndarray,
    dequantize_block: Any,
) -> numpy.ndarray:
    """Values of ``codes``, each block dequantized with its own scale and zero point."""
    check_grid(codes.shape, extent, scale)
    rows = grouped(codes, extent)
    flat = rows.reshape(-1, rows.shape[-1])
    scales, zero_points = scale.reshape(-1), zero_point.reshape(-1)
    values = numpy.stack(
        [dequantize_block(row, scales[index], zero_points[index]) for index, row in enumerate(flat)]
    )
    return ungrouped(values, codes.shape, extent)

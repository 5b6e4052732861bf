"""Granularity: which elements share a scale and zero point, as values.

=======================  ==========================  =================================  ======================
granularity              options                     block extent for shape (n0, .., nd) parameter grid shape
=======================  ==========================  =================================  ======================
:class:`PerTensor`       (none: the seed's)          ``(n0, .., nd)``                   ``()`` (scalars)
:class:`PerAxis` ``(k)`` ``axis=k``                  ``(n0, .., 1, .., nd)``, 1 at k    ``(1, .., nk, .., 1)``
:class:`PerBlock` ``(b)`` ``block_size=b``            ``b``, which must tile the shape   ``(n0 // b0, ..)``
=======================  ==========================  =================================  ======================

Blocks tile the array exactly (torchao's ``block_size`` convention). Each block is quantized
exactly as it would be alone, so its parameters and its dtype plan are its own.

:class:`BlockLayout` lays a grid of per-block parameters over values of a given shape without a
loop over blocks: along each dimension ``d`` the grid has ``g_d`` blocks of ``b_d`` elements.
Where every dimension has ``g_d == 1`` or ``b_d == 1`` (per tensor, per axis), parameters of the
grid's shape broadcast against the values directly; otherwise the values are viewed as
``(g0, b0, g1, b1, ...)`` and the parameters shaped ``(g0, 1, g1, 1, ...)`` (torchao's
reshape). The *grouped* form ``grid + (block elements,)`` (each block's elements in C order)
serves the per-block statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

import numpy

from intquant._core.checks import check_int, is_integer
from intquant.errors import InvalidOptionsError, InvalidTypeError, InvalidValueError

__all__ = [
    "BlockLayout",
    "PER_TENSOR",
    "Granularity",
    "PerAxis",
    "PerBlock",
    "PerTensor",
    "granularity_of",
    "grouped",
    "select_blocks",
    "ungrouped",
]


@dataclass(frozen=True)
class PerTensor:
    """One scale and zero point for the whole array (the seed's granularity)."""

    def extent(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The block extent for values of ``shape``: the whole shape."""
        return tuple(shape)

    def options(self) -> dict[str, Any]:
        """The option keywords that give this granularity (none)."""
        return {}


@dataclass(frozen=True)
class PerAxis:
    """One scale and zero point per index along ``axis`` (per-channel); parameters of shape
    ``(1, .., n_axis, .., 1)``."""

    axis: int

    def extent(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The block extent for values of ``shape``: 1 along the axis, the whole size elsewhere.

        Raises
        ------
        InvalidValueError
            If the axis is out of range for ``shape``.
        """
        if not -len(shape) <= self.axis < len(shape):
            raise InvalidValueError(
                f"axis {self.axis} is out of range for values of shape {shape}; use 0 to {len(shape) - 1}."
            )
        extent = list(shape)
        extent[self.axis % len(shape)] = 1
        return tuple(extent)

    def options(self) -> dict[str, Any]:
        """The option keywords that give this granularity."""
        return {"axis": self.axis}


@dataclass(frozen=True)
class PerBlock:
    """One scale and zero point per block of ``block_size`` (one extent per dimension, each
    dividing it); parameters of shape ``(n0 // b0, n1 // b1, ...)``."""

    block_size: tuple[int, ...]

    def extent(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The block extent for values of ``shape``: ``block_size`` itself, once checked.

        Raises
        ------
        InvalidValueError
            If ``block_size`` does not have one extent per dimension, or does not tile ``shape``.
        """
        if len(self.block_size) != len(shape) or any(
            size % block for size, block in zip(shape, self.block_size, strict=True)
        ):
            raise InvalidValueError(
                f"block_size {self.block_size} must give one extent per dimension of the values "
                f"(shape {shape}), each dividing that dimension."
            )
        return tuple(self.block_size)

    def options(self) -> dict[str, Any]:
        """The option keywords that give this granularity."""
        return {"block_size": self.block_size}


Granularity = Union[PerTensor, PerAxis, PerBlock]
PER_TENSOR = PerTensor()


def granularity_of(axis: Any, block_size: Any) -> Granularity:
    """The granularity the ``axis`` / ``block_size`` options describe (both None: per tensor).

    Raises
    ------
    InvalidTypeError, InvalidValueError, InvalidOptionsError
        For an axis that is not an int, a block size that is not a tuple of ints of at least 1,
        or both given.
    """
    if axis is not None and block_size is not None:
        raise InvalidOptionsError("give either 'axis' (per-channel) or 'block_size' (per-block), not both.")
    if axis is not None:
        return PerAxis(check_int("axis", axis, expected="an int or None"))
    if block_size is None:
        return PER_TENSOR
    if (
        isinstance(block_size, (int, numpy.integer, str, bytes))
        or not hasattr(block_size, "__iter__")
        or not all(is_integer(size) for size in block_size)
    ):
        raise InvalidTypeError(
            f"'block_size' must be a tuple of ints, one extent per dimension; got {block_size!r}."
        )
    sizes = tuple(int(size) for size in block_size)
    if not sizes or any(size < 1 for size in sizes):
        raise InvalidValueError(f"'block_size' extents must be at least 1; got {sizes}.")
    return PerBlock(sizes)


@dataclass(frozen=True)
class BlockLayout:
    """How a grid of per-block parameters lies over values of ``shape``.

    ``grid[d]`` blocks of ``extent[d]`` elements along dimension ``d``. ``view`` is the shape the
    values take so that parameters of ``parameter_shape`` broadcast against them: None when they
    broadcast against ``shape`` itself (per tensor, per axis), else ``(g0, b0, g1, b1, ...)``.
    """

    shape: tuple[int, ...]
    extent: tuple[int, ...]
    grid: tuple[int, ...]
    view: tuple[int, ...] | None
    parameter_shape: tuple[int, ...]

    @staticmethod
    def of(shape: tuple[int, ...], extent: tuple[int, ...]) -> BlockLayout:
        """The layout of blocks of ``extent`` (which tile ``shape``) over values of ``shape``."""
        grid = tuple(size // block for size, block in zip(shape, extent, strict=True))
        if all(blocks == 1 or size == 1 for blocks, size in zip(grid, extent, strict=True)):
            return BlockLayout(shape, extent, grid, None, grid)
        view = tuple(size for pair in zip(grid, extent, strict=True) for size in pair)
        return BlockLayout(shape, extent, grid, view, tuple(size for blocks in grid for size in (blocks, 1)))

    @staticmethod
    def for_values(shape: tuple[int, ...], granularity: Granularity) -> BlockLayout:
        """The layout ``granularity`` gives values of ``shape`` (its checks raise for a misfit)."""
        return BlockLayout.of(tuple(shape), granularity.extent(tuple(shape)))

    @property
    def blocks(self) -> int:
        """How many blocks the grid holds."""
        return math.prod(self.grid)

    def check_parameters(self, parameter_grid: tuple[int, ...]) -> None:
        """Refuse parameters computed for another block grid than these values make."""
        if tuple(parameter_grid) != self.grid:
            raise InvalidValueError(
                f"the quantizer holds parameters for a block grid of shape {tuple(parameter_grid)}, "
                f"but values of shape {self.shape} make a grid of shape {self.grid}; quantize "
                f"values shaped like the calibration data."
            )

    def laid_out(self, grid_values: numpy.ndarray) -> numpy.ndarray:
        """Per-block values (grid's shape, or flat in grid order) shaped to broadcast."""
        return numpy.asarray(grid_values).reshape(self.parameter_shape)

    def restricted(self, region: tuple[slice, ...]) -> tuple[BlockLayout, tuple[Any, ...]]:
        """The layout of the values in ``region`` (one slice of step 1 per dimension), and per
        dimension the selection (a slice or an index array) that takes their blocks' parameters
        from a grid-shaped array (see :func:`select_blocks`).

        Along a dimension whose blocks the region cuts, each element gets a block of its own in
        the new layout (its block's parameters repeated), so any region works; along the others
        the grid is sliced.
        """
        shape: list[int] = []
        extent: list[int] = []
        selection: list[Any] = []
        for size, block, part in zip(self.shape, self.extent, region, strict=True):
            start, stop, _ = part.indices(size)
            stop = max(start, stop)
            shape.append(stop - start)
            if stop == start:  # an empty region: no blocks
                extent.append(1)
                selection.append(slice(0, 0))
            elif block == size:  # one block along this dimension
                extent.append(stop - start)
                selection.append(slice(0, 1))
            elif start % block == 0 and (stop % block == 0 or stop == size):
                extent.append(block)
                selection.append(slice(start // block, -(-stop // block)))
            else:  # blocks cut by the region: one parameter per element
                extent.append(1)
                selection.append(numpy.arange(start, stop) // block)
        return BlockLayout.of(tuple(shape), tuple(extent)), tuple(selection)


def select_blocks(grid_values: numpy.ndarray, selection: tuple[Any, ...]) -> numpy.ndarray:
    """The parameters of a restricted layout: ``grid_values`` (grid-shaped) selected along each
    dimension by a slice or an index array (see :meth:`BlockLayout.restricted`)."""
    selected = numpy.asarray(grid_values)
    for dimension, part in enumerate(selection):
        selected = selected[(slice(None),) * dimension + (part,)]
    return selected


def grouped(values: numpy.ndarray, extent: tuple[int, ...]) -> numpy.ndarray:
    """``values`` rearranged to shape ``grid + (block elements,)`` (a copy unless trivial)."""
    grid = tuple(size // block for size, block in zip(values.shape, extent, strict=True))
    split = values.reshape(tuple(dimension for pair in zip(grid, extent, strict=True) for dimension in pair))
    order = tuple(range(0, 2 * len(grid), 2)) + tuple(range(1, 2 * len(grid), 2))
    return numpy.ascontiguousarray(split.transpose(order)).reshape((*grid, math.prod(extent)))


def ungrouped(rows: Any, shape: tuple[int, ...], extent: tuple[int, ...]) -> numpy.ndarray:
    """The inverse of :func:`grouped`: rows of blocks back to an array of ``shape``."""
    grid = tuple(size // block for size, block in zip(shape, extent, strict=True))
    blocks = numpy.asarray(rows).reshape(grid + extent)
    order = tuple(index for dimension in range(len(grid)) for index in (dimension, len(grid) + dimension))
    return numpy.ascontiguousarray(blocks.transpose(order)).reshape(shape)

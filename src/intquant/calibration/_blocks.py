"""The blocks a calibration method collects over: its granularity, and batches as rows of blocks.

A calibration method collects one summary per block of the values (per tensor: one block; per
axis: one per index along the axis; per block: torchao's ``block_size`` tiling, as
:mod:`intquant.granularity` defines them) and gives one range per block, as arrays of the block
grid's shape -- the shapes :meth:`MinMaxQuantizationStats.compute_quantization_stats` gives with
the same ``axis``/``block_size`` -- so the per-block parameter formulas apply to them.

The granularity comes from the constructor (``MSEStats(axis=0)``) or, for an object made
without one, from the first batch's ``axis``/``block_size`` keywords (``QuantizedArray`` passes
its options'); without either it is per tensor. Once values are collected it is fixed: later
batches must make the same block grid, with the same kind of granularity (the same axis; for
blocks, the same extents along every dimension with more than one block -- a block spanning a
dimension may span it in batches of any length there, as chunks of rows do), and the options a
range is computed for must name a granularity that matches it (:func:`check_options_granularity`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy

from intquant._core.calibrator import Range
from intquant._core.checks import check_calibration_values
from intquant._core.granularity import PER_TENSOR, Granularity, PerAxis, PerBlock, granularity_of, grouped
from intquant.errors import InvalidOptionsError, InvalidValueError

__all__ = [
    "Rows",
    "asked_granularity",
    "block_range",
    "check_options_granularity",
    "describe",
    "granularity_keywords",
    "matches",
    "rows_of",
]


def describe(granularity: Optional[Granularity]) -> str:
    """``per tensor``, ``per axis (axis=0)``, ``per block (block_size=(1, 32))``."""
    if isinstance(granularity, PerAxis):
        return f"per axis (axis={granularity.axis})"
    if isinstance(granularity, PerBlock):
        return f"per block (block_size={granularity.block_size})"
    return "per tensor"


def asked_granularity(axis: Any, block_size: Any) -> Optional[Granularity]:
    """The granularity ``axis``/``block_size`` keywords ask for, checked; None when both are None.

    Raises
    ------
    InvalidTypeError, InvalidValueError, InvalidOptionsError
        As :func:`intquant.granularity.granularity_of` does.
    """
    if axis is None and block_size is None:
        return None
    return granularity_of(axis, block_size)


def granularity_keywords(granularity: Optional[Granularity]) -> dict[str, Any]:
    """``{"axis": ..., "block_size": ...}`` of a granularity (both None per tensor or unset)."""
    axis = granularity.axis if isinstance(granularity, PerAxis) else None
    block_size = granularity.block_size if isinstance(granularity, PerBlock) else None
    return {"axis": axis, "block_size": block_size}


def _normalized(granularity: Granularity, ndim: int) -> Granularity:
    """An axis counted from the front (left alone when out of range for ``ndim`` dimensions)."""
    if isinstance(granularity, PerAxis) and -ndim <= granularity.axis < ndim:
        return PerAxis(granularity.axis % ndim)
    return granularity


def matches(recorded: Optional[Granularity], grid: tuple[int, ...], other: Optional[Granularity]) -> bool:
    """Whether ``other`` splits values into the blocks ``recorded`` made the grid ``grid`` of:
    the same kind, the same axis, the same block extents wherever the grid has several blocks
    (None is per tensor)."""
    recorded, other = recorded or PER_TENSOR, other or PER_TENSOR
    if type(recorded) is not type(other):
        return False
    ndim = len(grid)
    if isinstance(recorded, PerAxis) and isinstance(other, PerAxis):
        return -ndim <= other.axis < ndim and other.axis % ndim == recorded.axis % ndim
    if isinstance(recorded, PerBlock) and isinstance(other, PerBlock):
        return len(other.block_size) == ndim and all(
            mine == theirs or blocks == 1
            for mine, theirs, blocks in zip(recorded.block_size, other.block_size, grid, strict=True)
        )
    return True


@dataclass(frozen=True, eq=False)
class Rows:
    """A validated batch as rows of blocks (never written to).

    ``values`` has shape ``(G, E)`` (``G`` blocks in grid order, ``E`` elements each) in the
    batch's dtype; ``minimum``/``maximum`` are each block's extremes as float64 (shape ``(G,)``);
    ``granularity`` and ``grid`` (``()`` per tensor) say how the blocks were made.
    """

    values: numpy.ndarray
    minimum: numpy.ndarray
    maximum: numpy.ndarray
    granularity: Granularity
    grid: tuple[int, ...]


def rows_of(
    values: Any,
    recorded: Optional[Granularity],
    grid: Optional[tuple[int, ...]],
    asked: Optional[Granularity],
    owner: str,
) -> Rows:
    """Check a calibration batch and split it into the blocks of its granularity.

    ``recorded`` is the calibrator's granularity (None: not set yet), ``grid`` the block grid of
    the values it collected (None: none yet), ``asked`` the batch's keywords (None: none).

    Raises
    ------
    InvalidValueError
        For empty values, values holding NaN or an infinity, a granularity that does not fit the
        values' shape, or blocks other than those collected so far.
    InvalidOptionsError
        For keywords naming another granularity than the calibrator's.
    InvalidTypeError
        For values that are not real numbers.
    """
    array = check_calibration_values(values)
    granularity = asked if asked is not None else recorded if recorded is not None else PER_TENSOR
    if recorded is not None and asked is not None:
        if grid is None:  # set by the constructor, nothing collected: the keywords must name it
            same = _normalized(recorded, array.ndim) == _normalized(asked, array.ndim)
        else:
            same = matches(recorded, grid, asked)
        if not same:
            raise InvalidOptionsError(
                f"this {owner} collects {describe(recorded)}; these values were given "
                f"{describe(asked)}. Give them without axis/block_size (or with the calibrator's), "
                f"or calibrate them with another {owner}."
            )
    if isinstance(granularity, (PerAxis, PerBlock)):
        extent = granularity.extent(array.shape)
        rows = grouped(array, extent)
        batch_grid = rows.shape[:-1]
        rows = rows.reshape(math.prod(batch_grid), -1)
        granularity = _normalized(granularity, array.ndim)
    else:
        batch_grid = ()
        rows = numpy.ravel(array, order="K").reshape(1, -1)
    if grid is not None and tuple(batch_grid) != tuple(grid):
        raise InvalidValueError(
            f"this {owner} collected {describe(recorded)} over a block grid of shape {tuple(grid)}; "
            f"values of shape {array.shape} make a grid of shape {tuple(batch_grid)}. Give every "
            f"batch the same blocks (batches of a per-axis calibration may differ along the other "
            f"dimensions only)."
        )
    minimum, maximum = _extremes(rows, array, granularity)
    return Rows(rows, minimum, maximum, granularity, tuple(batch_grid))


def _extremes(
    rows: numpy.ndarray, array: numpy.ndarray, granularity: Granularity
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Each block's minimum and maximum as float64, refusing NaN and infinities."""
    minimum = rows.min(axis=1).astype(numpy.float64)
    maximum = rows.max(axis=1).astype(numpy.float64)
    finite = numpy.isfinite(minimum) & numpy.isfinite(maximum)  # NaN propagates into min/max
    if not finite.all():
        first = int(numpy.argmin(finite))
        bad = "NaN" if numpy.isnan(minimum[first]) or numpy.isnan(maximum[first]) else "an infinity"
        where = "" if rows.shape[0] == 1 else f", in block {first} (grid order) {describe(granularity)}"
        raise InvalidValueError(
            f"cannot calibrate on values containing {bad} (shape {array.shape}, dtype "
            f"{array.dtype}{where}): the range would not be finite. Remove or replace non-finite "
            f"values first, e.g. with numpy.nan_to_num."
        )
    return minimum, maximum


def check_options_granularity(
    recorded: Optional[Granularity], grid: tuple[int, ...], options: Any, owner: str
) -> None:
    """Refuse options whose ``axis``/``block_size`` do not match the collected granularity: a
    range per tensor for a per-axis quantizer (or the reverse) would be silently wrong.

    Raises
    ------
    InvalidOptionsError
        For options naming another granularity.
    """
    wanted = granularity_of(getattr(options, "axis", None), getattr(options, "block_size", None))
    collected = recorded if recorded is not None else PER_TENSOR
    if not matches(collected, grid, wanted):
        keywords = ", ".join(
            f"{name}={value!r}" for name, value in granularity_keywords(wanted).items() if value is not None
        )
        raise InvalidOptionsError(
            f"this {owner} collected its statistics {describe(collected)} (a block grid of shape "
            f"{grid}); the options ask for ranges {describe(wanted)}. Quantize with options of "
            f"the calibrator's granularity ({_keywords_text(collected)}), or calibrate a new "
            f"{owner}({keywords}) on the values."
        )


def _keywords_text(granularity: Granularity) -> str:
    keywords = granularity_keywords(granularity)
    return ", ".join(f"{name}={value!r}" for name, value in keywords.items())


def block_range(grid: tuple[int, ...], low: numpy.ndarray, high: numpy.ndarray) -> Range | Any:
    """Per-block ends (shape ``(G,)``, float64) as a range: ``numpy.float64`` scalars per tensor
    (``grid == ()``), else new arrays of the grid's shape."""
    if grid == ():
        return numpy.float64(low[0]), numpy.float64(high[0])
    return low.reshape(grid).copy(), high.reshape(grid).copy()

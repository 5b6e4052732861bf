"""Statistics of an array collected chunk by chunk of rows, for ``calibrate`` and ``report``.

A :class:`Collector` is fed consecutive chunks of rows (:meth:`Collector.add`; each a multiple of
``row_multiple`` rows) and then gives the statistics a quantizer is computed from
(:meth:`Collector.statistics`). With ``--axis`` or ``--block-size`` the statistics are a grid of
ranges, one per block:

* when every block spans all rows (``--axis 1`` on a matrix, say), each chunk holds a part of
  every block: the chunks' grids are merged (min/max, or the calibrator's own ``update``);
* otherwise each chunk holds whole blocks (``row_multiple`` is the blocks' height) and the
  chunks' grids are stacked along axis 0.

Min/max statistics equal the in-memory ones (``uvalues`` too, but for the sign of a zero when
the data hold both ``-0.0`` and ``0.0``). The calibration methods of :mod:`intquant.calibration`
are fed the same chunks; per axis or block, a method is used when its ``update`` takes ``axis``
and ``block_size`` (as :meth:`MinMaxQuantizationStats.update` does), and refused otherwise.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy

from intquant._core.blockwise import block_ranges
from intquant._core.checks import check_calibration_values
from intquant._core.formulas import minmax_range
from intquant._core.granularity import granularity_of, grouped
from intquant.calibration import EntropyStats, MSEStats, PercentileStats
from intquant.errors import InvalidValueError
from intquant.statistics import MinMaxQuantizationStats, calibrate, merge_statistics

__all__ = ["DEFAULT_PERCENTILE", "METHODS", "Collector", "check_granularity", "collector"]

METHODS = ("minmax", "percentile", "mse", "entropy")
DEFAULT_PERCENTILE = 99.99
_CALIBRATORS: dict[str, Callable[..., Any]] = {
    "percentile": PercentileStats,
    "mse": MSEStats,
    "entropy": EntropyStats,
}


def check_granularity(
    axis: int | None, block_size: tuple[int, ...] | None, shape: tuple[int, ...], name: str
) -> tuple[int, ...] | None:
    """The blocks' extent for values of ``shape`` (None per tensor), checked in command-line terms."""
    if axis is None and block_size is None:
        return None
    if axis is not None and not -len(shape) <= axis < len(shape):
        low, high = -len(shape), len(shape) - 1
        span = f"use {low} to {high}" if shape else "a 0-d array has no axis"
        raise InvalidValueError(f"--axis {axis} is out of range for {name} of shape {shape}; {span}")
    if block_size is not None and (
        len(block_size) != len(shape)
        or any(size < 1 or extent % size for size, extent in zip(block_size, shape, strict=False))
    ):
        raise InvalidValueError(
            f"--block-size {','.join(map(str, block_size))} does not tile {name} of shape {shape}: give "
            f"{len(shape)} extents, each dividing its dimension"
        )
    return granularity_of(axis, block_size).extent(shape)


class Collector:
    """Statistics of one array, collected over consecutive chunks of rows."""

    #: Each chunk (but the last) holds a multiple of this many rows.
    row_multiple: int = 1

    def add(self, chunk: numpy.ndarray) -> None:  # pragma: no cover - every subclass overrides it
        """Fold in the next chunk of rows."""
        raise NotImplementedError

    def statistics(self, options: Any) -> Any:  # pragma: no cover - every subclass overrides it
        """Statistics to compute ``options``' parameters from: a ``MinMaxQuantizationStats`` or a
        calibrator (whose range depends on the options)."""
        raise NotImplementedError


def collector(
    method: str,
    percentile: float,
    shape: tuple[int, ...],
    axis: int | None = None,
    block_size: tuple[int, ...] | None = None,
    *,
    keep_uniques: bool = True,
) -> Collector:
    """A collector of ``method``'s statistics for an array of ``shape`` (``keep_uniques``: min/max
    statistics keep ``uvalues``, as a quantizer file holds them; ``report`` needs none).

    Raises
    ------
    InvalidValueError
        For a method that does not calibrate per axis or block while one is asked for.
    """
    extent = None if axis is None and block_size is None else granularity_of(axis, block_size).extent(shape)
    if method == "minmax":
        return _MinMax(shape, extent, axis, keep_uniques)
    factory: Callable[[], Any] = _CALIBRATORS[method]
    if method == "percentile":
        factory = lambda: PercentileStats(percentile)  # noqa: E731
    if extent is None:
        return _Calibrated(factory)
    granularity = {"axis": axis} if axis is not None else {"block_size": block_size}
    if not _takes_granularity(_CALIBRATORS[method]):
        flag = "--axis" if axis is not None else "--block-size"
        raise InvalidValueError(
            f"--method {method} calibrates whole tensors only in this intquant; use --method minmax "
            f"with {flag}, or leave {flag} out"
        )
    return _GroupedCalibrated(factory, granularity, shape, extent)


def _takes_granularity(klass: Any) -> bool:
    """Whether ``klass.update`` takes ``axis`` and ``block_size``."""
    try:
        parameters = inspect.signature(klass.update).parameters
    except (AttributeError, TypeError, ValueError):
        return False
    return "axis" in parameters and "block_size" in parameters


def _spans_rows(shape: tuple[int, ...], extent: tuple[int, ...]) -> bool:
    return not shape or extent[0] == shape[0]


class _MinMax(Collector):
    """``rmin``/``rmax`` (and ``uvalues`` with ``keep_uniques``), per tensor or per block."""

    def __init__(
        self, shape: tuple[int, ...], extent: tuple[int, ...] | None, axis: int | None, keep_uniques: bool
    ) -> None:
        self._shape, self._extent, self._axis, self._keep = shape, extent, axis, keep_uniques
        self._spanning = extent is None or _spans_rows(shape, extent)
        self.row_multiple = 1 if self._spanning or extent is None else extent[0]
        self._merged: tuple[Any, Any, Any] | None = None
        self._parts: list[tuple[Any, Any, Any]] = []

    def _part(self, chunk: numpy.ndarray) -> tuple[Any, Any, Any]:
        extent = self._extent
        if extent is not None and self._spanning and chunk.ndim:
            extent = (chunk.shape[0], *extent[1:])
        if self._keep:
            if extent is None:
                return calibrate(chunk)
            return calibrate(chunk, None, extent)  # the extent is what axis or block_size gives
        array = check_calibration_values(chunk)
        if extent is None:
            return (*minmax_range(array), None)
        return (*block_ranges(grouped(array, extent)), None)

    def add(self, chunk: numpy.ndarray) -> None:
        part = self._part(chunk)
        if not self._spanning:
            self._parts.append(part)
        elif self._merged is None:
            self._merged = part
        else:
            self._merged = merge_statistics(self._merged, part)

    def statistics(self, options: Any) -> MinMaxQuantizationStats:
        if self._spanning:
            if self._merged is None:  # pragma: no cover - every array has a chunk
                raise InvalidValueError("no values were collected")
            rmin, rmax, uvalues = self._merged
        else:
            rmin = numpy.concatenate([part[0] for part in self._parts])
            rmax = numpy.concatenate([part[1] for part in self._parts])
            uvalues = [block for part in self._parts for block in part[2]] if self._keep else None
        return MinMaxQuantizationStats(rmax, rmin, uvalues)


class _Calibrated(Collector):
    """One calibrator of :mod:`intquant.calibration`, per tensor."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._calibrator = factory()

    def add(self, chunk: numpy.ndarray) -> None:
        self._calibrator.update(chunk)

    def statistics(self, options: Any) -> Any:
        return self._calibrator


class _GroupedCalibrated(Collector):
    """A calibrator per axis or block: one fed every chunk when every block spans all rows, else
    one per chunk of whole blocks, whose ranges are stacked along axis 0. Every chunk is given
    the same ``axis``/``block_size``, so blocks that span all rows (``--block-size`` whose first
    extent is the number of rows) are calibrated from one chunk: the whole array."""

    def __init__(
        self,
        factory: Callable[[], Any],
        granularity: dict[str, Any],
        shape: tuple[int, ...],
        extent: tuple[int, ...],
    ) -> None:
        self._factory, self._granularity = factory, granularity
        self._spanning = _spans_rows(shape, extent)
        if self._spanning and "block_size" in granularity and shape:
            self.row_multiple = shape[0]
        else:
            self.row_multiple = 1 if self._spanning else extent[0]
        self._calibrators: list[Any] = []

    def add(self, chunk: numpy.ndarray) -> None:
        if not self._spanning or not self._calibrators:
            self._calibrators.append(self._factory())
        self._calibrators[-1].update(chunk, **self._granularity)

    def statistics(self, options: Any) -> Any:
        if len(self._calibrators) == 1:
            return self._calibrators[0]
        ranges = [calibrator.range_for(options) for calibrator in self._calibrators]
        rmin: Any = numpy.concatenate([numpy.asarray(low) for low, _ in ranges])
        rmax: Any = numpy.concatenate([numpy.asarray(high) for _, high in ranges])
        return MinMaxQuantizationStats(rmax, rmin)

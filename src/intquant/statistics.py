"""Calibration statistics: the range (and rounded distinct values) of a calibration set."""

from __future__ import annotations

from typing import Any, Optional

import numpy

from intquant._members import (
    STATS_MEMBERS,
    copy_members,
    has_members,
    members_repr,
    require_keys,
    same_members,
)
from intquant._validation import check_calibration_values, check_n_bits
from intquant.errors import InvalidValueError, MissingParameterError
from intquant.kernels import is_uniform_grid, minmax_statistics
from intquant.serialization import JSONSerializable

__all__ = ["MinMaxQuantizationStats", "calibrate", "uniform_grid_check"]


class MinMaxQuantizationStats(JSONSerializable):
    """Statistics of a calibration set: ``rmin``, ``rmax`` and ``uvalues``.

    ``uvalues`` are the sorted distinct values rounded to 2 decimals; QAT quantization uses them
    to recognise values that already lie on a uniform grid.

    Parameters
    ----------
    rmax, rmin : float, optional
        The range, when known in advance.
    uvalues : numpy.ndarray, optional
        Sorted distinct values, rounded to 2 decimals.

    Examples
    --------
    >>> import numpy
    >>> stats = MinMaxQuantizationStats()
    >>> stats.compute_quantization_stats(numpy.array([0.5, -1.0, 0.254]))
    >>> float(stats.rmin), float(stats.rmax), stats.uvalues.tolist()
    (-1.0, 0.5, [-1.0, 0.25, 0.5])
    """

    rmax: Optional[float] = None
    rmin: Optional[float] = None
    uvalues: Optional[numpy.ndarray] = None

    def __init__(
        self,
        rmax: Optional[float] = None,
        rmin: Optional[float] = None,
        uvalues: Optional[numpy.ndarray] = None,
    ) -> None:
        self.rmax = rmax
        self.rmin = rmin
        self.uvalues = uvalues

    def __eq__(self, other: object) -> bool:
        if not has_members(other, STATS_MEMBERS):
            return NotImplemented
        return same_members(self, other, STATS_MEMBERS)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return members_repr(self, STATS_MEMBERS)

    def compute_quantization_stats(self, values: numpy.ndarray) -> None:
        """Compute the statistics of ``values`` (see :func:`calibrate`)."""
        self.rmin, self.rmax, self.uvalues = calibrate(values)

    def check_is_uniform_quantized(self, options: Any) -> bool:
        """Whether ``uvalues`` lie on a uniform grid of at most ``2**n_bits`` values."""
        return uniform_grid_check(self.uvalues, options)

    def copy_stats(self, stats: Any) -> None:
        """Copy ``rmax``, ``rmin`` and ``uvalues`` from ``stats``."""
        copy_members(self, stats, STATS_MEMBERS)

    @property
    def quant_stats(self) -> MinMaxQuantizationStats:
        """A copy of these statistics."""
        return copy_stats(self)

    def dump_dict(self) -> dict[str, Any]:
        """The three members, in order ``rmax, rmin, uvalues``."""
        return {name: getattr(self, name) for name in STATS_MEMBERS}

    @staticmethod
    def load_dict(metadata: dict[str, Any]) -> MinMaxQuantizationStats:
        """Rebuild statistics from :meth:`dump_dict` output."""
        require_keys(metadata, STATS_MEMBERS, "MinMaxQuantizationStats")
        return MinMaxQuantizationStats(metadata["rmax"], metadata["rmin"], metadata["uvalues"])


def copy_stats(source: Any) -> MinMaxQuantizationStats:
    """A new :class:`MinMaxQuantizationStats` holding the statistics members of ``source``."""
    stats = MinMaxQuantizationStats()
    stats.copy_stats(source)
    return stats


def calibrate(values: Any) -> tuple[Any, Any, numpy.ndarray]:
    """Validated ``(rmin, rmax, uvalues)`` of calibration values.

    ``rmin = numpy.min(values)`` and ``rmax = numpy.max(values)`` are numpy scalars of the values'
    dtype; ``uvalues = numpy.unique(numpy.round(values, 2))`` in the same dtype.

    Raises
    ------
    ValueError
        For an empty array or values with NaN or an infinity.
    TypeError
        For values that are not integers or floats.
    """
    return minmax_statistics(check_calibration_values(values))


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

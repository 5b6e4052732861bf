"""The calibrator base: what every calibration method provides, in ONNX Runtime's shape.

A calibrator *collects* statistics of calibration batches (:meth:`Calibrator.update`, any number
of times; :meth:`Calibrator.merge` folds in what another one of the same configuration collected)
and then *computes* a clipping range for given options (:meth:`Calibrator.range_for`). The seed
classes accept a calibrator wherever they accept statistics, and read only this interface. The
methods themselves live in :mod:`intquant.calibration`, one file each.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy

from intquant._core.codec import JSONSerializable

__all__ = ["Calibrator", "Range"]

#: A clipping range ``(rmin, rmax)``, as float64.
Range = tuple[numpy.float64, numpy.float64]


class Calibrator(JSONSerializable, abc.ABC):
    """Base class of the calibration methods (collect, then compute a range).

    Subclasses register an intquant serialization tag (``versioned_tag="intquant.<Name>"``) and
    implement the five methods below; their ``rmin``/``rmax`` give the range for default options
    and ``uvalues`` is None (no distinct values are kept).
    """

    @abc.abstractmethod
    def compute_quantization_stats(self, values: Any) -> None:
        """Forget what was collected, then collect ``values``."""

    @abc.abstractmethod
    def update(self, values: Any) -> None:
        """Fold a batch of values in (non-empty, finite, real; not changed)."""

    @abc.abstractmethod
    def merge(self, other: Any) -> None:
        """Fold in what ``other`` (same class and configuration) collected; ``other`` is unchanged."""

    @abc.abstractmethod
    def is_empty(self) -> bool:
        """Whether no values were collected yet."""

    @abc.abstractmethod
    def range_for(self, options: Any) -> Range:
        """The clipping range ``(rmin, rmax)`` for quantization ``options`` (``n_bits``,
        ``is_signed``, ``is_symmetric``, ``is_narrow``)."""

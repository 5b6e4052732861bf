"""The calibrator base: what every calibration method provides, in ONNX Runtime's shape.

A calibrator *collects* statistics of calibration batches (:meth:`Calibrator.update`, any number
of times; :meth:`Calibrator.merge` folds in what another one of the same configuration collected)
and then *computes* a clipping range for given options (:meth:`Calibrator.range_for`). The seed
classes accept a calibrator wherever they accept statistics, and read only this interface. The
methods themselves live in :mod:`intquant.calibration`, one file each.

A calibrator collects per tensor, per axis or per block (:mod:`intquant.granularity`): its
granularity comes from its constructor or from the ``axis``/``block_size`` keywords of its first
batch (``QuantizedArray`` passes its options' when it calibrates one), and its ranges are then
arrays over the block grid, shaped as :class:`MinMaxQuantizationStats` shapes ``rmin``/``rmax``.
"""

from __future__ import annotations

import abc
from typing import Any

from intquant._core.codec import JSONSerializable

__all__ = ["Calibrator", "Range"]

#: A clipping range ``(rmin, rmax)``: ``numpy.float64`` scalars per tensor, float64 arrays of the
#: block grid's shape per axis or block.
Range = tuple[Any, Any]


class Calibrator(JSONSerializable, abc.ABC):
    """Base class of the calibration methods (collect, then compute a range).

    Subclasses register an intquant serialization tag (``versioned_tag="intquant.<Name>"``) and
    implement the methods below; their ``rmin``/``rmax`` give the range for default options
    (at the calibrator's granularity) and ``uvalues`` is None (no distinct values are kept).
    """

    @abc.abstractmethod
    def compute_quantization_stats(
        self, values: Any, *, axis: int | None = None, block_size: tuple[int, ...] | None = None
    ) -> None:
        """Forget what was collected, then collect ``values`` (per axis or block if the
        calibrator, or these keywords, say so)."""

    @abc.abstractmethod
    def update(
        self, values: Any, *, axis: int | None = None, block_size: tuple[int, ...] | None = None
    ) -> None:
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
        ``is_signed``, ``is_symmetric``, ``is_narrow``; their ``axis``/``block_size`` must match
        the calibrator's granularity)."""

    @property
    @abc.abstractmethod
    def axis(self) -> int | None:
        """The axis of a per-axis calibrator, else None."""

    @property
    @abc.abstractmethod
    def block_size(self) -> tuple[int, ...] | None:
        """The block size of a per-block calibrator, else None."""

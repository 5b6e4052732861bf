"""A quantized array: float values and their integer codes, kept in sync."""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Optional

import numpy

from intquant._core.calibrator import Calibrator
from intquant._core.checks import (
    check_loaded_array,
    check_loaded_broadcast,
    check_loaded_parameter_shapes,
    check_n_bits,
)
from intquant._core.codec import JSONSerializable
from intquant._core.extras import EXTRA_OPTIONS, check_extra_options
from intquant._core.foreign import check_not_foreign
from intquant._core.members import (
    PARAM_MEMBERS,
    class_members,
    fill_members,
    require_keys,
    same_value,
)
from intquant._core.plan import CONCRETE_ML_1_7
from intquant.errors import InvalidDtypeError, InvalidTypeError, MissingParameterError, SerializationError
from intquant.options import QuantizationOptions
from intquant.parameters import UniformQuantizationParameters
from intquant.quantizer import UniformQuantizer
from intquant.statistics import MinMaxQuantizationStats, copy_float32_sort

__all__ = ["QuantizedArray", "load_quantized_array"]

_DUMP_KEYS = ("quantizer", "n_bits", "values", "qvalues")


class QuantizedArray(JSONSerializable, tag="QuantizedArray"):
    """Float values and their integer codes, kept in sync by a :class:`UniformQuantizer`.

    Parameters
    ----------
    n_bits : int
        Bits per code (overrides ``options.n_bits``).
    values : array_like or None
        Float values to quantize, or (``value_is_float=False``) integer codes to dequantize.
    value_is_float : bool
        Whether ``values`` are real values (default) or codes; codes need ``params``.
    options, stats, params : optional
        Parameter sets; the statistics and parameters are computed from the values when absent.
    **kwargs
        Any member of the three sets (``is_signed=True``, ``scale=0.1``, ...); a set named in
        the keywords must be given completely. Also the extra options of
        :mod:`intquant.extensions` (``rounding=``, ``axis=``, ``block_size=``, ...). ``stats`` may
        be a calibration object of :mod:`intquant.calibration`; if it has seen no data yet, it
        is calibrated on ``values``. Statistics with nothing computed yet
        (``MinMaxQuantizationStats(float32_sort="introsort")``, say) are computed from
        ``values`` as when ``stats`` is None, with their ``float32_sort`` (Concrete ML 1.7
        refuses them: ``Missing quantizer parameter rmax``).

    Raises
    ------
    TypeError
        ``Unexpected keyword arguments '...'`` for keywords that name no member.
    InvalidDtypeError
        (an ``AssertionError``) for integer values with ``value_is_float``, or float codes.
    MissingParameterError
        (an ``AssertionError``) for codes without ``params``.

    Examples
    --------
    >>> import numpy
    >>> qa = QuantizedArray(2, numpy.array([0.0, 0.3, 0.6, 0.9]))
    >>> qa.qvalues.tolist()
    [0, 1, 2, 3]
    >>> qa.update_values(numpy.array([0.31, 5.0])).tolist()
    [1, 3]
    """

    #: The behaviour this object follows (:data:`intquant._core.plan.CONVENTIONS`), its
    #: quantizer's.
    convention: ClassVar[str] = CONCRETE_ML_1_7
    # The classes of one convention, and how each parameter set is filled from the keywords
    # (:func:`intquant._core.members.fill_members`: None is Concrete ML 1.7's rule).
    _options_class: ClassVar[type[QuantizationOptions]] = QuantizationOptions
    _stats_class: ClassVar[type[MinMaxQuantizationStats]] = MinMaxQuantizationStats
    _params_class: ClassVar[type[UniformQuantizationParameters]] = UniformQuantizationParameters
    _quantizer_class: ClassVar[type[UniformQuantizer]] = UniformQuantizer
    _accept_missing: ClassVar[tuple[bool | None, bool | None, bool | None]] = (None, None, None)

    quantizer: UniformQuantizer
    n_bits: int
    values: Any
    qvalues: Any

    def __init__(
        self,
        n_bits: int,
        values: Optional[numpy.ndarray],
        value_is_float: bool = True,
        options: Optional[QuantizationOptions] = None,
        stats: Optional[MinMaxQuantizationStats] = None,
        params: Optional[UniformQuantizationParameters] = None,
        **kwargs: Any,
    ) -> None:
        check_n_bits(n_bits)
        extras = check_extra_options(**{name: kwargs.pop(name) for name in EXTRA_OPTIONS if name in kwargs})
        # Work on copies: filling from keywords must not change the caller's objects.
        options = copy.deepcopy(options) if options is not None else self._options_class(n_bits)
        options.n_bits = n_bits
        for name, value in extras.items():
            setattr(options, name, value)
        fill_options, fill_stats, fill_params = self._accept_missing
        options, kwargs = fill_members(options, self._options_class, kwargs, fill_options)
        calibration: Any = None
        sort_source: Any = None
        if isinstance(stats, Calibrator):  # a calibration method: its own state, not the members
            clash = [name for name in class_members(self._stats_class) if name in kwargs]
            if clash:
                raise InvalidTypeError(
                    f"{', '.join(clash)} cannot be given with a {type(stats).__name__}, which "
                    f"computes the range itself; drop them or pass MinMaxQuantizationStats."
                )
            stats = calibration = copy.deepcopy(stats)
        elif fill_stats is None and stats is not None and _nothing_computed(stats, kwargs):
            stats, sort_source = None, stats  # computed from the values, with its float32_sort
        else:
            stats, kwargs = fill_members(copy.deepcopy(stats), self._stats_class, kwargs, fill_stats)
        params, kwargs = fill_members(copy.deepcopy(params), self._params_class, kwargs, fill_params)
        if kwargs:
            raise InvalidTypeError(
                f"Unexpected keyword arguments '{','.join(kwargs)}'; QuantizedArray accepts the "
                f"members of QuantizationOptions, MinMaxQuantizationStats and "
                f"UniformQuantizationParameters."
            )
        self.n_bits = n_bits
        if calibration is not None and value_is_float and values is not None and calibration.is_empty():
            # our copy: calibrate it on these values, per axis or block as the options say
            granularity = {name: getattr(options, name, None) for name in ("axis", "block_size")}
            calibration.compute_quantization_stats(values, **granularity)
        self.quantizer = self._quantizer_class(options, stats, params)
        if sort_source is not None:
            copy_float32_sort(self.quantizer, sort_source)
        self.values = None
        self.qvalues = None
        if values is None:
            return
        if value_is_float:
            if isinstance(values, numpy.ndarray) and not numpy.issubdtype(values.dtype, numpy.floating):
                raise InvalidDtypeError(
                    f"Values must be float if value_is_float is set to True; got dtype "
                    f"{values.dtype} with shape {values.shape}. Pass float values, or integer "
                    f"codes with value_is_float=False and params."
                )
            self.values = _copy_array(values)
            if stats is None:
                self.quantizer.compute_quantization_stats(self.values)
            if params is None:
                self.quantizer.compute_quantization_parameters(options, self.quantizer.quant_stats)
            self.quant()
        else:
            if params is None:
                raise MissingParameterError(
                    "When initializing QuantizedArray with integer values the quantization "
                    "params must be provided: pass params=UniformQuantizationParameters(...) or "
                    "scale=, zero_point=, offset= keywords."
                )
            if isinstance(values, numpy.ndarray) and not numpy.issubdtype(values.dtype, numpy.integer):
                raise InvalidDtypeError(
                    f"Quantized values must be integers if value_is_float is False; got dtype "
                    f"{values.dtype} with shape {values.shape}."
                )
            self.qvalues = _copy_array(values)
            self.dequant()

    def __call__(self) -> Any:
        """The integer codes."""
        return self.qvalues

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantizedArray):
            return NotImplemented
        return (
            same_value(self.n_bits, other.n_bits)
            and self.quantizer == other.quantizer
            and bool(numpy.array_equal(self.values, other.values))
            and bool(numpy.array_equal(self.qvalues, other.qvalues))
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return (
            f"QuantizedArray(n_bits={self.n_bits!r}, qvalues={self.qvalues!r}, quantizer={self.quantizer!r})"
        )

    def quant(self) -> Any:
        """Quantize ``values`` into ``qvalues``; return the codes."""
        self.qvalues = self.quantizer.quant(self.values)
        return self.qvalues

    def dequant(self) -> Any:
        """De-quantize ``qvalues`` into ``values`` (which must come out float64); return them."""
        self.values = self._dequantized(self.qvalues)
        return self.values

    def update_values(self, values: numpy.ndarray) -> Any:
        """Replace ``values`` with a copy of ``values``; return their codes."""
        new_values = _copy_array(values)
        self.qvalues = self.quantizer.quant(new_values)
        self.values = new_values
        return self.qvalues

    def update_quantized_values(self, qvalues: numpy.ndarray) -> Any:
        """Replace ``qvalues`` with a copy of ``qvalues``; return their de-quantized values."""
        new_qvalues = _copy_array(qvalues)
        self.values = self._dequantized(new_qvalues)
        self.qvalues = new_qvalues
        return self.values

    def _dequantized(self, qvalues: Any) -> Any:
        values = self.quantizer.dequant(qvalues)
        dtype = getattr(values, "dtype", None)
        if dtype is not None and dtype != numpy.float64:
            raise InvalidDtypeError(
                f"De-quantized values must be float64; got {dtype}. Pass integer codes (or "
                f"float64 ones) to dequantize."
            )
        return values

    def dump_dict(self) -> dict[str, Any]:
        """``quantizer``, ``n_bits``, ``values`` and ``qvalues``."""
        return {name: getattr(self, name) for name in _DUMP_KEYS}

    @staticmethod
    def load_dict(metadata: dict[str, Any]) -> QuantizedArray:
        """Rebuild a quantized array exactly as dumped (nothing is recomputed).

        Raises
        ------
        SerializationError
            For missing or unknown keys, a ``quantizer`` that is not a :class:`UniformQuantizer`,
            an invalid ``n_bits``, ``values``/``qvalues`` that are not numpy arrays (or scalars)
            of numbers or None, or per-channel parameters of a quantizer without ``axis`` or
            ``block_size`` that do not broadcast against the values without changing their
            shape (see ``docs/serialization.md``), or a quantizer of another convention.
        """
        return load_quantized_array(QuantizedArray, metadata)

    @staticmethod
    def convention_of_text(payload: Any) -> str | None:
        """The convention a serialized quantized array shows: its quantizer's (already loaded)."""
        quantizer = payload.get("quantizer") if isinstance(payload, dict) else None
        return quantizer.convention if isinstance(quantizer, UniformQuantizer) else None


def load_quantized_array(klass: type[QuantizedArray], metadata: dict[str, Any]) -> Any:
    """A quantized array of ``klass`` (:class:`QuantizedArray` or a subclass) rebuilt exactly as
    dumped, checked as :meth:`QuantizedArray.load_dict` says; its quantizer must follow
    ``klass.convention``."""
    require_keys(metadata, _DUMP_KEYS, "QuantizedArray")
    quantizer = metadata["quantizer"]
    if not isinstance(quantizer, UniformQuantizer):
        raise SerializationError(
            f"QuantizedArray.load_dict needs a UniformQuantizer under 'quantizer'; got "
            f"{type(quantizer).__name__}."
        )
    if quantizer.convention != klass.convention:
        raise SerializationError(
            f"a {klass.convention} QuantizedArray needs a {klass.convention} quantizer; got a "
            f"{quantizer.convention} one. Load the text with intquant.loads, which gives the "
            f"array its quantizer's convention, or with the loads of the convention wanted."
        )
    check_n_bits(metadata["n_bits"])
    _check_loaded_values(quantizer, metadata["values"], metadata["qvalues"])
    array = klass.__new__(klass)
    for name in _DUMP_KEYS:
        setattr(array, name, metadata[name])
    return array


def _nothing_computed(stats: Any, kwargs: dict[str, Any]) -> bool:
    """Whether ``stats`` are the seed's statistics with no member set, and no keyword names one:
    then they only say how to compute (``float32_sort``)."""
    if type(stats) is not MinMaxQuantizationStats or any(
        name in kwargs for name in ("rmax", "rmin", "uvalues")
    ):
        return False
    return stats.rmin is None and stats.rmax is None and stats.__dict__.get("uvalues") is None


def _check_loaded_values(quantizer: UniformQuantizer, values: Any, qvalues: Any) -> None:
    """The loaded ``values`` and ``qvalues``: arrays (or numpy scalars) of numbers, or None, of a
    shape the quantizer's per-channel parameters (per tensor, broadcast by numpy) keep."""
    grid = None
    if quantizer.axis is None and quantizer.block_size is None:
        parameters = {name: getattr(quantizer, name, None) for name in PARAM_MEMBERS}
        grid = check_loaded_parameter_shapes("QuantizedArray", parameters, per_tensor=True)
    for name, value in (("values", values), ("qvalues", qvalues)):
        check_loaded_array("QuantizedArray", name, value)
        check_loaded_broadcast("QuantizedArray", name, value, grid)


def _copy_array(values: Any) -> numpy.ndarray:
    """A copy of an ndarray (keeping its memory layout), or ``numpy.array(values)``; tensors and
    dask arrays are refused (see :mod:`intquant._core.foreign`)."""
    if isinstance(values, numpy.ndarray):
        return values.copy(order="K")
    check_not_foreign(values, "QuantizedArray values", holder="QuantizedArray")
    return numpy.array(values)

"""Concrete ML 1.8.0's and 1.9.0's ``concrete.ml.quantization.quantizers``, standalone.

The seed's names with Concrete ML 1.9's behaviour (``convention == "concrete-ml-1.9"``; 1.8.0
ships the same module). What differs from :mod:`intquant.quantizers` (Concrete ML 1.7.0):

* :class:`MinMaxQuantizationStats` holds ``rmax`` and ``rmin`` only: no ``uvalues`` attribute
  (reading it raises ``AttributeError``), no ``check_is_uniform_quantized``; equality, ``repr``
  and text without them; :meth:`~MinMaxQuantizationStats.compute_quantization_stats` computes
  the range only.
* :meth:`UniformQuantizationParameters.compute_quantization_parameters` infers no QAT scale from
  ``uvalues``: asymmetric QAT keeps a scale set before, else ``(rmax - rmin) / (2**n_bits - 1)``.
* :meth:`UniformQuantizer.quant` clips every code unless ``no_clipping`` (QAT codes too) and
  takes ``dtype`` (``numpy.int64`` by default; ``int32``, ``float32`` and ``float64`` as in 1.9).
* :func:`fill_from_kwargs` takes ``accept_missing``; :class:`QuantizedArray` accepts statistics
  with no member set (they are then not computed: pass parameters, or no statistics at all).
* :func:`dumps` writes 1.9's text (no ``uvalues``); :func:`loads` builds every object of the
  seed's classes as this module's, from texts of 1.7 (whose ``uvalues`` are checked, then
  dropped, as 1.9 ignores them), 1.8 and 1.9.

intquant's extra options (``rounding``, ``axis``, ``block_size``, ...), calibration objects, the
compiled paths and the deviations of :mod:`intquant.quantizers` (clear errors where Concrete ML
returns garbage) apply here too; see ``docs/compat.md``.

>>> import numpy
>>> from intquant.compat import v1_9
>>> qa = v1_9.QuantizedArray(4, numpy.array([-1.0, 0.0, 2.0]), is_signed=True)
>>> qa.qvalues.tolist(), qa.convention
([-8, -3, 7], 'concrete-ml-1.9')
>>> v1_9.dumps(v1_9.MinMaxQuantizationStats(rmax=2.0, rmin=-1.0))
'{"type_name": "MinMaxQuantizationStats", "serialized_value": {"rmax": 2.0, "rmin": -1.0}}'
"""

from __future__ import annotations

from typing import IO, Any, Optional

import numpy

from intquant import options as _options
from intquant import parameters as _parameters
from intquant import quantized_array as _quantized_array
from intquant import quantizer as _quantizer
from intquant import statistics as _statistics
from intquant._core.calibrator import Calibrator
from intquant._core.checks import as_real_array, check_loaded_statistics
from intquant._core.codec import dump, dumps, loads_as
from intquant._core.execute import check_codes_out
from intquant._core.extras import extra_dump
from intquant._core.foreign import is_dask_array
from intquant._core.formulas import CODE_DTYPES, STABILITY_CONST, code_dtype
from intquant._core.members import (
    OPTION_MEMBERS,
    PARAM_MEMBERS,
    RANGE_MEMBERS,
    STATS_MEMBERS,
    Absent,
    copy_members,
    fill_members,
    has_members,
    members_repr,
    require_keys,
    same_members,
)
from intquant._core.plan import CONCRETE_ML_1_9, QuantizerSettings
from intquant.compat._codes import cast_codes, codes_as
from intquant.errors import InvalidDtypeError, InvalidTypeError

__all__ = [
    "STABILITY_CONST",
    "fill_from_kwargs",
    "QuantizationOptions",
    "MinMaxQuantizationStats",
    "UniformQuantizationParameters",
    "UniformQuantizer",
    "QuantizedArray",
    "dumps",
    "dump",
    "loads",
    "load",
]

_INT64 = numpy.dtype(numpy.int64)
_QUANTIZER_MEMBERS = (*OPTION_MEMBERS, *RANGE_MEMBERS, *PARAM_MEMBERS)


def fill_from_kwargs(
    obj: Any, klass: type, accept_missing: bool, **kwargs: Any
) -> tuple[Any, dict[str, Any]]:
    """Fill a parameter set from keyword arguments (Concrete ML 1.9's rule).

    Every keyword naming a member of ``klass`` is set on ``obj`` (created as ``klass()`` when
    ``obj`` is None) and removed from the keywords. When an object results, all of its members
    must then be set (not None), or, with ``accept_missing``, none of them. Nothing is changed
    when this raises.

    Returns
    -------
    tuple
        ``(obj, remaining_kwargs)``.

    Raises
    ------
    TypeError
        ``Missing quantizer parameter <missing>, but <given> were given`` (names joined by
        commas), or ``klass`` cannot be created without arguments.

    Examples
    --------
    >>> stats, rest = fill_from_kwargs(MinMaxQuantizationStats(), MinMaxQuantizationStats, True)
    >>> stats.rmax is None, rest
    (True, {})
    """
    return fill_members(obj, klass, kwargs, bool(accept_missing))


class QuantizationOptions(
    _options.QuantizationOptions, tag="QuantizationOptions", versioned_tag="intquant.QuantizationOptions"
):
    """Options for quantization, as Concrete ML 1.9 has them (the same as 1.7's).

    See :class:`intquant.QuantizationOptions` for the parameters and extra options.

    Examples
    --------
    >>> QuantizationOptions(8, is_signed=True).quant_options.convention
    'concrete-ml-1.9'
    """

    convention = CONCRETE_ML_1_9

    @property
    def quant_options(self) -> QuantizationOptions:
        """A copy of these options."""
        copied: QuantizationOptions = _options.copy_options(self, QuantizationOptions)
        return copied

    @staticmethod
    def load_dict(metadata: dict[str, Any], format_version: int = 0) -> QuantizationOptions:
        """Rebuild options from :meth:`dump_dict` output (see
        :meth:`intquant.QuantizationOptions.load_dict`)."""
        options: QuantizationOptions = _options.load_options(QuantizationOptions, metadata)
        return options


class MinMaxQuantizationStats(
    _statistics.MinMaxQuantizationStats,
    tag="MinMaxQuantizationStats",
    versioned_tag="intquant.MinMaxQuantizationStats",
):
    """Statistics of a calibration set as Concrete ML 1.9 keeps them: ``rmin`` and ``rmax``.

    There is no ``uvalues`` attribute (nor ``float32_sort``, which only concerns them) and no
    ``check_is_uniform_quantized``: reading them raises ``AttributeError``.

    Parameters
    ----------
    rmax, rmin : float, optional
        The range, when known in advance.

    Examples
    --------
    >>> stats = MinMaxQuantizationStats()
    >>> stats.compute_quantization_stats(numpy.array([0.5, -1.0, 0.254]))
    >>> float(stats.rmin), float(stats.rmax), hasattr(stats, "uvalues")
    (-1.0, 0.5, False)
    """

    convention = CONCRETE_ML_1_9
    uvalues = Absent()
    float32_sort = Absent()
    check_is_uniform_quantized = Absent()

    def __init__(self, rmax: Optional[float] = None, rmin: Optional[float] = None) -> None:
        self.rmax = rmax
        self.rmin = rmin

    def __eq__(self, other: object) -> bool:
        # Ranges compared (as Concrete ML 1.9); Concrete ML 1.7's statistics are equal to these
        # only without uvalues (these are 1.7 statistics whose uvalues are None).
        if not has_members(other, RANGE_MEMBERS):
            return NotImplemented
        return same_members(self, other, STATS_MEMBERS)

    __hash__ = None  # mutable, compared by value

    def __repr__(self) -> str:
        return members_repr(self, RANGE_MEMBERS)

    def compute_quantization_stats(
        self, values: numpy.ndarray, *, axis: int | None = None, block_size: tuple[int, ...] | None = None
    ) -> None:
        """Compute ``rmin = min(values)`` and ``rmax = max(values)`` (per axis or block with
        ``axis`` or ``block_size``); nothing is kept of the values."""
        self.rmin, self.rmax = _statistics.calibrate_range(values, axis, block_size)

    def update(
        self, values: numpy.ndarray, *, axis: int | None = None, block_size: tuple[int, ...] | None = None
    ) -> None:
        """Fold a batch of values into the range (callable many times): ``rmin = min``, ``rmax
        = max`` over every batch, exactly. Batches must share one dtype (and block grid)."""
        _statistics.fold_range(self, _statistics.calibrate_range(values, axis, block_size))

    def merge(self, other: Any) -> None:
        """Fold the range of other statistics in (``other`` is not changed).

        Raises
        ------
        InvalidTypeError
            If ``other`` is a calibration method, or its statistics have another dtype or block
            grid.
        """
        _statistics.merge_range(self, other)

    def copy_stats(self, stats: Any) -> None:
        """Copy ``rmax`` and ``rmin`` from ``stats`` (``uvalues``, if it has them, are not used
        by Concrete ML 1.9)."""
        copy_members(self, stats, RANGE_MEMBERS)

    @property
    def quant_stats(self) -> MinMaxQuantizationStats:
        """A copy of these statistics."""
        stats = MinMaxQuantizationStats()
        stats.copy_stats(self)
        return stats

    def dump_dict(self) -> dict[str, Any]:
        """The two members, in order ``rmax, rmin``."""
        return {name: getattr(self, name) for name in RANGE_MEMBERS}

    @staticmethod
    def load_dict(metadata: dict[str, Any], format_version: int = 0) -> MinMaxQuantizationStats:
        """Rebuild statistics from :meth:`dump_dict` output, or from Concrete ML 1.7's text,
        whose ``uvalues`` are checked as :meth:`intquant.MinMaxQuantizationStats.load_dict`
        checks them, then dropped (Concrete ML 1.9 ignores them).

        Raises
        ------
        SerializationError
            For missing or unknown keys, or fields refused as by
            :meth:`intquant.MinMaxQuantizationStats.load_dict`.
        """
        require_keys(metadata, RANGE_MEMBERS, "MinMaxQuantizationStats", optional=("uvalues",))
        check_loaded_statistics("MinMaxQuantizationStats", metadata)
        return MinMaxQuantizationStats(metadata["rmax"], metadata["rmin"])


class UniformQuantizationParameters(
    _parameters.UniformQuantizationParameters, tag="UniformQuantizationParameters"
):
    """Parameters that map real values to integer codes, computed as Concrete ML 1.9 does.

    Examples
    --------
    >>> params = UniformQuantizationParameters()
    >>> params.compute_quantization_parameters(
    ...     QuantizationOptions(2, is_qat=True), MinMaxQuantizationStats(rmax=1.5, rmin=0.0))
    >>> float(params.scale), params.zero_point, params.offset
    (0.5, 0, 0)
    """

    convention = CONCRETE_ML_1_9

    def compute_quantization_parameters(self, options: Any, stats: Any) -> None:
        """Compute scale, zero point and offset (see :func:`intquant.parameters.compute_parameters`;
        no scale inferred from ``uvalues``)."""
        self.scale, self.zero_point, self.offset = _parameters.compute_parameters(
            options, stats, self.scale, use_uvalues=False
        )

    @property
    def quant_params(self) -> UniformQuantizationParameters:
        """A copy of these parameters."""
        copied: UniformQuantizationParameters = _parameters.copy_params(self, UniformQuantizationParameters)
        return copied

    @staticmethod
    def load_dict(metadata: dict[str, Any]) -> UniformQuantizationParameters:
        """Rebuild parameters from :meth:`dump_dict` output (see
        :meth:`intquant.UniformQuantizationParameters.load_dict`)."""
        params: UniformQuantizationParameters = _parameters.load_parameters(
            UniformQuantizationParameters, metadata
        )
        return params


class UniformQuantizer(
    _quantizer.UniformQuantizer, tag="UniformQuantizer", versioned_tag="intquant.UniformQuantizer"
):
    """Uniform quantizer with Concrete ML 1.9's rules: statistics without ``uvalues``, no QAT scale
    inferred from them, every code clipped unless ``no_clipping``, ``quant(values, dtype=)``.

    See :class:`intquant.UniformQuantizer` for the parameters.

    Examples
    --------
    >>> quantizer = UniformQuantizer(QuantizationOptions(2, is_qat=True))
    >>> quantizer.compute_quantization_stats(numpy.array([0.0, 0.5, 1.5]))
    >>> quantizer.compute_quantization_parameters(quantizer.quant_options, quantizer.quant_stats)
    >>> quantizer.quant(numpy.array([0.5, 4.0])).tolist()  # clipped to [0, 3], QAT too
    [1, 3]
    >>> quantizer.quant(numpy.array([0.5, 4.0]), dtype=numpy.float32).tolist()
    [1.0, 3.0]
    """

    convention = CONCRETE_ML_1_9
    uvalues = Absent()
    float32_sort = Absent()
    check_is_uniform_quantized = Absent()

    def __repr__(self) -> str:
        return members_repr(self, (*_QUANTIZER_MEMBERS, "no_clipping"))

    # -- options, statistics, parameters
    @property
    def quant_options(self) -> QuantizationOptions:
        """A copy of the options (needs ``n_bits``)."""
        self._require_n_bits()
        copied: QuantizationOptions = _options.copy_options(self, QuantizationOptions)
        return copied

    def compute_quantization_stats(self, values: numpy.ndarray) -> None:
        """Compute ``rmin`` and ``rmax`` of ``values`` (per axis or block if set)."""
        self.rmin, self.rmax = _statistics.calibrate_range(values, self.axis, self.block_size)

    def update(self, values: numpy.ndarray) -> None:
        """Fold a batch into the range (see :meth:`MinMaxQuantizationStats.update`)."""
        _statistics.fold_range(self, _statistics.calibrate_range(values, self.axis, self.block_size))

    def copy_stats(self, stats: Any) -> None:
        """Copy ``rmax`` and ``rmin`` from ``stats`` (from a calibration object, its clipping
        range for this quantizer's options)."""
        if isinstance(stats, Calibrator) and hasattr(self, "n_bits"):
            self.rmin, self.rmax = stats.range_for(self)
            return
        copy_members(self, stats, RANGE_MEMBERS)

    @property
    def quant_stats(self) -> MinMaxQuantizationStats:
        """A copy of the statistics."""
        stats = MinMaxQuantizationStats()
        stats.copy_stats(self)
        return stats

    def compute_quantization_parameters(self, options: Any, stats: Any) -> None:
        """Compute ``scale``, ``zero_point``, ``offset`` (no scale inferred from ``uvalues``)."""
        self.scale, self.zero_point, self.offset = _parameters.compute_parameters(
            options, stats, self.scale, use_uvalues=False
        )

    @property
    def quant_params(self) -> UniformQuantizationParameters:
        """A copy of the parameters."""
        copied: UniformQuantizationParameters = _parameters.copy_params(self, UniformQuantizationParameters)
        return copied

    # -- quantization
    def settings(self, need_offset: bool = True) -> QuantizerSettings:
        """The seed's :meth:`intquant.UniformQuantizer.settings` (which clip by this class's
        convention), marked with the convention its plans follow."""
        return super().settings(need_offset)._replace(convention=CONCRETE_ML_1_9)

    def quant(self, values: numpy.ndarray, dtype: Any = numpy.int64, out: numpy.ndarray | None = None) -> Any:
        """Quantize: ``clip(round(values / scale + zero_point), low, high)`` as ``dtype``.

        As :meth:`intquant.UniformQuantizer.quant`, but for Concrete ML 1.9's rules: every code is
        clipped unless ``no_clipping`` (the codes of QAT values whose parameters were inferred
        too), and the codes are those 1.9 returns in ``dtype``: for int32, float32 and float64,
        the rounded codes cast, ``-0.0`` included where rounding gives it and clipping keeps it
        (``low < 0 < high``). Each code is checked to fit ``dtype`` exactly (Concrete ML 1.9
        wraps int32 codes beyond ``2**31 - 1`` and rounds float32 codes beyond ``2**24``).

        Parameters
        ----------
        values : array_like
            Values to quantize.
        dtype : optional
            ``numpy.int64`` (default; None too), ``numpy.int32``, ``numpy.float32`` or
            ``numpy.float64``, as types or ``numpy.dtype`` objects: what Concrete ML 1.9 takes.
            Other dtypes and dtype names are refused as 1.9 refuses them
            (:meth:`intquant.UniformQuantizer.quant` takes more).
        out : numpy.ndarray, optional
            An array of the codes' shape to write the codes into (its dtype is theirs; ``dtype``,
            if not int64, must be it), checked as :meth:`intquant.UniformQuantizer.quant` checks
            it.

        Raises
        ------
        InvalidDtypeError
            (an ``AssertionError``, as 1.9's) for a ``dtype`` codes cannot be returned in.
        ValueError
            As :meth:`intquant.UniformQuantizer.quant`, and for codes ``dtype`` cannot hold.
        """
        if out is None and (dtype is numpy.int64 or dtype is None):  # the usual call, quickly
            return super().quant(values)
        if out is not None:
            requested = None if dtype is None or _is_int64(dtype) else dtype
            if (
                not isinstance(out, numpy.ndarray)
                or out.dtype == _INT64
                or out.dtype not in CODE_DTYPES
                or (requested is not None and _codes_dtype(requested) != out.dtype)
            ):
                return super().quant(values, requested, out)  # int64 codes, or the seed's refusal
            target = out.dtype
        else:
            target = _codes_dtype(dtype)
        if isinstance(target, str) or target == _INT64:  # "smallest", int64: the seed's codes
            return super().quant(values, None if target == _INT64 else target, out)
        if type(values) is not numpy.ndarray and is_dask_array(values):
            return super().quant(values, target, out)  # lazy, chunk by chunk (intquant.dask)
        operand: Any = as_real_array(values, "values to quantize")
        plan = self.quant_plan(operand.dtype, numpy.shape(operand))
        if plan.rounding == "stochastic":  # drawn as the seed draws; its int64 codes, cast
            converted = cast_codes(super().quant(operand), target, plan)
            converted = converted[()] if converted.ndim == 0 else converted
        else:
            converted = codes_as(plan, operand, target)
        if out is None:
            return converted
        check_codes_out(out, numpy.shape(converted), operand)
        numpy.copyto(out, converted)
        return out

    # -- serialization
    def dump_dict(self) -> dict[str, Any]:
        """The members the quantizer has (``n_bits`` may be absent; no ``uvalues``), then
        ``no_clipping``; the extra options that differ from their defaults come after the option
        members."""
        options = {name: getattr(self, name) for name in OPTION_MEMBERS if hasattr(self, name)}
        rest = {name: getattr(self, name) for name in (*RANGE_MEMBERS, *PARAM_MEMBERS, "no_clipping")}
        return {**options, **extra_dump(self), **rest}

    @staticmethod
    def load_dict(metadata: dict[str, Any], format_version: int = 0) -> UniformQuantizer:
        """Rebuild a quantizer from :meth:`dump_dict` output, or from Concrete ML 1.7's text,
        whose ``uvalues`` are checked, then dropped (see
        :meth:`intquant.UniformQuantizer.load_dict`)."""
        quantizer: UniformQuantizer = _quantizer.load_quantizer(UniformQuantizer, metadata)
        return quantizer


class QuantizedArray(_quantized_array.QuantizedArray, tag="QuantizedArray"):
    """Float values and their integer codes, kept in sync by a 1.9 :class:`UniformQuantizer`.

    As :class:`intquant.QuantizedArray`, with Concrete ML 1.9's rules: options and parameters
    named in the keywords must be complete; statistics may have every member None (then they are
    not computed from the values, and parameters must be given).

    Examples
    --------
    >>> qa = QuantizedArray(2, numpy.array([0.0, 0.3, 0.6, 0.9]), stats=MinMaxQuantizationStats(),
    ...                     scale=0.3, zero_point=0, offset=0)
    >>> qa.qvalues.tolist()
    [0, 1, 2, 3]
    """

    convention = CONCRETE_ML_1_9
    _options_class = QuantizationOptions
    _stats_class = MinMaxQuantizationStats
    _params_class = UniformQuantizationParameters
    _quantizer_class = UniformQuantizer
    _accept_missing = (False, True, False)

    quantizer: UniformQuantizer

    @staticmethod
    def load_dict(metadata: dict[str, Any]) -> QuantizedArray:
        """Rebuild a quantized array exactly as dumped (see
        :meth:`intquant.QuantizedArray.load_dict`); its quantizer must be a 1.9 one."""
        array: QuantizedArray = _quantized_array.load_quantized_array(QuantizedArray, metadata)
        return array


def loads(text: str | bytes | bytearray) -> Any:
    """Rebuild an object from text written by :func:`dumps` or by Concrete ML 1.7 to 1.9, every
    object of the seed's classes as this module's class (Concrete ML 1.9 reads 1.7's texts so:
    their ``uvalues`` are checked, then dropped). Other texts (calibration states) load as with
    :func:`intquant.loads`.

    Raises
    ------
    SerializationError
        As :func:`intquant.loads`.

    Examples
    --------
    >>> type(loads(dumps(QuantizationOptions(8)))).__module__
    'intquant.compat.v1_9'
    """
    return loads_as(text, CONCRETE_ML_1_9)


def load(file: IO[str]) -> Any:
    """Read an object from an open text file (see :func:`loads`)."""
    return loads(file.read())


def _is_int64(dtype: Any) -> bool:
    return dtype is numpy.int64 or (isinstance(dtype, numpy.dtype) and dtype == _INT64)


#: The codes dtypes Concrete ML 1.9's ``quant`` takes (as numpy types, or dtypes equal to them).
ACCEPTED_CODES_DTYPES = (numpy.int64, numpy.int32, numpy.float32, numpy.float64)


def _codes_dtype(dtype: Any) -> Any:
    """``dtype`` as a codes dtype, when Concrete ML 1.9 takes it (``dtype in (numpy.int64,
    numpy.int32, numpy.float32, numpy.float64)``: the types, or ``numpy.dtype`` objects equal to
    them); refused otherwise, as 1.9 asserts."""
    try:
        accepted = any(dtype == kind for kind in ACCEPTED_CODES_DTYPES)
    except Exception:  # an object whose == raises is not a dtype
        accepted = False
    if not accepted:
        raise InvalidDtypeError(
            f"Concrete ML 1.9's quant takes dtype numpy.int64, numpy.int32, numpy.float32 or "
            f"numpy.float64 (the types, or numpy.dtype objects); got {dtype!r} of type "
            f"{type(dtype).__name__}. intquant.UniformQuantizer.quant (the 1.7 convention) also "
            f"takes dtype names, int8 to uint32 and 'smallest'."
        )
    try:
        return code_dtype(dtype)
    except InvalidTypeError as error:
        raise InvalidDtypeError(str(error)) from None

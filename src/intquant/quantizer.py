"""The uniform quantizer: options, statistics and parameters together, with quant/dequant."""

from __future__ import annotations

from typing import Any, Optional, TypeGuard

import numpy

from intquant._core.checks import check_flag, check_n_bits, check_scale
from intquant._core.codec import JSONSerializable
from intquant._core.extras import EXTRA_OPTIONS, check_extra_options, copy_extra_options, extra_dump
from intquant._core.formulas import as_real_array, convert_codes, dequantize, integer_bounds, quantize
from intquant._core.granularity import block_extent, dequantize_grouped, quantize_grouped
from intquant._core.members import (
    OPTION_MEMBERS,
    PARAM_MEMBERS,
    STATS_MEMBERS,
    copy_members,
    members_repr,
    same_members,
)
from intquant.errors import InvalidDtypeError, MissingParameterError, SerializationError
from intquant.options import QuantizationOptions, copy_options, options_equivalent
from intquant.parameters import UniformQuantizationParameters, compute_parameters, copy_params
from intquant.statistics import MinMaxQuantizationStats, calibrate, copy_stats, uniform_grid_check

__all__ = ["UniformQuantizer"]

_ALL_MEMBERS = OPTION_MEMBERS + STATS_MEMBERS + PARAM_MEMBERS


class UniformQuantizer(JSONSerializable):
    """Uniform quantizer: quantizes and dequantizes numpy arrays.

    It holds the members of the three parameter sets side by side (``n_bits`` and the five
    flags, ``rmax, rmin, uvalues``, ``scale, zero_point, offset``) and offers the methods of all
    three classes, delegating the arithmetic to :mod:`intquant.kernels`.

    Parameters
    ----------
    options : QuantizationOptions, optional
        Without options the quantizer has no ``n_bits`` attribute.
    stats : MinMaxQuantizationStats, optional
    params : UniformQuantizationParameters, optional
        A given ``scale`` is converted to ``numpy.float64``.
    no_clipping : bool
        Do not clip codes to the ``n_bits`` range.

    Examples
    --------
    >>> import numpy
    >>> from intquant import QuantizationOptions
    >>> quantizer = UniformQuantizer(QuantizationOptions(4))
    >>> values = numpy.array([-1.0, 0.0, 0.5, 2.0])
    >>> quantizer.compute_quantization_stats(values)
    >>> quantizer.compute_quantization_parameters(quantizer.quant_options, quantizer.quant_stats)
    >>> quantizer.quant(values).tolist()
    [0, 5, 8, 15]
    >>> quantizer.dequant(quantizer.quant(values)).tolist()
    [-1.0, 0.0, 0.6000000000000001, 2.0]
    """

    # Class-level defaults, as the reference's: a quantizer made without options still has the
    # five flags (False) but no n_bits.
    is_signed: bool = False
    is_symmetric: bool = False
    is_qat: bool = False
    is_narrow: bool = False
    is_precomputed_qat: bool = False
    rmax: Optional[float] = None
    rmin: Optional[float] = None
    uvalues: Optional[numpy.ndarray] = None
    # Extra options (intquant.extensions), defaults as on QuantizationOptions.
    rounding = "half_even"
    seed = None
    axis = None
    block_size = None
    zero_in_range = False
    power_of_two_scale = False

    def __init__(
        self,
        options: Optional[QuantizationOptions] = None,
        stats: Optional[MinMaxQuantizationStats] = None,
        params: Optional[UniformQuantizationParameters] = None,
        no_clipping: bool = False,
    ) -> None:
        self.no_clipping = check_flag("no_clipping", no_clipping)
        self._generator: numpy.random.Generator | None = None  # for stochastic rounding
        self.scale: Any = None
        self.zero_point: Any = None
        self.offset: Optional[int] = None
        if options is not None:
            self.copy_opts(options)
        if stats is not None:
            self.copy_stats(stats)
        if params is not None:
            self.copy_params(params)
        if self.scale is not None:
            self.scale = numpy.float64(self.scale)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UniformQuantizer):
            return NotImplemented
        return (
            self.no_clipping == other.no_clipping
            and same_members(self, other, _ALL_MEMBERS)
            and extra_dump(self) == extra_dump(other)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return members_repr(self, (*_ALL_MEMBERS, "no_clipping"))

    # -- options
    def copy_opts(self, opts: Any) -> None:
        """Copy the six option members (and the extra options) from ``opts``."""
        copy_members(self, opts, OPTION_MEMBERS)
        copy_extra_options(self, opts)

    @property
    def quant_options(self) -> QuantizationOptions:
        """A copy of the options (needs ``n_bits``)."""
        self._require_n_bits()
        return copy_options(self)

    def is_equal(self, opts: Any, ignore_sign_qat: bool = False) -> bool:
        """Whether ``opts`` quantizes the same way (see :func:`intquant.options.options_equivalent`)."""
        return options_equivalent(self, opts, ignore_sign_qat)

    # -- statistics
    def compute_quantization_stats(self, values: numpy.ndarray) -> None:
        """Compute ``rmin``, ``rmax`` and ``uvalues`` of ``values`` (per axis or block if set)."""
        self.rmin, self.rmax, self.uvalues = calibrate(values, self.axis, self.block_size)

    def update(self, values: numpy.ndarray) -> None:
        """Fold a batch into the statistics (see :meth:`MinMaxQuantizationStats.update`)."""
        stats = self.quant_stats
        stats.update(values, axis=self.axis, block_size=self.block_size)
        self.copy_stats(stats)

    def check_is_uniform_quantized(self, options: Any) -> bool:
        """Whether ``uvalues`` lie on a uniform grid of at most ``2**options.n_bits`` values."""
        return uniform_grid_check(self.uvalues, options)

    def copy_stats(self, stats: Any) -> None:
        """Copy ``rmax``, ``rmin`` and ``uvalues`` from ``stats``.

        From a calibration object (``intquant.calibration``), copy its clipping range for this
        quantizer's options (and no ``uvalues``).
        """
        if hasattr(stats, "range_for") and hasattr(self, "n_bits"):
            self.rmin, self.rmax = stats.range_for(self)
            self.uvalues = None
            return
        copy_members(self, stats, STATS_MEMBERS)

    @property
    def quant_stats(self) -> MinMaxQuantizationStats:
        """A copy of the statistics."""
        return copy_stats(self)

    # -- parameters
    def compute_quantization_parameters(self, options: Any, stats: Any) -> None:
        """Compute ``scale``, ``zero_point``, ``offset`` from ``options`` and ``stats``."""
        self.scale, self.zero_point, self.offset = compute_parameters(options, stats, self.scale)

    def copy_params(self, params: Any) -> None:
        """Copy ``scale``, ``zero_point`` and ``offset`` from ``params``."""
        copy_members(self, params, PARAM_MEMBERS)

    @property
    def quant_params(self) -> UniformQuantizationParameters:
        """A copy of the parameters."""
        return copy_params(self)

    # -- quantization
    def quant(self, values: numpy.ndarray, dtype: Any = None) -> Any:
        """Quantize: ``clip(round(values / scale + zero_point), low, high)``, as int64.

        The range is ``[-offset (+1 if is_narrow), 2**n_bits - 1 - offset]``; there is no
        clipping with ``no_clipping``, nor for QAT values whose parameters were inferred
        (``is_qat and not is_precomputed_qat``). Float16/float32 arrays are divided in their own
        precision, as numpy 1.24 does. ``round`` is the ``rounding`` option (half to even by
        default). With per-axis or per-block parameters each block uses its own.

        Parameters
        ----------
        values : array_like
            Values to quantize.
        dtype : optional
            The codes' dtype: int64 (default), int32, float32, float64, or ``"smallest"`` (the
            smallest integer dtype that holds the clipping range).

        Raises
        ------
        MissingParameterError
            If scale, zero point or offset (or, for clipping, n_bits) are not set.
        ValueError
            For a zero or non-finite scale, NaN values, codes beyond int64 without clipping, or
            codes that ``dtype`` cannot hold exactly.
        """
        scale, zero_point, offset = self._require_parameters()
        check_scale(scale)
        clipping = not self.no_clipping and (not self.is_qat or self.is_precomputed_qat)
        n_bits = self._require_n_bits() if clipping else 0
        narrow = bool(self.is_narrow)
        operand = as_real_array(values, "values to quantize")
        rounding, generator = self.rounding, self._rng()
        if self._grouped(scale):
            array = numpy.asarray(operand)
            offsets = numpy.broadcast_to(numpy.asarray(offset), scale.shape).reshape(-1)

            def bounds_of(index: int) -> tuple[int, int] | None:
                return integer_bounds(n_bits, int(offsets[index]), narrow) if clipping else None

            codes = quantize_grouped(
                array,
                block_extent(array.shape, self.axis, self.block_size),
                scale,
                zero_point,
                bounds_of,
                lambda row, block_scale, block_zero_point, bounds: quantize(
                    row, block_scale, block_zero_point, bounds, rounding, generator
                ),
            )
            span = None
            if clipping:
                lows, highs = zip(*(bounds_of(index) for index in range(offsets.size)), strict=True)
                span = (min(lows), max(highs))
            return convert_codes(codes, dtype, span)
        bounds = integer_bounds(n_bits, offset, narrow) if clipping else None
        return convert_codes(quantize(operand, scale, zero_point, bounds, rounding, generator), dtype, bounds)

    def dequant(self, qvalues: numpy.ndarray) -> Any:
        """De-quantize: ``scale * (qvalues - float64(zero_point))`` (per block if so calibrated).

        Raises
        ------
        MissingParameterError
            If scale or zero point are not set.
        InvalidDtypeError
            If the scale is neither a float nor a float64 array.
        """
        scale, zero_point, _ = self._require_parameters(need_offset=False)
        if not (
            isinstance(scale, (float, numpy.floating))
            or (isinstance(scale, numpy.ndarray) and scale.dtype == numpy.float64)
        ):
            raise InvalidDtypeError(
                f"the scale must be a float or a float64 array to dequantize; got {scale!r} of "
                f"type {type(scale).__name__}. Set it with numpy.float64(scale)."
            )
        operand = as_real_array(qvalues, "quantized values")
        if self._grouped(scale):
            codes = numpy.asarray(operand)
            return dequantize_grouped(
                codes, block_extent(codes.shape, self.axis, self.block_size), scale, zero_point, dequantize
            )
        return dequantize(operand, scale, zero_point)

    def _grouped(self, scale: Any) -> TypeGuard[numpy.ndarray]:
        """Whether parameters are per axis or per block (arrays, with a granularity option)."""
        return (
            isinstance(scale, numpy.ndarray)
            and scale.ndim > 0
            and (self.axis is not None or self.block_size is not None)
        )

    def _rng(self) -> numpy.random.Generator | None:
        """The generator of stochastic rounding, seeded from ``seed`` on first use."""
        if self.rounding != "stochastic":
            return None
        if self._generator is None:
            self._generator = numpy.random.default_rng(self.seed)
        return self._generator

    def _require_parameters(self, need_offset: bool = True) -> tuple[Any, Any, Any]:
        if (
            self.scale is not None
            and self.zero_point is not None
            and (self.offset is not None or not need_offset)
        ):
            return self.scale, self.zero_point, self.offset
        missing = [name for name in PARAM_MEMBERS if getattr(self, name) is None]
        if not need_offset:
            missing = [name for name in missing if name != "offset"]
        if missing:
            raise MissingParameterError(
                f"the quantizer has no {', '.join(missing)} yet; call "
                f"compute_quantization_parameters(options, stats) first, or pass "
                f"UniformQuantizationParameters(scale, zero_point, offset)."
            )
        return self.scale, self.zero_point, self.offset

    def _require_n_bits(self) -> int:
        if not hasattr(self, "n_bits"):
            raise MissingParameterError(
                "the quantizer has no options (n_bits); create it with "
                "UniformQuantizer(QuantizationOptions(n_bits), ...)."
            )
        return check_n_bits(self.n_bits)

    # -- serialization
    def dump_dict(self) -> dict[str, Any]:
        """Every member the quantizer has, then ``no_clipping`` (``n_bits`` may be absent); the
        extra options that differ from their defaults come after the option members."""
        options = {name: getattr(self, name) for name in OPTION_MEMBERS if hasattr(self, name)}
        rest = {name: getattr(self, name) for name in (*STATS_MEMBERS, *PARAM_MEMBERS, "no_clipping")}
        return {**options, **extra_dump(self), **rest}

    @staticmethod
    def load_dict(metadata: dict[str, Any]) -> UniformQuantizer:
        """Rebuild a quantizer from :meth:`dump_dict` output; absent keys keep their defaults."""
        known = (*_ALL_MEMBERS, "no_clipping", *EXTRA_OPTIONS)
        if not isinstance(metadata, dict):
            raise SerializationError(
                f"UniformQuantizer.load_dict expects a dict; got {type(metadata).__name__}."
            )
        unknown = [name for name in metadata if name not in known]
        if unknown:
            raise SerializationError(
                f"UniformQuantizer.load_dict got unknown keys {unknown}; it reads {', '.join(known)}."
            )
        if "n_bits" in metadata:
            check_n_bits(metadata["n_bits"])
        for flag in (*OPTION_MEMBERS[1:], "no_clipping"):
            if flag in metadata:
                check_flag(flag, metadata[flag])
        extras = check_extra_options(**{name: metadata[name] for name in EXTRA_OPTIONS if name in metadata})
        quantizer = UniformQuantizer()
        for name, value in {**metadata, **extras}.items():
            setattr(quantizer, name, value)
        return quantizer

"""Quantization parameters: scale, zero point and offset of a uniform integer grid."""

from __future__ import annotations

from typing import Any, ClassVar, Optional, Union

import numpy

from intquant._core.blockwise import choose_block_parameters
from intquant._core.calibrator import Calibrator
from intquant._core.checks import (
    check_loaded_parameter_shapes,
    check_loaded_parameters,
    check_options,
    check_range,
)
from intquant._core.codec import JSONSerializable
from intquant._core.extras import check_full_range
from intquant._core.formulas import (
    STABILITY_CONST,
    adjust_parameters_to_power_of_two,
    choose_uniform_parameters,
    range_including_zero,
)
from intquant._core.members import (
    PARAM_MEMBERS,
    copy_members,
    has_members,
    members_repr,
    require_keys,
    same_members,
)
from intquant._core.plan import CONCRETE_ML_1_7
from intquant._numpy124.promotion import as_numpy_operand

__all__ = ["UniformQuantizationParameters", "compute_parameters", "copy_params", "load_parameters"]


class UniformQuantizationParameters(JSONSerializable, tag="UniformQuantizationParameters"):
    """Parameters that map real values to integer codes: ``q = rint(x / scale + zero_point)``.

    ``offset`` is ``2**(n_bits-1)`` for signed codes, else 0; codes are clipped to
    ``[-offset, 2**n_bits - 1 - offset]``.

    Examples
    --------
    >>> from intquant import MinMaxQuantizationStats, QuantizationOptions
    >>> params = UniformQuantizationParameters()
    >>> params.compute_quantization_parameters(
    ...     QuantizationOptions(2), MinMaxQuantizationStats(rmax=1.0, rmin=-0.5))
    >>> float(params.scale), int(params.zero_point), params.offset
    (0.5, 1, 0)
    """

    #: The behaviour this object follows (:data:`intquant._core.plan.CONVENTIONS`).
    convention: ClassVar[str] = CONCRETE_ML_1_7

    scale: Optional[numpy.float64] = None
    zero_point: Optional[Union[int, float, numpy.ndarray]] = None
    offset: Optional[int] = None

    def __init__(
        self,
        scale: Optional[numpy.float64] = None,
        zero_point: Optional[Union[int, float, numpy.ndarray]] = None,
        offset: Optional[int] = None,
    ) -> None:
        self.scale = scale
        self.zero_point = zero_point
        self.offset = offset

    def __eq__(self, other: object) -> bool:
        if not has_members(other, PARAM_MEMBERS):
            return NotImplemented
        return same_members(self, other, PARAM_MEMBERS)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return members_repr(self, PARAM_MEMBERS)

    def compute_quantization_parameters(self, options: Any, stats: Any) -> None:
        """Compute scale, zero point and offset (see :func:`compute_parameters`)."""
        self.scale, self.zero_point, self.offset = compute_parameters(options, stats, self.scale)

    def copy_params(self, params: Any) -> None:
        """Copy ``scale``, ``zero_point`` and ``offset`` from ``params``."""
        copy_members(self, params, PARAM_MEMBERS)

    @property
    def quant_params(self) -> UniformQuantizationParameters:
        """A copy of these parameters."""
        return copy_params(self)

    def dump_dict(self) -> dict[str, Any]:
        """The three members, in order ``scale, zero_point, offset``."""
        return {name: getattr(self, name) for name in PARAM_MEMBERS}

    @staticmethod
    def load_dict(metadata: dict[str, Any]) -> UniformQuantizationParameters:
        """Rebuild parameters from :meth:`dump_dict` output.

        Raises
        ------
        SerializationError
            For missing or unknown keys, or a field that would give wrong codes or a raw error
            later: a scale that is not a finite, non-zero number; a zero point that is not an
            integer within int64 (a float holding one is accepted); an offset that is not an int
            in ``[0, 2**31]``; array parameters of different shapes (see
            ``docs/serialization.md``).
        """
        return load_parameters(UniformQuantizationParameters, metadata)


def load_parameters(klass: type[UniformQuantizationParameters], metadata: dict[str, Any]) -> Any:
    """Parameters of ``klass`` (:class:`UniformQuantizationParameters` or a subclass taking the
    same arguments) rebuilt from :meth:`UniformQuantizationParameters.dump_dict` output, checked
    as :meth:`UniformQuantizationParameters.load_dict` says."""
    require_keys(metadata, PARAM_MEMBERS, "UniformQuantizationParameters")
    check_loaded_parameters("UniformQuantizationParameters", metadata)
    check_loaded_parameter_shapes("UniformQuantizationParameters", metadata, per_tensor=False)
    return klass(metadata["scale"], metadata["zero_point"], metadata["offset"])


def copy_params(source: Any, klass: type[UniformQuantizationParameters] | None = None) -> Any:
    """A new :class:`UniformQuantizationParameters` (or ``klass``) holding the parameter members
    of ``source``."""
    params = (klass or UniformQuantizationParameters)()
    params.copy_params(source)
    return params


def compute_parameters(
    options: Any, stats: Any, scale: Any = None, *, use_uvalues: bool = True
) -> tuple[Any, Any, Any]:
    """Validated :func:`intquant.kernels.choose_uniform_parameters` for options and statistics.

    ``scale`` is a scale set before the call; asymmetric quantization keeps it (QAT too, unless
    its scale is inferred from ``uvalues``). ``use_uvalues`` False is Concrete ML 1.8's and
    later rule: no QAT scale is inferred, ``uvalues`` are never read. Per-axis
    or per-block statistics (arrays ``rmin``/``rmax``, a list of ``uvalues``) give arrays of
    parameters, each block's computed exactly as for a tensor of its own (for all blocks at once:
    :func:`intquant._core.blockwise.choose_block_parameters`). ``uvalues`` is read only for
    asymmetric QAT options that are not precomputed, the only ones that use it. A calibration
    object (``intquant.calibration``) supplies its clipping range for these options. The extra
    options ``zero_in_range`` and ``power_of_two_scale`` adjust the range and the scale;
    ``full_range`` spreads a signed symmetric range over all ``2**n`` levels.

    Raises
    ------
    InvalidOptionsError
        For an invalid combination of options.
    MissingParameterError
        When the statistics have no ``rmin``/``rmax``.
    ValueError
        When the parameters would not be finite.
    """
    n_bits = check_options(options)
    is_signed, is_symmetric = bool(options.is_signed), bool(options.is_symmetric)
    is_qat, is_precomputed_qat = bool(options.is_qat), bool(options.is_precomputed_qat)
    if isinstance(stats, Calibrator):
        rmin, rmax = stats.range_for(options)
        uvalues: Any = None
    else:
        rmin, rmax = check_range(stats)
        # Only a QAT grid check reads uvalues, which may be computed when first read; statistics
        # without them (Concrete ML 1.9's) count as None.
        inferred = use_uvalues and is_qat and not is_precomputed_qat and not is_symmetric
        uvalues = getattr(stats, "uvalues", None) if inferred else None
    zero_in_range = bool(getattr(options, "zero_in_range", False))
    power_of_two = bool(getattr(options, "power_of_two_scale", False))
    full_range = bool(getattr(options, "full_range", False))
    check_full_range(is_signed, is_symmetric, bool(getattr(options, "is_narrow", False)), full_range)
    preset_scale = scale if numpy.ndim(scale) == 0 else None

    def choose(low: Any, high: Any, block_uvalues: Any) -> tuple[Any, Any, int]:
        if zero_in_range:
            low, high = range_including_zero(low, high)
        result = choose_uniform_parameters(
            low,
            high,
            n_bits,
            is_signed=is_signed,
            is_symmetric=is_symmetric,
            is_qat=is_qat,
            is_precomputed_qat=is_precomputed_qat,
            uvalues=None if block_uvalues is None else numpy.asarray(block_uvalues),
            scale=preset_scale,
            full_range=full_range,
        )
        if not power_of_two:
            return result
        single_value = numpy.float64(as_numpy_operand(high) - as_numpy_operand(low)) < STABILITY_CONST
        recompute = not (single_value or is_symmetric or is_qat)
        power, zero_point = adjust_parameters_to_power_of_two(
            result[0], result[1], result[2], low, recompute_zero_point=recompute
        )
        return power, zero_point, result[2]

    if isinstance(rmin, numpy.ndarray) and rmin.ndim:
        return choose_block_parameters(
            rmin,
            rmax,
            n_bits,
            is_signed=is_signed,
            is_symmetric=is_symmetric,
            is_qat=is_qat,
            is_precomputed_qat=is_precomputed_qat,
            uvalues=uvalues,
            scale=preset_scale,
            zero_in_range=zero_in_range,
            power_of_two_scale=power_of_two,
            single_value_width=STABILITY_CONST,
            alone=choose,
            full_range=full_range,
        )
    return choose(rmin, rmax, uvalues)

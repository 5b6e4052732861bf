"""The integer linear layer: exact int64 accumulators of input codes, then requantization.

For input codes ``q_x`` of shape ``(..., K)`` (zero point ``zp_x``), weight codes ``q_w`` of
shape ``(O, K)`` (zero points ``zp_w[o]``) and bias codes ``b[o]`` at scale ``s_x * s_w[o]``::

    acc[..., o] = sum_k (q_x[..., k] - zp_x) * (q_w[o, k] - zp_w[o]) + b[o]       # exact int64
    y[..., o]   = requantization of acc (see intquant.integer.plan)                 # int64 codes

so that ``s_y * (y - zp_y) ~ x @ w.T + bias`` with ``x = s_x * (q_x - zp_x)`` and
``w = s_w * (q_w - zp_w)``.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy

from intquant.errors import InvalidValueError
from intquant.integer.layer import (
    DEFAULT_REQUANTIZATION,
    IntegerLayer,
    check_accumulator_bits,
    check_input_range,
    check_quantizer,
    load_layer,
    quantize_weights,
)
from intquant.integer.model import Linear
from intquant.quantizer import UniformQuantizer

__all__ = ["IntegerLinear"]


class IntegerLinear(IntegerLayer, versioned_tag="intquant.IntegerLinear", format_version=1):
    """A linear layer on integer codes (inputs ``(..., K)``, outputs ``(..., O)``).

    Parameters
    ----------
    weight_codes : array_like of int, shape (O, K)
        Within ``weight_code_range`` (``weight_bits``, ``weight_signed``).
    weight_scale : float or array_like, shape (O,)
        Finite and positive.
    input_quantizer : UniformQuantizer
        Calibrated, per tensor; its scale and zero point are ``s_x``, ``zp_x``.
    output_quantizer : UniformQuantizer, optional
        Calibrated, per tensor; without it the layer outputs its accumulators.
    weight_zero_point : int or array_like of int, shape (O,)
    bias_codes : array_like of int, shape (O,), optional
        The bias at the accumulator scale ``s_x * s_w[o]``, within int32.
    requantization : FloatRescale, FixedPoint, PowerOfTwo or DropLowBits
        See :mod:`intquant.integer.requantize`.
    relu : bool
        Fuse a ReLU: output codes at least the output zero point.
    input_range : (int, int), optional
        The input codes accepted (default: the input quantizer's code range); a sub-range, e.g.
        ``(zp_x, qmax)`` after a ReLU, gives tighter accumulator bounds.
    weight_bits : int
        Bits of the weight codes (1 to 32), 8 by default.
    weight_signed : bool
        Signed weight codes ``[-2**(b-1), 2**(b-1) - 1]`` (default), else ``[0, 2**b - 1]``.

    Raises
    ------
    InvalidTypeError, InvalidDtypeError, InvalidValueError, InvalidOptionsError,
    MissingParameterError
        For sources that do not fit together (see :mod:`intquant.integer.layer`).

    Examples
    --------
    >>> import numpy, intquant
    >>> x = intquant.QuantizedArray(8, numpy.array([0.0, 1.0, 2.0, 2.55])).quantizer
    >>> layer = IntegerLinear([[1, -2, 3]], 0.5, input_quantizer=x)
    >>> layer(numpy.array([[10, 20, 30]])).tolist()  # 10 - 40 + 90, the accumulators
    [[60]]
    """

    kind = "linear"
    channel_axis = -1

    def __init__(
        self,
        weight_codes: Any,
        weight_scale: Any,
        *,
        input_quantizer: UniformQuantizer,
        output_quantizer: Optional[UniformQuantizer] = None,
        weight_zero_point: Any = 0,
        bias_codes: Any = None,
        requantization: Any = DEFAULT_REQUANTIZATION,
        relu: bool = False,
        input_range: Optional[tuple[int, int]] = None,
        weight_bits: int = 8,
        weight_signed: bool = True,
    ) -> None:
        super().__init__(
            weight_codes,
            weight_scale,
            input_quantizer=input_quantizer,
            output_quantizer=output_quantizer,
            weight_zero_point=weight_zero_point,
            bias_codes=bias_codes,
            requantization=requantization,
            relu=relu,
            input_range=input_range,
            weight_bits=weight_bits,
            weight_signed=weight_signed,
            stride=(1, 1),
            padding=(0, 0),
        )

    def _check_weight_rank(self, codes: numpy.ndarray) -> None:
        if codes.ndim != 2 or 0 in codes.shape:
            raise InvalidValueError(
                f"'weight_codes' of IntegerLinear must have shape (out_features, in_features), "
                f"non-empty; got {codes.shape}."
            )

    @property
    def in_features(self) -> int:
        """``K``."""
        return self.accumulator_plan.reduction_size

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(..., O)`` for inputs of shape ``(..., K)``."""
        if len(shape) < 1 or shape[-1] != self.in_features:
            raise InvalidValueError(
                f"IntegerLinear input codes must have shape (..., {self.in_features}); got {tuple(shape)}."
            )
        return (*shape[:-1], self.out_channels)

    @classmethod
    def from_float(
        cls,
        weight: Any,
        bias: Any = None,
        *,
        input_quantizer: UniformQuantizer,
        output_quantizer: Optional[UniformQuantizer] = None,
        weight_bits: int = 8,
        per_channel: bool = True,
        requantization: Any = DEFAULT_REQUANTIZATION,
        relu: bool = False,
        accumulator_bits: Optional[int] = None,
        input_range: Optional[tuple[int, int]] = None,
    ) -> IntegerLinear:
        """Quantize float ``weight`` (O, K) and ``bias`` (O,) for inputs of ``input_quantizer``.

        The weights get a signed symmetric quantizer of ``weight_bits`` (one scale per output
        channel if ``per_channel``), the bias ``rint(bias / (s_x * s_w[o]))`` (checked to fit
        int32). ``accumulator_bits=P`` raises each channel's weight scale just enough that the
        worst-case accumulator over ``input_range`` (bias included) fits ``P`` signed bits
        (:func:`intquant.integer.constraint.fit_weight_scales`; the scales are then per channel
        even without ``per_channel``).

        Examples
        --------
        >>> import numpy, intquant
        >>> x = intquant.QuantizedArray(8, numpy.linspace(0.0, 1.0, 11)).quantizer
        >>> layer = IntegerLinear.from_float([[0.5, -1.0]], [0.25], input_quantizer=x)
        >>> layer.weight_codes.tolist(), layer.bias_codes.tolist()  # s_w = 1/127, s_x = 1/255
        ([[64, -127]], [8096])
        """
        model = Linear(weight, bias)
        facts = check_quantizer("input_quantizer", input_quantizer)
        accepted = check_input_range(input_range, facts)
        codes, scales, bias_codes = quantize_weights(
            model.weight, model.bias, facts, accepted, False, weight_bits, per_channel, accumulator_bits
        )
        layer = cls(
            codes,
            scales,
            input_quantizer=input_quantizer,
            output_quantizer=output_quantizer,
            bias_codes=bias_codes,
            requantization=requantization,
            relu=relu,
            input_range=accepted,
            weight_bits=weight_bits,
        )
        return check_accumulator_bits(layer, accumulator_bits)

    @staticmethod
    def load_dict(metadata: dict[str, Any], format_version: int = 1) -> IntegerLinear:
        """Rebuild from :meth:`dump_dict` output, checked strictly (see
        :func:`intquant.integer.layer.load_layer`)."""

        def build(fields: dict[str, Any]) -> IntegerLinear:
            return IntegerLinear(fields.pop("weight_codes"), fields.pop("weight_scale"), **fields)

        return load_layer(IntegerLinear, metadata, build, ())

"""The integer 2-D convolution: exact int64 accumulators over windows, then requantization.

For input codes ``q_x`` of shape ``(N, C, H, W)`` padded with ``zp_x`` (the code of 0.0, so
padding adds nothing), weight codes ``q_w`` of shape ``(O, C, kh, kw)``, stride ``(sh, sw)``::

    acc[n, o, i, j] = sum_{c, u, v} (xp[n, c, i*sh + u, j*sw + v] - zp_x) * (q_w[o, c, u, v] - zp_w[o]) + b[o]
    y[n, o, i, j]   = requantization of acc (see intquant.integer.plan)

with ``H_out = (H + 2*ph - kh) // sh + 1`` (``W_out`` alike): PyTorch's ``Conv2d`` (no groups,
no dilation) on the dequantized values.
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
from intquant.integer.model import Conv2d, pair
from intquant.quantizer import UniformQuantizer

__all__ = ["IntegerConv2d"]


class IntegerConv2d(IntegerLayer, versioned_tag="intquant.IntegerConv2d", format_version=1):
    """A 2-D convolution on integer codes (inputs ``(N, C, H, W)``, outputs ``(N, O, H_out, W_out)``).

    Parameters are those of :class:`~intquant.integer.IntegerLinear`, with ``weight_codes`` of
    shape ``(O, C, kh, kw)``, and

    stride : int or (int, int)
        At least 1.
    padding : int or (int, int)
        Rows and columns of ``zp_x`` added on each side; at least 0.

    Examples
    --------
    >>> import numpy, intquant
    >>> x = intquant.QuantizedArray(8, numpy.array([0.0, 2.55])).quantizer
    >>> layer = IntegerConv2d(numpy.ones((1, 1, 2, 2), dtype=numpy.int64), 0.1, input_quantizer=x)
    >>> layer(numpy.arange(9).reshape(1, 1, 3, 3)).tolist()  # sums of 2x2 windows
    [[[[8, 12], [20, 24]]]]
    """

    kind = "conv2d"
    channel_axis = 1

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
        stride: Any = 1,
        padding: Any = 0,
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
            stride=pair("stride", stride, 1),
            padding=pair("padding", padding, 0),
        )

    def _check_weight_rank(self, codes: numpy.ndarray) -> None:
        if codes.ndim != 4 or 0 in codes.shape:
            raise InvalidValueError(
                f"'weight_codes' of IntegerConv2d must have shape (out_channels, in_channels, kh, "
                f"kw), non-empty; got {codes.shape}."
            )

    @property
    def in_channels(self) -> int:
        return int(self.weight_codes.shape[1])

    @property
    def kernel_size(self) -> tuple[int, int]:
        return int(self.weight_codes.shape[2]), int(self.weight_codes.shape[3])

    @property
    def stride(self) -> tuple[int, int]:
        return self.accumulator_plan.stride

    @property
    def padding(self) -> tuple[int, int]:
        return self.accumulator_plan.padding

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(N, O, H_out, W_out)`` for inputs of shape ``(N, C, H, W)``."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        if len(shape) != 4 or shape[1] != self.in_channels:
            raise InvalidValueError(
                f"IntegerConv2d input codes must have shape (N, {self.in_channels}, H, W); got "
                f"{tuple(shape)}."
            )
        if shape[2] + 2 * ph < kh or shape[3] + 2 * pw < kw:
            raise InvalidValueError(
                f"IntegerConv2d input codes of shape {tuple(shape)} padded by {self.padding} are "
                f"smaller than the kernel ({kh}, {kw})."
            )
        return (
            shape[0],
            self.out_channels,
            (shape[2] + 2 * ph - kh) // sh + 1,
            (shape[3] + 2 * pw - kw) // sw + 1,
        )

    def short_name(self) -> str:
        """E.g. ``"IntegerConv2d(1->8, 3x3)"``."""
        (kh, kw) = self.kernel_size
        return f"IntegerConv2d({self.in_channels}->{self.out_channels}, {kh}x{kw})"

    def _geometry_fields(self) -> dict[str, Any]:
        return {"stride": self.stride, "padding": self.padding}

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
        stride: Any = 1,
        padding: Any = 0,
    ) -> IntegerConv2d:
        """Quantize float ``weight`` (O, C, kh, kw) and ``bias`` (O,), as
        :meth:`IntegerLinear.from_float <intquant.integer.IntegerLinear.from_float>` does (the
        constraint's worst case includes the padding's centered zeros)."""
        model = Conv2d(weight, bias, stride=stride, padding=padding)
        facts = check_quantizer("input_quantizer", input_quantizer)
        accepted = check_input_range(input_range, facts)
        codes, scales, bias_codes = quantize_weights(
            model.weight,
            model.bias,
            facts,
            accepted,
            model.padding != (0, 0),
            weight_bits,
            per_channel,
            accumulator_bits,
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
            stride=model.stride,
            padding=model.padding,
        )
        return check_accumulator_bits(layer, accumulator_bits)

    @staticmethod
    def load_dict(metadata: dict[str, Any], format_version: int = 1) -> IntegerConv2d:
        """Rebuild from :meth:`dump_dict` output, checked strictly (see
        :func:`intquant.integer.layer.load_layer`)."""

        def build(fields: dict[str, Any]) -> IntegerConv2d:
            return IntegerConv2d(fields.pop("weight_codes"), fields.pop("weight_scale"), **fields)

        return load_layer(IntegerConv2d, metadata, build, ("stride", "padding"))

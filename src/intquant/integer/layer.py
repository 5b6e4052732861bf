"""The shared base of the integer layers: checks, plans, execution and serialization.

:class:`IntegerLayer` holds what :class:`~intquant.integer.IntegerLinear` and
:class:`~intquant.integer.IntegerConv2d` share. Construction checks every source once (weight
codes, scales, zero points, bias codes, quantizers, the requantization mode, the input range)
and computes the two plans of :mod:`intquant.integer.plan`; calls then check their input codes
(dtype, shape, range) and run the numpy executors (:func:`intquant.integer.product.accumulate`,
:func:`intquant.integer.requantize.requantize`), which trust them, or with numba the compiled
call of :mod:`intquant.integer.fused` (the same codes). A layer never changes after
construction: its arrays are read-only copies, its quantizers private copies (the properties
return copies).

Exactness guards (refused with :class:`~intquant.errors.InvalidValueError`):

* weight codes within ``weight_code_range`` (``weight_bits``, signed or not), bias codes within
  int32 (``from_float``: ``rint(bias / (s_x * s_w))`` checked per channel);
* the worst-case accumulator over ``input_range`` (bias included) below ``2**53`` in magnitude,
  so that the float requantization formula converts it to float64 exactly;
* every term of the folded accumulation formula below ``2**62`` (int64 never overflows).

With padding, a convolution's windows hold ``zp_x`` (a centered input of 0), so the worst case
is taken over the centered input range widened to include 0.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from typing import Any, ClassVar, Optional, TypeVar

import numpy

from intquant._core.checks import as_real_array, check_flag, check_int, is_integer
from intquant._core.codec import JSONSerializable, dumps
from intquant.errors import (
    IntquantError,
    InvalidDtypeError,
    InvalidOptionsError,
    InvalidTypeError,
    InvalidValueError,
    MissingParameterError,
    SerializationError,
)
from intquant.integer.accumulator import LayerAccumulators, observed_range, signed_bits, worst_case_range
from intquant.integer.constraint import fit_weight_scales
from intquant.integer.fused import available as fused_available
from intquant.integer.fused import layer_call as fused_layer_call
from intquant.integer.plan import AccumulatorPlan, RequantPlan
from intquant.integer.product import accumulate, choose_product_dtype
from intquant.integer.requantize import (
    MAX_TABLE_ENTRIES,
    DropLowBits,
    FixedPoint,
    FloatRescale,
    PowerOfTwo,
    describe,
    lookup_table,
    mode_from_dict,
    plan_requantization,
    requantize,
)
from intquant.quantized_array import QuantizedArray
from intquant.quantizer import UniformQuantizer

__all__ = [
    "DEFAULT_REQUANTIZATION",
    "EXACT_FLOAT_LIMIT",
    "INT32_RANGE",
    "MODES",
    "IntegerLayer",
    "QuantizerFacts",
    "check_accumulator_bits",
    "check_code_range",
    "check_codes",
    "integer_codes",
    "check_input_range",
    "check_quantizer",
    "code_range",
    "load_layer",
    "quantize_weights",
]

#: ``|acc|`` must stay below this: float64 holds every integer below it exactly.
EXACT_FLOAT_LIMIT = 2**53
#: Every term of the folded accumulation stays below this (int64 never overflows).
_FOLDED_LIMIT = 2**62
#: Bias codes are int32 (as ONNX's MatMulInteger/ConvInteger accumulators are).
INT32_RANGE = (-(2**31), 2**31 - 1)
#: The default requantization mode: the float formula with the exact multiplier.
DEFAULT_REQUANTIZATION = FloatRescale()
#: The requantization modes a layer accepts.
MODES = (FloatRescale, FixedPoint, PowerOfTwo, DropLowBits)
LayerT = TypeVar("LayerT", bound="IntegerLayer")
_MODE_NAMES = ", ".join(mode.__name__ + "(...)" for mode in MODES)


def code_range(n_bits: int, signed: bool) -> tuple[int, int]:
    """``[-2**(n-1), 2**(n-1) - 1]`` if ``signed``, else ``[0, 2**n - 1]``."""
    return (-(2 ** (n_bits - 1)), 2 ** (n_bits - 1) - 1) if signed else (0, 2**n_bits - 1)


class QuantizerFacts:
    """A per-tensor quantizer, checked: a private copy, its scale, zero point and code range."""

    __slots__ = ("code_range", "quantizer", "scale", "zero_point")

    def __init__(self, quantizer: UniformQuantizer, scale: float, zero_point: int, codes: tuple[int, int]):
        self.quantizer = quantizer
        self.scale = scale
        self.zero_point = zero_point
        self.code_range = codes


def check_quantizer(name: str, quantizer: Any) -> QuantizerFacts:
    """Check that ``quantizer`` is a calibrated per-tensor :class:`~intquant.UniformQuantizer`
    with a finite positive scale, an integer zero point and clipped codes; return its facts
    (with a private copy of it).

    Raises
    ------
    InvalidTypeError, MissingParameterError, InvalidValueError
    """
    if not isinstance(quantizer, UniformQuantizer):
        raise InvalidTypeError(
            f"'{name}' must be a calibrated intquant.UniformQuantizer; got {type(quantizer).__name__}. "
            f"Calibrate one with QuantizedArray(n_bits, values).quantizer."
        )
    if quantizer.axis is not None or quantizer.block_size is not None:
        raise InvalidValueError(
            f"'{name}' must quantize per tensor (one scale and zero point); got axis="
            f"{quantizer.axis!r}, block_size={quantizer.block_size!r}. Calibrate it without them."
        )
    try:
        plan = quantizer.quant_plan(numpy.float64, ())
    except MissingParameterError as error:
        raise MissingParameterError(f"'{name}' is not calibrated: {error}") from error
    scale, zero_point = quantizer.scale, quantizer.zero_point
    if numpy.ndim(scale) or not math.isfinite(float(scale)) or not float(scale) > 0:
        shown = numpy.asarray(scale).tolist()
        raise InvalidValueError(
            f"'{name}' must have a finite positive scale; got {shown!r}. Calibrate it on values "
            f"with a non-zero range."
        )
    if (
        numpy.ndim(zero_point)
        or not math.isfinite(float(zero_point))
        or float(zero_point) != math.floor(float(zero_point))
    ):
        raise InvalidValueError(
            f"'{name}' must have an integer zero point; got {numpy.asarray(zero_point).tolist()!r}."
        )
    if plan.bounds is None:
        raise InvalidValueError(
            f"'{name}' must clip its codes to its n_bits range (an integer layer proves its "
            f"accumulator bounds over that range); got a quantizer with no_clipping=True or "
            f"inferred QAT parameters. Use a quantizer with ordinary options."
        )
    low, high = int(plan.bounds[0]), int(plan.bounds[1])
    return QuantizerFacts(copy.deepcopy(quantizer), float(scale), int(float(zero_point)), (low, high))


def check_codes(name: str, codes: Any, accepted: tuple[int, int]) -> numpy.ndarray:
    """``codes`` as an int64 array (the caller's array when it is one), checked to be integers
    within ``accepted`` (inclusive).

    Raises
    ------
    InvalidDtypeError
        For codes that are not integers (floats, bools).
    InvalidValueError
        For codes outside ``accepted``, naming the offending minimum and maximum.
    """
    array = integer_codes(name, codes)
    if array.size:
        check_code_range(name, int(array.min()), int(array.max()), accepted=accepted)
    return array if array.dtype == numpy.int64 else array.astype(numpy.int64)


def integer_codes(name: str, codes: Any) -> numpy.ndarray:
    """``codes`` as an integer array (not converted, not range-checked).

    Raises
    ------
    InvalidDtypeError
        For codes that are not integers (floats, bools).
    """
    array = numpy.asarray(as_real_array(codes, name))
    if array.dtype.kind not in "iu":
        raise InvalidDtypeError(
            f"{name} must be integer codes; got dtype {array.dtype} with shape {array.shape}. "
            f"Quantize float values first (quantize_input, or a quantizer's quant)."
        )
    return array


def check_code_range(name: str, low: int, high: int, *, accepted: tuple[int, int]) -> None:
    """Refuse codes from ``low`` to ``high`` that leave ``accepted`` (InvalidValueError)."""
    if low < accepted[0] or high > accepted[1]:
        raise InvalidValueError(
            f"{name} must lie in [{accepted[0]}, {accepted[1]}]; got codes from {low} to "
            f"{high}. Quantize the inputs with the layer's input quantizer."
        )


def _readonly(array: numpy.ndarray) -> numpy.ndarray:
    array.flags.writeable = False
    return array


def _integer_array(name: str, value: Any) -> numpy.ndarray:
    """An int64 copy of integer codes ``value`` (any integer dtype; no floats, no bools)."""
    array = numpy.asarray(as_real_array(value, f"'{name}'"))
    if array.dtype.kind not in "iu":
        raise InvalidDtypeError(
            f"'{name}' must be an array of integer codes; got dtype {array.dtype} with shape "
            f"{array.shape}. Quantize float weights with from_float."
        )
    if array.dtype.kind == "u" and array.size and int(array.max()) > numpy.iinfo(numpy.int64).max:
        raise InvalidValueError(f"'{name}' holds values beyond int64; got up to {int(array.max())}.")
    return array.astype(numpy.int64)


def _per_channel_scales(name: str, value: Any, channels: int) -> numpy.ndarray:
    array = numpy.asarray(as_real_array(value, f"'{name}'"))
    if array.dtype.kind == "b":
        raise InvalidTypeError(f"'{name}' must hold float scales; got a bool array.")
    if array.ndim == 0:
        array = numpy.full(channels, array, dtype=numpy.float64)
    if array.shape != (channels,):
        raise InvalidValueError(
            f"'{name}' must be a number or an array of shape ({channels},), one per output "
            f"channel; got shape {array.shape}."
        )
    scales = array.astype(numpy.float64)
    bad = ~(numpy.isfinite(scales) & (scales > 0))
    if bad.any():
        channel = int(numpy.flatnonzero(bad)[0])
        raise InvalidValueError(
            f"'{name}' must be finite and positive; channel {channel} has {float(scales[channel])!r}."
        )
    return scales


def _per_channel_ints(name: str, value: Any, channels: int, limits: tuple[int, int]) -> numpy.ndarray:
    if is_integer(value) and not limits[0] <= int(value) <= limits[1]:
        raise InvalidValueError(f"'{name}' must lie in [{limits[0]}, {limits[1]}]; got {int(value)}.")
    array = _integer_array(name, value)
    if array.ndim == 0:
        array = numpy.full(channels, array, dtype=numpy.int64)
    if array.shape != (channels,):
        raise InvalidValueError(
            f"'{name}' must be an int or an integer array of shape ({channels},), one per output "
            f"channel; got shape {array.shape}."
        )
    outside = (array < limits[0]) | (array > limits[1])
    if outside.any():
        channel = int(numpy.flatnonzero(outside)[0])
        raise InvalidValueError(
            f"'{name}' must lie in [{limits[0]}, {limits[1]}]; channel {channel} has {int(array[channel])}."
        )
    return array


def check_input_range(value: Any, facts: QuantizerFacts) -> tuple[int, int]:
    """``value`` (None: the quantizer's whole code range) checked to be a pair ``(lo, hi)`` of ints
    with ``qmin <= lo <= hi <= qmax``."""
    low, high = facts.code_range
    if value is None:
        return low, high
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise InvalidValueError(f"'input_range' must be a pair (lo, hi) of ints or None; got {value!r}.")
    lo = check_int("input_range", value[0], expected="a pair of ints")
    hi = check_int("input_range", value[1], expected="a pair of ints")
    if not low <= lo <= hi <= high:
        raise InvalidValueError(
            f"'input_range' must satisfy {low} <= lo <= hi <= {high} (within the input "
            f"quantizer's code range); got ({lo}, {hi})."
        )
    return lo, hi


class IntegerLayer(JSONSerializable):
    """Shared base of :class:`~intquant.integer.IntegerLinear` and
    :class:`~intquant.integer.IntegerConv2d` (see the module docstring); not built directly.

    Subclasses set :attr:`kind` and :attr:`channel_axis` and implement the shape rules
    :meth:`output_shape` and :meth:`_check_weight_rank`.
    """

    #: ``"linear"`` or ``"conv2d"`` (:attr:`AccumulatorPlan.kind`).
    kind: ClassVar[str] = ""
    #: The axis of the output channels in the layer's outputs (-1 linear, 1 conv2d).
    channel_axis: ClassVar[int] = -1

    def __init__(
        self,
        weight_codes: Any,
        weight_scale: Any,
        *,
        input_quantizer: UniformQuantizer,
        output_quantizer: Optional[UniformQuantizer],
        weight_zero_point: Any,
        bias_codes: Any,
        requantization: Any,
        relu: bool,
        input_range: Optional[tuple[int, int]],
        weight_bits: int,
        weight_signed: bool,
        stride: tuple[int, int],
        padding: tuple[int, int],
    ) -> None:
        codes = _integer_array("weight_codes", weight_codes)
        self._check_weight_rank(codes)
        channels = int(codes.shape[0])
        bits = check_int("weight_bits", weight_bits, minimum=1, maximum=32)
        signed = check_flag("weight_signed", weight_signed)
        weight_range = code_range(bits, signed)
        if codes.size and (int(codes.min()) < weight_range[0] or int(codes.max()) > weight_range[1]):
            raise InvalidValueError(
                f"'weight_codes' must lie in [{weight_range[0]}, {weight_range[1]}] "
                f"(weight_bits={bits}, weight_signed={signed}); got codes from {int(codes.min())} "
                f"to {int(codes.max())}. Pass the weight_bits the codes were made with."
            )
        scales = _per_channel_scales("weight_scale", weight_scale, channels)
        zero_points = _per_channel_ints("weight_zero_point", weight_zero_point, channels, INT32_RANGE)
        facts_in = check_quantizer("input_quantizer", input_quantizer)
        facts_out = (
            None if output_quantizer is None else check_quantizer("output_quantizer", output_quantizer)
        )
        relu = check_flag("relu", relu)
        if relu and facts_out is None:
            raise InvalidOptionsError(
                "relu=True needs an output quantizer (it raises the output codes' lower bound to "
                "the output zero point); pass output_quantizer, or follow the layer with an "
                "IntegerReLU."
            )
        if not isinstance(requantization, MODES):
            raise InvalidTypeError(
                f"'requantization' must be one of {_MODE_NAMES}; got {requantization!r} of type "
                f"{type(requantization).__name__}."
            )
        accepted = check_input_range(input_range, facts_in)
        bias = (
            numpy.zeros(channels, dtype=numpy.int64)
            if bias_codes is None
            else _per_channel_ints("bias_codes", _not_scalar("bias_codes", bias_codes), channels, INT32_RANGE)
        )

        centered = codes.reshape(channels, -1) - zero_points[:, None]
        zp_x = facts_in.zero_point
        low, high = accepted[0] - zp_x, accepted[1] - zp_x
        raw_input = max(abs(accepted[0]), abs(accepted[1]))
        if padding != (0, 0):  # windows hold zp_x, a centered 0
            low, high = min(low, 0), max(high, 0)
            raw_input = max(raw_input, abs(zp_x))
        reduction = int(centered.shape[1])
        raw_weight = int(numpy.abs(codes).max()) if codes.size else 0
        folded = reduction * (raw_input + abs(zp_x)) * (raw_weight + int(numpy.abs(zero_points).max()))
        if folded + int(numpy.abs(bias).max()) >= _FOLDED_LIMIT:
            raise InvalidValueError(
                f"the layer's codes are too large for exact int64 accumulation: {reduction} "
                f"products of input codes up to {raw_input} (zero point {zp_x}) and weight codes up "
                f"to {raw_weight} reach {folded}, beyond 2**62. Use fewer bits."
            )
        acc_min, acc_max = worst_case_range(centered, bias, (low, high))
        largest = numpy.maximum(numpy.abs(acc_min), numpy.abs(acc_max))
        if (largest >= EXACT_FLOAT_LIMIT).any():
            channel = int(numpy.argmax(largest))
            raise InvalidValueError(
                f"the worst-case accumulator of output channel {channel} reaches "
                f"[{int(acc_min[channel])}, {int(acc_max[channel])}], not below 2**53 in magnitude, "
                f"where float64 stops holding integers exactly. Use fewer weight or activation bits."
            )
        self._accumulator_plan = AccumulatorPlan(
            kind=self.kind,  # type: ignore[arg-type]
            weight_codes=_readonly(codes),
            weight_zero_point=_readonly(zero_points),
            weight_sums=_readonly(codes.reshape(channels, -1).sum(axis=1, dtype=numpy.int64)),
            bias_codes=_readonly(bias),
            input_zero_point=zp_x,
            input_range=accepted,
            stride=stride,
            padding=padding,
            accumulator_min=_readonly(numpy.asarray(acc_min, dtype=numpy.int64)),
            accumulator_max=_readonly(numpy.asarray(acc_max, dtype=numpy.int64)),
            product_dtype=choose_product_dtype(reduction, raw_input, raw_weight),
        )
        self._weight_scale = _readonly(scales)
        self._accumulator_scale = _readonly(facts_in.scale * scales)
        self._weight_bits, self._weight_signed = bits, signed
        self._input, self._output = facts_in, facts_out
        self._requantization, self._relu = requantization, relu
        self._requant_plan: RequantPlan | None = None
        if facts_out is not None:
            out_low, out_high = facts_out.code_range
            if relu:
                out_low = min(max(out_low, facts_out.zero_point), out_high)
            self._requant_plan = plan_requantization(
                requantization,
                _readonly(self._accumulator_scale / facts_out.scale),
                self._accumulator_plan.accumulator_min,
                self._accumulator_plan.accumulator_max,
                facts_out.zero_point,
                (out_low, out_high),
            )

    # -- shape rules (subclasses)
    def _check_weight_rank(self, codes: numpy.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:  # pragma: no cover - abstract
        """The output shape for inputs of ``shape``; refuses a shape the layer does not take."""
        raise NotImplementedError

    # -- what the layer holds
    @property
    def accumulator_plan(self) -> AccumulatorPlan:
        """The :class:`~intquant.integer.plan.AccumulatorPlan` every backend executes."""
        return self._accumulator_plan

    @property
    def requant_plan(self) -> RequantPlan | None:
        """The :class:`~intquant.integer.plan.RequantPlan`; None without an output quantizer."""
        return self._requant_plan

    @property
    def input_quantizer(self) -> UniformQuantizer:
        """A copy of the input quantizer (per tensor, calibrated)."""
        return copy.deepcopy(self._input.quantizer)

    @property
    def output_quantizer(self) -> UniformQuantizer | None:
        """A copy of the output quantizer, or None (the layer then outputs its accumulators)."""
        return None if self._output is None else copy.deepcopy(self._output.quantizer)

    @property
    def input_range(self) -> tuple[int, int]:
        """The input codes accepted, ``(lo, hi)`` inclusive."""
        return self._accumulator_plan.input_range

    @property
    def output_range(self) -> tuple[int, int] | None:
        """The output codes produced, ``(lo, hi)`` (lo raised by a fused ReLU); None without an
        output quantizer."""
        return None if self._requant_plan is None else self._requant_plan.output_range

    @property
    def weight_codes(self) -> numpy.ndarray:
        """The raw weight codes, int64, read-only."""
        return self._accumulator_plan.weight_codes

    @property
    def weight_scale(self) -> numpy.ndarray:
        """``s_w``, shape (O,), float64, read-only."""
        return self._weight_scale

    @property
    def weight_zero_point(self) -> numpy.ndarray:
        """``zp_w``, shape (O,), int64, read-only."""
        return self._accumulator_plan.weight_zero_point

    @property
    def bias_codes(self) -> numpy.ndarray:
        """``b``, shape (O,), int64 (zeros without a bias), read-only."""
        return self._accumulator_plan.bias_codes

    @property
    def weight_bits(self) -> int:
        return self._weight_bits

    @property
    def weight_signed(self) -> bool:
        return self._weight_signed

    @property
    def weight_code_range(self) -> tuple[int, int]:
        """The codes ``weight_bits`` allows (signed or not)."""
        return code_range(self._weight_bits, self._weight_signed)

    @property
    def accumulator_scale(self) -> numpy.ndarray:
        """``s_x * s_w[o]``, the real value of one accumulator unit, shape (O,), read-only."""
        return self._accumulator_scale

    @property
    def requantization(self) -> Any:
        """The requantization mode (a frozen value)."""
        return self._requantization

    @property
    def relu(self) -> bool:
        """Whether a ReLU is fused into the output clip."""
        return self._relu

    @property
    def out_channels(self) -> int:
        return self._accumulator_plan.out_channels

    # -- computation
    def accumulate(self, codes: Any) -> numpy.ndarray:
        """The exact int64 accumulators of input ``codes`` (integers within :attr:`input_range`,
        of a shape :meth:`output_shape` takes); see :mod:`intquant.integer.plan`."""
        array = check_codes("input codes", codes, self.input_range)
        self.output_shape(array.shape)
        return accumulate(array, self._accumulator_plan)

    def requantize(self, accumulators: Any) -> numpy.ndarray:
        """The int64 output codes of ``accumulators`` (within the worst-case range per channel).

        Raises
        ------
        InvalidOptionsError
            Without an output quantizer.
        """
        if self._requant_plan is None:
            raise InvalidOptionsError(
                "this layer has no output quantizer, so it has no requantization; its outputs "
                "are the accumulators. Build it with an output_quantizer."
            )
        array = numpy.asarray(as_real_array(accumulators, "accumulators"))
        if array.dtype.kind not in "iu":
            raise InvalidDtypeError(f"accumulators must be integers; got dtype {array.dtype}.")
        axis = self.channel_axis
        rank_ok = array.ndim >= 1 if axis == -1 else array.ndim == 4
        if not rank_ok or array.shape[axis] != self.out_channels:
            expected = f"(..., {self.out_channels})" if axis == -1 else f"(N, {self.out_channels}, H, W)"
            raise InvalidValueError(f"accumulators must have shape {expected}; got {array.shape}.")
        array = array.astype(numpy.int64, copy=False)
        if array.size:
            shape = [1] * array.ndim
            shape[axis] = self.out_channels
            plan = self._accumulator_plan
            outside = (array < plan.accumulator_min.reshape(shape)) | (
                array > plan.accumulator_max.reshape(shape)
            )
            if outside.any():
                index = numpy.unravel_index(int(numpy.argmax(outside)), array.shape)
                channel = int(index[axis])
                raise InvalidValueError(
                    f"accumulators must lie in each channel's worst-case range; channel {channel} "
                    f"has {int(array[index])} outside [{int(plan.accumulator_min[channel])}, "
                    f"{int(plan.accumulator_max[channel])}]."
                )
        return requantize(array, self._requant_plan, axis)

    def __call__(self, codes: Any) -> numpy.ndarray:
        """Output codes (int64) of input ``codes``: :meth:`accumulate`, then the requantization;
        the accumulators themselves without an output quantizer."""
        array = integer_codes("input codes", codes)
        self.output_shape(array.shape)
        return self.run_codes(array, "input codes")

    def run_codes(self, codes: numpy.ndarray, name: str) -> numpy.ndarray:
        """The output codes of integer ``codes`` whose shape :meth:`output_shape` accepts (what
        :meth:`__call__` and a network's run share): the range is checked against
        :attr:`input_range` (errors name ``name``), then the compiled call of
        :mod:`intquant.integer.fused` runs, or the numpy executors."""
        check_range = functools.partial(check_code_range, name, accepted=self.input_range)
        if self._requant_plan is not None and fused_available(codes.size):  # two compiled passes
            return fused_layer_call(codes, self._accumulator_plan, self._requant_plan, check_range)
        if codes.size:
            check_range(int(codes.min()), int(codes.max()))
        accumulators = accumulate(codes.astype(numpy.int64, copy=False), self._accumulator_plan)
        if self._requant_plan is None:
            return accumulators
        return requantize(accumulators, self._requant_plan, self.channel_axis)

    def lookup_table(self, *, max_entries: int = MAX_TABLE_ENTRIES) -> tuple[numpy.ndarray, numpy.ndarray]:
        """The requantization as a table lookup on the rounded accumulator, as an FHE compiler
        evaluates it (with :class:`~intquant.integer.DropLowBits`, over ``2**P`` entries or
        fewer): ``offset`` (O,) and ``table`` (O, L), with
        ``layer.requantize(acc)[..., o] == table[o, round_shift(acc, k, "half_up") - offset[o]]``
        for every accumulator in the worst-case range; see
        :func:`intquant.integer.requantize.lookup_table`.

        Raises
        ------
        InvalidOptionsError
            Without an output quantizer.
        InvalidValueError
            For the integer formula (FixedPoint, PowerOfTwo), or a table beyond ``max_entries``.
        """
        if self._requant_plan is None:
            raise InvalidOptionsError(
                "this layer has no output quantizer, so it has no requantization to tabulate. "
                "Build it with an output_quantizer."
            )
        plan = self._accumulator_plan
        return lookup_table(
            self._requant_plan, plan.accumulator_min, plan.accumulator_max, max_entries=max_entries
        )

    def accumulators(self, codes: Any = None, *, name: str | None = None) -> LayerAccumulators:
        """The accumulator analysis: worst case per output channel (bias included) and, given
        input ``codes`` (non-empty), the range observed on them.

        Parameters
        ----------
        codes : array_like of int, optional
        name : str, optional
            The row's name in a report (default: the layer's short description).
        """
        plan = self._accumulator_plan
        observed: tuple[numpy.ndarray, numpy.ndarray] | tuple[None, None] = (None, None)
        if codes is not None:
            values = self.accumulate(codes)
            if values.size == 0:
                raise InvalidValueError(
                    f"cannot observe accumulators on an empty batch (input shape {numpy.shape(codes)})."
                )
            observed = observed_range(values, self.channel_axis)
        return LayerAccumulators.from_ranges(
            self.short_name() if name is None else name,
            plan.accumulator_min,
            plan.accumulator_max,
            *observed,
        )

    def short_name(self) -> str:
        """E.g. ``"IntegerLinear(64->10)"``."""
        plan = self._accumulator_plan
        return f"{type(self).__name__}({plan.reduction_size}->{plan.out_channels})"

    def __repr__(self) -> str:
        return (
            f"{self.short_name()[:-1]}, weight_bits={self._weight_bits}, requantization="
            f"{self._requantization!r}, relu={self._relu}, "
            f"output={'codes' if self._output else 'accumulators'})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IntegerLayer):
            return NotImplemented
        return type(self) is type(other) and dumps(self) == dumps(other)

    __hash__ = None  # type: ignore[assignment]

    def replace(self: LayerT, **changes: Any) -> LayerT:
        """A new layer of the same sources with ``changes`` (constructor keywords such as
        ``output_quantizer=``, ``requantization=``, ``relu=``, ``input_range=``), checked as the
        constructor checks them; this layer is unchanged.

        Raises
        ------
        InvalidTypeError
            For a keyword the constructor does not take.
        """
        fields = self.dump_dict()
        fields["requantization"] = self._requantization
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise InvalidTypeError(f"replace() got unknown keywords {unknown}; it takes {', '.join(fields)}.")
        fields.update(changes)
        return type(self)(fields.pop("weight_codes"), fields.pop("weight_scale"), **fields)

    # -- serialization
    def dump_dict(self) -> dict[str, Any]:
        """The sources only (plans are recomputed on load)."""
        plan = self._accumulator_plan
        fields: dict[str, Any] = {
            "weight_codes": plan.weight_codes,
            "weight_scale": self._weight_scale,
            "weight_zero_point": plan.weight_zero_point,
            "weight_bits": self._weight_bits,
            "weight_signed": self._weight_signed,
            "bias_codes": plan.bias_codes,
            "input_quantizer": self._input.quantizer,
            "output_quantizer": None if self._output is None else self._output.quantizer,
            "requantization": describe(self._requantization),
            "relu": self._relu,
            "input_range": plan.input_range,
        }
        fields.update(self._geometry_fields())
        return fields

    def _geometry_fields(self) -> dict[str, Any]:
        return {}


def _not_scalar(name: str, value: Any) -> Any:
    if is_integer(value) or numpy.ndim(value) == 0:
        raise InvalidValueError(
            f"'{name}' must be an array of shape (O,), one code per output channel; got {value!r}."
        )
    return value


_ARRAY_FIELDS = {
    "weight_codes": "int64",
    "weight_scale": "float64",
    "weight_zero_point": "int64",
    "bias_codes": "int64",
}
_LAYER_FIELDS = (
    "weight_codes",
    "weight_scale",
    "weight_zero_point",
    "weight_bits",
    "weight_signed",
    "bias_codes",
    "input_quantizer",
    "output_quantizer",
    "requantization",
    "relu",
    "input_range",
)


def _field_error(owner: str, name: str, expected: str, value: Any) -> SerializationError:
    if isinstance(value, numpy.ndarray):
        shown = f"an array of dtype {value.dtype} and shape {value.shape}"
    else:
        shown = f"{value!r} of type {type(value).__name__}"
    return SerializationError(f"{owner} field {name!r} must be {expected}; got {shown}.")


def _pair_field(owner: str, name: str, value: Any) -> tuple[int, int]:
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(item, int) and not isinstance(item, bool) for item in value)
    ):
        raise _field_error(owner, name, "a pair of ints", value)
    return int(value[0]), int(value[1])


def load_layer(
    cls: type[IntegerLayer],
    payload: Any,
    build: Callable[[dict[str, Any]], LayerT],
    geometry: tuple[str, ...],
) -> LayerT:
    """A layer of ``cls`` rebuilt from :meth:`IntegerLayer.dump_dict` output by ``build(fields)``
    (the class's constructor on checked fields), with ``geometry`` the class's extra fields (pairs
    of ints).

    Raises
    ------
    SerializationError
        For a missing or unknown field, a field of the wrong type or dtype, or sources the
        constructor refuses (weight codes outside their range, bias codes beyond int32, shapes that
        disagree, an unknown requantization mode), naming the field.
    """
    owner = cls.__name__
    expected = (*_LAYER_FIELDS, *geometry)
    if not isinstance(payload, dict):
        raise SerializationError(f"{owner}.load_dict expects a dict; got {type(payload).__name__}.")
    missing = [name for name in expected if name not in payload]
    unknown = [name for name in payload if name not in expected]
    if missing or unknown:
        raise SerializationError(
            f"{owner} fields must be exactly {', '.join(expected)}; missing {missing}, unknown {unknown}."
        )
    fields = dict(payload)
    for name, dtype in _ARRAY_FIELDS.items():
        value = fields[name]
        if not isinstance(value, numpy.ndarray) or value.dtype != numpy.dtype(dtype):
            raise _field_error(owner, name, f"an array of dtype {dtype}", value)
    for name in ("weight_bits",):
        if not isinstance(fields[name], int) or isinstance(fields[name], bool):
            raise _field_error(owner, name, "an int", fields[name])
    for name in ("weight_signed", "relu"):
        if not isinstance(fields[name], bool):
            raise _field_error(owner, name, "true or false", fields[name])
    if not isinstance(fields["input_quantizer"], UniformQuantizer):
        raise _field_error(owner, "input_quantizer", "a UniformQuantizer", fields["input_quantizer"])
    if fields["output_quantizer"] is not None and not isinstance(
        fields["output_quantizer"], UniformQuantizer
    ):
        raise _field_error(
            owner, "output_quantizer", "a UniformQuantizer or null", fields["output_quantizer"]
        )
    fields["input_range"] = _pair_field(owner, "input_range", fields["input_range"])
    for name in geometry:
        fields[name] = _pair_field(owner, name, fields[name])
    try:
        fields["requantization"] = mode_from_dict(fields["requantization"])
    except (SerializationError, ValueError, TypeError) as error:
        raise SerializationError(f"{owner} field 'requantization': {error}") from error
    try:
        return build(fields)
    except (ValueError, TypeError) as error:  # intquant's errors are ValueError/TypeError
        raise SerializationError(f"invalid serialized {owner}: {error}") from error


def check_accumulator_bits(layer: LayerT, accumulator_bits: Any) -> LayerT:
    """``layer``, after checking that its proven worst case fits ``accumulator_bits`` (None: no
    limit): the constraint mode's guarantee, verified on the built plan with exact integers.

    Raises
    ------
    IntquantError
        If it does not fit (a defect of the constraint search, never expected).
    """
    if accumulator_bits is not None:
        plan = layer.accumulator_plan
        widest = int(signed_bits(plan.accumulator_min, plan.accumulator_max).max(initial=1))
        if widest > accumulator_bits:  # pragma: no cover - fit_weight_scales guarantees it
            raise IntquantError(
                f"internal error: the constrained layer's worst-case accumulator needs {widest} "
                f"bits, more than accumulator_bits={accumulator_bits}; please report it."
            )
    return layer


def quantize_weights(
    weight: numpy.ndarray,
    bias: numpy.ndarray | None,
    facts: QuantizerFacts,
    accepted: tuple[int, int],
    padded: bool,
    weight_bits: Any,
    per_channel: Any,
    accumulator_bits: Any,
) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray | None]:
    """Weight codes, weight scales (O,) and bias codes (or None) of float ``weight`` (O, ...) and
    ``bias``: a signed symmetric :class:`~intquant.QuantizedArray` of ``weight_bits`` (per output
    channel, ``axis=0``, if ``per_channel``); with ``accumulator_bits=P`` the scales are raised by
    :func:`~intquant.integer.constraint.fit_weight_scales` until the worst-case accumulator over
    ``accepted`` fits ``P`` signed bits, and the codes are ``clip(rint(w / s'), lo, hi)``; the
    bias is ``rint(bias / (s_x * s_w))``, checked to fit int32 per channel.
    """
    bits = check_int("weight_bits", weight_bits, minimum=1, maximum=32)
    per_channel = check_flag("per_channel", per_channel)
    target = None
    if accumulator_bits is not None:
        target = check_int("accumulator_bits", accumulator_bits, minimum=2, maximum=53)
    channels = weight.shape[0]
    quantized = QuantizedArray(
        bits, weight, is_signed=True, is_symmetric=True, axis=0 if per_channel else None
    )
    scales = numpy.broadcast_to(
        numpy.asarray(quantized.quantizer.scale, dtype=numpy.float64).reshape(-1), (channels,)
    ).copy()
    codes = numpy.array(quantized.qvalues, dtype=numpy.int64)
    # A channel of one value v gets the seed's scale v and codes 1: for v < 0 take scale |v| and
    # codes -1 instead (the same real values; a layer needs positive scales).
    negative = scales < 0
    if negative.any():
        scales[negative] = -scales[negative]
        flipped = codes.reshape(channels, -1) if per_channel else codes.reshape(1, -1)
        flipped[negative if per_channel else slice(None)] *= -1
    low, high = code_range(bits, True)
    if target is not None:
        centered = (accepted[0] - facts.zero_point, accepted[1] - facts.zero_point)
        if padded:
            centered = (min(centered[0], 0), max(centered[1], 0))
        flat = weight.reshape(channels, -1)
        scales = fit_weight_scales(flat, bias, scales, (low, high), facts.scale, centered, target)
        codes = numpy.clip(numpy.rint(flat / scales[:, None]), low, high).astype(numpy.int64)
        codes = codes.reshape(weight.shape)
    if bias is None:
        return codes, scales, None
    with numpy.errstate(over="ignore", invalid="ignore"):
        real = numpy.rint(bias / (facts.scale * scales))
    bad = ~numpy.isfinite(real) | (real < INT32_RANGE[0]) | (real > INT32_RANGE[1])
    if bad.any():
        channel = int(numpy.flatnonzero(bad)[0])
        raise InvalidValueError(
            f"the bias of output channel {channel}, {float(bias[channel])!r}, quantizes to "
            f"{float(real[channel])!r} at the accumulator scale s_x * s_w = "
            f"{float(facts.scale * scales[channel])!r}, beyond int32 [{INT32_RANGE[0]}, "
            f"{INT32_RANGE[1]}]. Calibrate the input quantizer on a wider range or use more bits."
        )
    return codes, scales, real.astype(numpy.int64)

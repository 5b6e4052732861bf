"""Integer networks on tensors: the integers of :class:`intquant.integer.IntegerNetwork`, by torch.

Each element of an integer network becomes a ``torch.nn.Module`` executing the element's plans
(:mod:`intquant.integer.plan`) with torch operations on the tensor's device; the output codes are
bit for bit those of the numpy ``network.run``:

* :class:`IntegerLayerModule` (an ``IntegerLinear`` or ``IntegerConv2d``): the exact int64
  accumulators of its :class:`~intquant.integer.plan.AccumulatorPlan`, then its
  :class:`~intquant.integer.plan.RequantPlan` (or the accumulators, without an output quantizer);
* :class:`IntegerReLUModule`: ``max(q, zp)``; :class:`IntegerFlattenModule`: ``(N, d1, ...) ->
  (N, d1*...)`` in C order;
* :class:`IntegerNetworkModule`: the elements in order, from int64 input codes (or from float
  values, quantized by :class:`~intquant.torch.TorchUniformQuantizer`, the exact torch twin of
  the input quantizer's ``quant``); :func:`run_integer_network` runs a network once.

**Accumulation** uses the folded formula of the plan, the product on the raw codes::

    acc[n, o] = P[n, o] - zp_w[o] * xsum[n] + c[o],   P = q_x @ q_w.T (linear; a convolution for conv2d)
    c[o] = b[o] - zp_x * wsum[o] + K * zp_x * zp_w[o]                 (precomputed, Python ints)

with ``xsum[n] = sum_k q_x[n, k]`` over each window (int64; only for asymmetric weights). The
product ``P`` runs on the raw codes because the plan's ``product_dtype`` is chosen from the raw-code
bound ``K * max|q_x| * max|q_w|``: centered codes ``q_x - zp_x`` can be larger than the raw ones
(a zero point outside the code range), so only the raw product is proven exact in that dtype.
Every partial sum of ``P`` is an integer below the bound (``2**24`` for float32, ``2**53`` for
float64), so the float product is exact in any summation order, and converts to int64 exactly.
The corrections run in int64: the layers keep every term of the folded formula below ``2**62``,
so nothing overflows (and int64 arithmetic, exact modulo ``2**64``, would still give the true
accumulator, which fits). Folded or centered, the exact sum is the same integer: the folded
form is chosen for the product's bound, not for its result.

Where ``P`` is computed:

================  ===========================================================================
``product_dtype`` product
================  ===========================================================================
float32           ``torch.matmul`` / ``F.conv2d`` in float32, on the CPU when torch runs them
                  in IEEE float32 (:func:`float32_is_exact`: float32 matmul precision
                  ``"highest"``, oneDNN enabled for convolutions); otherwise in float64
float64           ``torch.matmul`` / ``F.conv2d`` in float64 (CPU); other devices: the
                  convolution as windows (``Tensor.unfold``) times the weights, by ``matmul``
int64             ``torch.matmul`` in int64; the convolution as windows times the weights
================  ===========================================================================

A convolution pads its int64 input with ``zp_x`` (``F.pad(value=zp_x)``), then convolves without
padding. Why the float32 guard: a convolution algorithm that is not a sum of products (NNPACK's
Winograd transform, which CPU torch picks for float32 when oneDNN is disabled) or reduced
precision inputs (TF32, bfloat16: ``torch.set_float32_matmul_precision("medium")``, GPUs'
default ``allow_tf32`` convolutions) would round; float64 is never computed that way, and the
plan's bound holds for it too.

**Requantization** follows the plan's formula, per output channel ``o`` (the last axis of a
linear layer's output, axis 1 of a convolution's)::

    integer: y = clip(round_shift(acc * m[o], s[o], rounding) + zp_y, lo, hi)             # int64
    float:   y = clip(round(float64(round_shift(acc, s[o], "half_up")) * m[o]) + zp_y, lo, hi)

:func:`round_shift` is the exact int64 twin of :func:`intquant.integer.rounding.round_shift`
(arithmetic ``>>`` for the floor, the remainder compared with ``2**(s-1)`` for the tie rule), and
``torch.round`` rounds half to even as ``numpy.rint``; the float64 product of an integer below
``2**53`` (exact in float64) and ``m[o]`` is one correctly rounded multiplication, as in numpy.

**Checks**, with the numpy classes' errors and messages: codes must be an integer tensor
(:class:`~intquant.errors.InvalidDtypeError` otherwise; ``torch.uint64`` is refused, it could
wrap), within the accepted range (a layer's ``input_range``, on which its accumulator bounds are
proven; a network's input quantizer's code range), then of a shape the element (every element,
for a network) takes. A network checks its input only: its construction proved that each
element's codes lie in the next one's range. Eagerly the range is read back (on any device:
exactness needs it); inside ``torch.compile`` it is ``torch._assert_async`` on CPU tensors
(``RuntimeError``, same message) and not checked on other devices (see
:mod:`intquant.torch.checks`). Whether float32 is trusted is decided when tracing.

The plans are the modules' buffers: they move with ``.to(device)`` and keep their dtypes when a
model is cast (``model.half()``), as every intquant module's do
(:class:`~intquant.torch.state.QuantizationState`). They are not in the ``state_dict`` (only each
module's ``state`` format is): a module is made from its network, the source of its integers,
which ``intquant.dumps`` saves; so loading a model's ``state_dict`` never leaves a module with
buffers of one network and values of another. Tested on the CPU.
"""

from __future__ import annotations

import math
from typing import Any, Union

import numpy
import torch
import torch.nn.functional as F  # noqa: N812

from intquant.errors import InvalidDtypeError, InvalidOptionsError, InvalidTypeError, InvalidValueError
from intquant.integer import IntegerConv2d, IntegerFlatten, IntegerLinear, IntegerNetwork, IntegerReLU
from intquant.integer.layer import check_quantizer
from intquant.integer.plan import ROUNDINGS, AccumulatorPlan, RequantPlan
from intquant.torch.checks import check_values, compiling, require
from intquant.torch.quantizer import TorchUniformQuantizer
from intquant.torch.state import QuantizationState

__all__ = [
    "IntegerFlattenModule",
    "IntegerLayerModule",
    "IntegerNetworkModule",
    "IntegerReLUModule",
    "ElementModule",
    "float32_is_exact",
    "integer_module",
    "round_shift",
    "run_integer_network",
]

#: The integer dtypes accepted as codes (converted to int64 exactly; uint64 could wrap).
_CODE_DTYPES = frozenset(
    dtype
    for dtype in (
        torch.uint8,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        getattr(torch, "uint16", None),
        getattr(torch, "uint32", None),
    )
    if dtype is not None
)
_PRODUCT_DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_IEEE = ("none", "ieee", "highest")  # oneDNN's "none": the parent setting (the default)


# -- kernels


def round_shift(values: torch.Tensor, shift: torch.Tensor | int, rounding: str) -> torch.Tensor:
    """``values / 2**shift`` rounded to an integer by ``rounding``, exactly, in int64.

    With ``q = values >> s`` (arithmetic shift: the floor) and ``r = values - (q << s)`` (the
    remainder, in ``[0, 2**s)``), the result is ``q + 1`` when ``r > 2**(s-1)``, or on a tie
    (``r == 2**(s-1)``) when the rule says so: always (``"half_up"``, towards +inf), when ``q``
    is odd (``"half_even"``), when ``q >= 0`` (``"half_away"``, away from zero); else ``q``.
    ``shift <= 0`` gives ``values << -shift``, exact when it fits (the caller's guarantee);
    ``|shift| <= 63``. No step overflows (the remainder is formed modulo ``2**64``).

    Parameters
    ----------
    values : torch.Tensor of int64
    shift : torch.Tensor of int64 or int
        Broadcasts against ``values`` (e.g. ``(O,)`` against ``(..., O)``).
    rounding : {"half_even", "half_away", "half_up"}

    Returns
    -------
    torch.Tensor of int64

    Raises
    ------
    InvalidValueError
        For an unknown rounding or an int shift beyond 63.
    InvalidDtypeError
        For values that are not an int64 tensor.

    Examples
    --------
    >>> import torch
    >>> values = torch.tensor([-6, -5, -3, 3, 5, 6, 7])
    >>> round_shift(values, 1, "half_even").tolist()  # -3, -2.5, -1.5, 1.5, 2.5, 3, 3.5
    [-3, -2, -2, 2, 2, 3, 4]
    >>> round_shift(values, 1, "half_away").tolist()
    [-3, -3, -2, 2, 3, 3, 4]
    >>> round_shift(values, 1, "half_up").tolist()
    [-3, -2, -1, 2, 3, 3, 4]
    >>> round_shift(values, -2, "half_even").tolist()
    [-24, -20, -12, 12, 20, 24, 28]
    """
    if rounding not in ROUNDINGS:
        raise InvalidValueError(f"rounding must be one of {ROUNDINGS}; got {rounding!r}.")
    if not isinstance(values, torch.Tensor) or values.dtype != torch.int64:
        found = values.dtype if isinstance(values, torch.Tensor) else type(values).__name__
        raise InvalidDtypeError(f"round_shift takes an int64 tensor of values; got {found}.")
    if isinstance(shift, int) and not -63 <= shift <= 63:
        raise InvalidValueError(f"shift must be in [-63, 63]; got {shift}.")
    shift = torch.as_tensor(shift, dtype=torch.int64, device=values.device)
    left = (-shift).clamp(min=0)
    right = shift.clamp(min=0)
    shifted = values << left
    floor = shifted >> right
    remainder = shifted - (floor << right)
    half = torch.ones_like(right) << (right - 1).clamp(min=0)  # 2**(s-1) (1 for s = 0, where r = 0)
    tie = (remainder == half) & (right > 0)
    if rounding == "half_up":
        up = tie
    elif rounding == "half_even":
        up = tie & ((floor & 1) == 1)
    else:
        up = tie & (floor >= 0)
    return floor + ((remainder > half) | up).to(torch.int64)


def float32_is_exact(device: torch.device, convolution: bool) -> bool:
    """Whether torch computes float32 products of integers below ``2**24`` exactly on ``device``:
    on the CPU, with float32 matmul precision ``"highest"`` and no reduced precision asked of
    oneDNN, and for a convolution with oneDNN enabled (else CPU torch may pick NNPACK, whose
    Winograd convolution rounds). Other devices: False (GPUs may use TF32). Inside
    ``torch.compile`` the answer is taken when tracing (a constant of the graph)."""
    return _float32_is_exact(device.type, convolution)


@torch.compiler.assume_constant_result  # type: ignore[untyped-decorator]  # read at trace time
def _float32_is_exact(device_type: str, convolution: bool) -> bool:
    if device_type != "cpu" or torch.get_float32_matmul_precision() != "highest":
        return False
    onednn = torch.backends.mkldnn
    settings = [getattr(torch.backends, "fp32_precision", "none")]
    for part in ("matmul", "conv") if convolution else ("matmul",):
        settings.append(getattr(getattr(onednn, part, None), "fp32_precision", "none"))
    if any(setting not in _IEEE for setting in settings):
        return False
    return not convolution or bool(onednn.is_available() and onednn.enabled)  # type: ignore[no-untyped-call]


def _conv_windows(padded: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int]) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, H_out, W_out, C*kh*kw)``, ``(C, kh, kw)`` in C order."""
    windows = padded.unfold(2, kernel[0], stride[0]).unfold(3, kernel[1], stride[1])  # N C Ho Wo kh kw
    n, c, rows, columns, kh, kw = windows.shape
    return windows.permute(0, 2, 3, 1, 4, 5).reshape(n, rows, columns, c * kh * kw)


# -- checks


def _check_codes(codes: Any, what: str) -> torch.Tensor:
    """``codes`` as int64 after checking it is a dense integer tensor (the numpy layers'
    messages, with torch's dtypes)."""
    if not isinstance(codes, torch.Tensor):
        raise InvalidTypeError(
            f"{what} must be a torch.Tensor of integer codes; got {type(codes).__name__}. Convert "
            f"them with torch.as_tensor(codes), or run numpy codes with the network itself."
        )
    if codes.is_nested or codes.layout != torch.strided or codes.device.type == "meta":
        raise InvalidTypeError(
            f"{what} must be a dense tensor holding values; got a {codes.layout} tensor on "
            f"{codes.device}. Convert it first, e.g. with tensor.to_dense()."
        )
    if codes.dtype not in _CODE_DTYPES:
        advice = (
            "Quantize float values first (module.quantize_input, or IntegerNetworkModule(network, "
            "float_input=True))."
            if codes.dtype.is_floating_point
            else "Use an int8/16/32/64 or uint8/16/32 tensor."
        )
        raise InvalidDtypeError(
            f"{what} must be integer codes; got dtype {codes.dtype} with shape {tuple(codes.shape)}. {advice}"
        )
    return codes.to(torch.int64)


def _check_range(codes: torch.Tensor, code_range: tuple[int, int], what: str) -> None:
    """Refuse codes outside ``[lo, hi]`` (eagerly: read back on any device)."""
    if codes.numel() == 0:
        return
    low, high = code_range
    lowest, highest = torch.aminmax(codes)
    if compiling():
        require((lowest >= low) & (highest <= high), f"{what} must lie in [{low}, {high}].")
        return
    found = (int(lowest), int(highest))
    if found[0] < low or found[1] > high:
        raise InvalidValueError(
            f"{what} must lie in [{low}, {high}]; got codes from {found[0]} to {found[1]}. "
            f"Quantize the inputs with the layer's input quantizer."
        )


# -- the modules


class IntegerLayerModule(QuantizationState):
    """An ``IntegerLinear`` or ``IntegerConv2d`` on tensors: its plans as buffers, its output
    codes (or accumulators) from int64 codes, bit for bit the numpy layer's.

    Buffers (int64 unless said; not in the ``state_dict``: the module is built from its layer,
    which ``intquant.dumps`` saves): ``weight_codes`` (``(O, K)`` or ``(O, C, kh, kw)``),
    ``weight_zero_point``, ``weight_sums``, ``bias_codes``, ``accumulator_min``,
    ``accumulator_max`` (``(O,)``) from the accumulator plan;
    ``multiplier`` (int64 for the integer formula, float64 for the float one) and ``shift``
    (``(O,)``) from the requantization plan, when the layer has one. The plans' Python values
    (zero points, ranges, stride, padding, product dtype, formula, rounding) are attributes.

    Parameters
    ----------
    accumulator_plan : AccumulatorPlan
    requant_plan : RequantPlan or None
        None: the module outputs the accumulators.

    Raises
    ------
    InvalidTypeError
        If the plans are not plans.
    """

    weight_codes: torch.Tensor
    weight_zero_point: torch.Tensor
    weight_sums: torch.Tensor
    bias_codes: torch.Tensor
    accumulator_min: torch.Tensor
    accumulator_max: torch.Tensor
    channel_offset: torch.Tensor
    multiplier: torch.Tensor
    shift: torch.Tensor

    def __init__(self, accumulator_plan: AccumulatorPlan, requant_plan: RequantPlan | None = None) -> None:
        if not isinstance(accumulator_plan, AccumulatorPlan):
            raise InvalidTypeError(
                f"IntegerLayerModule needs an intquant.integer.plan.AccumulatorPlan; got "
                f"{type(accumulator_plan).__name__}. Build it from a layer: "
                f"IntegerLayerModule.from_layer(layer)."
            )
        if requant_plan is not None and not isinstance(requant_plan, RequantPlan):
            raise InvalidTypeError(
                f"requant_plan must be an intquant.integer.plan.RequantPlan or None; got "
                f"{type(requant_plan).__name__}."
            )
        super().__init__()
        plan = accumulator_plan
        self.kind: str = plan.kind
        self.input_zero_point: int = int(plan.input_zero_point)
        self.input_range: tuple[int, int] = (int(plan.input_range[0]), int(plan.input_range[1]))
        self.stride: tuple[int, int] = (int(plan.stride[0]), int(plan.stride[1]))
        self.padding: tuple[int, int] = (int(plan.padding[0]), int(plan.padding[1]))
        self.product_dtype: str = plan.product_dtype
        self.reduction_size: int = plan.reduction_size
        self.out_channels: int = plan.out_channels
        self.weight_shape: tuple[int, ...] = tuple(int(size) for size in plan.weight_codes.shape)
        zero_points = [int(value) for value in numpy.asarray(plan.weight_zero_point).reshape(-1)]
        self.asymmetric_weights: bool = any(zero_points)
        # c[o] = b[o] - zp_x * wsum[o] + K * zp_x * zp_w[o], in Python ints (exact)
        zp_x, size = self.input_zero_point, self.reduction_size
        offsets = [
            int(bias) - zp_x * int(total) + size * zp_x * zero_point
            for bias, total, zero_point in zip(
                numpy.asarray(plan.bias_codes).reshape(-1).tolist(),
                numpy.asarray(plan.weight_sums).reshape(-1).tolist(),
                zero_points,
                strict=True,
            )
        ]
        offsets = [
            (value - _INT64_MIN) % 2**64 + _INT64_MIN for value in offsets
        ]  # int64 wrap (exact mod 2**64)
        for name, array in (
            ("weight_codes", plan.weight_codes),
            ("weight_zero_point", plan.weight_zero_point),
            ("weight_sums", plan.weight_sums),
            ("bias_codes", plan.bias_codes),
            ("accumulator_min", plan.accumulator_min),
            ("accumulator_max", plan.accumulator_max),
        ):
            self.register_buffer(name, _int64_tensor(array), persistent=False)
        self.register_buffer("channel_offset", torch.tensor(offsets, dtype=torch.int64), persistent=False)
        self.formula: str | None = None
        self.rounding: str = "half_even"
        self.output_zero_point: int = 0
        self.output_range: tuple[int, int] = (_INT64_MIN, _INT64_MAX)
        self.shifts: bool = False
        if requant_plan is not None:
            self.formula = requant_plan.formula
            self.rounding = requant_plan.rounding
            self.output_zero_point = int(requant_plan.output_zero_point)
            self.output_range = (
                int(requant_plan.output_range[0]),
                int(requant_plan.output_range[1]),
            )
            multiplier_dtype = torch.int64 if requant_plan.formula == "integer" else torch.float64
            multiplier = torch.as_tensor(numpy.array(requant_plan.multiplier), dtype=multiplier_dtype)
            self.register_buffer("multiplier", multiplier.reshape(-1), persistent=False)
            self.register_buffer("shift", _int64_tensor(requant_plan.shift).reshape(-1), persistent=False)
            self.shifts = bool(numpy.any(numpy.asarray(requant_plan.shift) != 0))
        self.register_state()

    @classmethod
    def from_layer(cls, layer: IntegerLinear | IntegerConv2d) -> IntegerLayerModule:
        """The module of an ``IntegerLinear`` or ``IntegerConv2d`` (its two plans)."""
        if not isinstance(layer, (IntegerLinear, IntegerConv2d)):
            raise InvalidTypeError(
                f"IntegerLayerModule.from_layer takes an IntegerLinear or IntegerConv2d; got "
                f"{type(layer).__name__}."
            )
        return cls(layer.accumulator_plan, layer.requant_plan)

    def extra_repr(self) -> str:
        text = f"{self.kind}, weight {self.weight_shape}, product in {self.product_dtype}"
        if self.kind == "conv2d":
            text += f", stride={self.stride}, padding={self.padding}"
        return text + (", accumulators" if self.formula is None else f", {self.formula} requantization")

    @property
    def name(self) -> str:
        """``"IntegerLinear"`` or ``"IntegerConv2d"``."""
        return "IntegerLinear" if self.kind == "linear" else "IntegerConv2d"

    # -- public steps (checked)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """Output codes (int64; the accumulators without an output quantizer) of integer input
        codes, checked as the numpy layer checks them (dtype, range, shape)."""
        return self.run(self._checked(codes))

    def accumulate(self, codes: torch.Tensor) -> torch.Tensor:
        """The exact int64 accumulators of integer input codes (checked: dtype, range, shape)."""
        return self._accumulate(self._checked(codes))

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output shape for input codes of ``shape`` (the numpy layer's rule and message).

        Raises
        ------
        InvalidValueError
            For a shape the layer does not take.
        """
        shape = tuple(shape)
        if self.kind == "linear":
            size = self.weight_shape[1]
            if len(shape) < 1 or shape[-1] != size:
                raise InvalidValueError(
                    f"IntegerLinear input codes must have shape (..., {size}); got {shape}."
                )
            return (*shape[:-1], self.out_channels)
        channels, rows, columns = self.weight_shape[1:]
        (stride_rows, stride_columns), (pad_rows, pad_columns) = self.stride, self.padding
        if len(shape) != 4 or shape[1] != channels:
            raise InvalidValueError(
                f"IntegerConv2d input codes must have shape (N, {channels}, H, W); got {shape}."
            )
        if shape[2] + 2 * pad_rows < rows or shape[3] + 2 * pad_columns < columns:
            raise InvalidValueError(
                f"IntegerConv2d input codes of shape {shape} padded by {self.padding} are smaller "
                f"than the kernel ({rows}, {columns})."
            )
        return (
            shape[0],
            self.out_channels,
            (shape[2] + 2 * pad_rows - rows) // stride_rows + 1,
            (shape[3] + 2 * pad_columns - columns) // stride_columns + 1,
        )

    def run(self, codes: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` on int64 codes already checked (in the input range, of a shape the
        layer takes): the plans' executor alone."""
        accumulators = self._accumulate(codes)
        return accumulators if self.formula is None else self._requantize(accumulators)

    def _checked(self, codes: Any) -> torch.Tensor:
        codes = _check_codes(codes, "input codes")
        _check_range(codes, self.input_range, "input codes")  # numpy's order: range, then shape
        self.output_shape(tuple(codes.shape))
        return codes

    def requantize(self, accumulators: torch.Tensor) -> torch.Tensor:
        """Output codes (int64) of integer accumulators (each channel's within its worst-case
        range), by the requantization plan.

        Raises
        ------
        InvalidOptionsError
            Without a requantization plan (the layer outputs its accumulators).
        """
        if self.formula is None:
            raise InvalidOptionsError(
                "this layer has no output quantizer, so it has no requantization; its outputs "
                "are the accumulators. Build it with an output_quantizer."
            )
        accumulators = _check_codes(accumulators, "accumulators")
        linear = self.kind == "linear"
        axis = -1 if linear else 1
        if (accumulators.dim() < 1 if linear else accumulators.dim() != 4) or (
            accumulators.shape[axis] != self.out_channels
        ):
            expected = f"(..., {self.out_channels})" if linear else f"(N, {self.out_channels}, H, W)"
            raise InvalidValueError(
                f"accumulators must have shape {expected}; got {tuple(accumulators.shape)}."
            )
        if accumulators.numel():
            shape = (-1,) if linear else (-1, 1, 1)
            outside = (accumulators < self.accumulator_min.view(shape)) | (
                accumulators > self.accumulator_max.view(shape)
            )
            if compiling():
                require(~outside.any(), "accumulators must lie in each channel's worst-case range.")
            elif bool(outside.any()):
                index = tuple(int(i) for i in torch.nonzero(outside)[0])
                channel = index[axis]
                raise InvalidValueError(
                    f"accumulators must lie in each channel's worst-case range; channel {channel} "
                    f"has {int(accumulators[index])} outside [{int(self.accumulator_min[channel])}, "
                    f"{int(self.accumulator_max[channel])}]."
                )
        return self._requantize(accumulators)

    # -- kernels (trust their inputs)

    def _product_dtype(self, device: torch.device) -> torch.dtype:
        dtype = _PRODUCT_DTYPES[self.product_dtype]
        if dtype == torch.float32 and not float32_is_exact(device, self.kind == "conv2d"):
            return torch.float64
        return dtype

    def _accumulate(self, codes: torch.Tensor) -> torch.Tensor:
        dtype = self._product_dtype(codes.device)
        if self.kind == "linear":
            if dtype == torch.int64:
                product = torch.matmul(codes, self.weight_codes.T)
            else:
                product = torch.matmul(codes.to(dtype), self.weight_codes.to(dtype).T).to(torch.int64)
            accumulators = product + self.channel_offset
            if self.asymmetric_weights:
                accumulators = accumulators - codes.sum(-1, keepdim=True) * self.weight_zero_point
            return accumulators
        rows, columns = self.padding
        padded = codes
        if rows or columns:
            padded = F.pad(codes, (columns, columns, rows, rows), value=self.input_zero_point)
        kernel = (self.weight_shape[2], self.weight_shape[3])
        if dtype != torch.int64 and codes.device.type == "cpu":
            product = F.conv2d(padded.to(dtype), self.weight_codes.to(dtype), stride=self.stride)
            product = product.to(torch.int64)
        else:  # windows times weights: exact int64, or float64 off the CPU
            windows = _conv_windows(padded.to(dtype), kernel, self.stride)
            flat = self.weight_codes.reshape(self.out_channels, -1).to(dtype)
            product = torch.matmul(windows, flat.T).to(torch.int64).permute(0, 3, 1, 2)
        accumulators = product + self.channel_offset.view(-1, 1, 1)
        if self.asymmetric_weights:
            sums = padded.sum(1).unfold(1, kernel[0], self.stride[0]).unfold(2, kernel[1], self.stride[1])
            window_sums = sums.sum((-2, -1)).unsqueeze(1)  # (N, 1, H_out, W_out)
            accumulators = accumulators - window_sums * self.weight_zero_point.view(-1, 1, 1)
        return accumulators

    def _requantize(self, accumulators: torch.Tensor) -> torch.Tensor:
        shape = (-1,) if self.kind == "linear" else (-1, 1, 1)
        multiplier, shift = self.multiplier.view(shape), self.shift.view(shape)
        low, high = self.output_range
        if self.formula == "integer":
            scaled = accumulators * multiplier
            codes = round_shift(scaled, shift, self.rounding) if self.shifts else scaled
            return (codes + self.output_zero_point).clamp_(low, high)
        dropped = round_shift(accumulators, shift, "half_up") if self.shifts else accumulators
        rounded = torch.round(dropped.to(torch.float64) * multiplier) + float(self.output_zero_point)
        return rounded.clamp_(float(low), float(high)).to(torch.int64)


class IntegerReLUModule(QuantizationState):
    """An ``IntegerReLU`` on tensors: ``max(q, zp)``, int64 codes in and out."""

    def __init__(self, zero_point: int) -> None:
        super().__init__()
        self.zero_point: int = int(zero_point)
        self.register_state()

    @classmethod
    def from_element(cls, element: IntegerReLU) -> IntegerReLUModule:
        """The module of an ``IntegerReLU``."""
        return cls(element.zero_point)

    def extra_repr(self) -> str:
        return f"zero_point={self.zero_point}"

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """``max(codes, zero_point)`` as int64, of integer codes."""
        return self.run(_check_codes(codes, "IntegerReLU input codes"))

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The input shape."""
        return tuple(shape)

    def run(self, codes: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` on int64 codes."""
        return codes.clamp(min=self.zero_point)


class IntegerFlattenModule(QuantizationState):
    """An ``IntegerFlatten`` on tensors: ``(N, d1, d2, ...) -> (N, d1*d2*...)``, C order."""

    def __init__(self) -> None:
        super().__init__()
        self.register_state()

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """The integer codes flattened after the batch axis, as int64."""
        codes = _check_codes(codes, "IntegerFlatten input codes")
        self.output_shape(tuple(codes.shape))
        return self.run(codes)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(N, prod(rest))``; needs a batch axis.

        Raises
        ------
        InvalidValueError
            For a 0-d shape.
        """
        if len(shape) < 1:
            raise InvalidValueError("IntegerFlatten needs codes with a batch axis; got a 0-d value.")
        return (shape[0], math.prod(shape[1:]))

    def run(self, codes: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` on int64 codes with a batch axis."""
        return codes.reshape(codes.shape[0], math.prod(codes.shape[1:]))


#: The module executing each kind of element.
ElementModule = Union[IntegerLayerModule, IntegerReLUModule, IntegerFlattenModule]
_NAMES = {IntegerReLUModule: "IntegerReLU", IntegerFlattenModule: "IntegerFlatten"}


def integer_module(element: IntegerLinear | IntegerConv2d | IntegerReLU | IntegerFlatten) -> ElementModule:
    """The torch module executing one element of an integer network.

    Raises
    ------
    InvalidTypeError
        For anything else.
    """
    if isinstance(element, (IntegerLinear, IntegerConv2d)):
        return IntegerLayerModule.from_layer(element)
    if isinstance(element, IntegerReLU):
        return IntegerReLUModule.from_element(element)
    if isinstance(element, IntegerFlatten):
        return IntegerFlattenModule()
    raise InvalidTypeError(
        f"an integer network's elements are IntegerLinear, IntegerConv2d, IntegerReLU or "
        f"IntegerFlatten; got {type(element).__name__}."
    )


class IntegerNetworkModule(torch.nn.Module):
    """An :class:`intquant.integer.IntegerNetwork` as a ``torch.nn.Module``: the same integers,
    computed by torch.

    ``forward(codes)`` runs integer input codes through every element and returns the output
    codes as int64, bit for bit ``network.run(codes.numpy())``; the codes are checked as
    ``network.run`` checks them (integers, within the input quantizer's code range, of a shape
    every element takes), then each element runs unchecked (the network proved at construction
    that each element's codes lie in the next one's input range). With ``float_input=True``,
    ``forward(x)`` takes float values and quantizes them first (:meth:`quantize_input`), as
    ``network(x)`` does.

    Parameters
    ----------
    network : IntegerNetwork
    float_input : bool
        Whether ``forward`` takes float values (quantized first) rather than codes.

    Raises
    ------
    InvalidTypeError
        If ``network`` is not an ``IntegerNetwork``.

    Examples
    --------
    >>> import numpy, torch
    >>> from intquant.integer import IntegerNetwork, Linear, ReLU
    >>> from intquant.torch import IntegerNetworkModule
    >>> rng = numpy.random.default_rng(0)
    >>> x = rng.normal(size=(100, 4))
    >>> model = [Linear(rng.normal(size=(8, 4))), ReLU(), Linear(rng.normal(size=(3, 8)))]
    >>> network = IntegerNetwork.from_float(model, x, bits=8)
    >>> module = IntegerNetworkModule(network)
    >>> codes = module.quantize_input(torch.from_numpy(x))
    >>> torch.equal(module(codes), torch.from_numpy(network.run(codes.numpy())))
    True
    """

    def __init__(self, network: IntegerNetwork, *, float_input: bool = False) -> None:
        if not isinstance(network, IntegerNetwork):
            raise InvalidTypeError(
                f"IntegerNetworkModule takes an intquant.integer.IntegerNetwork; got "
                f"{type(network).__name__}. Build one with IntegerNetwork.from_float(model, x)."
            )
        if not isinstance(float_input, bool):
            raise InvalidTypeError(f"float_input must be a bool; got {type(float_input).__name__}.")
        super().__init__()
        self.float_input = float_input
        modules = tuple(integer_module(element) for element in network.elements)
        self.elements = torch.nn.ModuleList(modules)
        self._chain: tuple[ElementModule, ...] = modules  # the same modules, typed
        self.input_range: tuple[int, int] = check_quantizer(
            "input_quantizer", network.input_quantizer
        ).code_range
        self.input_quantizer = TorchUniformQuantizer(network.input_quantizer)
        output = network.output_quantizer
        self.output_quantizer = None if output is None else TorchUniformQuantizer(output)
        last = network.layers[-1]
        self._accumulator_scale = torch.from_numpy(numpy.array(last.accumulator_scale, dtype=numpy.float64))
        self._last_axis = -1 if last.accumulator_plan.kind == "linear" else 1

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Output codes (int64) of integer input codes (of float values, with ``float_input``)."""
        codes = self.quantize_input(inputs) if self.float_input else self._checked(inputs)
        return self._steps(codes)[-1]

    def quantize_input(self, values: torch.Tensor) -> torch.Tensor:
        """Input codes (int64) of float values: the input quantizer's ``quant`` of the values as
        float64 (as ``network.quantize_input``), by torch (:class:`TorchUniformQuantizer`)."""
        if isinstance(values, torch.Tensor) and not values.dtype.is_floating_point:
            raise InvalidDtypeError(
                f"quantize_input takes float values; got dtype {values.dtype} with shape "
                f"{tuple(values.shape)}. Codes already? Call the module with them (float_input=False)."
            )
        values = check_values(values, "the inputs")
        return self.input_quantizer.quant(values.to(torch.float64))

    def intermediates(self, codes: torch.Tensor) -> list[torch.Tensor]:
        """The codes after each element (int64), from integer input codes."""
        return self._steps(self._checked(codes))

    def predict(self, values: torch.Tensor) -> torch.Tensor:
        """The argmax over the last axis of the output codes of float values (int64 indices;
        the first of equal maxima, as numpy)."""
        return self._steps(self.quantize_input(values))[-1].argmax(-1)

    def dequantize_output(self, codes: torch.Tensor) -> torch.Tensor:
        """Output codes as the float64 values they stand for: the output quantizer's
        ``dequant``, or the accumulators times the last layer's ``s_x * s_w[o]``."""
        codes = _check_codes(codes, "output codes")
        if self.output_quantizer is not None:
            return self.output_quantizer.dequant(codes)
        channels, axis = self._accumulator_scale.numel(), self._last_axis
        if codes.dim() < 1 or codes.shape[axis] != channels:
            raise InvalidValueError(
                f"output accumulators must have {channels} channels on axis {axis}; got shape "
                f"{tuple(codes.shape)}."
            )
        shape = [1] * codes.dim()
        shape[axis] = channels
        return codes.to(torch.float64) * self._accumulator_scale.to(codes.device).view(shape)

    def _checked(self, codes: Any) -> torch.Tensor:
        codes = _check_codes(codes, "input codes")
        _check_range(codes, self.input_range, "input codes")
        shape = tuple(codes.shape)
        for index, element in enumerate(self._chain):
            try:
                shape = element.output_shape(shape)
            except InvalidValueError as error:
                name = element.name if isinstance(element, IntegerLayerModule) else _NAMES[type(element)]
                raise InvalidValueError(f"element {index} ({name}): {error}") from error
        return codes

    def _steps(self, codes: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for element in self._chain:
            codes = element.run(codes)
            outputs.append(codes)
        return outputs


def run_integer_network(
    network: IntegerNetwork, inputs: torch.Tensor, *, float_input: bool = False
) -> torch.Tensor:
    """The output codes (int64) of ``network`` for integer input codes (float values with
    ``float_input=True``), computed by torch on the tensor's device: an
    :class:`IntegerNetworkModule` made, moved there and called once (keep the module for many
    calls).

    Examples
    --------
    >>> import numpy, torch
    >>> from intquant.integer import IntegerNetwork, Linear
    >>> x = numpy.random.default_rng(1).normal(size=(20, 3))
    >>> network = IntegerNetwork.from_float([Linear(numpy.eye(2, 3))], x, bits=4)
    >>> codes = network.quantize_input(x)
    >>> outputs = run_integer_network(network, torch.from_numpy(codes))
    >>> outputs.dtype, bool((outputs.numpy() == network.run(codes)).all())
    (torch.int64, True)
    """
    module = IntegerNetworkModule(network, float_input=float_input)
    if isinstance(inputs, torch.Tensor):
        module = module.to(inputs.device)
    result: torch.Tensor = module(inputs)
    return result


def _int64_tensor(array: Any) -> torch.Tensor:
    return torch.from_numpy(numpy.array(array, dtype=numpy.int64))

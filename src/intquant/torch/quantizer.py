"""PyTorch tensors through intquant's quantizers: the same integers, computed by torch.

:class:`TorchUniformQuantizer` wraps an :class:`intquant.UniformQuantizer` and quantizes
``torch.Tensor`` values with torch operations on the tensor's own device. Its codes are bit for bit
those of ``quantizer.quant(tensor.cpu().numpy())``, and its dequantized values those of
``quantizer.dequant``. :func:`fake_quant` is quantize-then-dequantize with a straight-through
gradient, for quantization-aware training with a quantizer calibrated by intquant (for
statistics computed in the training loop, see :class:`intquant.torch.FakeQuantize`).

The formulas, with ``n = n_bits``, ``offset = 2**(n-1)`` for signed codes (else 0) and
``[low, high] = [-offset (+1 if narrow), 2**n - 1 - offset]``:

* quant: ``q = clip(round(x / scale + zero_point), low, high)`` as int64; no clipping with
  ``no_clipping`` or for inferred QAT parameters (``is_qat and not is_precomputed_qat``).
  ``round`` is half to even (``torch.round``) unless the quantizer's ``rounding`` option says
  ``"half_up"`` (``floor(s + 0.5)``), ``"floor"`` or ``"ceil"``.
* dequant: ``x = scale * (q - float64(zero_point))``; float64 for integer codes.
* fake_quant: forward ``dequant(quant(x))`` cast to ``x``'s dtype; backward passes the gradient
  where ``x`` lies in ``[scale * (low - zero_point), scale * (high - zero_point)]`` (inclusive,
  ends swapped for a negative scale; everywhere without clipping) and 0 elsewhere.

Every step runs in the dtype numpy 1.24 picks for it (value-based casting, see
:mod:`intquant._numpy124.promotion`), decided by intquant's own helpers; the scale and zero point
are cast to those dtypes on the host, exactly as numpy casts them, and every operand of a torch
operation has the operation's dtype, so no torch promotion rule is involved:

* the division ``x / scale`` runs in ``D = result_type(x, scale)``: float32 values stay float32,
  float16 values stay float16 (float32 for a scale of 65000 or more), integer and bool values go
  to float64; a 0-d tensor follows numpy's scalar rules (float32 and float16 go to float64);
* the addition ``+ zero_point`` runs in ``A = result_type(D values, zero_point)``: for an integer
  zero point, float32 goes to float64 outside ``[-32768, 65535]``, and float16 goes to float32
  outside ``[-128, 255]`` and to float64 outside ``[-32768, 65535]``;
* codes are clipped in their own dtype when it holds the bounds exactly, else in float64.

Per-axis (``axis=k``) parameters have the grid shape ``(1, .., C, .., 1)`` and broadcast against
the values directly; per-block parameters (``block_size``) broadcast against the values viewed as
``(g0, b0, g1, b1, ...)``. Each block is computed in its own dtypes, as intquant does: when the
dtypes differ between blocks (rare: e.g. some zero points of 65536 or more with float32 values),
the codes are computed once per dtype plan and the blocks are merged (exact: every float16/32
code is exact in float64).

:func:`fake_quant` reads the quantizer's parameters on the host once per call (kept on the
device while they do not change) and computes with torch operations only, never reading values
back: NaN values give NaN (where ``quant`` refuses them). Under ``torch.compile`` that host step
is one graph break per call (:class:`intquant.torch.FakeQuantize` compiles without any).

Fallbacks to intquant's numpy path (the tensor is copied to the host and the result back to the
tensor's device): ``rounding="stochastic"`` (the random draws come from the quantizer's own
generator, so the codes are those of a ``quantizer.quant`` call), and parameters of unusual types
(a scale that is not a float, a zero point that is not a real number, a non-integer per-tensor
offset, or array parameters without ``axis``/``block_size``); :func:`fake_quant` also falls back
for a scale that is not a float64 or a zero point that is not an integer.

Only bool, integer and float16/32/64 tensors are accepted (the dtypes numpy has, so that the
numpy quantizer defines the result); convert bfloat16 values with ``tensor.float()`` first. Steps
that numpy runs in float64 (integer values, large zero points, dequantization of integer codes)
run in float64 on the device too: a device without float64 (Apple's MPS) refuses them.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, NamedTuple, Union

import numpy
import torch

from intquant._core.execute import beyond_int64_error
from intquant._core.formulas import convert_codes
from intquant._core.plan import DequantPlan, QuantPlan, representable_range
from intquant.errors import InvalidTypeError, InvalidValueError
from intquant.quantizer import UniformQuantizer
from intquant.torch.checks import check_values
from intquant.torch.kernels import DtypePair, dtype_pairs, fake_quantize, straight_through

__all__ = ["TorchUniformQuantizer", "fake_quant"]

#: The dtypes ``quant`` can return codes in, and their numpy twins (``convert_codes`` checks them).
_CODE_DTYPES: dict[torch.dtype, numpy.dtype[Any]] = {
    torch.int64: numpy.dtype(numpy.int64),
    torch.int32: numpy.dtype(numpy.int32),
    torch.float32: numpy.dtype(numpy.float32),
    torch.float64: numpy.dtype(numpy.float64),
}
_INT64_LIMIT = 2.0**63  # float64 values in [-2**63, 2**63) convert to int64 exactly


def _round_half_even(codes: torch.Tensor) -> None:
    codes.round_()


def _round_half_up(codes: torch.Tensor) -> None:
    codes.add_(0.5).floor_()  # 0.5 is exact in every float dtype: the addition runs in codes' dtype


def _round_floor(codes: torch.Tensor) -> None:
    codes.floor_()


def _round_ceil(codes: torch.Tensor) -> None:
    codes.ceil_()


#: In-place rounding of ``values / scale + zero_point``, in its dtype, per rounding mode.
_ROUNDERS = {
    "half_even": _round_half_even,
    "half_up": _round_half_up,
    "floor": _round_floor,
    "ceil": _round_ceil,
}


@dataclass(frozen=True)
class _Step:
    """One step of a plan on a device: its two parameters as tensors (quant: scale, zero point;
    dequant: zero point, scale), each in its operation's dtype, and the mask of its blocks."""

    first: torch.Tensor
    second: torch.Tensor
    blocks: torch.Tensor | None


@dataclass(frozen=True)
class _OnDevice:
    """A plan's parameters moved to one device: the steps, and (quant) the per-block bounds."""

    steps: tuple[_Step, ...]
    bounds: tuple[torch.Tensor, torch.Tensor] | None


class TorchUniformQuantizer:
    """Quantize and dequantize ``torch.Tensor`` values exactly as a :class:`~intquant.UniformQuantizer`.

    The codes of :meth:`quant` are the integers ``quantizer.quant(tensor.cpu().numpy())`` gives,
    computed by torch on the tensor's device: both execute the same plan
    (:meth:`UniformQuantizer.quant_plan`), this class with torch operations. The quantizer is read
    at every call, so later changes to its parameters are seen; the plans' parameters moved to a
    device are kept while the plan lives.

    Parameters
    ----------
    quantizer : UniformQuantizer
        A quantizer with its scale, zero point and offset computed.

    Raises
    ------
    InvalidTypeError
        If ``quantizer`` is not a :class:`~intquant.UniformQuantizer`.

    Examples
    --------
    >>> import numpy, torch, intquant
    >>> from intquant.torch import TorchUniformQuantizer
    >>> calibration = numpy.array([-1.0, 0.0, 2.0])
    >>> quantizer = intquant.QuantizedArray(4, calibration, is_signed=True).quantizer
    >>> torch_quantizer = TorchUniformQuantizer(quantizer)
    >>> float(quantizer.scale), int(quantizer.zero_point)
    (0.2, -3)
    >>> codes = torch_quantizer.quant(torch.tensor([-1.0, 0.0, 0.5, 2.0]))
    >>> codes.tolist(), codes.dtype  # 0.5 / 0.2 - 3 = -0.5 rounds half to even: 0
    ([-8, -3, 0, 7], torch.int64)
    >>> torch_quantizer.dequant(codes).tolist()  # 0.2 * (0 - -3) in float64
    [-1.0, 0.0, 0.6000000000000001, 2.0]
    """

    def __init__(self, quantizer: UniformQuantizer) -> None:
        if not isinstance(quantizer, UniformQuantizer):
            raise InvalidTypeError(
                f"TorchUniformQuantizer wraps an intquant.UniformQuantizer; got "
                f"{type(quantizer).__name__}. Build one with intquant.QuantizedArray(...).quantizer "
                f"or UniformQuantizer(options, stats, params)."
            )
        self.quantizer = quantizer

    def __repr__(self) -> str:
        return f"TorchUniformQuantizer({self.quantizer!r})"

    def quant(self, tensor: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Quantize: ``clip(round(tensor / scale + zero_point), low, high)``, on the tensor's device.

        The same integers as ``quantizer.quant(tensor.cpu().numpy())``: the division runs in
        numpy 1.24's dtype for ``values / scale`` and the addition in its dtype for
        ``quotient + zero_point``; ``round`` is half to even unless the ``rounding`` option says
        otherwise; ``[low, high] = [-offset (+1 if narrow), 2**n_bits - 1 - offset]``, per block
        with per-axis or per-block parameters, and no clipping with ``no_clipping`` or for
        inferred QAT parameters.

        Parameters
        ----------
        tensor : torch.Tensor
            Bool, integer or float16/32/64 values, on any device; never modified, and no
            gradient flows through the codes.
        dtype : torch.dtype, optional
            The codes' dtype: torch.int64 (default), torch.int32, torch.float32 or torch.float64.

        Returns
        -------
        torch.Tensor
            The codes, of ``tensor``'s shape, on its device.

        Raises
        ------
        MissingParameterError
            If the scale, zero point or offset (or, to clip, ``n_bits``) are not set.
        InvalidTypeError
            If ``tensor`` is not a tensor of a supported dtype, or ``dtype`` is not a code dtype.
        InvalidValueError
            For a zero or non-finite scale, NaN values, codes beyond int64 without clipping,
            codes ``dtype`` cannot hold exactly (checked on the clipping range, as intquant
            does), or values whose shape does not match per-axis/per-block parameters.
        """
        target = _code_dtype(dtype)
        plan = self.quantizer.quant_plan(_values_dtype(tensor, "values to quantize"), tuple(tensor.shape))
        if plan.generic or plan.rounding not in _ROUNDERS:  # numpy's own broadcasting, or random draws
            host = tensor.detach().cpu().numpy()
            host_codes = self.quantizer.quant(host, dtype=None if target is None else _CODE_DTYPES[target])
            return torch.from_numpy(numpy.array(host_codes)).to(tensor.device)
        prepared = _prepared(plan, tensor.device)
        values = tensor.detach()
        if plan.layout is not None and plan.layout.view is not None:
            values = values.reshape(plan.layout.view)
        codes: torch.Tensor | None = None
        for on_device in prepared.steps:
            shifted = torch.div(values.to(on_device.first.dtype), on_device.first)  # a new tensor
            if shifted.dtype != on_device.second.dtype:
                shifted = shifted.to(on_device.second.dtype)
            shifted.add_(on_device.second)
            _ROUNDERS[plan.rounding](shifted)
            codes = _merged(codes, shifted, on_device.blocks, torch.float64)
        assert codes is not None  # a plan has at least one step
        clipped = _codes_to_int64(codes, plan, prepared, tensor)
        return _convert_codes(clipped.reshape(tensor.shape), target, plan.span)

    def dequant(self, tensor: torch.Tensor) -> torch.Tensor:
        """De-quantize: ``scale * (tensor - float64(zero_point))``, on the tensor's device.

        The same values as ``quantizer.dequant(tensor.cpu().numpy())``: float64 for integer codes;
        float codes keep numpy 1.24's dtypes (float16/float32 codes may stay in their precision).
        Per-axis and per-block parameters apply to their blocks.

        Parameters
        ----------
        tensor : torch.Tensor
            Codes (any bool, integer or float16/32/64 tensor), on any device.

        Returns
        -------
        torch.Tensor
            The values, of ``tensor``'s shape, on its device.

        Raises
        ------
        MissingParameterError
            If the scale or zero point is not set.
        InvalidDtypeError
            If the scale is neither a float nor a float64 array.
        InvalidTypeError
            If ``tensor`` is not a tensor of a supported dtype.
        InvalidValueError
            If the codes' shape does not match per-axis/per-block parameters.
        """
        plan = self.quantizer.dequant_plan(_values_dtype(tensor, "quantized values"), tuple(tensor.shape))
        if plan.generic:
            values = self.quantizer.dequant(tensor.detach().cpu().numpy())
            return torch.from_numpy(numpy.array(values)).to(tensor.device)
        prepared = _prepared(plan, tensor.device)
        codes = tensor.detach()
        if plan.layout is not None and plan.layout.view is not None:
            codes = codes.reshape(plan.layout.view)
        assert plan.dtype is not None  # set on every plan that is not generic
        result: torch.Tensor | None = None
        for on_device in prepared.steps:
            centered = codes.to(on_device.first.dtype) - on_device.first  # a new tensor: safe to update
            if centered.dtype != on_device.second.dtype:
                centered = centered.to(on_device.second.dtype)
            centered.mul_(on_device.second)
            result = _merged(result, centered, on_device.blocks, _torch_dtype(plan.dtype))
        assert result is not None  # a plan has at least one step
        return result.reshape(tensor.shape)


# -- fake quantization


class _FakeQuantParameters(NamedTuple):
    """A plan's parameters for :func:`fake_quant` on one device, laid out to broadcast against
    the values (viewed as ``view`` when not None): float64 scale, int64 zero point, float64 code
    bounds (None without clipping) and representable range of the values (the gradient's)."""

    scale: torch.Tensor
    zero_point: torch.Tensor
    bounds: tuple[torch.Tensor, torch.Tensor] | None
    inside: tuple[torch.Tensor, torch.Tensor] | None
    view: tuple[int, ...] | None
    rounding: str
    pairs: list[DtypePair] | None  # the dtype pairs the parameters need (None: float64 values)


def fake_quant(
    tensor: torch.Tensor, quantizer: Union[UniformQuantizer, TorchUniformQuantizer]
) -> torch.Tensor:
    """Fake quantization: ``dequant(quant(tensor))`` in ``tensor``'s dtype, with a straight-through
    gradient.

    Forward: the values the codes stand for, ``scale * (q - zero_point)`` with ``q`` the codes of
    :meth:`TorchUniformQuantizer.quant`, cast to ``tensor``'s dtype; NaN values give NaN (no
    value is read back from the device). Backward (straight-through estimator): the gradient
    passes unchanged where ``tensor`` lies in the representable range ``[scale * (low -
    zero_point), scale * (high - zero_point)]`` (inclusive, compared in float64; the ends swap
    for a negative scale) and is 0 outside, where clipping makes the output constant. Without
    clipping (``no_clipping``, inferred QAT parameters) it passes everywhere. Per-axis and
    per-block parameters give each block its own range.

    The quantizer is read at every call (its parameters are moved to the device once while they
    do not change). Under ``torch.compile`` that read is one graph break; the computation itself
    is traced. For parameters computed in the training loop, without any graph break, use
    :class:`intquant.torch.FakeQuantize` (``FakeQuantize.from_quantizer(quantizer)`` takes a
    quantizer's parameters).

    Parameters
    ----------
    tensor : torch.Tensor
        Float16/32/64 values, on any device; may require gradients.
    quantizer : UniformQuantizer or TorchUniformQuantizer
        A quantizer with its parameters computed.

    Returns
    -------
    torch.Tensor
        The fake-quantized values, of ``tensor``'s shape, dtype and device.

    Raises
    ------
    InvalidTypeError
        If ``tensor`` is not a float16/32/64 tensor, or ``quantizer`` is not a quantizer.
    InvalidValueError
        For parameters ``quant`` refuses (a zero or infinite scale, shapes that do not fit
        per-axis/per-block parameters); with stochastic rounding or parameters of unusual types
        (computed by intquant's numpy path), as :meth:`TorchUniformQuantizer.quant` (NaN values,
        codes beyond int64).
    MissingParameterError
        If the scale, zero point or offset is not set.

    Examples
    --------
    >>> import numpy, torch, intquant
    >>> from intquant.torch import fake_quant
    >>> quantizer = intquant.QuantizedArray(2, numpy.array([0.0, 3.0])).quantizer
    >>> weights = torch.tensor([0.4, 1.6, 5.0], requires_grad=True)
    >>> restored = fake_quant(weights, quantizer)
    >>> restored.tolist()
    [0.0, 2.0, 3.0]
    >>> torch.autograd.grad(restored.sum(), weights)[0].tolist()
    [1.0, 1.0, 0.0]
    """
    wrapper = quantizer if isinstance(quantizer, TorchUniformQuantizer) else TorchUniformQuantizer(quantizer)
    check_values(tensor, "values to fake-quantize")  # (traced: no numpy in it)
    parameters = _fake_quant_parameters(wrapper.quantizer, tensor)
    gradient = tensor.requires_grad and torch.is_grad_enabled()
    if parameters is None:
        restored, inside = _numpy_fake_quant(wrapper.quantizer, tensor)
    else:
        values = tensor.detach()
        if parameters.view is not None:
            values = values.reshape(parameters.view)
        restored, _ = fake_quantize(
            values,
            parameters.scale,
            parameters.zero_point,
            parameters.bounds,
            parameters.rounding,
            parameters.pairs,
            mask=False,  # this gradient compares the values with the representable range:
        )
        inside = None
        if gradient and parameters.inside is not None:
            exact = values.to(torch.float64)  # float16/32 values are exact in float64
            inside = ((exact >= parameters.inside[0]) & (exact <= parameters.inside[1])).reshape(tensor.shape)
        restored = restored.reshape(tensor.shape)
    return straight_through(tensor, restored, inside) if gradient else restored


#: The fake-quant parameters of each live plan, per device (None: the numpy path computes it).
_FAKE_QUANT: weakref.WeakKeyDictionary[Any, dict[torch.device, _FakeQuantParameters | None]] = (
    weakref.WeakKeyDictionary()
)


@torch.compiler.disable  # type: ignore[untyped-decorator]  # reads the quantizer (numpy) on the host
def _fake_quant_parameters(quantizer: UniformQuantizer, tensor: torch.Tensor) -> _FakeQuantParameters | None:
    """The quantizer's parameters for ``tensor`` on its device, or None for the numpy path."""
    plan = quantizer.quant_plan(_values_dtype(tensor, "values"), tuple(tensor.shape))
    per_device = _FAKE_QUANT.setdefault(plan, {})
    if tensor.device not in per_device:
        per_device[tensor.device] = _fake_quant_on_device(plan, tensor.device)
    return per_device[tensor.device]


def _fake_quant_on_device(plan: QuantPlan, device: torch.device) -> _FakeQuantParameters | None:
    scale, zero_point = numpy.asarray(plan.scale), numpy.asarray(plan.zero_point)
    if (
        plan.generic
        or plan.rounding == "stochastic"  # the quantizer's own generator draws
        or scale.dtype != numpy.float64  # another float scale promotes 0-d values otherwise
        or zero_point.dtype.kind not in "iu"
        or (zero_point.dtype.kind == "u" and bool(numpy.any(zero_point > numpy.iinfo(numpy.int64).max)))
    ):
        return None
    layout = plan.layout
    if layout is not None:
        scale = layout.laid_out(scale)
        zero_point = layout.laid_out(numpy.broadcast_to(zero_point, layout.grid))
    bounds = None
    if plan.bounds is not None:
        bounds = (
            _on_device(numpy.asarray(plan.bounds[0], dtype=numpy.float64), device),
            _on_device(numpy.asarray(plan.bounds[1], dtype=numpy.float64), device),
        )
    representable = representable_range(plan)
    inside = None
    if representable is not None:
        inside = (_on_device(representable[0], device), _on_device(representable[1], device))
    pairs = None
    values_dtype = _torch_dtype(plan.values_dtype)
    if not plan.scalar_input and values_dtype != torch.float64 and scale.size:
        magnitude = numpy.abs(scale)
        pairs = dtype_pairs(
            values_dtype,
            (float(magnitude.min()), float(magnitude.max())),
            (int(zero_point.min()), int(zero_point.max())),
        )
    return _FakeQuantParameters(
        _on_device(scale.astype(numpy.float64), device),
        _on_device(zero_point.astype(numpy.int64), device),
        bounds,
        inside,
        None if layout is None else layout.view,
        plan.rounding,
        pairs,
    )


@torch.compiler.disable  # type: ignore[untyped-decorator]  # intquant's numpy path
def _numpy_fake_quant(
    quantizer: UniformQuantizer, tensor: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(restored, inside)`` computed by intquant's numpy ``quant`` and ``dequant``."""
    host = tensor.detach().cpu().numpy()
    plan = quantizer.quant_plan(host.dtype, host.shape)
    restored = numpy.asarray(quantizer.dequant(quantizer.quant(host))).astype(host.dtype)
    inside = None
    representable = representable_range(plan)
    if representable is not None:
        exact = host.astype(numpy.float64)
        low, high = representable
        if plan.layout is not None and plan.layout.view is not None:
            exact = exact.reshape(plan.layout.view)
        inside_host = ((exact >= low) & (exact <= high)).reshape(host.shape)
        inside = torch.from_numpy(inside_host).to(tensor.device)
    return torch.from_numpy(restored).to(tensor.device), inside


# -- helpers


def _code_dtype(dtype: Any) -> torch.dtype | None:
    if dtype is None or (isinstance(dtype, torch.dtype) and dtype in _CODE_DTYPES):
        return dtype
    raise InvalidTypeError(
        f"quant can return codes as torch.int64 (default), torch.int32, torch.float32 or "
        f"torch.float64; got {dtype!r}."
    )


_NUMPY_DTYPES: dict[torch.dtype, numpy.dtype[Any] | None] = {}


def _numpy_dtype(dtype: torch.dtype) -> numpy.dtype[Any] | None:
    """The numpy dtype of a torch dtype when it is real (bool, integer or float); else None."""
    if dtype not in _NUMPY_DTYPES:
        try:
            twin: numpy.dtype[Any] | None = torch.empty(0, dtype=dtype).numpy().dtype
        except (TypeError, RuntimeError):  # bfloat16, quantized dtypes: numpy has no such dtype
            twin = None
        _NUMPY_DTYPES[dtype] = twin if twin is not None and twin.kind in "biuf" else None
    return _NUMPY_DTYPES[dtype]


_TORCH_DTYPES: dict[numpy.dtype[Any], torch.dtype] = {}


def _torch_dtype(dtype: numpy.dtype[Any]) -> torch.dtype:
    """The torch dtype of a numpy dtype (of a numeric kind torch has)."""
    if dtype not in _TORCH_DTYPES:
        _TORCH_DTYPES[dtype] = torch.from_numpy(numpy.empty(0, dtype)).dtype
    return _TORCH_DTYPES[dtype]


def _values_dtype(tensor: Any, what: str) -> numpy.dtype[Any]:
    """The numpy dtype of a tensor's values, after checking they are a real tensor numpy has."""
    if not isinstance(tensor, torch.Tensor):
        raise InvalidTypeError(
            f"{what} must be a torch.Tensor; got {type(tensor).__name__}. Convert them with "
            f"torch.as_tensor(values), or use UniformQuantizer itself for numpy arrays."
        )
    if getattr(tensor, "is_nested", False) or tensor.layout != torch.strided:
        kind = "a nested" if getattr(tensor, "is_nested", False) else f"a {tensor.layout} (sparse)"
        raise InvalidTypeError(
            f"{what} must be a dense (strided) tensor; got {kind} tensor. Convert it first, e.g. "
            f"with tensor.to_dense(), or quantize each nested tensor on its own."
        )
    if tensor.device.type == "meta":
        raise InvalidTypeError(
            f"{what} are a tensor on the 'meta' device, which holds no values (shape "
            f"{tuple(tensor.shape)}); materialize it on a real device first."
        )
    dtype = _numpy_dtype(tensor.dtype)
    if dtype is None:
        raise InvalidTypeError(
            f"{what} must be a bool, integer or float16/32/64 tensor (a dtype numpy has, so that "
            f"intquant defines the result); got {tensor.dtype} with shape {tuple(tensor.shape)}. "
            f"Convert it first, e.g. with tensor.to(torch.float32)."
        )
    return dtype


#: The parameters of each live plan, per device.
_PREPARED: weakref.WeakKeyDictionary[Any, dict[torch.device, _OnDevice]] = weakref.WeakKeyDictionary()


def _prepared(plan: QuantPlan | DequantPlan, device: torch.device) -> _OnDevice:
    """The plan's parameters as tensors on ``device`` (made once per plan and device)."""
    per_device = _PREPARED.setdefault(plan, {})
    prepared = per_device.get(device)
    if prepared is None:
        prepared = _prepare(plan, device)
        per_device[device] = prepared
    return prepared


def _prepare(plan: QuantPlan | DequantPlan, device: torch.device) -> _OnDevice:
    if isinstance(plan, DequantPlan):
        steps = tuple(
            _Step(
                _on_device(step.zero_point, device),
                _on_device(step.scale, device),
                _mask(step.blocks, device),
            )
            for step in plan.steps
        )
        return _OnDevice(steps, None)
    steps = tuple(
        _Step(_on_device(step.scale, device), _on_device(step.zero_point, device), _mask(step.blocks, device))
        for step in plan.steps
    )
    bounds = None
    if plan.bounds is not None and numpy.ndim(plan.bounds[0]):
        bounds = (
            _on_device(numpy.asarray(plan.bounds[0], dtype=numpy.float64), device),
            _on_device(numpy.asarray(plan.bounds[1], dtype=numpy.float64), device),
        )
    return _OnDevice(steps, bounds)


def _mask(blocks: numpy.ndarray | None, device: torch.device) -> torch.Tensor | None:
    return None if blocks is None else _on_device(blocks, device)


def _on_device(array: Any, device: torch.device) -> torch.Tensor:
    # A tensor on the device itself (not a CPU scalar), so that torch divides rather than
    # multiplying by a reciprocal on accelerators.
    return torch.as_tensor(numpy.array(array), device=device)


def _merged(
    merged: torch.Tensor | None, part: torch.Tensor, mask: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """``part`` where ``mask`` (everywhere if None) and ``merged`` elsewhere, as ``dtype``."""
    if mask is None:
        return part
    part = part.to(dtype)
    return part if merged is None else torch.where(mask, part, merged)


def _codes_to_int64(
    codes: torch.Tensor, plan: QuantPlan, prepared: _OnDevice, values: torch.Tensor
) -> torch.Tensor:
    """Rounded float codes, clipped (if the plan clips) and converted to int64.

    Raises for NaN codes, and without clipping for codes int64 cannot hold.
    """
    if codes.numel() == 0:
        return codes.to(torch.int64)
    # One reduction finds a NaN (aminmax propagates it) and, without clipping, the range.
    lowest, highest = torch.stack(torch.aminmax(codes)).tolist()
    if math.isnan(lowest):
        raise InvalidValueError(
            f"cannot quantize NaN: no integer stands for it (values of shape {tuple(values.shape)}, "
            f"dtype {values.dtype}). Remove or replace NaN first, e.g. with torch.nan_to_num; a NaN "
            f"also arises when the scale underflows to 0 in the values' precision."
        )
    if prepared.bounds is not None:
        codes = torch.clamp(codes.to(torch.float64), *prepared.bounds)
    elif plan.clip is not None:  # the codes have the dtype the plan clips in, or float64 (exact)
        dtype, low, high = plan.clip
        codes = codes.to(_torch_dtype(dtype)).clamp_(float(low), float(high))
    elif highest >= _INT64_LIMIT or lowest < -_INT64_LIMIT:
        raise beyond_int64_error(plan.scale, plan.zero_point)
    return codes.to(torch.int64)


def _convert_codes(
    codes: torch.Tensor, target: torch.dtype | None, span: tuple[int, int] | None
) -> torch.Tensor:
    """int64 codes as ``target``, refused (as intquant's ``quant`` refuses them) when the
    clipping range, or without clipping the codes, do not all fit it exactly."""
    if target is None or target == torch.int64:
        return codes
    if span is None:
        if codes.numel() == 0:
            return codes.to(target)
        lowest, highest = torch.aminmax(codes)
        span = (int(lowest), int(highest))
    convert_codes(numpy.array(span, dtype=numpy.int64), _CODE_DTYPES[target], span)  # raises if not exact
    return codes.to(target)

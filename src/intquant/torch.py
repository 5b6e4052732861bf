"""PyTorch tensors through intquant's quantizers: the same integers, computed by torch.

:class:`TorchUniformQuantizer` wraps an :class:`intquant.UniformQuantizer` and quantizes
``torch.Tensor`` values with torch operations on the tensor's own device. Its codes are bit for bit
those of ``quantizer.quant(tensor.cpu().numpy())``, and its dequantized values those of
``quantizer.dequant``. :func:`fake_quant` is quantize-then-dequantize with a straight-through
gradient, for quantization-aware training. This module needs PyTorch (``pip install
"intquant[torch]"``); ``import intquant`` never imports it.

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
:mod:`intquant._promotion`), decided by intquant's own helpers; the scale and zero point are cast
to those dtypes on the host, exactly as numpy casts them, and every operand of a torch operation
has the operation's dtype, so no torch promotion rule is involved:

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

Fallbacks to intquant's numpy path (the tensor is copied to the host and the result back to the
tensor's device): ``rounding="stochastic"`` (the random draws come from the quantizer's own
generator, so the codes are those of a ``quantizer.quant`` call), and parameters of unusual types
(a scale that is not a float, a zero point that is not a real number, a non-integer per-tensor
offset, or array parameters without ``axis``/``block_size``).

Only bool, integer and float16/32/64 tensors are accepted (the dtypes numpy has, so that the
numpy quantizer defines the result); convert bfloat16 values with ``tensor.float()`` first. Steps
that numpy runs in float64 (integer values, large zero points, dequantization of integer codes)
run in float64 on the device too: a device without float64 (Apple's MPS) refuses them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

import numpy

from intquant._core.checks import check_scale
from intquant._core.formulas import (
    _beyond_int64_error,
    _clip_range,
    _plain_plan,
    convert_codes,
    integer_bounds,
)
from intquant._core.granularity import block_extent, check_grid, grid_shape
from intquant._numpy124.promotion import as_numpy_operand, legacy_result_type
from intquant.errors import (
    InvalidDtypeError,
    InvalidTypeError,
    InvalidValueError,
    MissingDependencyError,
)
from intquant.quantizer import UniformQuantizer

__all__ = ["TorchUnavailableError", "TorchUniformQuantizer", "fake_quant"]


#: Raised when PyTorch is not installed (``pip install "intquant[torch]"``).
TorchUnavailableError = MissingDependencyError


try:
    import torch
except ModuleNotFoundError as error:
    if error.name != "torch":  # torch is there but broken: its own error says more
        raise
    raise TorchUnavailableError(
        "intquant.torch needs PyTorch, which is not installed. Install it with pip install "
        '"intquant[torch]", or pick the build for your platform at https://pytorch.org.'
    ) from error

#: The dtypes ``quant`` can return codes in, and their numpy twins (``convert_codes`` checks them).
_CODE_DTYPES: dict[torch.dtype, numpy.dtype[Any]] = {
    torch.int64: numpy.dtype(numpy.int64),
    torch.int32: numpy.dtype(numpy.int32),
    torch.float32: numpy.dtype(numpy.float32),
    torch.float64: numpy.dtype(numpy.float64),
}
_INT64_LIMIT = 2.0**63  # float64 values in [-2**63, 2**63) convert to int64 exactly
_CACHE_SIZE = 32  # prepared parameter sets kept per TorchUniformQuantizer


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
class _Grid:
    """A quantizer's parameters as flat numpy arrays (one entry per block) and their layout.

    The parameter tensors have ``shape`` and broadcast against the values, viewed as ``split``
    when that is not None (per-block). ``exact`` says whether the torch path reproduces intquant
    for these parameter types; ``scalar_input`` whether numpy's scalar rules apply (0-d values
    with per-tensor parameters).
    """

    scales: numpy.ndarray
    zero_points: numpy.ndarray
    offsets: numpy.ndarray | None
    shape: tuple[int, ...]
    split: tuple[int, ...] | None
    scalar_input: bool
    exact: bool


@dataclass(frozen=True)
class _Step:
    """One dtype plan: ``first`` and ``second`` are the two parameters, each already in the dtype
    of its operation (quant: scale, zero point; dequant: zero point, scale), shaped for
    broadcasting; ``mask`` selects the blocks computed by this plan (None: all of them)."""

    first: torch.Tensor
    second: torch.Tensor
    mask: torch.Tensor | None


@dataclass(frozen=True)
class _QuantPlan:
    """Everything ``quant`` needs for one parameter set, values dtype and device."""

    steps: tuple[_Step, ...] | None  # None: the numpy fallback computes the codes
    split: tuple[int, ...] | None
    clip: tuple[int, int] | None  # the same bounds for every block
    clip_grid: tuple[torch.Tensor, torch.Tensor] | None  # per-block bounds, float64
    span: tuple[int, int] | None  # the widest bounds, for the code dtype check
    inside: tuple[torch.Tensor, torch.Tensor] | None  # float64 range of fake_quant's gradient


@dataclass(frozen=True)
class _DequantPlan:
    """Everything ``dequant`` needs for one parameter set, codes dtype and device."""

    steps: tuple[_Step, ...] | None  # None: the numpy fallback computes the values
    split: tuple[int, ...] | None
    dtype: torch.dtype  # of the result (the widest of the steps' dtypes)


class TorchUniformQuantizer:
    """Quantize and dequantize ``torch.Tensor`` values exactly as a :class:`~intquant.UniformQuantizer`.

    The codes of :meth:`quant` are the integers ``quantizer.quant(tensor.cpu().numpy())`` gives,
    computed by torch on the tensor's device (see the module's documentation for the dtypes and
    the fallbacks). The quantizer is read at every call, so later changes to its parameters are
    seen; the parameters cast for torch are cached per parameter values, dtype and device.

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
        self._plans: dict[tuple[Any, ...], Any] = {}

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
        quantizer = self.quantizer
        scale, zero_point, offset = quantizer._require_parameters()
        check_scale(scale)
        clipping = not quantizer.no_clipping and (not quantizer.is_qat or quantizer.is_precomputed_qat)
        n_bits = quantizer._require_n_bits() if clipping else 0
        values_dtype = _values_dtype(tensor, "values to quantize")
        plan = self._quant_plan(tensor, values_dtype, scale, zero_point, offset, clipping, n_bits)
        if plan.steps is None or quantizer.rounding not in _ROUNDERS:
            host = tensor.detach().cpu().numpy()
            codes = quantizer.quant(host, dtype=None if target is None else _CODE_DTYPES[target])
            return torch.from_numpy(numpy.array(codes)).to(tensor.device)
        values = tensor.detach()
        rounded = _rounded_codes(values, plan.steps, plan.split, quantizer.rounding)
        codes = _codes_to_int64(rounded, plan, values, scale, zero_point).reshape(values.shape)
        return _convert_codes(codes, target, plan.span)

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
        quantizer = self.quantizer
        scale, zero_point, _ = quantizer._require_parameters(need_offset=False)
        if not (
            isinstance(scale, (float, numpy.floating))
            or (isinstance(scale, numpy.ndarray) and scale.dtype == numpy.float64)
        ):
            raise InvalidDtypeError(
                f"the scale must be a float or a float64 array to dequantize; got {scale!r} of "
                f"type {type(scale).__name__}. Set it with numpy.float64(scale)."
            )
        codes_dtype = _values_dtype(tensor, "quantized values")
        plan = self._dequant_plan(tensor, codes_dtype, scale, zero_point)
        if plan.steps is None:
            values = quantizer.dequant(tensor.detach().cpu().numpy())
            return torch.from_numpy(numpy.array(values)).to(tensor.device)
        codes = tensor.detach()
        if plan.split is not None:
            codes = codes.reshape(plan.split)
        result: torch.Tensor | None = None
        for step in plan.steps:
            centered = codes.to(step.first.dtype) - step.first  # a new tensor: safe to update
            if centered.dtype != step.second.dtype:
                centered = centered.to(step.second.dtype)
            centered.mul_(step.second)
            result = _merge(result, centered, step.mask, plan.dtype)
        assert result is not None  # a plan has at least one step
        return result.reshape(tensor.shape)

    def _inside(self, tensor: torch.Tensor) -> torch.Tensor | None:
        """Where ``tensor`` lies in the representable range (bool, its shape); None: everywhere."""
        quantizer = self.quantizer
        scale, zero_point, offset = quantizer._require_parameters()
        if quantizer.no_clipping or (quantizer.is_qat and not quantizer.is_precomputed_qat):
            return None
        plan = self._quant_plan(
            tensor,
            _values_dtype(tensor, "values"),
            scale,
            zero_point,
            offset,
            True,
            quantizer._require_n_bits(),
        )
        assert plan.inside is not None  # computed whenever clipping
        lowest, highest = plan.inside
        values = tensor.detach().to(torch.float64)  # float16/32 values are exact in float64
        if plan.split is not None:
            values = values.reshape(plan.split)
        return ((values >= lowest) & (values <= highest)).reshape(tensor.shape)

    # -- prepared parameters, cached by parameter values, dtype and device
    def _quant_plan(
        self,
        tensor: torch.Tensor,
        values_dtype: numpy.dtype[Any],
        scale: Any,
        zero_point: Any,
        offset: Any,
        clipping: bool,
        n_bits: int,
    ) -> _QuantPlan:
        quantizer = self.quantizer
        grid = _grid(quantizer, scale, zero_point, offset if clipping else None, tuple(tensor.shape))
        key = (
            "quant",
            _fingerprint(scale),
            _fingerprint(zero_point),
            _fingerprint(offset) if clipping else None,
            quantizer.axis,
            quantizer.block_size,
            grid.shape,
            grid.split,
            grid.scalar_input,
            values_dtype,
            n_bits,
            bool(quantizer.is_narrow),
            tensor.device,
        )
        plan = self._plans.get(key)
        if plan is None:
            plan = _build_quant_plan(grid, values_dtype, n_bits, bool(quantizer.is_narrow), tensor.device)
            self._remember(key, plan)
        return plan

    def _dequant_plan(
        self, tensor: torch.Tensor, codes_dtype: numpy.dtype[Any], scale: Any, zero_point: Any
    ) -> _DequantPlan:
        quantizer = self.quantizer
        grid = _grid(quantizer, scale, zero_point, None, tuple(tensor.shape))
        key = (
            "dequant",
            _fingerprint(scale),
            _fingerprint(zero_point),
            quantizer.axis,
            quantizer.block_size,
            grid.shape,
            grid.split,
            grid.scalar_input,
            codes_dtype,
            tensor.device,
        )
        plan = self._plans.get(key)
        if plan is None:
            plan = _build_dequant_plan(grid, codes_dtype, tensor.device)
            self._remember(key, plan)
        return plan

    def _remember(self, key: tuple[Any, ...], plan: Any) -> None:
        if len(self._plans) >= _CACHE_SIZE:
            self._plans.clear()
        self._plans[key] = plan


# -- fake quantization


class _FakeQuantize(torch.autograd.Function):
    """``dequant(quant(x))`` forward; straight-through gradient inside the representable range."""

    @staticmethod
    def forward(ctx: Any, values: torch.Tensor, quantizer: TorchUniformQuantizer) -> torch.Tensor:
        restored = quantizer.dequant(quantizer.quant(values)).to(values.dtype)
        ctx.save_for_backward(quantizer._inside(values))
        return restored

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (inside,) = ctx.saved_tensors
        if inside is None:  # no clipping: every value is representable
            return grad, None
        return grad.masked_fill(~inside, 0), None


def fake_quant(
    tensor: torch.Tensor, quantizer: Union[UniformQuantizer, TorchUniformQuantizer]
) -> torch.Tensor:
    """Fake quantization: ``dequant(quant(tensor))`` in ``tensor``'s dtype, with a straight-through
    gradient.

    Forward: the values the codes stand for, ``scale * (q - zero_point)`` with ``q`` the codes of
    :meth:`TorchUniformQuantizer.quant`, cast to ``tensor``'s dtype. Backward (straight-through
    estimator): the gradient passes unchanged where ``tensor`` lies in the representable range
    ``[scale * (low - zero_point), scale * (high - zero_point)]`` (inclusive, compared in float64;
    the ends swap for a negative scale) and is 0 outside, where clipping makes the output
    constant. Without clipping (``no_clipping``, inferred QAT parameters) it passes everywhere.
    Per-axis and per-block parameters give each block its own range.

    Parameters
    ----------
    tensor : torch.Tensor
        Float16/32/64 values, on any device; may require gradients.
    quantizer : UniformQuantizer or TorchUniformQuantizer
        Pass a :class:`TorchUniformQuantizer` to reuse its cached parameters across calls (a
        training loop).

    Returns
    -------
    torch.Tensor
        The fake-quantized values, of ``tensor``'s shape, dtype and device.

    Raises
    ------
    InvalidTypeError
        If ``tensor`` is not a float16/32/64 tensor, or ``quantizer`` is not a quantizer.
    InvalidValueError
        As :meth:`TorchUniformQuantizer.quant` (NaN values, codes beyond int64, ...).

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
    if _values_dtype(tensor, "values to fake-quantize").kind != "f":
        raise InvalidTypeError(
            f"fake_quant needs float16, float32 or float64 values; got {tensor.dtype} with shape "
            f"{tuple(tensor.shape)}. Use TorchUniformQuantizer.quant for integer values."
        )
    result: torch.Tensor = _FakeQuantize.apply(tensor, wrapper)  # type: ignore[no-untyped-call]
    return result


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
    dtype = _numpy_dtype(tensor.dtype)
    if dtype is None:
        raise InvalidTypeError(
            f"{what} must be a bool, integer or float16/32/64 tensor (a dtype numpy has, so that "
            f"intquant defines the result); got {tensor.dtype} with shape {tuple(tensor.shape)}. "
            f"Convert it first, e.g. with tensor.to(torch.float32)."
        )
    return dtype


def _fingerprint(value: Any) -> tuple[Any, ...]:
    """A hashable key telling parameter values apart bit for bit (dtype, shape and bytes)."""
    operand = numpy.asarray(as_numpy_operand(value))
    return type(value), operand.dtype.str, operand.shape, operand.tobytes()


def _is_integer(value: Any) -> bool:
    return isinstance(value, (int, numpy.integer)) and not isinstance(value, (bool, numpy.bool_))


def _grid(
    quantizer: UniformQuantizer, scale: Any, zero_point: Any, offset: Any, shape: tuple[int, ...]
) -> _Grid:
    """The parameters laid out to broadcast against values of ``shape`` (``offset`` None: no
    clipping). Raises intquant's errors for values that do not fit per-axis/per-block parameters."""
    if (
        isinstance(scale, numpy.ndarray)
        and scale.ndim > 0
        and (quantizer.axis is not None or quantizer.block_size is not None)
    ):  # per axis or per block: intquant quantizes each block on its own
        extent = block_extent(shape, quantizer.axis, quantizer.block_size)
        check_grid(shape, extent, scale)
        grid = grid_shape(shape, extent)
        zero_points = numpy.asarray(zero_point).reshape(-1)[: scale.size]
        offsets = None
        if offset is not None:
            offsets = numpy.array(
                [int(item) for item in numpy.broadcast_to(numpy.asarray(offset), grid).flat]
            )
        exact = (
            scale.dtype.kind == "f"
            and isinstance(zero_point, numpy.ndarray)
            and zero_point.shape == scale.shape
            and zero_point.dtype.kind in "iuf"
        )
        if all(blocks == 1 or size == 1 for blocks, size in zip(grid, extent, strict=True)):
            split, layout = None, grid  # per axis: the grid broadcasts against the values
        else:
            split = tuple(size for pair in zip(grid, extent, strict=True) for size in pair)
            layout = tuple(size for blocks in grid for size in (blocks, 1))
        return _Grid(scale.reshape(-1), zero_points, offsets, layout, split, False, exact)
    scale_operand, zero_point_operand = as_numpy_operand(scale), as_numpy_operand(zero_point)
    if numpy.ndim(scale_operand) == 0 and numpy.ndim(zero_point_operand) == 0:  # per tensor
        exact = (
            scale_operand.dtype.kind == "f"
            and zero_point_operand.dtype.kind in "iuf"
            and (offset is None or _is_integer(offset))
        )
        offsets = None if offset is None else numpy.array([int(offset)])
        return _Grid(
            numpy.asarray(scale_operand).reshape(1),
            numpy.asarray(zero_point_operand).reshape(1),
            offsets,
            (),
            None,
            len(shape) == 0,
            exact,
        )
    # Array parameters without a granularity option broadcast as numpy broadcasts them; only
    # fake_quant's range uses this layout (quant and dequant take the numpy path).
    operands = [numpy.asarray(scale_operand), numpy.asarray(zero_point_operand)]
    if offset is not None:
        operands.append(numpy.asarray(offset))
    broadcast = numpy.broadcast_arrays(*operands)
    offsets = None if offset is None else broadcast[2].astype(numpy.int64).reshape(-1)
    return _Grid(
        broadcast[0].reshape(-1), broadcast[1].reshape(-1), offsets, broadcast[0].shape, None, False, False
    )


def _quant_dtypes(
    dtype: numpy.dtype[Any], scalar_input: bool, scale: Any, zero_point: Any
) -> tuple[Any, Any]:
    """``(scale, zero_point)`` cast to the dtypes numpy 1.24 divides and adds ``dtype`` values in.

    intquant's ``_plain_plan`` for arrays; numpy's scalar rules for 0-d values (true division of
    integers gives float64 in both).
    """
    if not scalar_input:
        return _plain_plan(dtype, scale, zero_point)
    division = legacy_result_type(numpy.empty((), dtype), scale)
    quotient = division if division.kind == "f" else numpy.dtype(numpy.float64)
    addition = legacy_result_type(numpy.empty((), quotient), zero_point)
    return division.type(scale), addition.type(zero_point)


def _dequant_dtypes(
    dtype: numpy.dtype[Any], scalar_input: bool, scale: Any, zero_point: Any
) -> tuple[Any, Any]:
    """``(float64(zero_point), scale)`` cast to the dtypes numpy 1.24 subtracts and multiplies
    ``dtype`` codes in, as ``intquant.kernels.dequantize`` computes ``scale * (q - zero_point)``."""
    codes = numpy.empty(() if scalar_input else (1,), dtype)
    zero = numpy.asarray(zero_point, dtype=numpy.float64)[()]
    subtraction = legacy_result_type(codes, zero)
    multiplication = legacy_result_type(scale, numpy.empty(codes.shape, subtraction))
    return subtraction.type(zero), multiplication.type(scale)


def _steps(plans: list[tuple[Any, Any]], shape: tuple[int, ...], device: torch.device) -> tuple[_Step, ...]:
    """Group blocks by the dtypes of their parameters; one step (with a mask if needed) per group."""
    groups: dict[tuple[numpy.dtype[Any], numpy.dtype[Any]], list[int]] = {}
    for index, (first, second) in enumerate(plans):
        groups.setdefault((first.dtype, second.dtype), []).append(index)
    steps = []
    for (first_dtype, second_dtype), members in groups.items():
        firsts = numpy.ones(len(plans), first_dtype)  # harmless values for the other groups' blocks
        seconds = numpy.ones(len(plans), second_dtype)
        firsts[members] = numpy.array([plans[index][0] for index in members], dtype=first_dtype)
        seconds[members] = numpy.array([plans[index][1] for index in members], dtype=second_dtype)
        mask = None
        if len(groups) > 1:
            selected = numpy.zeros(len(plans), dtype=bool)
            selected[members] = True
            mask = _on_device(selected.reshape(shape), device)
        steps.append(
            _Step(_on_device(firsts.reshape(shape), device), _on_device(seconds.reshape(shape), device), mask)
        )
    return tuple(steps)


def _on_device(array: numpy.ndarray, device: torch.device) -> torch.Tensor:
    # A tensor on the device itself (not a CPU scalar), so that torch divides rather than
    # multiplying by a reciprocal on accelerators.
    return torch.as_tensor(numpy.array(array), device=device)


def _build_quant_plan(
    grid: _Grid, values_dtype: numpy.dtype[Any], n_bits: int, narrow: bool, device: torch.device
) -> _QuantPlan:
    steps = None
    if grid.exact:
        plans = [
            _quant_dtypes(values_dtype, grid.scalar_input, scale, zero_point)
            for scale, zero_point in zip(grid.scales, grid.zero_points, strict=True)
        ]
        steps = _steps(plans, grid.shape, device)
    if grid.offsets is None:
        return _QuantPlan(steps, grid.split, None, None, None, None)
    bounds = [integer_bounds(n_bits, int(offset), narrow) for offset in grid.offsets]
    lows = numpy.array([low for low, _ in bounds], dtype=numpy.int64)
    highs = numpy.array([high for _, high in bounds], dtype=numpy.int64)
    span = (int(lows.min()), int(highs.max()))
    clip, clip_grid = None, None
    if lows.min() == lows.max() and highs.min() == highs.max():
        clip = span
    else:
        clip_grid = (
            _on_device(lows.astype(numpy.float64).reshape(grid.shape), device),
            _on_device(highs.astype(numpy.float64).reshape(grid.shape), device),
        )
    with numpy.errstate(over="ignore", invalid="ignore"):
        scales = grid.scales.astype(numpy.float64)
        zero_points = grid.zero_points.astype(numpy.float64)
        first = scales * (lows.astype(numpy.float64) - zero_points)
        second = scales * (highs.astype(numpy.float64) - zero_points)
    inside = (
        _on_device(numpy.minimum(first, second).reshape(grid.shape), device),
        _on_device(numpy.maximum(first, second).reshape(grid.shape), device),
    )
    return _QuantPlan(steps, grid.split, clip, clip_grid, span, inside)


def _build_dequant_plan(grid: _Grid, codes_dtype: numpy.dtype[Any], device: torch.device) -> _DequantPlan:
    if not grid.exact:
        return _DequantPlan(None, grid.split, torch.float64)
    plans = [
        _dequant_dtypes(codes_dtype, grid.scalar_input, scale, zero_point)
        for scale, zero_point in zip(grid.scales, grid.zero_points, strict=True)
    ]
    # intquant stacks the blocks' values: the result has the widest of their dtypes.
    dtype = numpy.result_type(*(scale.dtype for _, scale in plans))
    return _DequantPlan(_steps(plans, grid.shape, device), grid.split, _torch_dtype(dtype))


def _merge(
    merged: torch.Tensor | None, part: torch.Tensor, mask: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor:
    """``part`` where ``mask`` (everywhere if None) and ``merged`` elsewhere, as ``dtype``."""
    if mask is None:
        return part
    part = part.to(dtype)
    return part if merged is None else torch.where(mask, part, merged)


def _rounded_codes(
    values: torch.Tensor, steps: tuple[_Step, ...], split: tuple[int, ...] | None, rounding: str
) -> torch.Tensor:
    """``round(values / scale + zero_point)`` as floats, each block in its own dtypes (viewed as
    ``split`` if given); blocks of several dtype plans are merged in float64."""
    if split is not None:
        values = values.reshape(split)
    codes: torch.Tensor | None = None
    for step in steps:
        shifted = torch.div(values.to(step.first.dtype), step.first)  # a new tensor: safe to update
        if shifted.dtype != step.second.dtype:
            shifted = shifted.to(step.second.dtype)
        shifted.add_(step.second)
        _ROUNDERS[rounding](shifted)
        codes = _merge(codes, shifted, step.mask, torch.float64)
    assert codes is not None  # a plan has at least one step
    return codes


def _codes_to_int64(
    codes: torch.Tensor, plan: _QuantPlan, values: torch.Tensor, scale: Any, zero_point: Any
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
    if plan.clip is not None:
        codes_dtype = _numpy_dtype(codes.dtype)
        assert codes_dtype is not None  # a float dtype
        dtype, low, high = _clip_range(codes_dtype, *plan.clip)
        codes = codes.to(_torch_dtype(dtype)).clamp_(float(low), float(high))
    elif plan.clip_grid is not None:
        codes = torch.clamp(codes.to(torch.float64), *plan.clip_grid)
    elif highest >= _INT64_LIMIT or lowest < -_INT64_LIMIT:
        raise _beyond_int64_error(scale, zero_point)
    return codes.to(torch.int64)


def _convert_codes(
    codes: torch.Tensor, target: torch.dtype | None, span: tuple[int, int] | None
) -> torch.Tensor:
    """int64 codes as ``target``, refused (as ``intquant.kernels.convert_codes`` refuses them)
    when the clipping range, or without clipping the codes, do not all fit it exactly."""
    if target is None or target == torch.int64:
        return codes
    if span is None:
        if codes.numel() == 0:
            return codes.to(target)
        lowest, highest = torch.aminmax(codes)
        span = (int(lowest), int(highest))
    convert_codes(numpy.array(span, dtype=numpy.int64), _CODE_DTYPES[target], span)  # raises if not exact
    return codes.to(target)

"""Pure torch kernels: ranges, parameters and fake quantization as tensor operations.

Functions of tensors and Python values that know nothing of modules, of intquant's classes or of
numpy; :class:`~intquant.torch.MinMaxObserver`, :class:`~intquant.torch.FakeQuantize` and
:func:`~intquant.torch.fake_quant` hold state and delegate here. Every operation runs on the
tensors' device, without reading a value back to the host, so a training step has no device
synchronization and ``torch.compile`` traces it as one graph. With ``n = n_bits``, ``offset =
2**(n-1)`` for signed codes (else 0) and ``levels = 2**n - 1``:

* ranges: ``low = min(x)``, ``high = max(x)`` per tensor or per channel; folded into running
  statistics as their union (``min``/``max``) or as a moving average
  ``running + c * (batch - running)``;
* parameters, from ``[low, high]`` in the statistics' dtype (``zero_in_range`` widens it to hold
  0 first), ``spread = high - low`` in that dtype, everything after it in float64: a range
  narrower than ``STABILITY_CONST`` holds one value (offset 0; scale 1.0 and zero point
  ``rint(-low)`` near zero, else scale ``high`` and zero point 0); symmetric
  ``scale = max(|high|, |low|) / (levels - offset)``, zero point 0; asymmetric
  ``scale = spread / levels``, ``zero_point = round((high * -offset - low * (levels - offset)) /
  spread)``; ``power_of_two_scale`` then takes ``2**ceil(log2(scale))`` and, asymmetric,
  ``zero_point = round(-offset - low / scale)``. These are intquant's formulas
  (:func:`intquant.kernels.choose_uniform_parameters`) step for step, in the same dtypes, so the
  parameters are bit for bit those intquant computes from the same statistics.
* fake quantization: ``q = round(x / scale + zero_point)``, clipped to ``[low_code, high_code]``,
  then ``scale * (q - zero_point)`` in float64, cast to ``x``'s dtype.

The division and the addition of ``q`` run in the dtypes numpy 1.24 picks for an array and a
scalar (value-based casting, as :func:`intquant._numpy124.promotion.legacy_result_type` decides
them): the division in ``D``, the wider of the values' dtype and the smallest float dtype holding
the scale's value (float16 below 65000 in magnitude, float32 below 3.4e38); the addition in the
wider of ``D`` and the smallest float dtype an integer zero point promotes with (float16 for
``[-128, 255]``, float32 for ``[-32768, 65535]``, else float64). Those dtypes depend on the
parameters' values, which live on the device: each pair of dtypes that can occur for the values'
dtype is computed and the right one selected per channel with ``torch.where`` (float64 values:
one pair; float32: three; float16: six), so no value is read back. A caller that knows which
pairs the parameters need (:func:`dtype_pairs`: ``fake_quant`` knows its quantizer's on the
host; eager calls on the CPU, where reading back costs no synchronization, read three numbers)
computes only those, usually one. A 0-d tensor follows numpy's scalar rules (everything in
float64).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from intquant._core.formulas import STABILITY_CONST

__all__ = [
    "DtypePair",
    "Parameters",
    "StraightThrough",
    "batch_range",
    "choose_parameters",
    "dtype_pairs",
    "fake_quantize",
    "finite_range",
    "fold_range",
    "rounded_codes",
]

#: numpy 1.x's ``min_scalar_type`` of a float: float16 below this magnitude (or not finite), ...
FLOAT16_SCALAR_LIMIT = 65000.0
#: ... float32 below this one, else float64.
FLOAT32_SCALAR_LIMIT = 3.4e38
_INT64_LIMIT = 2.0**63  # float64 values in [-2**63, 2**63) convert to int64 exactly
_FLOAT64_MAX = torch.finfo(torch.float64).max

#: The float dtypes, narrowest first: the rank of a dtype is its index here.
_FLOATS = (torch.float16, torch.float32, torch.float64)
_RANK = {dtype: rank for rank, dtype in enumerate(_FLOATS)}


class Parameters(NamedTuple):
    """Quantization parameters as tensors of the statistics' shape (``()`` per tensor, ``(C,)``
    per channel): ``scale`` float64, ``zero_point`` and ``offset`` int64, and ``valid`` (bool)
    where the scale is finite and the zero point fits int64 (intquant refuses the others)."""

    scale: torch.Tensor
    zero_point: torch.Tensor
    offset: torch.Tensor
    valid: torch.Tensor


def batch_range(values: torch.Tensor, axis: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(min, max)`` of non-empty ``values`` in their dtype: 0-d tensors per tensor (``axis``
    None), else ``(C,)`` tensors over every index but ``axis`` (which must be normalized)."""
    if axis is None:
        low, high = torch.aminmax(values)
    else:
        rows = values.movedim(axis, 0).reshape(values.shape[axis], -1)
        low, high = torch.aminmax(rows, dim=1)
    return low, high


def finite_range(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Where both ``low`` and ``high`` are finite (bool, their shape): ``max(|low|, |high|)``
    no larger than the dtype's largest value (fewer operations than two ``isfinite``)."""
    return torch.maximum(low.abs(), high.abs()) <= torch.finfo(low.dtype).max


def fold_range(
    running: tuple[torch.Tensor, torch.Tensor],
    batch: tuple[torch.Tensor, torch.Tensor],
    averaging_constant: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The running float64 ``(low, high)`` with a batch's range folded in (new tensors).

    Without ``averaging_constant``: ``(min(low, batch_low), max(high, batch_high))``, the range
    of every batch seen (empty statistics are ``(+inf, -inf)``). With it, ``c``: the moving
    average ``low + c * (batch_low - low)`` (likewise ``high``); the first batch is taken as is.
    """
    low, high = running
    if averaging_constant is None:  # float64 results (float16/32 values promote exactly)
        return torch.minimum(low, batch[0]), torch.maximum(high, batch[1])
    batch_low, batch_high = _as(batch[0], torch.float64), _as(batch[1], torch.float64)
    empty = torch.isinf(low) & (low > 0)
    return (
        torch.where(empty, batch_low, low + averaging_constant * (batch_low - low)),
        torch.where(empty, batch_high, high + averaging_constant * (batch_high - high)),
    )


def choose_parameters(
    low: torch.Tensor,
    high: torch.Tensor,
    dtype: torch.dtype,
    divisors: torch.Tensor,
    *,
    n_bits: int,
    is_signed: bool,
    is_symmetric: bool,
    zero_in_range: bool,
    power_of_two_scale: bool,
) -> Parameters:
    """Parameters of the range ``[low, high]``, float64 tensors holding values of the statistics'
    float ``dtype`` (exactly), as intquant computes them from statistics of that dtype (see the
    module's formulas).

    The one step in ``dtype``, ``high - low``, is the float64 difference rounded to ``dtype``:
    rounding twice gives the correctly rounded float16/32 difference (53 >= 2 * 24 + 2 bits).
    ``divisors`` is the float64 tensor ``[levels, levels - offset]`` on the statistics' device:
    a divisor held in a tensor rather than a Python number is divided by, never multiplied by its
    reciprocal (as torch does on accelerators and inductor with constant divisors).
    """
    offset = 2 ** (n_bits - 1) if is_signed else 0
    levels = 2**n_bits - 1
    if zero_in_range:  # exact: as intquant's range_including_zero in the statistics' dtype
        low, high = torch.clamp(low, max=0.0), torch.clamp(high, min=0.0)
    spread = high - low
    if dtype != torch.float64:
        spread = spread.to(dtype).to(torch.float64)
    single = spread < STABILITY_CONST
    tiny = high.abs() < STABILITY_CONST
    # One value: scale 1.0 and zero point rint(-low) near zero, else scale high and zero point 0.
    single_scale = torch.where(tiny, 1.0, high)
    single_zero_point = torch.where(tiny, torch.round(-low), 0.0)
    if is_symmetric:
        scale = torch.where(single, single_scale, torch.maximum(high.abs(), low.abs()) / divisors[1])
        zero_point = torch.where(single, single_zero_point, 0.0)
    else:
        scale = torch.where(single, single_scale, spread / divisors[0])
        numerator = high * float(-offset) - low * float(levels - offset)
        zero_point = torch.where(single, single_zero_point, torch.round(numerator / spread))
    if power_of_two_scale:
        positive = (scale > 0) & (scale <= _FLOAT64_MAX)  # and finite
        power = torch.where(positive, torch.exp2(torch.ceil(torch.log2(scale))), scale)
        if not is_symmetric:
            recomputed = torch.round(float(-offset) - low / power)
            zero_point = torch.where(positive & ~single, recomputed, zero_point)
        scale = power
    fits = (zero_point >= -_INT64_LIMIT) & (zero_point < _INT64_LIMIT)  # False for NaN
    return Parameters(
        scale,
        torch.where(fits, zero_point, 0.0).to(torch.int64),
        torch.where(single, 0, offset),
        (scale.abs() <= _FLOAT64_MAX) & fits,  # a finite scale (False for NaN)
    )


#: A pair of dtype ranks: the division's and the addition's.
DtypePair = tuple[int, int]


def dtype_pairs(
    values_dtype: torch.dtype, scale_range: tuple[float, float], zero_range: tuple[int, int]
) -> list[DtypePair]:
    """The pairs of dtype ranks (division, addition) that parameters with ``|scale|`` in
    ``scale_range`` and zero points in ``zero_range`` can need for values of ``values_dtype``
    (a superset: every pair between the narrowest and the widest), narrowest first."""
    first = _RANK[values_dtype]
    divisions = range(max(first, _scale_rank(scale_range[0])), max(first, _scale_rank(scale_range[1])) + 1)
    zero_ranks = [_zero_rank(zero_range[0]), _zero_rank(zero_range[1])]
    if zero_range[0] <= 255 and zero_range[1] >= -128:  # the range meets [-128, 255]
        zero_ranks.append(0)
    return [
        (division, addition)
        for division in divisions
        for addition in range(max(division, min(zero_ranks)), max(division, max(zero_ranks)) + 1)
    ]


def _scale_rank(magnitude: float) -> int:
    """The rank of the smallest float dtype numpy 1.x gives a float scalar of this magnitude."""
    if not math.isfinite(magnitude) or magnitude < FLOAT16_SCALAR_LIMIT:
        return 0
    return 1 if magnitude < FLOAT32_SCALAR_LIMIT else 2


def _zero_rank(zero_point: int) -> int:
    """The rank of the float dtype float16 values promote to with this integer scalar."""
    if -128 <= zero_point <= 255:
        return 0
    return 1 if -32768 <= zero_point <= 65535 else 2


def rounded_codes(
    values: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    rounding: str,
    pairs: list[DtypePair] | None = None,
) -> torch.Tensor:
    """``round(values / scale + zero_point)``, unclipped, as float64 (integers, or ±inf/NaN).

    ``values`` are float16/32/64; ``scale`` (float64) and ``zero_point`` (int64) broadcast
    against them. The division and the addition run in numpy 1.24's dtypes for each channel's
    parameters (see the module docstring); the rounding in the addition's dtype: half to even,
    half up (``floor(s + 0.5)``), floor, ceil, or stochastic (``floor(s + u)`` in float64 with
    ``u ~ U[0, 1)`` from torch's generator). ``pairs`` (from :func:`dtype_pairs`), when known,
    limits the dtype pairs computed; None computes every pair the values' dtype can need and
    selects per channel on the device.
    """
    noise = None
    if rounding == "stochastic":
        noise = torch.rand(values.shape, dtype=torch.float64, device=values.device)
    first = _RANK[values.dtype]
    if values.dim() == 0 or first == len(_FLOATS) - 1:  # numpy's scalar rules, or float64 values
        return _round(_as(values, torch.float64) / scale + zero_point.to(torch.float64), rounding, noise)
    if pairs is None:
        pairs = [(division, addition) for division in range(first, 3) for addition in range(division, 3)]
    if len(pairs) == 1:
        return _shifted_and_rounded(values, scale, zero_point, pairs[0], rounding, noise)
    magnitude = scale.abs()
    scale_rank = torch.where(
        torch.isfinite(magnitude) & (magnitude >= FLOAT16_SCALAR_LIMIT),
        torch.where(magnitude < FLOAT32_SCALAR_LIMIT, 1, 2),
        0,
    )
    division_rank = torch.clamp(scale_rank, min=first)
    zero_rank = torch.where(
        (zero_point >= -128) & (zero_point <= 255),
        0,
        torch.where((zero_point >= -32768) & (zero_point <= 65535), 1, 2),
    )
    addition_rank = torch.maximum(division_rank, zero_rank)
    codes = _shifted_and_rounded(values, scale, zero_point, pairs[0], rounding, noise)
    for pair in pairs[1:]:
        chosen = (division_rank == pair[0]) & (addition_rank == pair[1])
        codes = torch.where(
            chosen, _shifted_and_rounded(values, scale, zero_point, pair, rounding, noise), codes
        )
    return codes


def _shifted_and_rounded(
    values: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    pair: DtypePair,
    rounding: str,
    noise: torch.Tensor | None,
) -> torch.Tensor:
    """``round(values / scale + zero_point)`` with the division and addition in ``pair``'s
    dtypes, as float64."""
    division, addition = _FLOATS[pair[0]], _FLOATS[pair[1]]
    quotient = _as(values, division) / scale.to(division)
    return _round(_as(quotient, addition) + zero_point.to(addition), rounding, noise)


def _as(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``tensor`` in ``dtype`` (itself when it has it: no operation)."""
    return tensor if tensor.dtype == dtype else tensor.to(dtype)


def _round(shifted: torch.Tensor, rounding: str, noise: torch.Tensor | None) -> torch.Tensor:
    """``shifted`` rounded in its dtype, as float64."""
    if rounding == "half_even":
        rounded = torch.round(shifted)
    elif rounding == "half_up":
        rounded = torch.floor(shifted + 0.5)  # 0.5 is exact in every float dtype
    elif rounding == "floor":
        rounded = torch.floor(shifted)
    elif rounding == "ceil":
        rounded = torch.ceil(shifted)
    else:  # stochastic
        assert noise is not None
        return torch.floor(_as(shifted, torch.float64) + noise)
    return _as(rounded, torch.float64)


def fake_quantize(
    values: torch.Tensor,
    scale: torch.Tensor,
    zero_point: torch.Tensor,
    bounds: tuple[torch.Tensor, torch.Tensor] | None,
    rounding: str,
    pairs: list[DtypePair] | None = None,
    *,
    mask: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(restored, inside)``: ``scale * (clip(q, low, high) - zero_point)`` in float64, cast to
    ``values``' dtype, with ``q`` the :func:`rounded_codes`; and where ``low <= q <= high``
    (torch's clipped straight-through mask; None without ``bounds`` or ``mask``). The bounds
    are float64 tensors broadcasting like the parameters. NaN values give NaN (and lie outside).
    ``pairs`` as for :func:`rounded_codes`."""
    codes = rounded_codes(values, scale, zero_point, rounding, pairs)
    inside = None
    if bounds is not None:
        clipped = torch.clamp(codes, *bounds)
        if mask:
            inside = clipped == codes  # False where clipping changed the code, and for NaN
        codes = clipped
    # Codes are integers (numpy's are int64): ``+ 0.0`` turns a code rounded to -0.0 into 0.
    restored = scale * (codes - zero_point.to(torch.float64)).add_(0.0)
    return _as(restored, values.dtype), inside


class StraightThrough(torch.autograd.Function):
    """Forward: ``restored`` (computed without gradient from ``values``). Backward: the gradient
    passes to ``values`` where ``inside`` (everywhere when None), and is 0 elsewhere."""

    @staticmethod
    def forward(
        ctx: Any, values: torch.Tensor, restored: torch.Tensor, inside: torch.Tensor | None
    ) -> torch.Tensor:
        """Keep ``inside`` for the backward pass; return ``restored``."""
        ctx.save_for_backward(inside)
        return restored

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        """``grad`` where ``inside`` (everywhere when None), else 0; nothing for the others."""
        (inside,) = ctx.saved_tensors
        if inside is None:
            return grad, None, None
        return torch.where(inside, grad, 0.0), None, None


def straight_through(
    values: torch.Tensor, restored: torch.Tensor, inside: torch.Tensor | None
) -> torch.Tensor:
    """``restored``, with :class:`StraightThrough`'s gradient to ``values``."""
    result: torch.Tensor = StraightThrough.apply(values, restored, inside)  # type: ignore[no-untyped-call]
    return result

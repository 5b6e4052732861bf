"""Concrete ML 1.9's codes in a dtype other than int64.

``quant(values, dtype)`` in Concrete ML 1.9 rounds, clips and casts once:
``rint(values / scale + zero_point).clip(low, high).astype(dtype)``. So its float codes keep
what an int64 code cannot: the sign of a zero (a value just below a zero point of 0 rounds to
``-0.0``) and, without clipping, magnitudes beyond int64. :func:`codes_as` computes them so, in the
plan's dtypes, then casts them, refusing a cast that would change a code (Concrete ML 1.9 wraps
int32 codes beyond ``2**31 - 1`` and rounds float32 codes that float32 cannot hold).

Clipping follows numpy 1.24 to 1.26: the bounds are cast to a dtype that holds them exactly (numpy's
value-based casting picks one), then ``min(max(x, low), high)`` with ``max(a, b) = a if a > b else
b`` and ``min(a, b) = a if a < b else b``: ``max(-0.0, 0)`` is ``0``, so a ``-0.0`` code survives
only where ``low < 0 < high`` (numpy 2's ``clip`` keeps it at ``low = 0``: it is emulated here,
not called).
"""

from __future__ import annotations

from typing import Any

import numpy

from intquant._core.execute import ROUNDERS
from intquant._core.plan import QuantPlan, clip_dtype
from intquant._numpy124.promotion import as_numpy_operand, legacy_result_type
from intquant.errors import InvalidValueError

__all__ = ["cast_codes", "codes_as"]

_FLOAT64 = numpy.dtype(numpy.float64)


def codes_as(plan: QuantPlan, values: Any, target: numpy.dtype[Any]) -> Any:
    """The codes of ``values`` (a numpy array or scalar of the plan's dtype and shape) under
    ``plan`` (deterministic rounding), as Concrete ML 1.9 returns them in ``target``.

    Raises
    ------
    InvalidValueError
        For NaN values, infinite codes, or codes ``target`` cannot hold (see :func:`cast_codes`).
    """
    with numpy.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if plan.generic:
            rounded = _generic_rounded(plan, values)
        elif plan.layout is None:
            step = plan.steps[0]
            rounded = _rounded(numpy.asarray(values), step, plan.rounding)
        else:
            rounded = _grouped_rounded(plan, numpy.asarray(values))
    if numpy.isnan(rounded).any():
        raise InvalidValueError(
            f"cannot quantize NaN: no integer stands for it (values of shape {numpy.shape(values)}, "
            f"dtype {numpy.asarray(values).dtype}). Remove or replace NaN first, e.g. with "
            f"numpy.nan_to_num; a NaN also arises when the scale underflows to 0 in the values' "
            f"precision."
        )
    if plan.bounds is not None:
        rounded = _clipped(plan, rounded)
    if plan.layout is not None:
        rounded = rounded.reshape(plan.layout.shape)
    result = cast_codes(rounded, target, plan)
    return result[()] if result.ndim == 0 else result


def cast_codes(codes: numpy.ndarray, target: numpy.dtype[Any], plan: QuantPlan) -> numpy.ndarray:
    """Integer-valued ``codes`` (floats, or int64) as ``target``, each checked to be kept exactly.

    Raises
    ------
    InvalidValueError
        For an infinite code, an integer code out of ``target``'s range (Concrete ML 1.9 wraps
        it), or a float code ``target`` does not hold (Concrete ML 1.9 rounds it).
    """
    codes = numpy.asarray(codes)
    if codes.dtype.kind == "f" and not numpy.isfinite(codes).all():
        raise InvalidValueError(
            f"without clipping, some codes are infinite: no number stands for them. Enable "
            f"clipping (no_clipping=False) or check scale={plan.scale!r} and "
            f"zero_point={plan.zero_point!r}."
        )
    if codes.size == 0:
        return codes.astype(target)
    if target.kind in "iu":
        info = numpy.iinfo(target)
        low, high = numpy.min(codes), numpy.max(codes)
        if not (info.min <= low and high <= info.max):
            raise InvalidValueError(
                f"codes from {low} to {high} do not fit {target} (its range is [{info.min}, "
                f"{info.max}]; Concrete ML 1.9 wraps them around). Use a wider dtype: int64 holds "
                f"every code of up to 32 bits."
            )
        return codes.astype(target)
    with numpy.errstate(over="ignore"):
        converted = codes.astype(target)
        changed = converted.astype(_FLOAT64) != codes.astype(_FLOAT64)
    if changed.any():
        first = codes.reshape(-1)[numpy.argmax(changed.reshape(-1))]
        raise InvalidValueError(
            f"the code {first} is not exactly representable as {target} (Concrete ML 1.9 rounds "
            f"it to {first.astype(target)}); use float64 or int64, which hold every code of up to "
            f"32 bits."
        )
    return converted


def _rounded(values: numpy.ndarray, step: Any, rounding: str) -> numpy.ndarray:
    """``round(float(values, division) / scale + zero_point)``, the addition in ``addition``."""
    quotient = numpy.true_divide(values.astype(step.division), step.scale)
    shifted = numpy.add(numpy.asarray(quotient, dtype=step.addition), step.zero_point)
    return numpy.asarray(ROUNDERS[rounding](shifted, None))


def _grouped_rounded(plan: QuantPlan, values: numpy.ndarray) -> numpy.ndarray:
    """:func:`_rounded` per axis or block (each block's step), in the values' view; the steps'
    codes merged in float64 when there are several (exact)."""
    layout = plan.layout
    assert layout is not None
    view = values if layout.view is None else values.reshape(layout.view)
    merged: numpy.ndarray | None = None
    for step in plan.steps:
        rounded = _rounded(view, step, plan.rounding)
        if step.blocks is None:
            merged = rounded
        else:
            merged = numpy.where(step.blocks, rounded, numpy.float64(0) if merged is None else merged)
    assert merged is not None
    return merged


def _generic_rounded(plan: QuantPlan, values: Any) -> numpy.ndarray:
    """:func:`_rounded` for parameters numpy broadcasts itself: each operation in the dtype numpy
    1.24 picks for it."""
    operand = as_numpy_operand(values)
    scale, zero_point = as_numpy_operand(plan.scale), as_numpy_operand(plan.zero_point)
    dtype = legacy_result_type(operand, scale)
    quotient = numpy.true_divide(numpy.asarray(operand, dtype=dtype), numpy.asarray(scale, dtype=dtype))
    quotient = quotient if numpy.ndim(quotient) else quotient[()]
    dtype = legacy_result_type(quotient, zero_point)
    shifted = numpy.add(numpy.asarray(quotient, dtype=dtype), numpy.asarray(zero_point, dtype=dtype))
    return numpy.asarray(ROUNDERS[plan.rounding](shifted, None))


def _clipped(plan: QuantPlan, rounded: numpy.ndarray) -> numpy.ndarray:
    """``rounded`` (per axis or block: in the values' view, against which laid-out bounds
    broadcast) clipped to the plan's bounds as numpy 1.24 to 1.26 clip floats (see the module
    docstring), in a dtype holding the codes and the bounds exactly."""
    assert plan.bounds is not None
    low, high = plan.bounds
    dtype = _FLOAT64 if plan.span is None else clip_dtype(rounded.dtype, *plan.span)
    codes = rounded.astype(dtype)
    low_bound, high_bound = numpy.asarray(low, dtype=dtype), numpy.asarray(high, dtype=dtype)
    raised = numpy.where(codes > low_bound, codes, low_bound)
    return numpy.asarray(numpy.where(raised < high_bound, raised, high_bound))

"""The numpy executor of plans (with the numba loops as its fast path).

:func:`quantize_with` and :func:`dequantize_with` run a :class:`~intquant._core.plan.QuantPlan`
or :class:`~intquant._core.plan.DequantPlan` on numpy values: per step, broadcasting the
per-block parameters over the values (viewed as ``(g0, b0, g1, b1, ...)`` per block), with no
Python loop over blocks. Large float32/float64 arrays quantized per tensor with half-to-even
rounding, and large integer codes dequantized per tensor, go through the compiled one-pass loops
of :mod:`intquant._numba.dispatch`, with identical results.

:func:`quantize` and :func:`dequantize` are the same for parameters given directly (per tensor,
unchecked): the kernels calibration methods and tests call.
"""

from __future__ import annotations

from typing import Any

import numpy

from intquant._core.granularity import ungrouped
from intquant._core.plan import DequantPlan, QuantPlan, clip_dtype, tensor_dequant_plan, tensor_quant_plan
from intquant._numba import dispatch as _compiled
from intquant._numpy124.promotion import as_numpy_operand, legacy_result_type
from intquant.errors import InvalidValueError

__all__ = [
    "ROUNDERS",
    "beyond_int64_error",
    "dequantize",
    "dequantize_with",
    "quantize",
    "quantize_with",
]

# float64 values in [-2**63, 2**63) convert to int64 exactly; a numpy scalar, so that numpy 2
# compares a float16 array with it in float64 rather than casting it to float16 (inf).
_INT64_LIMIT = numpy.float64(2**63)
_FLOAT64 = numpy.dtype(numpy.float64)


def _stochastic(shifted: Any, noise: Any) -> Any:
    """``floor(x + u)``, ``u ~ U[0, 1)`` in float64: rounds up with probability frac(x)."""
    return numpy.floor(numpy.asarray(shifted, dtype=numpy.float64) + noise)


#: Rounding modes: each maps ``values / scale + zero_point`` (and, for ``"stochastic"``, uniform
#: noise in [0, 1)) to integer-valued floats, in the dtype of the computation.
ROUNDERS: dict[str, Any] = {
    "half_even": lambda shifted, noise: numpy.rint(shifted),
    "half_up": lambda shifted, noise: numpy.floor(shifted + numpy.asarray(shifted).dtype.type(0.5)),
    "floor": lambda shifted, noise: numpy.floor(shifted),
    "ceil": lambda shifted, noise: numpy.ceil(shifted),
    "stochastic": _stochastic,
}


def quantize(
    values: numpy.ndarray | numpy.generic,
    scale: Any,
    zero_point: Any,
    bounds: tuple[Any, Any] | None,
    rounding: str = "half_even",
    rng: numpy.random.Generator | None = None,
) -> Any:
    """Return ``clip(round(values / scale + zero_point), *bounds)`` as int64 (no clip if None).

    ``round`` is ``rint`` (half to even, the seed's) unless ``rounding`` names another mode of
    :data:`ROUNDERS`; ``rng`` draws the noise of ``"stochastic"`` rounding. The division and the
    addition run in numpy 1.24's dtypes (see :mod:`intquant._core.plan`). A 0-d input gives a
    ``numpy.int64`` scalar.

    Raises
    ------
    InvalidValueError
        If a value is NaN, or, without clipping, if its code is infinite or outside int64.
    """
    operand = as_numpy_operand(values)
    plan = tensor_quant_plan(operand.dtype, numpy.ndim(operand), scale, zero_point, bounds, rounding)
    return quantize_with(plan, operand, rng)


def dequantize(qvalues: numpy.ndarray | numpy.generic, scale: Any, zero_point: Any) -> Any:
    """Return ``scale * (qvalues - float64(zero_point))``, in numpy 1.24's dtypes.

    Integer codes give float64; float16/float32 codes keep their precision, as in the reference.
    """
    operand = as_numpy_operand(qvalues)
    return dequantize_with(
        tensor_dequant_plan(operand.dtype, numpy.ndim(operand), scale, zero_point), operand
    )


def quantize_with(plan: QuantPlan, values: Any, rng: numpy.random.Generator | None = None) -> Any:
    """The int64 codes of numpy ``values`` (of the plan's dtype and shape) under ``plan``.

    Raises
    ------
    InvalidValueError
        If a value is NaN, or, without clipping, if its code is infinite or outside int64.
    """
    if plan.generic:
        return _generic_quantize(plan, values, rng)
    if plan.layout is None:
        step = plan.steps[0]
        if plan.compiled and values.ndim and _compiled.worthwhile(values.size):
            codes, status = _compiled.quantize_floats(values, step.scale, step.zero_point, plan.bounds)
            if status == _compiled.NAN_FOUND:
                raise _nan_error(values)
            if status == _compiled.BEYOND_INT64:
                raise beyond_int64_error(plan.scale, plan.zero_point)
            return codes
        noise = None if plan.rounding != "stochastic" else _noise(rng, numpy.shape(values))
        rounded = _rounded(
            values, step.division, step.scale, step.addition, step.zero_point, plan.rounding, noise
        )
        return _codes_to_int64(rounded, plan, values)
    layout = plan.layout
    view = values if layout.view is None else values.reshape(layout.view)
    noise = None
    if plan.rounding == "stochastic":  # drawn block by block, as each block alone would draw it
        drawn = _noise(rng, (layout.blocks, int(numpy.prod(layout.extent))))
        noise = ungrouped(drawn, layout.shape, layout.extent).reshape(view.shape)
    merged: Any = None
    for step in plan.steps:
        rounded = _rounded(
            view, step.division, step.scale, step.addition, step.zero_point, plan.rounding, noise
        )
        if step.blocks is None:
            merged = rounded
        else:  # exact: float16/float32 codes are exact in float64
            merged = numpy.where(step.blocks, rounded, numpy.float64(0) if merged is None else merged)
    codes = _codes_to_int64(merged, plan, values)
    return codes.reshape(layout.shape)


def dequantize_with(plan: DequantPlan, codes: Any) -> Any:
    """The values of numpy ``codes`` (of the plan's dtype and shape) under ``plan``.

    Raises
    ------
    InvalidValueError
        If a finite code's value overflows to an infinity (values near the float maximum).
    """
    if not plan.may_overflow:
        return _dequantized(plan, codes)
    with numpy.errstate(over="ignore", invalid="ignore"):
        values = _dequantized(plan, codes)
        overflow = numpy.isinf(values) & numpy.isfinite(codes)
    if numpy.any(overflow):
        raise InvalidValueError(
            f"dequantizing these codes overflows: scale * (q - zero_point) is beyond the "
            f"largest {numpy.asarray(values).dtype} (scale={plan.scale!r}, zero_point="
            f"{plan.zero_point!r}, codes of shape {numpy.shape(codes)}). Calibrate on values "
            f"further from the float maximum."
        )
    return values


def _dequantized(plan: DequantPlan, codes: Any) -> Any:
    if plan.generic:
        centered = _apply(numpy.subtract, codes, numpy.asarray(plan.zero_point, dtype=numpy.float64)[()])
        return _apply(numpy.multiply, as_numpy_operand(plan.scale), centered)
    if plan.layout is None:
        step = plan.steps[0]
        array = isinstance(codes, numpy.ndarray) and codes.ndim > 0
        if array and plan.integer_codes:
            if _compiled.worthwhile(codes.size):
                return _compiled.dequantize_codes(codes, step.scale, step.zero_point)
            values = numpy.subtract(codes, step.zero_point)
            return numpy.multiply(values, step.scale, out=values)
        centered = numpy.subtract(numpy.asarray(codes, dtype=step.subtraction), step.zero_point)
        if array and centered.dtype == step.multiplication:
            return numpy.multiply(centered, step.scale, out=centered)
        return numpy.multiply(numpy.asarray(centered, dtype=step.multiplication), step.scale)
    layout = plan.layout
    view = codes if layout.view is None else codes.reshape(layout.view)
    result: Any = None
    for step in plan.steps:
        centered = numpy.subtract(view.astype(step.subtraction, copy=False), step.zero_point)
        if centered.dtype != step.multiplication:
            centered = centered.astype(step.multiplication)
        numpy.multiply(centered, step.scale, out=centered)
        if step.blocks is None:
            result = centered
        else:
            part = centered.astype(plan.dtype, copy=False)
            result = part if result is None else numpy.where(step.blocks, part, result)
    return result.reshape(layout.shape)


# -- steps


def _noise(rng: numpy.random.Generator | None, shape: tuple[int, ...]) -> Any:
    generator = rng if rng is not None else numpy.random.default_rng()
    return generator.random(shape)


def _rounded(
    values: Any,
    division: numpy.dtype[Any],
    scale: Any,
    addition: numpy.dtype[Any],
    zero_point: Any,
    rounding: str,
    noise: Any,
) -> Any:
    """``round(float(values, division) / scale + zero_point)``, the addition in ``addition``."""
    with numpy.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if isinstance(values, numpy.ndarray) and values.ndim:  # one temporary, updated in place
            shifted = numpy.true_divide(values.astype(division, copy=False), scale)
            if shifted.dtype != addition:
                shifted = shifted.astype(addition)
            numpy.add(shifted, zero_point, out=shifted)
            if rounding == "half_even":
                return numpy.rint(shifted, out=shifted)
            return ROUNDERS[rounding](shifted, noise)
        quotient = numpy.true_divide(numpy.asarray(values, dtype=division), scale)
        shifted = numpy.add(numpy.asarray(quotient, dtype=addition), zero_point)
        return ROUNDERS[rounding](shifted, noise)


def _codes_to_int64(codes: Any, plan: QuantPlan, values: Any) -> Any:
    """Rounded float ``codes`` clipped to the plan's bounds (if any) and converted to int64.

    Raises for NaN codes, and without clipping for codes int64 cannot hold.
    """
    if codes.size == 0:
        return codes.astype(numpy.int64)
    lowest = numpy.minimum.reduce(codes, axis=None)  # NaN propagates: one reduction finds it
    if numpy.isnan(lowest):
        raise _nan_error(values)
    if plan.clip is not None:
        dtype, low, high = plan.clip
        codes = numpy.asarray(codes, dtype=dtype)
        if codes.ndim:  # this call's own temporary, of the broadcast shape: clip it in place
            numpy.maximum(codes, low, out=codes)
            numpy.minimum(codes, high, out=codes)
        else:
            codes = numpy.minimum(numpy.maximum(codes, low), high)
    elif numpy.maximum.reduce(codes, axis=None) >= _INT64_LIMIT or lowest < -_INT64_LIMIT:
        raise beyond_int64_error(plan.scale, plan.zero_point)
    return codes.astype(numpy.int64)


def _generic_quantize(plan: QuantPlan, values: Any, rng: numpy.random.Generator | None) -> Any:
    """Parameters numpy broadcasts itself: each operation in the dtype numpy 1.24 picks for it."""
    with numpy.errstate(over="ignore", divide="ignore", invalid="ignore"):
        quotient = _apply(numpy.true_divide, values, as_numpy_operand(plan.scale))
        shifted = _apply(numpy.add, quotient, as_numpy_operand(plan.zero_point))
        noise = None if plan.rounding != "stochastic" else _noise(rng, numpy.shape(shifted))
        codes = ROUNDERS[plan.rounding](shifted, noise)
    if codes.size and numpy.isnan(numpy.minimum.reduce(codes, axis=None)):
        raise _nan_error(values)
    if plan.bounds is not None:  # clip exactly: in the codes' dtype if it holds the bounds, else float64
        low, high = plan.bounds
        dtype = clip_dtype(codes.dtype, *plan.span) if plan.span is not None else _FLOAT64
        low, high = numpy.asarray(low, dtype=dtype), numpy.asarray(high, dtype=dtype)
        codes = numpy.minimum(numpy.maximum(numpy.asarray(codes, dtype=dtype), low), high)
    elif codes.size and (numpy.max(codes) >= _INT64_LIMIT or numpy.min(codes) < -_INT64_LIMIT):
        raise beyond_int64_error(plan.scale, plan.zero_point)
    return codes.astype(numpy.int64)


def _apply(ufunc: numpy.ufunc, first: Any, second: Any) -> Any:
    """``ufunc(first, second)`` computed in the dtype numpy 1.24 would have chosen."""
    dtype = legacy_result_type(first, second)
    return ufunc(numpy.asarray(first, dtype=dtype), numpy.asarray(second, dtype=dtype))


def _nan_error(values: Any) -> InvalidValueError:
    return InvalidValueError(
        f"cannot quantize NaN: no integer stands for it (values of shape {numpy.shape(values)}, "
        f"dtype {values.dtype}). Remove or replace NaN first, e.g. with numpy.nan_to_num; a NaN "
        f"also arises when the scale underflows to 0 in the values' precision."
    )


def beyond_int64_error(scale: Any, zero_point: Any) -> InvalidValueError:
    return InvalidValueError(
        f"without clipping, some codes are infinite or beyond int64: no integer stands for "
        f"them. Enable clipping (no_clipping=False) or check scale={scale!r} and "
        f"zero_point={zero_point!r}."
    )

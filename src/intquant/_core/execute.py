"""The numpy executor of plans (with the numba loops as its fast path).

:func:`quantize_with` and :func:`dequantize_with` run a :class:`~intquant._core.plan.QuantPlan`
or :class:`~intquant._core.plan.DequantPlan` on numpy values: per step, broadcasting the
per-block parameters over the values (viewed as ``(g0, b0, g1, b1, ...)`` per block), with no
Python loop over blocks. Large float32/float64 arrays quantized per tensor with half-to-even
rounding, and large integer codes dequantized per tensor, go through the compiled one-pass loops
of :mod:`intquant._numba.dispatch`, with identical results. Codes are written in the requested
dtype (int64 by default, or any of :data:`~intquant._core.formulas.CODE_DTYPES`), into the
caller's array if given, in the same pass: the clipping range is checked to fit the dtype before
anything is computed, so no code needs a range check of its own.

:func:`quantize` and :func:`dequantize` are the same for parameters given directly (per tensor,
unchecked): the kernels calibration methods and tests call.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy

from intquant._core.counter_noise import CounterNoise, fresh_seed
from intquant._core.formulas import CODE_DTYPES, code_dtype, fitting_code_dtype
from intquant._core.plan import DequantPlan, QuantPlan, clip_dtype, tensor_dequant_plan, tensor_quant_plan
from intquant._numba import dispatch as _compiled
from intquant._numpy124.promotion import as_numpy_operand, legacy_result_type
from intquant.errors import InvalidTypeError, InvalidValueError

__all__ = [
    "ROUNDERS",
    "beyond_int64_error",
    "check_codes_out",
    "dequantize",
    "dequantize_with",
    "quantize",
    "quantize_with",
]

# float64 values in [-2**63, 2**63) convert to int64 exactly; a numpy scalar, so that numpy 2
# compares a float16 array with it in float64 rather than casting it to float16 (inf).
_INT64_LIMIT = numpy.float64(2**63)
_FLOAT64 = numpy.dtype(numpy.float64)
_FLOAT32 = numpy.dtype(numpy.float32)
_INT64 = numpy.dtype(numpy.int64)


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
    rng: CounterNoise | numpy.random.Generator | None = None,
) -> Any:
    """Return ``clip(round(values / scale + zero_point), *bounds)`` as int64 (no clip if None).

    ``round`` is ``rint`` (half to even, the seed's) unless ``rounding`` names another mode of
    :data:`ROUNDERS`; ``rng`` gives the noise of ``"stochastic"`` rounding (see
    :func:`quantize_with`). The division and the
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


def quantize_with(
    plan: QuantPlan,
    values: Any,
    rng: CounterNoise | numpy.random.Generator | None = None,
    *,
    dtype: Any = None,
    out: numpy.ndarray | None = None,
) -> Any:
    """The codes of numpy ``values`` (of the plan's dtype and shape) under ``plan``.

    The codes are int64, or ``dtype`` (one of :data:`~intquant._core.formulas.CODE_DTYPES`, or
    ``"smallest"``: see :func:`~intquant._core.formulas.convert_codes`), each computed and
    stored in one pass; with ``out`` (a writable C-contiguous array of the codes' shape and of
    one of those dtypes, not overlapping ``values``), they are written there and ``out`` is
    returned. ``dtype``, ``out`` and the clipping range are checked before anything is
    computed; without clipping, the codes are checked to fit ``dtype`` before ``out`` is written.

    ``"stochastic"`` rounding adds ``u(seed, i)`` of ``rng``, a
    :class:`~intquant._core.counter_noise.CounterNoise` (``i``: the C-order flat index of the
    element in the whole array, or in its region's whole array), so the codes do not depend on
    blocks or chunks; a ``numpy.random.Generator`` gives the seed (one draw), None a fresh one.

    Raises
    ------
    InvalidTypeError
        If ``dtype`` is not a codes dtype, or ``out`` is not an array of one.
    InvalidValueError
        If ``dtype`` (or ``out``) cannot hold every code exactly; if ``out`` has the wrong shape,
        is not C-contiguous, is read-only, overlaps ``values``, or its dtype differs from
        ``dtype``; if a value is NaN, or, without clipping, if its code is infinite or outside
        int64. NaN values found by the compiled pass leave ``out`` partly written (the message
        says so); every other error leaves it untouched.
    """
    target = _requested_codes(plan, values, dtype, out)
    if plan.generic:
        return _generic_quantize(plan, values, rng, target, out)
    if plan.layout is None:
        step = plan.steps[0]
        if plan.compiled and values.ndim and _compiled.worthwhile(values.size):
            return _compiled_codes(plan, values, target, out)
        noise = None if plan.rounding != "stochastic" else _noise(rng, numpy.shape(values))
        rounded = _rounded(
            values, step.division, step.scale, step.addition, step.zero_point, plan.rounding, noise
        )
        return _finished_codes(rounded, plan, values, target, out)
    layout = plan.layout
    view = values if layout.view is None else values.reshape(layout.view)
    noise = None
    if plan.rounding == "stochastic":  # by flat index: the view is a C-order reshape of the values
        noise = _noise(rng, numpy.shape(values)).reshape(view.shape)
    merged: Any = None
    for step in plan.steps:
        rounded = _rounded(
            view, step.division, step.scale, step.addition, step.zero_point, plan.rounding, noise
        )
        if step.blocks is None:
            merged = rounded
        else:  # exact: float16/float32 codes are exact in float64
            merged = numpy.where(step.blocks, rounded, numpy.float64(0) if merged is None else merged)
    if out is not None:  # out is C-contiguous: reshaped, it is a view laid out as the blocks are
        _finished_codes(merged, plan, values, target, out.reshape(merged.shape))
        return out
    return _finished_codes(merged, plan, values, target, None).reshape(layout.shape)


def dequantize_with(
    plan: DequantPlan, codes: Any, dtype: Any = None, out: numpy.ndarray | None = None
) -> Any:
    """The values of numpy ``codes`` (of the plan's dtype and shape) under ``plan``, in the plan's
    dtype, or cast to ``dtype`` (float32 or float64; large integer codes per tensor are then
    computed in float64 and stored as ``dtype`` in one pass, as ``astype`` would round them).

    With ``out`` (a writable C-contiguous float32/float64 array of the values' shape, not
    overlapping ``codes``; ``dtype``, if given, must be its dtype), the values cast to ``out``'s
    dtype are written there and ``out`` is returned. ``out`` is checked before anything is
    written; when the plan may overflow (float codes, or a scale near the float maximum), the
    values are computed apart and checked first, so a refusal leaves ``out`` untouched.

    Raises
    ------
    InvalidTypeError
        If ``dtype`` is neither None, float32 nor float64, or ``out`` is not an array of either.
    InvalidValueError
        If a finite code's value overflows to an infinity (values near the float maximum, or, as
        float32, beyond float32's); if ``out`` has the wrong shape, is not C-contiguous, is
        read-only, overlaps ``codes``, or its dtype differs from ``dtype``.
    """
    if out is not None:
        _check_out(out, _values_shape(plan, codes), codes, _VALUES_BUFFER)
    target = _values_dtype(dtype)
    if out is not None:
        if target is not None and target != out.dtype:
            raise InvalidValueError(
                f"dtype={dtype!r} and out's dtype {out.dtype} differ; pass one of them, or the same."
            )
        target = out.dtype
    narrowed = target is not None and target == _FLOAT32 and plan.dtype != _FLOAT32
    if not plan.may_overflow and not (narrowed and plan.may_overflow_float32):
        return _dequantized(plan, codes, target, out)
    with numpy.errstate(over="ignore", invalid="ignore"):
        values = _dequantized(plan, codes, target, None)  # out is written once they are checked
        overflow = numpy.isinf(values) & numpy.isfinite(codes)
    if numpy.any(overflow):
        raise InvalidValueError(
            f"dequantizing these codes overflows: scale * (q - zero_point) is beyond the "
            f"largest {numpy.asarray(values).dtype} (scale={plan.scale!r}, zero_point="
            f"{plan.zero_point!r}, codes of shape {numpy.shape(codes)}). Calibrate on values "
            f"further from the float maximum."
        )
    if out is not None:
        numpy.copyto(out, values)  # of out's dtype already
        return out
    return values


def _values_dtype(dtype: Any) -> numpy.dtype[Any] | None:
    """``dtype`` as the float32/float64 dtype dequantized values are cast to (None: no cast)."""
    if dtype is None:
        return None
    try:
        target = numpy.dtype(dtype)
    except (TypeError, ValueError):  # not a dtype at all
        target = None
    if target is None or target not in (_FLOAT32, _FLOAT64):
        raise InvalidTypeError(
            f"dequant can return values as float32 or float64 (None: the dtype of the formula, "
            f"float64 for integer codes); got {dtype!r}."
        )
    return target


def _dequantized(
    plan: DequantPlan, codes: Any, target: numpy.dtype[Any] | None, out: numpy.ndarray | None
) -> Any:
    """The values of ``codes`` under ``plan``, cast to ``target`` unless None; written to ``out``
    (checked, of dtype ``target``) if given, and then ``out`` is returned."""
    array = isinstance(codes, numpy.ndarray) and codes.ndim > 0
    if plan.integer_codes and array:
        step = plan.steps[0]
        if _compiled.worthwhile(codes.size):  # the cast happens in the pass: float64 arithmetic, target store
            values_dtype = _FLOAT64 if target is None else target  # (not `or`: a dtype can be falsy)
            values = _compiled.dequantize_codes(codes, step.scale, step.zero_point, values_dtype, out)
            return values if out is None else out
        if out is not None and out.dtype == _FLOAT64:  # the plain path's float64 operations, into out
            numpy.subtract(codes, step.zero_point, out=out)
            return numpy.multiply(out, step.scale, out=out)
    values = _plain_dequantized(plan, codes)
    if out is not None:
        numpy.copyto(out, values, casting="unsafe")  # as astype casts
        return out
    if target is None or numpy.asarray(values).dtype == target:
        return values
    return numpy.asarray(values).astype(target)[()] if numpy.ndim(values) == 0 else values.astype(target)


def _plain_dequantized(plan: DequantPlan, codes: Any) -> Any:
    if plan.generic:
        centered = _apply(numpy.subtract, codes, numpy.asarray(plan.zero_point, dtype=numpy.float64)[()])
        return _apply(numpy.multiply, as_numpy_operand(plan.scale), centered)
    if plan.layout is None:
        step = plan.steps[0]
        array = isinstance(codes, numpy.ndarray) and codes.ndim > 0
        if array and plan.integer_codes:
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


# -- codes dtype and output buffer


def _requested_codes(
    plan: QuantPlan, values: Any, dtype: Any, out: numpy.ndarray | None
) -> numpy.dtype[Any] | str:
    """The dtype the codes are written in, after checking ``dtype`` and ``out`` against each other,
    the values and the clipping range: a numpy dtype, or (without clipping only) ``"smallest"``
    or a dtype still to be checked against the codes."""
    if out is not None:
        _check_out(out, _codes_shape(plan, values), values, _CODES_BUFFER)
        if dtype is not None:
            requested = code_dtype(dtype)
            if isinstance(requested, str):
                raise InvalidValueError(
                    "quant cannot choose the 'smallest' dtype when writing into out: out's dtype "
                    "is the codes' dtype. Pass dtype=None (or out's dtype) with out."
                )
            if requested != out.dtype:
                raise InvalidValueError(
                    f"dtype={dtype!r} and out's dtype {out.dtype} differ; pass one of them, or the same."
                )
        requested = out.dtype
    elif dtype is None:
        return _INT64  # the seed's codes: int64 holds every clipped code
    else:
        requested = code_dtype(dtype)
    if plan.span is None:  # no clipping: checked against the codes once they are known
        return requested
    return fitting_code_dtype(requested, *plan.span)


def _codes_shape(plan: QuantPlan, values: Any) -> tuple[int, ...]:
    """The shape of the codes: the values', or for a generic plan the broadcast one."""
    shape = numpy.shape(values)
    if not plan.generic:
        return shape
    operands = [plan.scale, plan.zero_point, *(plan.bounds or ())]
    return tuple(numpy.broadcast_shapes(shape, *(numpy.shape(operand) for operand in operands)))


def _values_shape(plan: DequantPlan, codes: Any) -> tuple[int, ...]:
    """The shape of the dequantized values: the codes', or for a generic plan the broadcast one."""
    shape = numpy.shape(codes)
    if not plan.generic:
        return shape
    return tuple(numpy.broadcast_shapes(shape, numpy.shape(plan.scale), numpy.shape(plan.zero_point)))


class _Buffer(NamedTuple):
    """What an ``out`` array receives, for the checks' messages: ``function`` writes ``results``
    computed from ``sources``, in one of ``dtypes``."""

    function: str
    results: str
    sources: str
    dtypes: tuple[numpy.dtype[Any], ...]
    example: str


_CODES_BUFFER = _Buffer("quant", "codes", "values to quantize", CODE_DTYPES, "values.shape, dtype=numpy.int8")
_VALUES_BUFFER = _Buffer(
    "dequant", "values", "codes to dequantize", (_FLOAT32, _FLOAT64), "qvalues.shape, dtype=numpy.float32"
)


def check_codes_out(out: Any, shape: tuple[int, ...], values: Any) -> None:
    """Check that ``out`` can take codes of ``shape`` quantized from ``values`` (before writing):
    a C-contiguous, writable numpy array of a codes dtype and that shape, not overlapping
    ``values``."""
    _check_out(out, shape, values, _CODES_BUFFER)


def _check_out(out: Any, shape: tuple[int, ...], sources: Any, buffer: _Buffer) -> None:
    """Check that ``out`` can take the results of ``shape`` computed from ``sources`` (before
    writing)."""
    if not isinstance(out, numpy.ndarray):
        raise InvalidTypeError(
            f"out must be a numpy array to write the {buffer.results} into; got {type(out).__name__}. "
            f"Allocate one with numpy.empty({buffer.example}), say."
        )
    if out.dtype not in buffer.dtypes:
        names = ", ".join(str(dtype) for dtype in buffer.dtypes)
        raise InvalidTypeError(
            f"out has dtype {out.dtype}; {buffer.function} writes {buffer.results} as {names}."
        )
    if out.shape != shape:
        raise InvalidValueError(f"out has shape {out.shape}; the {buffer.results} have shape {shape}.")
    if not out.flags.c_contiguous:
        raise InvalidValueError(
            f"out must be C-contiguous (shape {out.shape}, strides {out.strides}); pass a buffer "
            f"made by numpy.empty, or call {buffer.function} without out and copy the {buffer.results}."
        )
    if not out.flags.writeable:
        raise InvalidValueError("out is read-only; pass a writable array.")
    if numpy.shares_memory(out, sources):
        raise InvalidValueError(
            f"out overlaps the {buffer.sources}: the {buffer.results} would overwrite some of them "
            f"before they are read. Pass a separate buffer."
        )


def _compiled_codes(plan: QuantPlan, values: numpy.ndarray, target: Any, out: Any) -> Any:
    """The codes of a compiled plan, in one pass when clipping (``target`` is then checked to hold
    the clipping range); without clipping, int64 codes converted once they are known to fit."""
    step = plan.steps[0]
    if plan.clip is not None:
        _, low, high = plan.clip
        buffer = out if out is not None else numpy.empty(values.shape, dtype=target)
        codes, status = _compiled.quantize_floats(values, step.scale, step.zero_point, (low, high), buffer)
    else:
        codes, status = _compiled.quantize_floats(values, step.scale, step.zero_point, None)
    if status == _compiled.NAN_FOUND:
        raise _nan_error(values, written=out is not None and plan.clip is not None)
    if status == _compiled.BEYOND_INT64:
        raise beyond_int64_error(plan.scale, plan.zero_point)
    if plan.clip is not None:
        return buffer
    if target == _INT64 and out is None:
        return codes
    low, high = (int(numpy.min(codes)), int(numpy.max(codes))) if codes.size else (0, 0)
    return _delivered(codes, fitting_code_dtype(target, low, high), out)


def _delivered(codes: Any, target: numpy.dtype[Any], out: numpy.ndarray | None) -> Any:
    """Integer-valued ``codes`` (this call's own temporary when an array), known to fit ``target``,
    as ``target``: written to ``out`` if given (then returned), else converted (0-d: a scalar)."""
    if target.kind == "f" and codes.dtype.kind == "f":  # -0.0 becomes 0.0, as int64 codes have it
        if numpy.ndim(codes):
            numpy.add(codes, codes.dtype.type(0), out=codes)
        else:
            codes = codes + codes.dtype.type(0)
    if out is not None:
        numpy.copyto(out, codes, casting="unsafe")
        return out
    if numpy.ndim(codes) == 0:
        return numpy.asarray(codes).astype(target)[()]
    return codes.astype(target, copy=False)  # codes of the target's dtype are ours to return


# -- steps


def _noise(rng: CounterNoise | numpy.random.Generator | None, shape: tuple[int, ...]) -> Any:
    """``u(seed, i)`` for values of ``shape`` (see :mod:`intquant._core.counter_noise`)."""
    if rng is None:
        rng = CounterNoise(fresh_seed())
    elif isinstance(rng, numpy.random.Generator):
        rng = CounterNoise(int(rng.integers(0, 2**64, dtype=numpy.uint64)))
    return rng.draw(shape)


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


def _finished_codes(codes: Any, plan: QuantPlan, values: Any, target: Any, out: Any) -> Any:
    """Rounded float ``codes`` clipped to the plan's bounds (if any) and delivered as ``target``
    (see :func:`_delivered`).

    Raises for NaN codes, and without clipping for codes int64 or ``target`` cannot hold.
    """
    lowest = numpy.minimum.reduce(codes, axis=None) if codes.size else 0
    if numpy.isnan(lowest):  # NaN propagates: one reduction finds it
        raise _nan_error(values)
    if plan.clip is not None:
        dtype, low, high = plan.clip
        codes = numpy.asarray(codes, dtype=dtype)
        if codes.ndim:  # this call's own temporary, of the broadcast shape: clip it in place
            numpy.maximum(codes, low, out=codes)
            numpy.minimum(codes, high, out=codes)
        else:
            codes = numpy.minimum(numpy.maximum(codes, low), high)
        return _delivered(codes, target, out)
    highest = numpy.maximum.reduce(codes, axis=None) if codes.size else 0
    if highest >= _INT64_LIMIT or lowest < -_INT64_LIMIT:
        raise beyond_int64_error(plan.scale, plan.zero_point)
    return _delivered(codes, fitting_code_dtype(target, int(lowest), int(highest)), out)


def _generic_quantize(
    plan: QuantPlan, values: Any, rng: CounterNoise | numpy.random.Generator | None, target: Any, out: Any
) -> Any:
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
        return _delivered(codes, target, out)
    lowest, highest = (numpy.min(codes), numpy.max(codes)) if codes.size else (0, 0)
    if highest >= _INT64_LIMIT or lowest < -_INT64_LIMIT:
        raise beyond_int64_error(plan.scale, plan.zero_point)
    return _delivered(codes, fitting_code_dtype(target, int(lowest), int(highest)), out)


def _apply(ufunc: numpy.ufunc, first: Any, second: Any) -> Any:
    """``ufunc(first, second)`` computed in the dtype numpy 1.24 would have chosen."""
    dtype = legacy_result_type(first, second)
    return ufunc(numpy.asarray(first, dtype=dtype), numpy.asarray(second, dtype=dtype))


def _nan_error(values: Any, written: bool = False) -> InvalidValueError:
    return InvalidValueError(
        f"cannot quantize NaN: no integer stands for it (values of shape {numpy.shape(values)}, "
        f"dtype {values.dtype}). Remove or replace NaN first, e.g. with numpy.nan_to_num; a NaN "
        f"also arises when the scale underflows to 0 in the values' precision."
        + (" out has been partly written: its contents are meaningless." if written else "")
    )


def beyond_int64_error(scale: Any, zero_point: Any) -> InvalidValueError:
    return InvalidValueError(
        f"without clipping, some codes are infinite or beyond int64: no integer stands for "
        f"them. Enable clipping (no_clipping=False) or check scale={scale!r} and "
        f"zero_point={zero_point!r}."
    )

"""The formulas of uniform (affine) quantization: statistics, parameters, bounds, code dtypes.

Pure functions of arrays and scalars that know nothing of the seed's classes, of JSON or of the
command line; the classes validate their state and delegate here. Quantization and
dequantization themselves are planned (:mod:`intquant._core.plan`) and executed
(:mod:`intquant._core.execute`). With ``n = n_bits`` and ``offset = 2**(n-1)`` for signed
quantization (else 0):

* statistics: ``rmin = min(x)``, ``rmax = max(x)``, ``uvalues = unique(rint(x*100)/100)``
* parameters (asymmetric): ``scale = (rmax - rmin) / (2**n - 1)``,
  ``zero_point = round((rmax * -offset - rmin * (2**n - 1 - offset)) / (rmax - rmin))``
* parameters (symmetric): ``scale = max(|rmax|, |rmin|) / (2**n - 1 - offset)``, ``zero_point = 0``;
  with the ``full_range`` option ``scale = max(|rmax|, |rmin|) / ((2**n - 1) / 2)`` (PyTorch's
  symmetric convention: the range spread over all ``2**n`` levels)
* quantize: ``q = clip(rint(x / scale + zero_point), -offset [+1 if narrow], 2**n - 1 - offset)``
* dequantize: ``x = scale * (q - zero_point)``

Rounding is half-to-even everywhere. Every step runs in the dtype numpy 1.24 chose for it (see
``intquant._numpy124.promotion``), so results are bit-identical to Concrete ML 1.7.0 on numpy 1.24 and 2.x.
"""

from __future__ import annotations

import math
from typing import Any

import numpy

from intquant._core.blockwise import block_ranges, block_uniques
from intquant._core.granularity import grouped
from intquant._numba import dispatch as _compiled
from intquant._numpy124.introsort import AVX512, reference_unique, set_zero_sign
from intquant._numpy124.promotion import as_numpy_operand
from intquant.errors import InvalidTypeError, InvalidValueError

__all__ = [
    "CODE_DTYPES",
    "STABILITY_CONST",
    "adjust_parameters_to_power_of_two",
    "block_statistics",
    "convert_codes",
    "fitting_code_dtype",
    "full_range_divisor",
    "range_including_zero",
    "choose_uniform_parameters",
    "code_dtype",
    "integer_bounds",
    "is_uniform_grid",
    "merge_uniques",
    "minmax_range",
    "minmax_statistics",
    "round_to_cents",
    "rounded_uniques",
    "smallest_step",
]

#: Ranges narrower than this are treated as a single value.
STABILITY_CONST = 10**-6

# float64 values in [-2**63, 2**63) convert to int64 exactly; a numpy scalar, so that numpy 2
# compares a float16 array with it in float64 rather than casting it to float16 (inf).
_INT64_LIMIT = numpy.float64(2**63)
_COMPILED_FLOATS = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))

Scalar = Any  # a Python or numpy number; numpy's own stubs are too loose to say more


def round_to_cents(values: numpy.ndarray) -> numpy.ndarray:
    """``numpy.round(values, 2)``: ``rint(x * 100) / 100`` in the values' own float dtype.

    Integer arrays are returned unchanged (as numpy does for non-negative decimals).
    """
    if values.dtype.kind != "f":
        return values
    hundred = values.dtype.type(100)
    with numpy.errstate(over="ignore"):
        return numpy.rint(values * hundred) / hundred


def minmax_statistics(
    values: numpy.ndarray, float32_sort: str = AVX512
) -> tuple[Scalar, Scalar, numpy.ndarray]:
    """Return ``(rmin, rmax, uvalues)`` of non-empty real ``values``.

    ``rmin``/``rmax`` are numpy scalars of the values' dtype; ``uvalues`` holds the sorted unique
    values rounded to 2 decimals, in the same dtype (the sign of a zero as numpy 1.24 keeps it,
    float32 sorted as ``float32_sort`` says: see :func:`rounded_uniques`).

    Raises
    ------
    InvalidValueError
        If a value is NaN or infinite (then ``rmin`` or ``rmax`` is).
    """
    rmin, rmax = minmax_range(values)
    return rmin, rmax, rounded_uniques(values, rmin, rmax, float32_sort)


def minmax_range(values: numpy.ndarray) -> tuple[Scalar, Scalar]:
    """``(min(values), max(values))`` of non-empty real ``values``, numpy scalars of their dtype.

    Raises
    ------
    InvalidValueError
        If a value is NaN or infinite (then ``rmin`` or ``rmax`` is).
    """
    rmin, rmax = values.min(), values.max()
    if values.dtype.kind == "f" and not (math.isfinite(rmin) and math.isfinite(rmax)):
        bad = "NaN" if numpy.isnan(rmin) or numpy.isnan(rmax) else "an infinity"
        raise InvalidValueError(
            f"cannot calibrate on values containing {bad} (shape {values.shape}, dtype "
            f"{values.dtype}): the range would not be finite. Remove or replace non-finite "
            f"values first, e.g. with numpy.nan_to_num."
        )
    return rmin, rmax


def rounded_uniques(
    values: numpy.ndarray, rmin: Scalar, rmax: Scalar, float32_sort: str = AVX512
) -> numpy.ndarray:
    """``unique(round_to_cents(values))`` as numpy 1.24 gives it (``rmin``/``rmax``: the values'
    finite range); compiled for large arrays.

    When the rounded values hold both ``-0.0`` and ``0.0``, the zero kept is the one numpy 1.24's
    sort leaves first; for float32 that sort depends on the CPU, which ``float32_sort`` names
    (``"avx512"``: an x86-64 CPU with AVX-512, the golden data's; ``"introsort"``: any other).
    """
    if values.dtype not in _COMPILED_FLOATS or values.size < _compiled.MIN_SIZE or not _compiled.enabled():
        return reference_unique(round_to_cents(values), float32_sort)  # the bitmap pays off on large arrays
    hundred = values.dtype.type(100)
    with numpy.errstate(over="ignore"):
        key_low, key_high = numpy.rint(rmin * hundred), numpy.rint(rmax * hundred)
    if not (numpy.isfinite(key_low) and numpy.isfinite(key_high)) or key_high - key_low > 4 * values.size:
        return reference_unique(round_to_cents(values), float32_sort)  # too many keys for a bitmap
    keys, negatives, positive_zero, negative_zero = _compiled.unique_cents(
        values, int(key_low), int(key_high)
    )
    # Distinct keys can round to one float (rint(x*100)/100 in float32, say): unique again.
    uniques = numpy.unique(keys.astype(values.dtype) / hundred)
    if positive_zero and negative_zero:  # which zero numpy 1.24 keeps depends on its sort
        set_zero_sign(
            uniques,
            _compiled.round_cents(values),
            negatives,
            True,
            True,
            scratch=True,
            float32_sort=float32_sort,
        )
    else:
        set_zero_sign(uniques, values[:0], negatives, positive_zero, negative_zero)
    return uniques


def merge_uniques(first: numpy.ndarray, second: numpy.ndarray) -> numpy.ndarray:
    """Sorted unique values of two sorted unique arrays of one dtype.

    Equal to ``unique`` of the concatenated data, except for the sign of a zero when the data
    hold both ``-0.0`` and ``0.0``: numpy 1.24 would keep the one its sort of all the data left
    first, which a merge of summaries cannot know; the zero of ``first`` is kept.
    """
    merged = numpy.unique(numpy.concatenate([first, second]))
    slots = numpy.flatnonzero(merged == 0)
    if slots.size:
        source = first if (first == 0).any() else second
        merged[slots[0]] = source[source == 0][0]
    return merged


def smallest_step(uvalues: numpy.ndarray) -> Scalar:
    """Smallest difference between consecutive (sorted, unique) ``uvalues`` (narrow signed
    integers subtracted in int64, where the reference would wrap around)."""
    values = _widened(uvalues)
    return numpy.min(values[1:] - values[:-1])


def _widened(uvalues: numpy.ndarray) -> numpy.ndarray:
    """Signed integers narrower than int64 as int64, so that their differences cannot wrap."""
    if uvalues.dtype.kind == "i" and uvalues.dtype.itemsize < 8:
        return uvalues.astype(numpy.int64)
    return uvalues


def is_uniform_grid(uvalues: numpy.ndarray, n_bits: int) -> bool:
    """Whether sorted unique ``uvalues`` look like values already quantized on ``n_bits``.

    False for a single value or more than ``2**n_bits`` values. Otherwise, with ``d`` the unique
    steps between consecutive values and ``m = min(d)``, true when every step is close to a
    multiple of ``m``: ``|d - rint(d/m)*m| <= 0.02 + 1e-5 * |rint(d/m)*m|`` (numpy ``isclose``
    rules: non-finite steps must be equal), computed in the steps' dtype.
    """
    if uvalues.size > 2**n_bits or uvalues.size == 1:
        return False
    values = _widened(uvalues)
    steps = numpy.unique(values[1:] - values[:-1])
    with numpy.errstate(invalid="ignore", divide="ignore", over="ignore"):
        regrid = numpy.rint(steps / steps[0]) * steps[0]
        return bool(_isclose(steps, regrid, rtol=1e-5, atol=0.02).all())


def _isclose(actual: numpy.ndarray, desired: numpy.ndarray, rtol: float, atol: float) -> numpy.ndarray:
    """numpy 1.24's ``isclose(actual, desired, rtol, atol)``, its tolerances in ``desired``'s dtype.

    Finite entries are close when ``|actual - desired| <= atol + rtol * |desired|``; the others
    only when equal.
    """
    if desired.dtype.kind != "f":
        desired = desired.astype(numpy.float64)
    finite = numpy.isfinite(actual) & numpy.isfinite(desired)
    close = actual == desired
    tolerance = desired.dtype.type(atol) + desired.dtype.type(rtol) * numpy.abs(desired[finite])
    close[finite] = numpy.abs(actual[finite] - desired[finite]) <= tolerance
    return close


def choose_uniform_parameters(
    rmin: Scalar,
    rmax: Scalar,
    n_bits: int,
    *,
    is_signed: bool,
    is_symmetric: bool,
    is_qat: bool,
    is_precomputed_qat: bool,
    uvalues: numpy.ndarray | None,
    scale: Scalar | None,
    full_range: bool = False,
) -> tuple[Scalar, Scalar, int]:
    """Return ``(scale, zero_point, offset)`` for the range ``[rmin, rmax]``.

    * ``offset = 2**(n-1)`` if signed else ``0``.
    * A range narrower than ``STABILITY_CONST`` holds one value: ``offset = 0``, and
      ``scale, zero_point = 1.0, rint(-rmin)`` if ``|rmax| < STABILITY_CONST`` else ``rmax, 0``.
    * Symmetric: ``scale = max(|rmax|, |rmin|) / (2**n - 1 - offset)``, ``zero_point = 0``;
      ``full_range`` (signed symmetric only, see :func:`intquant._core.extras.check_full_range`;
      1 bit is refused too): ``scale = max(|rmax|, |rmin|) / ((2**n - 1) / 2)``, the divisor a
      float64 (exact), as PyTorch's symmetric observers compute it (theirs in float32 for float32
      statistics: the float64 scale rounded to float32 equals it).
    * Asymmetric: QAT values on a uniform grid (``is_uniform_grid``) give
      ``scale = smallest_step(uvalues)`` (Concrete ML 1.7; from 1.8 on no ``uvalues`` are
      passed, so no scale is inferred); otherwise the given ``scale`` is kept, or
      ``scale = (rmax - rmin) / (2**n - 1)``; ``zero_point`` is 0 for QAT, else
      ``round((rmax * -offset - rmin * (2**n - 1 - offset)) / (rmax - rmin))``.

    ``rmax - rmin`` and ``max(|rmax|, |rmin|)`` stay in the statistics' dtype; products and
    quotients with integers run in float64 (numpy 1.24 scalar rules). For integer statistics
    whose range, magnitude or zero-point numerator does not fit their dtype (int8 values from
    -128 to 127, say), the reference wraps around; here they are computed exactly (in int64,
    or float64 beyond it), so the parameters are those the formula means.

    Raises
    ------
    InvalidValueError
        If the parameters would not be finite (1-bit symmetric quantization has no level above
        zero) or the zero point does not fit in int64.
    """
    narrow = _SHORTCUT_TYPES.get(type(rmin), False)
    if (
        narrow is not False
        and narrow is _SHORTCUT_TYPES.get(type(rmax))
        and scale is None
        and n_bits <= _EXACT_BITS
    ):
        needs_grid = is_qat and not is_precomputed_qat and uvalues is not None
        if not needs_grid:
            chosen = _python_float_parameters(
                float(rmin), float(rmax), narrow, n_bits, is_signed, is_symmetric, is_qat, full_range
            )
            if chosen is not None:
                return chosen
    high = as_numpy_operand(rmax)
    low = as_numpy_operand(rmin)
    offset = 2 ** (n_bits - 1) if is_signed else 0
    levels = 2**n_bits - 1
    with numpy.errstate(over="ignore"):  # an overflowing range is refused below, as not finite
        spread = high - low
    if _is_integer_scalar(high) and _is_integer_scalar(low):
        spread = _exact(spread, int(high) - int(low))
    if numpy.float64(spread) < STABILITY_CONST:
        if numpy.float64(numpy.abs(high)) < STABILITY_CONST:
            return numpy.float64(1.0), _to_int64(numpy.rint(-low), "zero point"), 0
        return numpy.float64(high), 0, 0
    if is_symmetric:
        positive_levels = levels - offset
        if positive_levels == 0:
            raise InvalidValueError(
                f"symmetric quantization on {n_bits} bit(s) has no level above zero, so its scale "
                f"max(|rmax|, |rmin|) / (2**n_bits - 1 - offset) would be infinite. Use "
                f"n_bits >= 2, or asymmetric quantization (is_symmetric=False)."
            )
        with numpy.errstate(over="ignore"):
            magnitude = numpy.maximum(numpy.abs(high), numpy.abs(low))
        if _is_integer_scalar(high) and _is_integer_scalar(low):
            magnitude = _exact(magnitude, max(abs(int(high)), abs(int(low))))
        divisor = full_range_divisor(n_bits) if full_range else numpy.int64(positive_levels)
        return _finite_scale(numpy.float64(magnitude / divisor)), 0, offset
    if is_qat and not is_precomputed_qat and uvalues is not None and is_uniform_grid(uvalues, n_bits):
        scale = numpy.float64(smallest_step(uvalues))
    if scale is None:
        scale = numpy.float64(spread / numpy.int64(levels))
    scale = _finite_scale(scale)
    if is_qat:
        return scale, 0, offset
    with numpy.errstate(over="ignore"):
        numerator = high * numpy.int64(-offset) - low * numpy.int64(levels - offset)
    if _is_integer_scalar(high) and _is_integer_scalar(low):
        numerator = _exact(numerator, int(high) * -offset - int(low) * (levels - offset))
    return scale, _to_int64(numpy.round(numerator / spread), "zero point"), offset


#: Statistics types :func:`choose_uniform_parameters` computes in Python floats, and the float
#: type their range ``rmax - rmin`` is rounded to (None: a double already). Every other step mixes
#: them with integers, which numpy 1.24 (and 2) computes in float64. float32 differences are
#: computed in double and rounded once more: for +, -, * and / that double rounding gives the
#: correctly rounded float32 result (53 >= 2 * 24 + 2 bits), so it equals numpy's float32 operation.
_SHORTCUT_TYPES: dict[type, Any] = {float: None, numpy.float64: None, numpy.float32: numpy.float32}
_FLOAT32_MAX = float(numpy.finfo(numpy.float32).max)
#: Up to this many bits, offsets and level counts convert to float64 exactly.
_EXACT_BITS = 52


def _python_float_parameters(
    low: float,
    high: float,
    narrow: Any,
    n_bits: int,
    is_signed: bool,
    is_symmetric: bool,
    is_qat: bool,
    full_range: bool = False,
) -> tuple[Any, Any, int] | None:
    """:func:`choose_uniform_parameters` for float64 (``narrow`` None) or float32 statistics,
    in Python floats: the same IEEE operations numpy's scalars perform, without their
    per-operation overhead.

    None for the cases left to the general code: a single-value range, 1-bit symmetric
    quantization, a range, scale or zero point that is not finite or beyond int64 (its errors).
    """
    offset = 2 ** (n_bits - 1) if is_signed else 0
    levels = 2**n_bits - 1
    spread = high - low
    if narrow is not None:
        if not abs(spread) <= _FLOAT32_MAX:
            return None  # overflows float32: the general code (and its error)
        spread = float(narrow(spread))
    if not spread >= STABILITY_CONST or not math.isfinite(spread):
        return None
    if is_symmetric:
        if levels == offset:
            return None
        scale = max(abs(high), abs(low)) / (levels / 2 if full_range else levels - offset)
        return (numpy.float64(scale), 0, offset) if math.isfinite(scale) else None
    scale = spread / levels
    if not math.isfinite(scale):
        return None
    if is_qat:
        return numpy.float64(scale), 0, offset
    zero_point = (high * -offset - low * (levels - offset)) / spread
    if not (math.isfinite(zero_point) and -_INT64_LIMIT <= zero_point < _INT64_LIMIT):
        return None
    return numpy.float64(scale), numpy.int64(round(zero_point)), offset


def full_range_divisor(n_bits: int) -> numpy.float64:
    """``(2**n_bits - 1) / 2``, the full-range symmetric grid's divisor: the number of steps from
    0 to ``max|x|`` when ``max|x|`` maps to ``2**(n-1) - 1/2`` (a float64, exact up to 53 bits)."""
    return numpy.float64((2**n_bits - 1) / 2)


def _is_integer_scalar(value: Any) -> bool:
    return isinstance(value, numpy.integer)


def _exact(computed: Any, exact: int) -> Any:
    """``computed`` (numpy integer arithmetic, as the reference does it) when it equals the exact
    integer ``exact``; else ``exact`` in int64, or in float64 beyond int64 (it wrapped around)."""
    if int(computed) == exact:
        return computed
    if -(2**63) <= exact < 2**63:
        return numpy.int64(exact)
    return numpy.float64(exact)


def adjust_parameters_to_power_of_two(
    scale: Scalar, zero_point: Scalar, offset: int, rmin: Scalar, *, recompute_zero_point: bool
) -> tuple[Scalar, Scalar]:
    """Round a positive ``scale`` up to ``2**ceil(log2(scale))``.

    With ``recompute_zero_point`` (asymmetric, non-QAT ranges) the zero point becomes
    ``round(-offset - rmin / scale)``: ``rmin`` still maps to the lowest code.
    """
    if not scale > 0:
        return scale, zero_point
    with numpy.errstate(over="ignore"):
        power = _finite_scale(numpy.float64(2.0) ** numpy.ceil(numpy.log2(numpy.float64(scale))))
    if recompute_zero_point:
        zero_point = _to_int64(numpy.round(-offset - numpy.float64(rmin) / power), "zero point")
    return power, zero_point


def range_including_zero(rmin: Scalar, rmax: Scalar) -> tuple[Scalar, Scalar]:
    """``(min(rmin, 0), max(rmax, 0))`` in the statistics' own types."""
    low, high = as_numpy_operand(rmin), as_numpy_operand(rmax)
    return numpy.minimum(low, low.dtype.type(0)), numpy.maximum(high, high.dtype.type(0))


def _finite_scale(scale: Scalar) -> Scalar:
    if not numpy.all(numpy.isfinite(scale)):
        raise InvalidValueError(
            f"the quantization scale would be {scale}, which is not finite; the statistics' "
            f"range is too wide for their dtype. Calibrate on float64 values or a narrower range."
        )
    return scale


def _to_int64(value: Scalar, what: str) -> Any:
    """``value.astype(int64)`` for a float holding an integer, refusing values int64 lacks."""
    if not numpy.isfinite(value) or not -_INT64_LIMIT <= value < _INT64_LIMIT:
        raise InvalidValueError(
            f"the {what} would be {value}, which does not fit in int64. Check that the "
            f"statistics rmin/rmax are finite and describe the values to quantize."
        )
    return numpy.asarray(value).astype(numpy.int64)[()]


def integer_bounds(n_bits: int, offset: Any, is_narrow: bool) -> tuple[Any, Any]:
    """Clipping range of the codes: ``[-offset (+1 if narrow), 2**n_bits - 1 - offset]``
    (elementwise for an array of offsets)."""
    return -offset + (1 if is_narrow else 0), 2**n_bits - 1 - offset


#: Dtypes ``quant`` can return codes in (int64, the seed's, by default), besides ``"smallest"``.
CODE_DTYPES = tuple(
    numpy.dtype(name)
    for name in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "float32", "float64")
)
_SMALLEST_CANDIDATES = tuple(
    numpy.dtype(name) for name in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64")
)
_CODE_DTYPE_NAMES = ", ".join(str(dtype) for dtype in CODE_DTYPES)


def code_dtype(dtype: Any) -> numpy.dtype[Any] | str:
    """``dtype`` (a numpy dtype, type or name) as one of :data:`CODE_DTYPES`, or ``"smallest"``.

    Raises
    ------
    InvalidTypeError
        For any other dtype.
    """
    if isinstance(dtype, str) and dtype == "smallest":
        return "smallest"
    if dtype is not None:  # numpy.dtype(None) is float64
        try:
            target = numpy.dtype(dtype)
        except (TypeError, ValueError):  # not a dtype at all
            pass
        else:
            if target in CODE_DTYPES:
                return target
    raise InvalidTypeError(f"quant can return codes as {_CODE_DTYPE_NAMES} or 'smallest'; got {dtype!r}.")


def fitting_code_dtype(dtype: numpy.dtype[Any] | str, low: int, high: int) -> numpy.dtype[Any]:
    """The dtype codes in ``[low, high]`` are returned in: ``dtype`` (of :data:`CODE_DTYPES`) once
    checked to hold each of them exactly (integer dtypes: their ``iinfo`` range; floats: up to
    ``2**(nmant + 1)``), or for ``"smallest"`` the first of int8, uint8, int16, uint16, int32,
    uint32, int64 that holds them.

    Raises
    ------
    InvalidValueError
        If a code in ``[low, high]`` cannot be represented exactly in ``dtype``.
    """
    if isinstance(dtype, str):  # "smallest"
        return next(
            candidate
            for candidate in _SMALLEST_CANDIDATES
            if numpy.iinfo(candidate).min <= low and high <= numpy.iinfo(candidate).max
        )
    if dtype.kind == "f":  # integers up to 2**(mantissa bits + 1) are exact
        limit = 2 ** (numpy.finfo(dtype).nmant + 1)
        fits = -limit <= low and high <= limit
    else:
        fits = numpy.iinfo(dtype).min <= low and high <= numpy.iinfo(dtype).max
    if not fits:
        raise InvalidValueError(
            f"codes in [{low}, {high}] are not all exactly representable as {dtype}; use a wider "
            f"dtype (int64 holds every code)."
        )
    return dtype


def convert_codes(codes: Any, dtype: Any, bounds: tuple[int, int] | None) -> Any:
    """int64 ``codes`` as ``dtype``: one of :data:`CODE_DTYPES`, or ``"smallest"``, the smallest
    integer dtype holding the clipping range ``bounds`` (or, without clipping, the codes); None
    keeps them as they are.

    Raises
    ------
    InvalidTypeError
        If ``dtype`` is not a codes dtype (see :func:`code_dtype`).
    InvalidValueError
        If a code cannot be represented exactly in ``dtype``.
    """
    if dtype is None:
        return codes
    requested = code_dtype(dtype)
    if bounds is not None:
        low, high = bounds
    elif numpy.size(codes):
        low, high = int(numpy.min(codes)), int(numpy.max(codes))
    else:  # no codes: any dtype holds them
        low = high = 0
    target = fitting_code_dtype(requested, low, high)
    return numpy.asarray(codes).astype(target)[()] if numpy.ndim(codes) == 0 else codes.astype(target)


def block_statistics(
    values: numpy.ndarray, extent: tuple[int, ...], float32_sort: str = AVX512
) -> tuple[numpy.ndarray, numpy.ndarray, list[Any]]:
    """Per-block ``(rmin, rmax, uvalues)`` of blocks of ``extent``: two arrays of the grid's
    shape in the values' dtype, and the list of each block's ``uvalues`` (in grid order), every
    block's what :func:`minmax_statistics` gives for it as a tensor of its own (computed for all
    blocks at once, see :mod:`intquant._core.blockwise`).

    Raises
    ------
    InvalidValueError
        If a block holds NaN or an infinity (the first such block is named).
    """
    rows = grouped(values, extent)
    rmin, rmax = block_ranges(rows)
    return rmin, rmax, block_uniques(rows, float32_sort)

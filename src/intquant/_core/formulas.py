"""The formulas of uniform (affine) quantization: statistics, parameters, bounds, code dtypes.

Pure functions of arrays and scalars that know nothing of the seed's classes, of JSON or of the
command line; the classes validate their state and delegate here. Quantization and
dequantization themselves are planned (:mod:`intquant._core.plan`) and executed
(:mod:`intquant._core.execute`). With ``n = n_bits`` and ``offset = 2**(n-1)`` for signed
quantization (else 0):

* statistics: ``rmin = min(x)``, ``rmax = max(x)``, ``uvalues = unique(rint(x*100)/100)``
* parameters (asymmetric): ``scale = (rmax - rmin) / (2**n - 1)``,
  ``zero_point = round((rmax * -offset - rmin * (2**n - 1 - offset)) / (rmax - rmin))``
* parameters (symmetric): ``scale = max(|rmax|, |rmin|) / (2**n - 1 - offset)``, ``zero_point = 0``
* quantize: ``q = clip(rint(x / scale + zero_point), -offset [+1 if narrow], 2**n - 1 - offset)``
* dequantize: ``x = scale * (q - zero_point)``

Rounding is half-to-even everywhere. Every step runs in the dtype numpy 1.24 chose for it (see
``intquant._numpy124.promotion``), so results are bit-identical to Concrete ML 1.7.0 on numpy 1.24 and 2.x.
"""

from __future__ import annotations

from typing import Any

import numpy

from intquant._core.granularity import grouped
from intquant._numba import dispatch as _compiled
from intquant._numpy124.introsort import reference_unique, set_zero_sign
from intquant._numpy124.promotion import as_numpy_operand
from intquant.errors import InvalidTypeError, InvalidValueError

__all__ = [
    "CODE_DTYPES",
    "STABILITY_CONST",
    "adjust_parameters_to_power_of_two",
    "block_parameters",
    "block_statistics",
    "convert_codes",
    "range_including_zero",
    "choose_uniform_parameters",
    "integer_bounds",
    "is_uniform_grid",
    "merge_uniques",
    "minmax_statistics",
    "round_to_cents",
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


def minmax_statistics(values: numpy.ndarray) -> tuple[Scalar, Scalar, numpy.ndarray]:
    """Return ``(rmin, rmax, uvalues)`` of non-empty real ``values``.

    ``rmin``/``rmax`` are numpy scalars of the values' dtype; ``uvalues`` holds the sorted unique
    values rounded to 2 decimals, in the same dtype.

    Raises
    ------
    InvalidValueError
        If a value is NaN or infinite (then ``rmin`` or ``rmax`` is).
    """
    rmin, rmax = numpy.min(values), numpy.max(values)
    if not (numpy.isfinite(rmin) and numpy.isfinite(rmax)):
        bad = "NaN" if numpy.isnan(rmin) or numpy.isnan(rmax) else "an infinity"
        raise InvalidValueError(
            f"cannot calibrate on values containing {bad} (shape {values.shape}, dtype "
            f"{values.dtype}): the range would not be finite. Remove or replace non-finite "
            f"values first, e.g. with numpy.nan_to_num."
        )
    return rmin, rmax, _unique_cents(values, rmin, rmax)


def _unique_cents(values: numpy.ndarray, rmin: Scalar, rmax: Scalar) -> numpy.ndarray:
    """``unique(round_to_cents(values))`` as numpy 1.24 gives it; compiled for large arrays."""
    if values.dtype not in _COMPILED_FLOATS or values.size < _compiled.MIN_SIZE or not _compiled.enabled():
        return reference_unique(round_to_cents(values))  # the bitmap pays off on large arrays
    hundred = values.dtype.type(100)
    with numpy.errstate(over="ignore"):
        key_low, key_high = numpy.rint(rmin * hundred), numpy.rint(rmax * hundred)
    if not (numpy.isfinite(key_low) and numpy.isfinite(key_high)) or key_high - key_low > 4 * values.size:
        return reference_unique(round_to_cents(values))  # too many possible keys for a bitmap
    keys, negatives, positive_zero, negative_zero = _compiled.unique_cents(
        values, int(key_low), int(key_high)
    )
    # Distinct keys can round to one float (rint(x*100)/100 in float32, say): unique again.
    uniques = numpy.unique(keys.astype(values.dtype) / hundred)
    if positive_zero and negative_zero:  # which zero numpy 1.24 keeps depends on its sort
        set_zero_sign(uniques, _compiled.round_cents(values), negatives, True, True, scratch=True)
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
) -> tuple[Scalar, Scalar, int]:
    """Return ``(scale, zero_point, offset)`` for the range ``[rmin, rmax]``.

    * ``offset = 2**(n-1)`` if signed else ``0``.
    * A range narrower than ``STABILITY_CONST`` holds one value: ``offset = 0``, and
      ``scale, zero_point = 1.0, rint(-rmin)`` if ``|rmax| < STABILITY_CONST`` else ``rmax, 0``.
    * Symmetric: ``scale = max(|rmax|, |rmin|) / (2**n - 1 - offset)``, ``zero_point = 0``.
    * Asymmetric: QAT values on a uniform grid (``is_uniform_grid``) give
      ``scale = smallest_step(uvalues)``; otherwise the given ``scale`` is kept, or
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
        return _finite_scale(numpy.float64(magnitude / numpy.int64(positive_levels))), 0, offset
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


#: Output dtypes of ``quant`` besides the seed's int64 (and ``"smallest"``).
CODE_DTYPES = tuple(numpy.dtype(name) for name in ("int64", "int32", "float32", "float64"))
_SMALLEST_CANDIDATES = tuple(
    numpy.dtype(name) for name in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64")
)


def convert_codes(codes: Any, dtype: Any, bounds: tuple[int, int] | None) -> Any:
    """int64 ``codes`` as ``dtype``: int64, int32, float32, float64, or ``"smallest"``, the
    smallest integer dtype holding the clipping range (or, without clipping, the codes).

    Raises
    ------
    InvalidValueError
        If a code cannot be represented exactly in ``dtype``.
    """
    if dtype is None:
        return codes
    low, high = bounds if bounds is not None else (int(numpy.min(codes)), int(numpy.max(codes)))
    if isinstance(dtype, str) and dtype == "smallest":
        target = next(
            candidate
            for candidate in _SMALLEST_CANDIDATES
            if numpy.iinfo(candidate).min <= low and high <= numpy.iinfo(candidate).max
        )
    else:
        target = numpy.dtype(dtype)
        if target not in CODE_DTYPES:
            raise InvalidTypeError(
                f"quant can return codes as int64, int32, float32, float64 or 'smallest'; got {dtype!r}."
            )
    if target.kind == "f":  # integers up to 2**(mantissa bits + 1) are exact
        limit = 2 ** (numpy.finfo(target.type).nmant + 1)  # type: ignore[type-var]
        fits = -limit <= low and high <= limit
    else:
        fits = numpy.iinfo(target).min <= low and high <= numpy.iinfo(target).max
    if not fits:
        raise InvalidValueError(
            f"codes in [{low}, {high}] are not all exactly representable as {target}; use a wider "
            f"dtype (int64 holds every code)."
        )
    return numpy.asarray(codes).astype(target)[()] if numpy.ndim(codes) == 0 else codes.astype(target)


def block_statistics(
    values: numpy.ndarray, extent: tuple[int, ...]
) -> tuple[numpy.ndarray, numpy.ndarray, list[Any]]:
    """Per-block ``(rmin, rmax, uvalues)`` of blocks of ``extent``: two arrays of the grid's
    shape in the values' dtype, and the list of each block's ``uvalues`` (in grid order), every
    block's computed by :func:`minmax_statistics` as for a tensor of its own."""
    rows = grouped(values, extent)
    grid = rows.shape[:-1]
    flat = rows.reshape(-1, rows.shape[-1])
    statistics = [minmax_statistics(row) for row in flat]
    rmin = numpy.array([low for low, _, _ in statistics], dtype=values.dtype).reshape(grid)
    rmax = numpy.array([high for _, high, _ in statistics], dtype=values.dtype).reshape(grid)
    return rmin, rmax, [uvalues for _, _, uvalues in statistics]


def block_parameters(
    rmin: numpy.ndarray, rmax: numpy.ndarray, uvalues: list[Any] | None, choose: Any
) -> tuple[numpy.ndarray, numpy.ndarray, Any]:
    """Per-block ``(scale, zero_point, offset)``: ``choose(rmin, rmax, uvalues)`` of each block.

    ``scale`` is a float64 array and ``zero_point`` an int64 array of the grid's shape;
    ``offset`` is an int when every block has the same one (a single-valued block has offset 0),
    else an int64 array.
    """
    lows, highs = rmin.reshape(-1), rmax.reshape(-1)
    blocks = [
        choose(lows[index], highs[index], None if uvalues is None else uvalues[index])
        for index in range(lows.size)
    ]
    scale = numpy.array([block[0] for block in blocks], dtype=numpy.float64).reshape(rmin.shape)
    zero_point = numpy.array([block[1] for block in blocks], dtype=numpy.int64).reshape(rmin.shape)
    offsets = {block[2] for block in blocks}
    offset = (
        offsets.pop()
        if len(offsets) == 1
        else numpy.array([b[2] for b in blocks], dtype=numpy.int64).reshape(rmin.shape)
    )
    return scale, zero_point, offset

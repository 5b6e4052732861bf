"""Pure numeric kernels of uniform (affine) quantization.

Each kernel is a function of arrays and scalars that knows nothing of the seed's classes, of
JSON or of the command line; the classes validate their state and delegate here. The formulas,
with ``n = n_bits`` and ``offset = 2**(n-1)`` for signed quantization (else 0):

* statistics: ``rmin = min(x)``, ``rmax = max(x)``, ``uvalues = unique(rint(x*100)/100)``
* parameters (asymmetric): ``scale = (rmax - rmin) / (2**n - 1)``,
  ``zero_point = round((rmax * -offset - rmin * (2**n - 1 - offset)) / (rmax - rmin))``
* parameters (symmetric): ``scale = max(|rmax|, |rmin|) / (2**n - 1 - offset)``, ``zero_point = 0``
* quantize: ``q = clip(rint(x / scale + zero_point), -offset [+1 if narrow], 2**n - 1 - offset)``
* dequantize: ``x = scale * (q - zero_point)``

Rounding is half-to-even everywhere. Every step runs in the dtype numpy 1.24 chose for it (see
``_promotion``), so results are bit-identical to Concrete ML 1.7.0 on numpy 1.24 and 2.x.
"""

from __future__ import annotations

from typing import Any

import numpy

from intquant._legacy_sort import reference_unique
from intquant._promotion import as_numpy_operand, legacy_result_type
from intquant.errors import InvalidTypeError, InvalidValueError

__all__ = [
    "STABILITY_CONST",
    "as_real_array",
    "choose_uniform_parameters",
    "dequantize",
    "integer_bounds",
    "is_uniform_grid",
    "minmax_statistics",
    "quantize",
    "round_to_cents",
    "smallest_step",
]

#: Ranges narrower than this are treated as a single value.
STABILITY_CONST = 10**-6

# float64 values in [-2**63, 2**63) convert to int64 exactly; a numpy scalar, so that numpy 2
# compares a float16 array with it in float64 rather than casting it to float16 (inf).
_INT64_LIMIT = numpy.float64(2**63)
_REAL_KINDS = "biuf"

Scalar = Any  # a Python or numpy number; numpy's own stubs are too loose to say more


def as_real_array(values: Any, what: str) -> numpy.ndarray | numpy.generic:
    """Return ``values`` as a numpy array or scalar of a real (bool, integer or float) dtype.

    Raises
    ------
    InvalidTypeError
        If the values are not numbers (strings, objects, complex numbers).
    """
    operand = as_numpy_operand(values)
    if operand.dtype.kind not in _REAL_KINDS:
        raise InvalidTypeError(
            f"{what} must be real numbers (a bool, integer or float array); got dtype "
            f"{operand.dtype} with shape {numpy.shape(operand)}. Convert them with "
            f"numpy.asarray(..., dtype=numpy.float64) first."
        )
    return operand


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
    """Return ``(rmin, rmax, uvalues)`` of finite, non-empty real ``values``.

    ``rmin``/``rmax`` are numpy scalars of the values' dtype; ``uvalues`` holds the sorted unique
    values rounded to 2 decimals, in the same dtype.
    """
    return numpy.min(values), numpy.max(values), reference_unique(round_to_cents(values))


def smallest_step(uvalues: numpy.ndarray) -> Scalar:
    """Smallest difference between consecutive (sorted, unique) ``uvalues``."""
    return numpy.min(uvalues[1:] - uvalues[:-1])


def is_uniform_grid(uvalues: numpy.ndarray, n_bits: int) -> bool:
    """Whether sorted unique ``uvalues`` look like values already quantized on ``n_bits``.

    False for a single value or more than ``2**n_bits`` values. Otherwise, with ``d`` the unique
    steps between consecutive values and ``m = min(d)``, true when every step is close to a
    multiple of ``m``: ``|d - rint(d/m)*m| <= 0.02 + 1e-5 * |rint(d/m)*m|`` (numpy ``isclose``
    rules: non-finite steps must be equal), computed in the steps' dtype.
    """
    if uvalues.size > 2**n_bits or uvalues.size == 1:
        return False
    steps = numpy.unique(uvalues[1:] - uvalues[:-1])
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
    quotients with integers run in float64 (numpy 1.24 scalar rules).

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
        magnitude = numpy.maximum(numpy.abs(high), numpy.abs(low))
        return _finite_scale(numpy.float64(magnitude / numpy.int64(positive_levels))), 0, offset
    if is_qat and not is_precomputed_qat and uvalues is not None and is_uniform_grid(uvalues, n_bits):
        scale = numpy.float64(smallest_step(uvalues))
    if scale is None:
        scale = numpy.float64(spread / numpy.int64(levels))
    scale = _finite_scale(scale)
    if is_qat:
        return scale, 0, offset
    numerator = high * numpy.int64(-offset) - low * numpy.int64(levels - offset)
    return scale, _to_int64(numpy.round(numerator / spread), "zero point"), offset


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


def integer_bounds(n_bits: int, offset: int, is_narrow: bool) -> tuple[int, int]:
    """Clipping range of the codes: ``[-offset (+1 if narrow), 2**n_bits - 1 - offset]``."""
    return -offset + (1 if is_narrow else 0), 2**n_bits - 1 - offset


def quantize(
    values: numpy.ndarray | numpy.generic,
    scale: Scalar,
    zero_point: Scalar,
    bounds: tuple[int, int] | None,
) -> Any:
    """Return ``clip(rint(values / scale + zero_point), *bounds)`` as int64 (no clip if None).

    The division runs in numpy 1.24's dtype for ``values / scale`` (float16/float32 arrays keep
    their precision unless the scalar does not fit it) and the addition in its dtype for
    ``quotient + zero_point``. A 0-d input gives a ``numpy.int64`` scalar.

    Raises
    ------
    InvalidValueError
        If a value is NaN, or, without clipping, if its code is infinite or outside int64.
    """
    scale_operand = as_numpy_operand(scale)
    zero_point_operand = as_numpy_operand(zero_point)
    with numpy.errstate(over="ignore", divide="ignore", invalid="ignore"):
        quotient = _apply(numpy.true_divide, values, scale_operand)
        shifted = _apply(numpy.add, quotient, zero_point_operand)
        codes = numpy.rint(shifted)
        if numpy.isnan(codes).any():
            raise InvalidValueError(
                f"cannot quantize NaN: no integer stands for it (values of shape "
                f"{numpy.shape(values)}, dtype {values.dtype}). Remove or replace NaN first, "
                f"e.g. with numpy.nan_to_num."
            )
        if bounds is not None:
            codes = _clip_exact(codes, *bounds)
        elif ((codes >= _INT64_LIMIT) | (codes < -_INT64_LIMIT)).any():
            raise InvalidValueError(
                f"without clipping, the codes of these values reach {numpy.max(numpy.abs(codes))}, "
                f"beyond int64 (or infinite): no integer stands for them. Enable clipping "
                f"(no_clipping=False) or check scale={scale!r} and zero_point={zero_point!r}."
            )
        return codes.astype(numpy.int64)


def _apply(ufunc: numpy.ufunc, first: Any, second: Any) -> Any:
    """``ufunc(first, second)`` computed in the dtype numpy 1.24 would have chosen."""
    dtype = legacy_result_type(first, second)
    return ufunc(numpy.asarray(first, dtype=dtype), numpy.asarray(second, dtype=dtype))


def _clip_exact(codes: Any, low: int, high: int) -> Any:
    """Clip integer-valued floats to integer bounds, in a dtype that holds both bounds exactly."""
    dtype = codes.dtype
    with numpy.errstate(over="ignore"):
        exact = float(dtype.type(low)) == low and float(dtype.type(high)) == high
    if not exact:
        dtype = numpy.dtype(numpy.float64)
        codes = numpy.asarray(codes, dtype=dtype)
    return numpy.clip(codes, dtype.type(low), dtype.type(high))


def dequantize(qvalues: numpy.ndarray | numpy.generic, scale: Scalar, zero_point: Scalar) -> Any:
    """Return ``scale * (qvalues - float64(zero_point))``, in numpy 1.24's dtypes.

    Integer codes give float64; float16/float32 codes keep their precision, as in the reference.
    """
    centered = _apply(numpy.subtract, qvalues, numpy.asarray(zero_point, dtype=numpy.float64)[()])
    return _apply(numpy.multiply, as_numpy_operand(scale), centered)

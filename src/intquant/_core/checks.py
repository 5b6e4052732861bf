"""Argument checks, in one place (scikit-learn's ``check_scalar`` is the model).

Every public entry point (the seed classes, calibration, dask, the command line) validates with
these and then calls code that trusts its inputs. Each raises an intquant error whose message
says what was expected, what arrived, and how to fix it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy

from intquant._numpy124.promotion import as_numpy_operand
from intquant.errors import (
    InvalidOptionsError,
    InvalidTypeError,
    InvalidValueError,
    MissingParameterError,
)

__all__ = [
    "MAX_N_BITS",
    "as_real_array",
    "check_calibration_values",
    "check_flag",
    "check_int",
    "check_n_bits",
    "check_option_combination",
    "check_options",
    "check_range",
    "check_real",
    "check_scale",
    "is_integer",
]

MAX_N_BITS = 32
_REAL_KINDS = "biuf"


def is_integer(value: Any) -> bool:
    """Whether ``value`` is a Python or numpy integer, and not a bool."""
    return isinstance(value, (int, numpy.integer)) and not isinstance(value, (bool, numpy.bool_))


def check_int(
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    expected: str | None = None,
    advice: str = "",
) -> int:
    """Return ``value`` as an int after checking it is an integer (not a bool) in
    ``[minimum, maximum]`` (either bound may be None).

    The message reads ``'<name>' must be <expected>; got <value>. <advice>``; ``expected``
    defaults to "an int" with the bounds.

    Raises
    ------
    InvalidTypeError
        If ``value`` is not an integer.
    InvalidValueError
        If it is out of bounds.
    """
    if expected is None:
        expected = "an int"
        if minimum is not None and maximum is not None:
            expected += f" in [{minimum}, {maximum}]"
        elif minimum is not None:
            expected += f" >= {minimum}"
        elif maximum is not None:
            expected += f" <= {maximum}"
    tail = f" {advice}" if advice else ""
    if not is_integer(value):
        raise InvalidTypeError(
            f"'{name}' must be {expected}; got {value!r} of type {type(value).__name__}.{tail}"
        )
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise InvalidValueError(f"'{name}' must be {expected}; got {value}.{tail}")
    return int(value)


def check_real(name: str, value: Any, expected: str, advice: str = "") -> float:
    """Return ``value`` as a finite Python float after checking it is a real number (not a
    bool); ``expected`` describes what is wanted (e.g. "a number in (0, 1]")."""
    tail = f" {advice}" if advice else ""
    if isinstance(value, (bool, numpy.bool_)) or not isinstance(
        value, (int, float, numpy.integer, numpy.floating)
    ):
        raise InvalidTypeError(
            f"'{name}' must be {expected}; got {value!r} of type {type(value).__name__}.{tail}"
        )
    number = float(value)
    if not math.isfinite(number):
        raise InvalidValueError(f"'{name}' must be {expected}; got {value!r}.{tail}")
    return number


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


def check_n_bits(n_bits: Any) -> int:
    """Return ``n_bits`` as an int after checking it is an integer in ``[1, 32]``."""
    if not is_integer(n_bits):
        raise InvalidTypeError(
            f"'n_bits' must be an int in [1, {MAX_N_BITS}]; got {n_bits!r} of type "
            f"{type(n_bits).__name__}. Pass a whole number of bits such as 8."
        )
    if not 1 <= n_bits <= MAX_N_BITS:
        raise InvalidValueError(
            f"'n_bits' must be an int in [1, {MAX_N_BITS}]; got {n_bits}. "
            f"Use between 1 and {MAX_N_BITS} bits."
        )
    return int(n_bits)


def check_flag(name: str, value: Any) -> bool:
    """Return ``value`` as a bool after checking it is one (``numpy.bool_`` is accepted)."""
    if not isinstance(value, (bool, numpy.bool_)):
        raise InvalidTypeError(
            f"'{name}' must be True or False; got {value!r} of type {type(value).__name__}."
        )
    return bool(value)


def check_option_combination(is_signed: Any, is_symmetric: Any, is_qat: Any) -> None:
    """Refuse the combinations the reference asserts against."""
    if is_qat and is_symmetric:
        raise InvalidOptionsError(
            "is_qat=True and is_symmetric=True cannot be combined: QAT quantization infers an "
            "asymmetric grid. Set is_symmetric=False, or is_qat=False."
        )
    if is_symmetric and not is_signed:
        raise InvalidOptionsError(
            "is_symmetric=True needs is_signed=True: symmetric codes lie around 0. "
            "Set is_signed=True, or is_symmetric=False."
        )


def check_options(options: Any) -> int:
    """Check an options object (or a quantizer holding options); return its ``n_bits``."""
    if not hasattr(options, "n_bits"):
        raise MissingParameterError(
            "these options have no 'n_bits'; create the quantizer with a QuantizationOptions "
            "object, e.g. UniformQuantizer(QuantizationOptions(8), ...)."
        )
    n_bits = check_n_bits(options.n_bits)
    check_option_combination(options.is_signed, options.is_symmetric, options.is_qat)
    return n_bits


def check_calibration_values(values: Any) -> numpy.ndarray:
    """Return calibration values as a non-empty, real numpy array (finiteness is checked by
    the statistics kernel, which sees it in ``rmin``/``rmax`` without another pass)."""
    array = numpy.asarray(as_real_array(values, "calibration values"))
    if array.size == 0:
        raise InvalidValueError(
            f"cannot calibrate on an empty array (shape {array.shape}, dtype {array.dtype}); "
            f"pass at least one value."
        )
    if array.dtype.kind == "b":
        raise InvalidTypeError(
            "calibration values must be integers or floats; got a bool array of shape "
            f"{array.shape}. Convert it with values.astype(numpy.float64)."
        )
    return array


def check_range(stats: Any) -> tuple[Any, Any]:
    """Return ``(rmin, rmax)`` of a statistics object after checking they are finite numbers
    (or, for per-axis / per-block statistics, finite arrays of one shape)."""
    rmin, rmax = stats.rmin, stats.rmax
    if rmin is None or rmax is None:
        raise MissingParameterError(
            "the statistics have no rmin/rmax yet; call compute_quantization_stats(values) "
            "first, or create them as MinMaxQuantizationStats(rmax=..., rmin=...)."
        )
    for name, bound in (("rmin", rmin), ("rmax", rmax)):
        operand = as_real_array(bound, name)
        if numpy.size(operand) == 0 or not numpy.all(numpy.isfinite(operand)):
            raise InvalidValueError(f"'{name}' must be a finite number (or array of them); got {bound!r}.")
    if numpy.shape(rmin) != numpy.shape(rmax):
        raise InvalidValueError(
            f"'rmin' and 'rmax' must have one shape; got {numpy.shape(rmin)} and {numpy.shape(rmax)}."
        )
    return rmin, rmax


def check_scale(scale: Any) -> None:
    """Refuse a quantization scale that is zero or not finite."""
    if isinstance(scale, (float, numpy.floating)):  # the usual case, checked quickly
        if math.isfinite(scale) and scale != 0:
            return
        raise InvalidValueError(
            f"cannot quantize with scale={scale!r}: the scale must be finite and non-zero. "
            f"Compute it with compute_quantization_parameters(options, stats)."
        )
    operand = as_real_array(scale, "scale")
    if not numpy.all(numpy.isfinite(operand)) or numpy.any(operand == 0):
        raise InvalidValueError(
            f"cannot quantize with scale={scale!r}: the scale must be finite and non-zero. "
            f"Compute it with compute_quantization_parameters(options, stats)."
        )

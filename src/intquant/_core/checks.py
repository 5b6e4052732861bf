"""Argument checks, in one place (scikit-learn's ``check_scalar`` is the model).

Every public entry point (the seed classes, calibration, dask, the command line) validates with
these and then calls code that trusts its inputs. Each raises an intquant error whose message
says what was expected, what arrived, and how to fix it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy

from intquant._core.foreign import check_not_foreign
from intquant._numpy124.promotion import as_numpy_operand
from intquant.errors import (
    InvalidOptionsError,
    InvalidTypeError,
    InvalidValueError,
    MissingParameterError,
    SerializationError,
)

__all__ = [
    "MAX_N_BITS",
    "as_real_array",
    "check_calibration_values",
    "check_flag",
    "check_int",
    "check_loaded_array",
    "check_loaded_broadcast",
    "check_loaded_parameter_shapes",
    "check_loaded_parameters",
    "check_loaded_statistics",
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
# Scalar types whose finiteness math.isfinite decides exactly (Python ints are left out: beyond
# float64 they raise OverflowError there).
_FINITE_CHECKED_SCALARS = frozenset({float, *(numpy.dtype(code).type for code in "efdbhilqBHILQ")})


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
        If the values are not numbers (strings, objects, complex numbers), a masked array, or an
        array of another library (a torch tensor, a dask array: see :mod:`intquant._core.foreign`).
    """
    if type(values) is numpy.ndarray:  # the usual case, checked quickly
        if values.dtype.kind in _REAL_KINDS:
            return values
    elif isinstance(values, numpy.ma.MaskedArray):
        raise InvalidTypeError(
            f"{what} are a masked array (shape {values.shape}, dtype {values.dtype}); intquant does "
            f"not take masked arrays, whose mask numpy.min/max would honour but numpy.unique and "
            f"the arithmetic would not. Pass values.compressed() (the unmasked values) or "
            f"values.filled(fill_value)."
        )
    else:
        check_not_foreign(values, what)  # tensors, dask and other libraries' arrays: refused
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
    # The usual case (scalars from compute_quantization_stats), checked without arrays.
    scalars = type(rmin) in _FINITE_CHECKED_SCALARS and type(rmax) in _FINITE_CHECKED_SCALARS
    if scalars and math.isfinite(rmin) and math.isfinite(rmax) and not rmin > rmax:
        return rmin, rmax
    for name, bound in (("rmin", rmin), ("rmax", rmax)):
        operand = as_real_array(bound, name)
        if numpy.size(operand) == 0 or not numpy.all(numpy.isfinite(operand)):
            raise InvalidValueError(f"'{name}' must be a finite number (or array of them); got {bound!r}.")
    if numpy.shape(rmin) != numpy.shape(rmax):
        raise InvalidValueError(
            f"'rmin' and 'rmax' must have one shape; got {numpy.shape(rmin)} and {numpy.shape(rmax)}."
        )
    if (rmin > rmax) if numpy.ndim(rmin) == 0 else numpy.any(numpy.asarray(rmin) > numpy.asarray(rmax)):
        raise InvalidValueError(
            f"'rmin' must not exceed 'rmax'; got rmin={rmin!r} and rmax={rmax!r}. Swap them, or "
            f"compute the statistics with compute_quantization_stats(values)."
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


# -- fields of serialized text, checked by the load_dict methods (see docs/serialization.md)
#
# Each refuses, with a SerializationError naming the object and the field, a value that would
# give wrong codes or a raw error later; every value the reference's own computations produce
# passes. None (a member not computed yet) always passes.

_INT64 = numpy.iinfo(numpy.int64)
_INT64_LIMIT = 2.0**63  # the first float beyond int64 (int64's maximum rounds to it)
_LOADED_REAL_KINDS = "iuf"


def _shown(value: Any) -> str:
    """What arrived, for a message: arrays by dtype and shape, other values by repr and type."""
    if isinstance(value, numpy.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    if isinstance(value, numpy.generic):
        return f"{value.item()!r} of type numpy.{value.dtype}"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} of type {type(value).__name__}"


def _field_error(owner: str, name: str, expected: str, got: str) -> SerializationError:
    return SerializationError(f"{owner} field '{name}' must be {expected}; got {got}.")


def _loaded_real(owner: str, name: str, value: Any, expected: str) -> numpy.ndarray:
    """``value`` as an array after checking it is a real number (a Python int within int64 or a
    float, a numpy integer or float; not a bool) or a non-empty integer or float array."""
    if isinstance(value, numpy.ndarray):
        if value.dtype.kind not in _LOADED_REAL_KINDS or value.size == 0:
            raise _field_error(owner, name, expected, _shown(value))
        return value
    if isinstance(value, (bool, numpy.bool_)) or not isinstance(
        value, (int, float, numpy.integer, numpy.floating)
    ):
        raise _field_error(owner, name, expected, _shown(value))
    if isinstance(value, int) and not _INT64.min <= value <= _INT64.max:
        raise _field_error(owner, name, expected, f"{value}, beyond int64, which numpy cannot compute with")
    return numpy.asarray(value)


def _check_loaded_scale(owner: str, value: Any) -> None:
    expected = "a finite, non-zero number (or an array of them), or None"
    operand = _loaded_real(owner, "scale", value, expected)
    if not numpy.all(numpy.isfinite(operand)) or numpy.any(operand == 0):
        raise _field_error(owner, "scale", expected, _shown_values(value, operand))


def _check_loaded_zero_point(owner: str, value: Any) -> None:
    expected = "an integer within int64 (an int, a float holding one, or an array of them), or None"
    operand = _loaded_real(owner, "zero_point", value, expected)
    if operand.dtype.kind == "f":
        fits = bool(
            numpy.all(numpy.isfinite(operand))
            and numpy.all(operand == numpy.trunc(operand))
            and operand.min() >= -_INT64_LIMIT
            and operand.max() < _INT64_LIMIT
        )
    else:
        fits = int(operand.min()) >= _INT64.min and int(operand.max()) <= _INT64.max
    if not fits:
        raise _field_error(owner, "zero_point", expected, _shown_values(value, operand))


def _check_loaded_offset(owner: str, value: Any, n_bits: int | None) -> None:
    """An int in ``[0, 2**(n_bits-1)]`` (``[0, 2**31]`` without ``n_bits``): a Python int, or a
    numpy integer (or array, for per-block offsets) of a signed dtype holding ``2**n_bits - 1``,
    since the bounds ``-offset`` and ``2**n_bits - 1 - offset`` are computed in its dtype."""
    bits = MAX_N_BITS if n_bits is None else n_bits
    top = 2 ** (bits - 1)
    expected = (
        f"an int in [0, {top}] (0 for unsigned codes, 2**(n_bits-1) = {top} for signed ones)"
        if n_bits is not None
        else f"an int in [0, {top}] (0, or 2**(n_bits-1) for signed codes)"
    )
    expected += ", or None"
    if isinstance(value, (numpy.ndarray, numpy.integer)):
        kind, dtype = value.dtype.kind, value.dtype
        if kind not in "iu" or numpy.size(value) == 0:
            raise _field_error(owner, "offset", expected, _shown(value))
        if kind == "u" or numpy.iinfo(dtype).max < 2**bits - 1:
            raise _field_error(
                owner,
                "offset",
                expected,
                f"{_shown(value)}, whose dtype cannot hold the clipping bounds -offset and "
                f"2**n_bits - 1 - offset (write it as a Python int, or as an int64)",
            )
    elif not is_integer(value):
        raise _field_error(owner, "offset", expected, _shown(value))
    if int(numpy.min(value)) < 0 or int(numpy.max(value)) > top:
        raise _field_error(owner, "offset", expected, _shown_values(value, numpy.asarray(value)))


def _shown_values(value: Any, operand: numpy.ndarray) -> str:
    """``_shown(value)``, with the range of an array's values (a scalar shows itself)."""
    if isinstance(value, numpy.ndarray):
        low, high = operand.min().item(), operand.max().item()
        return f"{_shown(value)} with values from {low!r} to {high!r}"
    return _shown(value)


def check_loaded_parameters(owner: str, fields: dict[str, Any], n_bits: Any = None) -> None:
    """Check the ``scale``, ``zero_point`` and ``offset`` of serialized text (those present).

    ``scale``: a finite, non-zero real number or array (ints allowed, not bools). ``zero_point``:
    an integer within int64, as an int, a float holding one, or an array of them. ``offset``: an
    int in ``[0, 2**(n_bits-1)]`` (``[0, 2**31]`` without ``n_bits``), a Python int or a numpy
    integer (array, per block) of a signed dtype holding ``2**n_bits - 1``. ``n_bits`` is that
    of the same quantizer text, if any (already checked).

    Raises
    ------
    SerializationError
        Naming ``owner``, the field, what arrived and what is expected.
    """
    if fields.get("scale") is not None:
        _check_loaded_scale(owner, fields["scale"])
    if fields.get("zero_point") is not None:
        _check_loaded_zero_point(owner, fields["zero_point"])
    if fields.get("offset") is not None:
        _check_loaded_offset(owner, fields["offset"], n_bits)


def check_loaded_parameter_shapes(
    owner: str, fields: dict[str, Any], per_tensor: bool
) -> tuple[int, ...] | None:
    """Check that the array parameters (``scale``, ``zero_point``, ``offset``) of serialized text
    fit one granularity, and return their grid shape (None: no array of more than one element).

    The arrays of more than one element must all have one shape, the *grid*, to which every other
    array parameter (of one element) broadcasts. ``per_tensor`` (a quantizer with neither ``axis``
    nor ``block_size``, whose parameters numpy broadcasts against the values by itself): the grid
    has at most one dimension larger than 1, one parameter per channel (Concrete ML's per-channel
    shapes such as ``(C,)``, ``(1, C)`` or ``(C, 1, 1, 1)``). Standalone parameters and per-axis or
    per-block quantizers take a grid of any shape (intquant's per-block parameters); the values'
    shape is checked against it when quantizing.

    Raises
    ------
    SerializationError
        For arrays of different shapes, or a per-tensor grid of two dimensions larger than 1.
    """
    shapes = {
        name: fields[name].shape
        for name in ("scale", "zero_point", "offset")
        if isinstance(fields.get(name), numpy.ndarray) and fields[name].ndim > 0
    }
    grids = [(name, shape) for name, shape in shapes.items() if math.prod(shape) > 1]
    if not grids:
        return None
    first, grid = grids[0]
    for name, shape in shapes.items():
        if not _broadcasts_to(shape, grid):
            raise SerializationError(
                f"{owner} fields '{first}' and '{name}' must be arrays of one shape (or one "
                f"element); got shapes {grid} and {shape}, which fit no granularity."
            )
    if per_tensor and sum(size > 1 for size in grid) > 1:
        raise SerializationError(
            f"{owner} fields {', '.join(repr(name) for name, _ in grids)} are arrays of shape "
            f"{grid}, which fit no granularity: without 'axis' or 'block_size' the parameters "
            f"broadcast against the values, so an array may vary along one dimension only (one "
            f"scale per channel, as (C,) or (C, 1, 1, 1)). Write per-block parameters with their "
            f"'block_size' (intquant.UniformQuantizer), or one parameter per tensor."
        )
    return grid


def check_loaded_statistics(owner: str, fields: dict[str, Any]) -> None:
    """Check the ``rmax``, ``rmin`` and ``uvalues`` of serialized text (those present).

    ``rmin``/``rmax``: real numbers (NaN and infinities allowed: the reference writes the range of
    such data) or non-empty integer or float arrays, of one shape. ``uvalues``: an integer or float
    array when the range is per tensor, a list of them (one per block) when ``rmin``/``rmax`` are
    per-block arrays.

    Raises
    ------
    SerializationError
        Naming ``owner``, the field, what arrived and what is expected.
    """
    bounds = {}
    for name in ("rmax", "rmin"):
        if fields.get(name) is not None:
            bounds[name] = _loaded_real(
                owner, name, fields[name], "a number (or an array of numbers, per block), or None"
            )
    if len(bounds) == 2 and bounds["rmin"].shape != bounds["rmax"].shape:
        raise SerializationError(
            f"{owner} fields 'rmin' and 'rmax' must have one shape; got {bounds['rmin'].shape} and "
            f"{bounds['rmax'].shape}."
        )
    uvalues = fields.get("uvalues")
    if uvalues is not None:
        grid = next((bound.shape for bound in bounds.values()), None)
        _check_loaded_uvalues(owner, uvalues, None if grid is None else math.prod(grid) if grid else 0)


def _check_loaded_uvalues(owner: str, uvalues: Any, blocks: int | None) -> None:
    """``blocks``: 0 for a per-tensor range, the number of blocks of a per-block one, None when
    the text has no range."""
    per_tensor = "an integer or float array"
    per_block = "a list of integer or float arrays, one per block"
    if blocks:
        per_block = f"a list of {blocks} integer or float arrays, one per block (rmin/rmax are per block)"
    expected = {0: per_tensor, None: f"{per_tensor} (or, per block, {per_block})"}.get(blocks, per_block)
    expected += ", or None"
    if not isinstance(uvalues, list):
        if not _is_real_array(uvalues) or blocks:
            raise _field_error(owner, "uvalues", expected, _shown(uvalues))
        return
    wrong = [item for item in uvalues if not _is_real_array(item)]
    if wrong or blocks == 0 or (blocks is not None and len(uvalues) != blocks):
        got = f"a list of {len(uvalues)} items" + (f", one of them {_shown(wrong[0])}" if wrong else "")
        raise _field_error(owner, "uvalues", expected, got)


def _is_real_array(value: Any) -> bool:
    return isinstance(value, numpy.ndarray) and value.dtype.kind in _LOADED_REAL_KINDS


def check_loaded_array(owner: str, name: str, value: Any) -> None:
    """Check that a field holding values or codes is None, a numpy array or a numpy scalar of
    numbers (bool, integer or float).

    Raises
    ------
    SerializationError
        For anything else (lists, strings, Python numbers, objects).
    """
    if value is None or (isinstance(value, (numpy.ndarray, numpy.generic)) and value.dtype.kind in "biuf"):
        return
    raise _field_error(owner, name, "a numpy array (or numpy scalar) of numbers, or None", _shown(value))


def check_loaded_broadcast(owner: str, name: str, value: Any, grid: tuple[int, ...] | None) -> None:
    """Check that per-channel parameters of shape ``grid`` (per tensor, broadcast by numpy)
    broadcast against the array ``value`` without changing its shape.

    Raises
    ------
    SerializationError
        If they do not: quantizing would give codes of another shape.
    """
    if grid is None or not isinstance(value, (numpy.ndarray, numpy.generic)):
        return
    shape = numpy.shape(value)
    if not _broadcasts_to(grid, shape):
        raise SerializationError(
            f"{owner} field '{name}' has shape {shape}, against which the quantizer's per-channel "
            f"parameters of shape {grid} do not broadcast (their codes would have another shape)."
        )


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether an array of ``shape`` broadcasts against ``target`` without changing it."""
    try:
        return numpy.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False

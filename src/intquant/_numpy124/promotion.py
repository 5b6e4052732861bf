"""numpy 1.24's type promotion, reproduced so results match the reference on numpy 2 too.

Concrete ML 1.7.0 runs on numpy 1.24, where a ufunc mixing an array with a *scalar* chooses its
loop by the scalar's value ("value-based casting"): ``float32_array / numpy.float64(s)`` runs in
float32 and ``float32_array + numpy.int64(70000)`` in float64. numpy 2 (NEP 50) looks at the
scalar's dtype instead. The kernels cast their operands to the dtype computed here, so both
numpy versions run the same loop and give the same bits.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy

__all__ = ["as_numpy_operand", "legacy_result_type", "legacy_result_types"]

# The order numpy 1.x gives dtype kinds when it decides whether a scalar's value may matter.
_KIND_RANK = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}

_FLOAT16_LIMIT = 65000.0  # numpy 1.x: |v| < 65000 fits float16 (finite or not)
_FLOAT32_LIMIT = 3.4e38  # numpy 1.x: |v| < 3.4e38 fits float32


def as_numpy_operand(value: Any) -> Any:
    """Return ``value`` as a numpy array or numpy scalar, typed as numpy 1.24 types it.

    Python ``bool``, ``int`` and ``float`` become ``numpy.bool_``, ``numpy.int64`` and
    ``numpy.float64`` (numpy 1.24 types Python scalars by their C type; numpy 2 keeps them
    "weak"). Arrays and numpy scalars are returned as they are; anything else goes through
    ``numpy.asarray``.
    """
    if isinstance(value, (numpy.ndarray, numpy.generic)):
        return value
    if isinstance(value, bool):
        return numpy.bool_(value)
    if isinstance(value, int):
        return numpy.int64(value)
    if isinstance(value, float):
        return numpy.float64(value)
    return numpy.asarray(value)


def _min_scalar_type(value: Any) -> numpy.dtype[Any]:
    """numpy 1.24's ``min_scalar_type``: the smallest dtype of the scalar's kind holding it."""
    dtype: numpy.dtype[Any] = value.dtype
    if dtype.kind in "iu":
        integer = int(value)
        kind = "u" if integer >= 0 else "i"
        for size in (1, 2, 4, 8):
            candidate = numpy.dtype(f"{kind}{size}")
            if numpy.iinfo(candidate).min <= integer <= numpy.iinfo(candidate).max:
                return candidate
        return dtype
    if dtype.kind == "f":
        number = float(value)
        if not math.isfinite(number) or -_FLOAT16_LIMIT < number < _FLOAT16_LIMIT:
            smallest: numpy.dtype[Any] = numpy.dtype(numpy.float16)
        elif -_FLOAT32_LIMIT < number < _FLOAT32_LIMIT:
            smallest = numpy.dtype(numpy.float32)
        else:
            smallest = numpy.dtype(numpy.float64)
        return smallest if smallest.itemsize <= dtype.itemsize else dtype
    return dtype  # bool (and anything else) is already as small as it gets


def legacy_result_type(first: Any, second: Any) -> numpy.dtype[Any]:
    """Dtype numpy 1.24 gives a binary ufunc of ``first`` and ``second``.

    Both operands must already be numpy arrays or scalars (see :func:`as_numpy_operand`); a
    0-d array counts as a scalar, as in numpy 1.24. When exactly one operand is a scalar and its
    kind ranks no higher than the array's (bool < integer < float < complex), the scalar takes
    part through the smallest dtype that holds its value; otherwise dtypes promote as usual.
    """
    first_is_scalar = numpy.ndim(first) == 0
    if first_is_scalar == (numpy.ndim(second) == 0):
        return numpy.promote_types(first.dtype, second.dtype)
    array, scalar = (second, first) if first_is_scalar else (first, second)
    return _array_scalar_type(array.dtype, scalar.dtype, scalar.item())


@functools.lru_cache(maxsize=1024)
def _array_scalar_type(array: numpy.dtype[Any], scalar: numpy.dtype[Any], value: Any) -> numpy.dtype[Any]:
    """:func:`legacy_result_type` of an array and a scalar (cached: scales and zero points recur)."""
    if _KIND_RANK[scalar.kind] > _KIND_RANK[array.kind]:
        return numpy.promote_types(array, scalar)
    smallest = _min_scalar_type(numpy.asarray(value, dtype=scalar))
    if array.kind == "i" and smallest.kind == "u":
        # numpy 1.x: a non-negative integer that fits the signed type of its size stays signed
        signed = numpy.dtype(f"i{smallest.itemsize}")
        if int(value) <= numpy.iinfo(signed).max:
            smallest = signed
    return numpy.promote_types(array, smallest)


def legacy_result_types(
    array: numpy.dtype[Any], scalars: numpy.ndarray
) -> tuple[list[numpy.dtype[Any]], numpy.ndarray]:
    """:func:`legacy_result_type` of an ``array``-dtype array and each element of ``scalars``
    taken as a scalar, without a Python call per element.

    Returns the distinct result dtypes and, for each element (in ``scalars``' shape), the index
    of its dtype among them. The result depends on an element only through the smallest dtype of
    its kind that holds it, so the elements are sorted into those classes first.
    """
    scalar = scalars.dtype
    classes = _value_classes(scalars)
    codes, inverse = numpy.unique(classes, return_inverse=True)
    dtypes: list[numpy.dtype[Any]] = []
    index = numpy.empty(len(codes), dtype=numpy.intp)
    flat = scalars.reshape(-1)
    first = numpy.zeros(len(codes), dtype=numpy.intp)
    first[inverse.reshape(-1)[::-1]] = numpy.arange(flat.size)[::-1]  # first element of each class
    for position, element in enumerate(first):
        dtype = _array_scalar_type(array, scalar, flat[element].item())
        if dtype not in dtypes:
            dtypes.append(dtype)
        index[position] = dtypes.index(dtype)
    return dtypes, index[inverse].reshape(scalars.shape)


def _value_classes(scalars: numpy.ndarray) -> numpy.ndarray:
    """A small integer per element naming the smallest dtype of its kind that holds it (the
    classes of :func:`_min_scalar_type`, with non-negative integers that fit the signed type of
    their size told apart)."""
    if scalars.dtype.kind == "f":
        with numpy.errstate(invalid="ignore"):
            magnitude = numpy.abs(scalars.astype(numpy.float64))
        return numpy.where(
            ~numpy.isfinite(magnitude) | (magnitude < _FLOAT16_LIMIT),
            0,
            numpy.where(magnitude < _FLOAT32_LIMIT, 1, 2),
        ).astype(numpy.int8)
    if scalars.dtype.kind not in "iu":
        return numpy.zeros(scalars.shape, dtype=numpy.int8)
    classes = numpy.full(scalars.shape, 16, dtype=numpy.int8)
    bounds = (
        (0, 127), (128, 255), (256, 32767), (32768, 65535), (65536, 2**31 - 1),
        (2**31, 2**32 - 1), (2**32, 2**63 - 1),
    )  # fmt: skip
    for label, (low, high) in enumerate(bounds):
        inside = (scalars >= low) & (scalars <= high)
        classes[inside] = label
    if scalars.dtype.kind == "i":
        negative = ((-128, -1), (-32768, -129), (-(2**31), -32769), (-(2**63), -(2**31) - 1))
        for label, (low, high) in enumerate(negative, start=8):
            inside = (scalars >= low) & (scalars <= high)
            classes[inside] = label
    return classes

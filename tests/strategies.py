"""Hypothesis strategies shared by the tests: quantizers built by hand and values to feed them.

``quantizer_cases()`` draws ``(quantizer, values)``: a :class:`intquant.UniformQuantizer` made
from ``QuantizationOptions`` and ``UniformQuantizationParameters`` (per tensor, per axis or per
block; any deterministic rounding mode; float scales, or integer scales as JSON gives them), and
a non-empty array of one of the dtypes every backend takes. Scales stay above 1e-3 and values
finite, so that the reference never refuses the values (no NaN from a scale that underflows in
float16).
"""

from __future__ import annotations

import json
from typing import Any

import numpy
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import intquant

__all__ = ["INPUT_DTYPES", "ROUNDINGS", "quantizer_cases", "with_integer_scale"]

INPUT_DTYPES = tuple(
    numpy.dtype(name) for name in ("float16", "float32", "float64", "int8", "int32", "int64", "uint8")
)
ROUNDINGS = ("half_even", "half_up", "floor", "ceil")  # never stochastic: not reproducible
SHAPES = ((), (7,), (3, 5), (2, 3, 4), (4, 6))
# Zero points around the edges of numpy 1.24's value-based casting of the addition (uint8, int8,
# uint16, int16 limits), where float16/float32 values are added in a wider float.
ZERO_POINTS = (0, 3, -5, 127, 128, 255, 256, -129, 65535, 65536, 70000, -32769, -40000)
# Scales whose quotients are exact (powers of two) or not, all far from float16's underflow.
SCALES = (0.25, 0.5, 2.0, 0.001953125, 0.1, 0.0123, 1 / 3, 7.0, 1000.5)


def with_integer_scale(quantizer: intquant.UniformQuantizer, scale: Any) -> intquant.UniformQuantizer:
    """``quantizer`` through its JSON text with the scale replaced by an integer: a Python ``int``
    (``"scale": 2``) or, for a list of ints, an int64 array. ``UniformQuantizer(...)`` would turn
    the scale into a float64; loading JSON keeps it as written."""
    document = json.loads(intquant.dumps(quantizer))
    if isinstance(scale, int):
        document["serialized_value"]["scale"] = scale
    else:
        shape = numpy.shape(quantizer.scale)
        values = numpy.asarray(scale, dtype=numpy.int64).reshape(shape).tolist()
        document["serialized_value"]["scale"] = {
            "type_name": "numpy_array",
            "serialized_value": values,
            "dtype": "int64",
        }
    return intquant.loads(json.dumps(document))


def _values(dtype: numpy.dtype[Any], shape: tuple[int, ...]) -> st.SearchStrategy[numpy.ndarray]:
    if dtype.kind == "f":
        width = dtype.itemsize * 8
        elements = st.one_of(
            st.floats(-300.0, 300.0, allow_nan=False, width=width),
            # multiples of 1/16: exact ties for the power-of-two scales (float16 holds them
            # exactly below 128 only: 11 significant bits)
            st.integers(-2047, 2047).map(lambda sixteenths: sixteenths / 16)
            if dtype == numpy.float16
            else st.integers(-4000, 4000).map(lambda sixteenths: sixteenths / 16),
        )
    else:
        info = numpy.iinfo(dtype)
        elements = st.integers(max(int(info.min), -5000), min(int(info.max), 5000))
    return hnp.arrays(dtype, shape, elements=elements)


@st.composite
def quantizer_cases(draw: st.DrawFn) -> tuple[intquant.UniformQuantizer, numpy.ndarray]:
    """A hand-built quantizer and values of a shape it takes."""
    dtype = draw(st.sampled_from(INPUT_DTYPES))
    shape = draw(st.sampled_from(SHAPES))
    granularity: dict[str, Any] = {}
    grid: tuple[int, ...] = ()
    kind = draw(st.sampled_from(("tensor", "axis", "block"))) if shape else "tensor"
    if kind == "axis":
        axis = draw(st.integers(-len(shape), len(shape) - 1))
        granularity["axis"] = axis
        grid = tuple(size if index == axis % len(shape) else 1 for index, size in enumerate(shape))
    elif kind == "block":
        block = tuple(
            draw(st.sampled_from([d for d in range(1, size + 1) if size % d == 0])) for size in shape
        )
        granularity["block_size"] = block
        grid = tuple(size // extent for size, extent in zip(shape, block, strict=True))
    n_bits = draw(st.integers(2, 20))
    is_signed = draw(st.booleans())
    options = intquant.QuantizationOptions(
        n_bits, is_signed=is_signed, rounding=draw(st.sampled_from(ROUNDINGS)), **granularity
    )
    count = int(numpy.prod(grid)) if grid else 1
    integer_scale = draw(st.booleans()) and draw(st.booleans())  # about one case in four
    if integer_scale:
        scales: Any = draw(st.lists(st.integers(1, 9), min_size=count, max_size=count))
    else:
        scales = draw(st.lists(st.sampled_from(SCALES), min_size=count, max_size=count))
    zero_points = draw(st.lists(st.sampled_from(ZERO_POINTS), min_size=count, max_size=count))
    offset = 2 ** (n_bits - 1) if is_signed else 0
    if grid:
        scale: Any = numpy.array(scales, dtype=numpy.float64).reshape(grid)
        zero_point: Any = numpy.array(zero_points, dtype=numpy.int64).reshape(grid)
    else:
        scale, zero_point = float(scales[0]), numpy.int64(zero_points[0])
    quantizer = intquant.UniformQuantizer(
        options, None, intquant.UniformQuantizationParameters(scale, zero_point, offset)
    )
    if integer_scale:
        quantizer = with_integer_scale(quantizer, scales if grid else scales[0])
    return quantizer, draw(_values(dtype, shape))

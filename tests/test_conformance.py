"""Backend conformance: every backend quantizes and dequantizes exactly as the numpy reference.

The reference is ``UniformQuantizer.quant(values)`` and ``UniformQuantizer.dequant(codes)``. The
same quantizers (per tensor, per axis, per block; the four deterministic rounding modes; float
scales and integer scales as JSON gives them; zero points that change numpy 1.24's addition
dtype) and values (float16/32/64, int8/32/64, uint8; 0-d to 3-d) go through each backend: the
compiled numba loops against pure numpy (``INTQUANT_PURE_NUMPY=1`` in a subprocess), torch,
the exact ONNX export run by onnxruntime, dask with chunks that cut across the blocks, and the
command line. Results must be equal bit for bit, with the same dtype; where the reference raises,
the backend must raise the same error. An export or backend that refuses a case the reference
handles fails.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import pytest
from hypothesis import given, settings

import intquant
from intquant import (
    MinMaxQuantizationStats,
    QuantizationOptions,
    QuantizedArray,
    UniformQuantizationParameters,
    UniformQuantizer,
)
from tests.strategies import quantizer_cases, with_integer_scale

# -- comparing results


def _bits(array: numpy.ndarray) -> numpy.ndarray:
    """The array's bytes as unsigned integers of its item size: -0.0 and 0.0 (and NaN payloads)
    differ."""
    return numpy.ascontiguousarray(array).view(f"u{array.dtype.itemsize}")


def assert_same(actual: Any, expected: Any) -> None:
    """Same dtype, same shape, same values bit for bit."""
    actual, expected = numpy.asarray(actual), numpy.asarray(expected)
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype}, expected {expected.dtype}"
    assert actual.shape == expected.shape, f"shape {actual.shape}, expected {expected.shape}"
    assert numpy.array_equal(_bits(actual), _bits(expected)), (
        f"values differ at {numpy.argwhere(_bits(actual) != _bits(expected)).tolist()[:10]}:\n"
        f"got      {actual.tolist()}\nexpected {expected.tolist()}"
    )


def _headline(error: BaseException) -> str:
    """The start of an error message, which every backend's version of the error shares."""
    return re.escape(re.split(r"[;:(]", str(error), maxsplit=1)[0].strip())


def conformance_problem(backend: Callable[[], Any], reference: Callable[[], Any]) -> str | None:
    """None when ``backend()`` gives what ``reference()`` gives (or raises what it raises); else
    what differs."""
    try:
        expected = reference()
    except Exception as error:
        try:
            with pytest.raises(type(error), match=_headline(error)):
                backend()
        except (Exception, pytest.fail.Exception) as failure:
            return f"the reference raises {type(error).__name__}({error}), the backend: {failure!r}"
        return None
    try:
        actual = backend()
    except Exception as error:
        return f"the backend raised {type(error).__name__}: {error}\n(the reference gives {expected!r})"
    try:
        assert_same(actual, expected)
    except AssertionError as failure:
        return str(failure)
    return None


def check(backend: Callable[[], Any], reference: Callable[[], Any]) -> None:
    problem = conformance_problem(backend, reference)
    if problem is not None:
        pytest.fail(problem)


# -- the cases


@dataclass(frozen=True)
class Case:
    """A quantizer (built on first use: a case that cannot be built fails alone) and values."""

    id: str
    build: Callable[[], UniformQuantizer]
    values: Any  # a numpy array or scalar

    @functools.cached_property
    def quantizer(self) -> UniformQuantizer:
        return self.build()

    def codes(self) -> numpy.ndarray:
        """The reference codes, as an array (0-d for 0-d values): the input of dequantization."""
        return numpy.asarray(self.quantizer.quant(self.values))


def _data(shape: tuple[int, ...], dtype: Any, seed: int, spread: float = 3.0) -> numpy.ndarray:
    """Deterministic values: normal floats with 0.0, -0.0 and halves first, or small integers."""
    rng = numpy.random.default_rng(seed)
    dtype = numpy.dtype(dtype)
    if dtype.kind == "f":
        values = numpy.asarray(rng.normal(scale=spread, size=shape))
        flat = values.reshape(-1)
        specials = [0.0, -0.0, 0.5, -0.5, 1.5, -2.5]
        flat[: len(specials)] = specials[: flat.size]
        return values.astype(dtype)
    info = numpy.iinfo(dtype)
    low, high = max(int(info.min), -100), min(int(info.max), 100)
    return numpy.asarray(rng.integers(low, high, size=shape, endpoint=True)).astype(dtype)


def _calibration(shape: tuple[int, ...], seed: int, spread: float = 3.0) -> numpy.ndarray:
    return numpy.random.default_rng(seed + 1000).normal(scale=spread, size=shape)


Builder = Callable[[], UniformQuantizer]


def _qa(n_bits: int, calibration: numpy.ndarray, **options: Any) -> Builder:
    return lambda: QuantizedArray(n_bits, calibration, **options).quantizer


def _hand(
    n_bits: int,
    scale: Any,
    zero_point: Any,
    *,
    is_signed: bool = False,
    is_symmetric: bool = False,
    is_narrow: bool = False,
    no_clipping: bool = False,
    **extra: Any,
) -> Builder:
    def build() -> UniformQuantizer:
        options = QuantizationOptions(n_bits, is_signed=is_signed, is_symmetric=is_symmetric, **extra)
        options.is_narrow = is_narrow
        offset = 2 ** (n_bits - 1) if is_signed else 0
        stats = MinMaxQuantizationStats(rmax=numpy.float64(1.0), rmin=numpy.float64(-1.0))
        params = UniformQuantizationParameters(scale, zero_point, offset)
        return UniformQuantizer(options, stats, params, no_clipping=no_clipping)

    return build


def _int_scale(build: Builder, scale: Any) -> Builder:
    """The quantizer through JSON with an integer scale (see ``with_integer_scale``)."""
    return lambda: with_integer_scale(build(), scale)


def _grid(values: list[Any], shape: tuple[int, ...], dtype: Any) -> numpy.ndarray:
    return numpy.array(values, dtype=dtype).reshape(shape)


# Quotients k/2 with the power-of-two scale 0.25: exact ties for every rounding mode.
_TIES = numpy.arange(-12, 12) * 0.125
# float32 values whose quotient by 0.001 lies 0.003 off k + 0.5: added to 70000 in float32
# (ulp 1/128) they round onto the tie; numpy 1.24 adds in float64 and keeps them off it.
_NEAR_TIES_70000 = numpy.array([(k + 0.5 + d) * 0.001 for k in range(12) for d in (0.003, -0.003)])
# float16 values whose quotient by 0.125 added to 300 in float16 would round differently.
_NEAR_TIES_300 = (numpy.arange(15) / 8 - 0.9) * 0.125


def _cases() -> list[Case]:
    f16, f32, f64 = numpy.float16, numpy.float32, numpy.float64
    i8, i32, i64, u8 = numpy.int8, numpy.int32, numpy.int64, numpy.uint8
    cases = [
        # per tensor, calibrated by QuantizedArray
        Case("qa-u8-half_even-float64-(3,5)", _qa(8, _calibration((40,), 1)), _data((3, 5), f64, 1)),
        Case(
            "qa-s8-half_up-float32-(7,)",
            _qa(8, _calibration((40,), 2), is_signed=True, rounding="half_up"),
            _data((7,), f32, 2),
        ),
        Case(
            "qa-s4sym-floor-float16-(2,3,4)",
            _qa(4, _calibration((40,), 3), is_signed=True, is_symmetric=True, rounding="floor"),
            _data((2, 3, 4), f16, 3),
        ),
        Case(
            "qa-u6-ceil-float64-(4,6)", _qa(6, _calibration((40,), 4), rounding="ceil"), _data((4, 6), f64, 4)
        ),
        Case(
            "qa-u8-ceil-float64-scalar", _qa(8, _calibration((40,), 5), rounding="ceil"), numpy.float64(0.37)
        ),
        Case(
            "qa-s8-half_even-float32-0d",
            _qa(8, _calibration((40,), 6), is_signed=True),
            numpy.array(0.37, f32),
        ),
        Case(
            "qa-u8-half_up-float16-0d",
            _qa(8, _calibration((40,), 7), rounding="half_up"),
            numpy.array(0.37, f16),
        ),
        Case(
            "qa-s8-floor-float64-0d", _qa(8, _calibration((40,), 8), rounding="floor"), numpy.array(0.37, f64)
        ),
        Case("qa-u8-half_even-int8-(7,)", _qa(8, _calibration((40,), 9, 60.0)), _data((7,), i8, 9)),
        Case(
            "qa-s8-ceil-int32-(3,5)",
            _qa(8, _calibration((40,), 10, 60.0), is_signed=True, rounding="ceil"),
            _data((3, 5), i32, 10),
        ),
        Case(
            "qa-u8-floor-int64-(2,3,4)",
            _qa(8, _calibration((40,), 11, 60.0), rounding="floor"),
            _data((2, 3, 4), i64, 11),
        ),
        Case(
            "qa-s5-half_up-uint8-(4,6)",
            _qa(5, _calibration((40,), 12, 60.0) + 50, is_signed=True, rounding="half_up"),
            _data((4, 6), u8, 12),
        ),
        # per tensor, by hand: exact ties, large and negative zero points, narrow, no clipping
        *(
            Case(
                f"hand-ties-{rounding}-{numpy.dtype(dtype)}-(4,6)",
                _hand(8, 0.25, 3, rounding=rounding),
                _TIES.reshape(4, 6).astype(dtype),
            )
            for rounding, dtype in (("half_even", f32), ("half_up", f32), ("floor", f16), ("ceil", f64))
        ),
        Case("hand-ties-half_even-float16-(7,)", _hand(8, 0.25, 3), _TIES[5:12].astype(f16)),
        Case(
            "hand-ties-half_up-float64-(2,3,4)",
            _hand(8, 0.25, -3, is_signed=True, rounding="half_up"),
            _TIES.reshape(2, 3, 4),
        ),
        Case(
            "hand-scale2.0-half_even-int64-(3,)",
            _hand(8, 2.0, 0, is_signed=True),
            numpy.array([7, 9, -3], i64),
        ),
        Case(
            "hand-zp70000-half_even-float32-(4,6)",
            _hand(20, 0.001, 70000),
            _NEAR_TIES_70000.reshape(4, 6).astype(f32),
        ),
        Case(
            "hand-zp70000-floor-uint8-(3,5)",
            _hand(20, 0.001, 70000, rounding="floor"),
            _data((3, 5), u8, 13) + 100,
        ),
        Case(
            "hand-zp300-half_even-float16-(3,5)",
            _hand(10, 0.125, 300),
            _NEAR_TIES_300.reshape(3, 5).astype(f16),
        ),
        Case(
            "hand-zp-40000-s20-half_up-float32-(2,3,4)",
            _hand(20, 0.01, -40000, is_signed=True, rounding="half_up"),
            _data((2, 3, 4), f32, 14),
        ),
        Case(
            "hand-narrow-s4sym-half_even-float64-(7,)",
            _hand(4, 0.25, 0, is_signed=True, is_symmetric=True, is_narrow=True),
            _TIES[:7] * 20,
        ),
        Case(
            "hand-noclip-half_even-float64-(3,5)",
            _hand(4, 0.1, 7, no_clipping=True),
            _data((3, 5), f64, 15, 50.0),
        ),
        Case(
            "hand-noclip-ceil-int32-(7,)",
            _hand(4, 0.75, -2, no_clipping=True, rounding="ceil"),
            _data((7,), i32, 16),
        ),
        # per axis
        Case(
            "qa-axis0-u8-half_even-float32-(3,5)",
            _qa(8, _calibration((3, 5), 20), axis=0),
            _data((3, 5), f32, 20),
        ),
        Case(
            "qa-axis-1-s8-floor-float64-(2,3,4)",
            _qa(8, _calibration((2, 3, 4), 21), axis=-1, is_signed=True, rounding="floor"),
            _data((2, 3, 4), f64, 21),
        ),
        Case(
            "qa-axis0-u8-half_up-float16-(2,3,4)",
            _qa(8, _calibration((2, 3, 4), 22), axis=0, rounding="half_up"),
            _data((2, 3, 4), f16, 22),
        ),
        Case(
            "qa-axis-1-s6-ceil-int32-(4,6)",
            _qa(6, _calibration((4, 6), 23, 60.0), axis=-1, is_signed=True, rounding="ceil"),
            _data((4, 6), i32, 23),
        ),
        Case(
            "hand-axis0-mixed-zp-half_even-float32-(3,5)",
            _hand(20, _grid([0.25, 0.5, 2.0], (3, 1), f64), _grid([3, 70000, -2], (3, 1), i64), axis=0),
            _TIES[:15].reshape(3, 5).astype(f32),
        ),
        Case(
            "hand-axis-1-half_up-uint8-(3,5)",
            _hand(
                8,
                _grid([0.5, 2.0, 4.0, 8.0, 16.0], (1, 5), f64),
                _grid([0, 1, 2, 3, 4], (1, 5), i64),
                axis=-1,
                rounding="half_up",
            ),
            _data((3, 5), u8, 24),
        ),
        # per block
        Case(
            "qa-block(2,3)-u8-half_even-float32-(4,6)",
            _qa(8, _calibration((4, 6), 30), block_size=(2, 3)),
            _data((4, 6), f32, 30),
        ),
        Case(
            "qa-block(2,3)-s8sym-half_up-float64-(4,6)",
            _qa(
                8,
                _calibration((4, 6), 31),
                block_size=(2, 3),
                is_signed=True,
                is_symmetric=True,
                rounding="half_up",
            ),
            _data((4, 6), f64, 31),
        ),
        Case(
            "qa-block(1,3,2)-u8-floor-int64-(2,3,4)",
            _qa(8, _calibration((2, 3, 4), 32, 60.0), block_size=(1, 3, 2), rounding="floor"),
            _data((2, 3, 4), i64, 32),
        ),
        Case(
            "qa-block(1,5)-s8-ceil-int8-(3,5)",
            _qa(8, _calibration((3, 5), 33, 60.0), block_size=(1, 5), is_signed=True, rounding="ceil"),
            _data((3, 5), i8, 33),
        ),
        Case(
            "hand-block(2,3)-mixed-zp-half_even-float16-(4,6)",
            _hand(
                20,
                _grid([0.25, 0.5, 1.0, 2.0], (2, 2), f64),
                _grid([0, 70000, 300, -5], (2, 2), i64),
                block_size=(2, 3),
            ),
            _TIES.reshape(4, 6).astype(f16),
        ),
        # integer scales, as JSON gives them ("scale": 2)
        Case(
            "int-scale2-half_even-int64-[7,9,-3]",
            _int_scale(_hand(8, 0.5, 0, is_signed=True), 2),
            numpy.array([7, 9, -3], i64),
        ),
        Case(
            "int-scale2-half_up-int8-(7,)",
            _int_scale(_hand(8, 0.5, 3, rounding="half_up"), 2),
            _data((7,), i8, 40),
        ),
        Case(
            "int-scale3-floor-float32-(3,5)",
            _int_scale(_hand(8, 0.5, -1, is_signed=True, rounding="floor"), 3),
            _data((3, 5), f32, 41, 30.0),
        ),
        Case(
            "int-scale2-ceil-uint8-(4,6)",
            _int_scale(_hand(8, 0.5, 0, rounding="ceil"), 2),
            _data((4, 6), u8, 42),
        ),
        Case(
            "int-scale2-half_even-int32-0d",
            _int_scale(_hand(8, 0.5, 0, is_signed=True), 2),
            numpy.array(7, i32),
        ),
        Case(
            "int-scale2-half_even-float16-(7,)",
            _int_scale(_hand(8, 0.5, 3), 2),
            _data((7,), f16, 43, 20.0),
        ),
        Case(
            "int-scale-axis0-half_even-int64-(3,5)",
            _int_scale(
                _hand(
                    8, _grid([0.5] * 3, (3, 1), f64), _grid([0, 1, 2], (3, 1), i64), is_signed=True, axis=0
                ),
                [2, 3, 4],
            ),
            _data((3, 5), i64, 44),
        ),
        Case(
            "int-scale-block(2,3)-half_up-int32-(4,6)",
            _int_scale(
                _hand(
                    8,
                    _grid([0.5] * 4, (2, 2), f64),
                    _grid([0, 1, 2, 3], (2, 2), i64),
                    is_signed=True,
                    block_size=(2, 3),
                    rounding="half_up",
                ),
                [2, 3, 4, 5],
            ),
            _data((4, 6), i32, 45),
        ),
    ]
    assert len({case.id for case in cases}) == len(cases)
    return cases


CASES = _cases()
CASE_PARAMS = [pytest.param(case, id=case.id) for case in CASES]
OPERATIONS = ("quant", "dequant")


def _reference(case: Case, operation: str) -> Callable[[], Any]:
    if operation == "quant":
        return lambda: case.quantizer.quant(case.values)
    return lambda: case.quantizer.dequant(case.codes())


def _input(case: Case, operation: str) -> numpy.ndarray:
    """What the backend is given: the values, or the reference codes (int64)."""
    return numpy.asarray(case.values) if operation == "quant" else case.codes()


# -- 1. numpy: the reference itself


def _expanded(parameter: Any, shape: tuple[int, ...]) -> numpy.ndarray:
    """A per-tensor, per-axis or per-block parameter repeated to one entry per value."""
    array = numpy.asarray(parameter)
    if array.ndim == 0:
        return numpy.broadcast_to(array, shape)
    for axis, size in enumerate(shape):
        array = numpy.repeat(array, size // array.shape[axis], axis=axis)
    return array


def _grid_of(quantizer: UniformQuantizer, parameter: Any) -> Any:
    scale = numpy.asarray(quantizer.scale)
    return numpy.broadcast_to(numpy.asarray(parameter), scale.shape) if scale.ndim else parameter


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_numpy_reference(case: Case) -> None:
    """int64 codes of the values' shape, inside the clipping range, and rounded from the exact
    quotient (computed in float64 here) as the rounding mode says wherever they are not clipped."""
    quantizer, values = case.quantizer, numpy.asarray(case.values)
    codes = case.quantizer.quant(case.values)
    assert isinstance(codes, (numpy.ndarray, numpy.int64)) and codes.dtype == numpy.int64
    assert numpy.shape(codes) == values.shape
    codes = numpy.asarray(codes)
    shape = values.shape
    scale = _expanded(numpy.asarray(quantizer.scale, dtype=numpy.float64), shape)
    zero_point = _expanded(numpy.asarray(quantizer.zero_point, dtype=numpy.float64), shape)
    exact = values.astype(numpy.float64) / scale + zero_point
    inside = numpy.ones(shape, dtype=bool)
    if not quantizer.no_clipping:
        offset = _expanded(_grid_of(quantizer, quantizer.offset), shape).astype(numpy.int64)
        low = -offset + (1 if quantizer.is_narrow else 0)
        high = 2**quantizer.n_bits - 1 - offset
        assert numpy.all(low <= codes) and numpy.all(codes <= high), (codes, low, high)
        inside = (low < codes) & (codes < high)
    # float16/float32 values are divided (and maybe added) in their own precision
    epsilon = numpy.finfo(values.dtype if values.dtype.kind == "f" else numpy.float64).eps
    tolerance = 4 * epsilon * (numpy.abs(exact - zero_point) + numpy.abs(zero_point) + 1)
    error = (codes - exact)[inside]
    tolerance = tolerance[inside]
    rounding = quantizer.rounding
    if rounding in ("half_even", "half_up"):
        assert numpy.all(numpy.abs(error) <= 0.5 + tolerance), (codes, exact)
    elif rounding == "floor":
        assert numpy.all((-1 - tolerance <= error) & (error <= tolerance)), (codes, exact)
    else:
        assert numpy.all((-tolerance <= error) & (error <= 1 + tolerance)), (codes, exact)
    if numpy.asarray(quantizer.scale).dtype == numpy.float64:  # integer scales: see below
        restored = quantizer.dequant(codes)
        assert numpy.asarray(restored).dtype == numpy.float64 and numpy.shape(restored) == shape


def test_the_cases_need_numpy_1_24_promotion() -> None:
    """The large zero points change the addition's dtype: float32 (float16) values plus 70000
    (300) are added in float64 (float32), which gives other codes than the values' own dtype."""
    by_id = {case.id: case for case in CASES}
    case = by_id["hand-zp70000-half_even-float32-(4,6)"]
    quotient = case.values / numpy.float32(0.001)
    assert_same(
        case.quantizer.quant(case.values),
        numpy.rint(quotient.astype(numpy.float64) + 70000).astype(numpy.int64),
    )
    assert not numpy.array_equal(
        case.quantizer.quant(case.values), numpy.rint(quotient + numpy.float32(70000))
    )
    case = by_id["hand-zp300-half_even-float16-(3,5)"]
    quotient = case.values / numpy.float16(0.125)
    assert_same(
        case.quantizer.quant(case.values),
        numpy.rint(quotient.astype(numpy.float32) + 300).astype(numpy.int64),
    )
    assert not numpy.array_equal(case.quantizer.quant(case.values), numpy.rint(quotient + numpy.float16(300)))


def test_an_integer_scale_rounds_the_true_quotient() -> None:
    quantizer = _int_scale(_hand(8, 0.5, 0, is_signed=True), 2)()
    assert type(quantizer.scale) is int and quantizer.scale == 2
    assert_same(quantizer.quant(numpy.array([7, 9, -3])), numpy.array([4, 4, -2]))  # 3.5, 4.5, -1.5
    with pytest.raises(TypeError, match="the scale must be a float or a float64 array to dequantize"):
        quantizer.dequant(numpy.array([4, 4, -2]))


# -- 2. numba's compiled loops against pure numpy (INTQUANT_PURE_NUMPY=1, in a subprocess)


def _numba_cases() -> list[Case]:
    rng = numpy.random.default_rng(50)
    floats = rng.normal(scale=3.0, size=64_000)
    finite = floats.copy()
    floats[:8] = [0.0, -0.0, numpy.inf, -numpy.inf, 0.5, -0.5, 1e30, -1e30]
    ties = numpy.resize(_TIES, 60_000)
    near_ties = numpy.resize(_NEAR_TIES_70000, 60_000)
    return [
        Case("u8-half_even-float32-(64000,)", _qa(8, floats[8:200]), floats.astype(numpy.float32)),
        Case(
            "s8-half_even-float64-(320,200)", _qa(8, floats[8:200], is_signed=True), floats.reshape(320, 200)
        ),
        Case("ties-half_even-float32-(60000,)", _hand(8, 0.25, 3), ties.astype(numpy.float32)),
        Case("zp70000-half_even-float32-(60000,)", _hand(20, 0.001, 70000), near_ties.astype(numpy.float32)),
        Case(
            "axis-1-half_even-float32-(60000,2)",
            _hand(
                8, _grid([0.25, 0.0123], (1, 2), numpy.float64), _grid([3, 70], (1, 2), numpy.int64), axis=-1
            ),
            numpy.stack([ties, floats[:60_000]], axis=1).astype(numpy.float32),
        ),
        Case(
            "block(32000,2)-half_even-float64-(64000,4)",
            _qa(8, numpy.tile(finite, 4).reshape(64_000, 4), block_size=(32_000, 2), is_signed=True),
            numpy.tile(floats[::-1], 4).reshape(64_000, 4),
        ),
        Case(
            "half_up-float32-(64000,)",
            _qa(8, floats[8:200], rounding="half_up"),
            floats.astype(numpy.float32),
        ),
        Case(
            "noclip-half_even-float64-(64000,)",
            _hand(8, 0.01, 5, no_clipping=True),
            numpy.round(finite * 1e3, 1),
        ),
    ]


NUMBA_CASES = _numba_cases()

_PURE_NUMPY_SCRIPT = """
import json, sys, numpy, intquant
inputs = numpy.load(sys.argv[1])
quantizers = json.loads(open(sys.argv[2]).read())
results = {}
for index, text in enumerate(quantizers):
    if text is None:
        continue
    quantizer = intquant.loads(text)
    for operation in ("quant", "dequant"):
        source = inputs[f"{operation}{index}"]
        try:
            results[f"{operation}{index}"] = numpy.asarray(getattr(quantizer, operation)(source))
        except Exception as error:
            results[f"{operation}{index}_error"] = numpy.array(f"{type(error).__name__}: {error}")
assert "numba" not in sys.modules, "INTQUANT_PURE_NUMPY=1 did not keep the compiled loops out"
numpy.savez(sys.argv[3], **results)
"""


@pytest.fixture(scope="module")
def pure_numpy_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, numpy.ndarray]:
    """Codes and values of every numba case computed with ``INTQUANT_PURE_NUMPY=1``: one subprocess."""
    pytest.importorskip(
        "numba",
        reason="NUMBA IS NOT INSTALLED: the compiled loops (intquant[fast]) are NOT compared with pure numpy",
    )
    if os.environ.get("INTQUANT_PURE_NUMPY", "") not in ("", "0"):
        pytest.skip("INTQUANT_PURE_NUMPY IS SET in this process: the compiled loops are NOT tested")
    folder = tmp_path_factory.mktemp("pure_numpy")
    inputs, quantizers = {}, []
    for index, case in enumerate(NUMBA_CASES):
        try:
            inputs[f"quant{index}"], inputs[f"dequant{index}"] = numpy.asarray(case.values), case.codes()
            quantizers.append(intquant.dumps(case.quantizer))
        except Exception:  # the case's own test reports it
            quantizers.append(None)
    numpy.savez(folder / "inputs.npz", **inputs)
    (folder / "quantizers.json").write_text(json.dumps(quantizers))
    environment = {**os.environ, "INTQUANT_PURE_NUMPY": "1"}
    subprocess.run(
        [
            sys.executable,
            "-c",
            _PURE_NUMPY_SCRIPT,
            folder / "inputs.npz",
            folder / "quantizers.json",
            folder / "out.npz",
        ],
        check=True,
        env=environment,
    )
    with numpy.load(folder / "out.npz") as archive:
        return {name: archive[name] for name in archive.files}


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("index", range(len(NUMBA_CASES)), ids=[case.id for case in NUMBA_CASES])
def test_numba_matches_pure_numpy(
    index: int, operation: str, pure_numpy_results: dict[str, numpy.ndarray]
) -> None:
    case = NUMBA_CASES[index]
    expected = _reference(case, operation)()
    assert "numba" in sys.modules  # arrays this large load the compiled loops
    name = f"{operation}{index}"
    assert f"{name}_error" not in pure_numpy_results, str(pure_numpy_results[f"{name}_error"])
    assert_same(expected, pure_numpy_results[name])


# -- 3. torch, 4. the exact ONNX export run by onnxruntime, 5. dask: in this process


def _tensor(array: numpy.ndarray) -> Any:
    import torch

    if array.ndim == 0:
        return torch.tensor(array.item(), dtype=torch.from_numpy(numpy.empty(0, array.dtype)).dtype)
    return torch.from_numpy(array.copy())


def torch_backend(quantizer: UniformQuantizer, array: numpy.ndarray, operation: str) -> numpy.ndarray:
    from intquant.torch import TorchUniformQuantizer

    return getattr(TorchUniformQuantizer(quantizer), operation)(_tensor(array)).numpy()


def _run_onnx(model: Any, array: numpy.ndarray) -> numpy.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (source,), (target,) = session.get_inputs(), session.get_outputs()
    (result,) = session.run([target.name], {source.name: array})
    return numpy.asarray(result)


def onnx_backend(quantizer: UniformQuantizer, array: numpy.ndarray, operation: str) -> numpy.ndarray:
    from intquant.onnx import dequantize_model, quantize_model

    if operation == "quant":
        model = quantize_model(quantizer, exact=True, input_dtype=array.dtype, shape=array.shape)
    else:
        model = dequantize_model(quantizer, exact=True, shape=array.shape)
    return _run_onnx(model, array)


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    """3 where a dimension is not a multiple of 3, else 2: never the blocks' (2, 3) or (1, 5)."""
    return tuple(3 if size % 3 else 2 for size in shape)


def dask_backend(quantizer: UniformQuantizer, array: numpy.ndarray, operation: str) -> numpy.ndarray:
    import dask.array

    import intquant.dask

    lazy = getattr(intquant.dask, operation)(
        quantizer, dask.array.from_array(array, chunks=_chunks(array.shape))
    )
    return numpy.asarray(lazy.compute(scheduler="synchronous"))


#: Each in-process backend and the modules it needs.
BACKENDS = {
    "torch": (torch_backend, ("torch",)),
    "onnx": (onnx_backend, ("onnx", "onnxruntime")),
    "dask": (dask_backend, ("dask.array",)),
}


def _check_backend(backend: str, case: Case, operation: str) -> None:
    run, modules = BACKENDS[backend]
    for module in modules:
        pytest.importorskip(module)
    check(lambda: run(case.quantizer, _input(case, operation), operation), _reference(case, operation))


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_torch(case: Case, operation: str) -> None:
    _check_backend("torch", case, operation)


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_onnx_exact(case: Case, operation: str) -> None:
    """An export that refuses a case the reference computes fails the case."""
    _check_backend("onnx", case, operation)


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("case", CASE_PARAMS)
def test_dask(case: Case, operation: str) -> None:
    _check_backend("dask", case, operation)


# -- 6. the command line


CLI_CASES = [
    "qa-u8-half_even-float64-(3,5)",
    "qa-u8-ceil-float64-scalar",
    "hand-zp70000-half_even-float32-(4,6)",
    "qa-s5-half_up-uint8-(4,6)",
    "qa-axis0-u8-half_even-float32-(3,5)",
    "hand-block(2,3)-mixed-zp-half_even-float16-(4,6)",
    "int-scale2-half_even-int64-[7,9,-3]",
    "hand-noclip-ceil-int32-(7,)",
]


class CommandLineError(Exception):
    """The command line exited with an error (its message on stderr)."""


def _command_line(
    command: str, array: numpy.ndarray, quantizer: UniformQuantizer, folder: Path
) -> numpy.ndarray:
    numpy.save(folder / "in.npy", array)
    (folder / "q.json").write_text(intquant.dumps(quantizer))
    output = folder / "out.npy"
    output.unlink(missing_ok=True)
    # The seed's dtypes: int64 codes, float64 values (the command line's defaults are smaller).
    dtype = ["--dtype", "int64" if command == "quantize" else "float64"]
    arguments = [folder / "in.npy", folder / "q.json", "-o", output, "--quiet", "--chunk-size", "5", *dtype]
    result = subprocess.run(
        [sys.executable, "-m", "intquant", command, *map(str, arguments)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise CommandLineError(result.stderr.strip())
    return numpy.load(output)


@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize("case", [param for param in CASE_PARAMS if param.id in CLI_CASES])
def test_command_line(case: Case, operation: str, tmp_path: Path) -> None:
    command = "quantize" if operation == "quant" else "dequantize"
    array = _input(case, operation)
    try:
        expected: Any = _reference(case, operation)()
    except Exception as error:  # the command line reports it on one line of stderr, exit status 2
        with pytest.raises(CommandLineError, match="^intquant: error: " + _headline(error)):
            _command_line(command, array, case.quantizer, tmp_path)
        return
    assert_same(_command_line(command, array, case.quantizer, tmp_path), expected)


def test_the_command_line_cases_exist() -> None:
    assert set(CLI_CASES) <= {case.id for case in CASES}


# -- every backend on hand-built quantizers drawn by hypothesis


@settings(max_examples=25, deadline=None)
@given(quantizer_cases())
def test_hypothesis_backends(drawn: tuple[UniformQuantizer, numpy.ndarray]) -> None:
    """The in-process backends that are installed (torch, exact ONNX, dask) on drawn cases."""
    quantizer, values = drawn
    case = Case("drawn", lambda: quantizer, values)
    installed = {
        name: run
        for name, (run, modules) in BACKENDS.items()
        if all(importlib.util.find_spec(module.split(".")[0]) for module in modules)
    }
    if not installed:
        pytest.skip("none of torch, onnx with onnxruntime, dask is installed")
    problems = []
    for operation in OPERATIONS:
        array = _input(case, operation)  # the strategies keep the values quantizable
        for name, run in installed.items():
            problem = conformance_problem(
                lambda: run(quantizer, array, operation),  # noqa: B023
                _reference(case, operation),
            )
            if problem is not None:
                problems.append(f"{name} {operation}: {problem}")
    if problems:
        pytest.fail(f"{quantizer!r}\nvalues {values.dtype} {values.tolist()}\n" + "\n".join(problems))


def test_one_element_parameters_promote_as_arrays_in_every_backend() -> None:
    # A zero point of shape (1,) broadcasts like a scalar but promotes like an array: float16
    # values plus an int64 array are added in float64 (a scalar 0 would keep float16).
    quantizer = UniformQuantizer(
        QuantizationOptions(2), None, UniformQuantizationParameters(0.25, numpy.array([0]), 0)
    )
    values = numpy.array([0.3, 0.6, 1.0, 0.126], dtype=numpy.float16)
    case = Case("one-element", lambda: quantizer, values)
    installed = {
        name: run
        for name, (run, modules) in BACKENDS.items()
        if all(importlib.util.find_spec(module.split(".")[0]) for module in modules)
    }
    for operation in OPERATIONS:
        array = _input(case, operation)
        for name, run in installed.items():
            problem = conformance_problem(
                lambda run=run, array=array, operation=operation: run(quantizer, array, operation),
                _reference(case, operation),
            )
            assert problem is None, f"{name} {operation}: {problem}"


def test_the_exact_onnx_export_refuses_0d_input_against_array_parameters() -> None:
    pytest.importorskip("onnx")
    from intquant.onnx import quantize_model

    quantizer = UniformQuantizer(
        QuantizationOptions(2), None, UniformQuantizationParameters(0.25, numpy.array([0]), 0)
    )
    with pytest.raises(intquant.errors.InvalidValueError, match="quantizer on input of rank 0"):
        quantize_model(quantizer, exact=True, input_dtype=numpy.float16, shape=())

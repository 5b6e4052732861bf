"""Codes in any dtype and into a caller's buffer: ``quant(values, dtype=..., out=...)`` and
``dequant(codes, dtype=..., out=...)``.

Every result is the default result cast (``quant(x).astype(dtype)``, ``dequant(q).astype(dtype)``),
bit for bit, on each path: plain numpy (``_compiled.disabled``, as ``INTQUANT_PURE_NUMPY=1`` sets
it), the compiled loop (forced on small arrays with ``MIN_SIZE = 1``) and the compiled loop cut
into slices run on threads (``PARALLEL_MIN_SIZE = 1``). A dtype that cannot hold the clipping
range, and a buffer that cannot take the codes, are refused before anything is computed or
written.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from intquant import QuantizationOptions, QuantizedArray, UniformQuantizationParameters, UniformQuantizer
from intquant._numba import dispatch as _compiled
from intquant.errors import IntquantError, InvalidTypeError, InvalidValueError
from tests.strategies import quantizer_cases

pytest.importorskip("numba")

CODE_DTYPES = tuple(
    numpy.dtype(name)
    for name in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "float32", "float64")
)
SMALLEST_CANDIDATES = CODE_DTYPES[:7]
PATHS = ("plain", "compiled", "threads")
# Odd scales: inexact quotients, a float32 scale, tiny and huge ones.
SCALES = (0.5, 1 / 3, 0.0123, 7.0, 1000.5, 2.0**-20, 1e-3, numpy.float32(0.1), numpy.float64(3e5))
# Zero points past the edges of numpy 1.24's value-based casting (float16/float32 values are then
# added in a wider float), negative ones, and a float holding an integer.
ZERO_POINTS = (0, 3, -5, 127, 128, -129, 255, 65536, 70000, -40000, 2**40, numpy.float64(-7.0))


@contextmanager
def on_path(path: str) -> Iterator[None]:
    """Run quant/dequant on the plain path, the compiled loop, or the compiled loop in slices."""
    saved = (_compiled.disabled, _compiled.MIN_SIZE, _compiled.PARALLEL_MIN_SIZE)
    _compiled.disabled = path == "plain"
    _compiled.MIN_SIZE = 1
    _compiled.PARALLEL_MIN_SIZE = 1 if path == "threads" else saved[2]
    try:
        yield
    finally:
        _compiled.disabled, _compiled.MIN_SIZE, _compiled.PARALLEL_MIN_SIZE = saved


def outcome(function: Callable[[], Any]) -> Any:
    """What ``function()`` gives, bit for bit (dtype, shape, type, bytes), or its error's class."""
    try:
        result = function()
    except IntquantError as error:
        return ("error", type(error).__name__)
    return bits(result)


def bits(result: Any) -> Any:
    array = numpy.asarray(result)
    return (array.dtype.str, array.shape, type(result).__name__, array.tobytes())


def holds(dtype: numpy.dtype[Any], low: int, high: int) -> bool:
    """Whether every integer in [low, high] is exact in ``dtype``."""
    if dtype.kind == "f":
        limit = 2 ** (numpy.finfo(dtype).nmant + 1)
        return -limit <= low and high <= limit
    return bool(numpy.iinfo(dtype).min <= low and high <= numpy.iinfo(dtype).max)


def int64_codes(quantizer: UniformQuantizer, values: numpy.ndarray) -> Any:
    """The default codes (plain path), or the outcome of their refusal."""
    with on_path("plain"):
        try:
            return quantizer.quant(values)
        except IntquantError as error:
            return ("error", type(error).__name__)


def expected(codes: Any, request: Any, clip_range: tuple[int, int] | None) -> Any:
    """``codes`` (int64, or an error outcome) cast to ``request``, or the refusal."""
    if isinstance(codes, tuple):  # the int64 codes were refused already
        return codes
    if clip_range is not None:
        low, high = clip_range
    else:
        low, high = (int(numpy.min(codes)), int(numpy.max(codes))) if numpy.size(codes) else (0, 0)
    if isinstance(request, str) and request == "smallest":
        target = next(dtype for dtype in SMALLEST_CANDIDATES if holds(dtype, low, high))
    else:
        target = numpy.dtype(request)
        if not holds(target, low, high):
            return ("error", "InvalidValueError")
    return bits(numpy.asarray(codes).astype(target)[()] if numpy.ndim(codes) == 0 else codes.astype(target))


def spellings(index: int) -> list[Any]:
    """Each codes dtype as a dtype, a type or a name (which one turns with ``index``), and "smallest"."""
    forms = [lambda dtype: dtype, lambda dtype: dtype.type, lambda dtype: dtype.name]
    return [forms[(index + offset) % 3](dtype) for offset, dtype in enumerate(CODE_DTYPES)] + ["smallest"]


def clip_range_of(quantizer: UniformQuantizer) -> tuple[int, int] | None:
    if quantizer.no_clipping or (quantizer.is_qat and not quantizer.is_precomputed_qat):
        return None
    offset = int(quantizer.offset)
    return -offset + int(quantizer.is_narrow), 2**quantizer.n_bits - 1 - offset


def cast(value: float, dtype: numpy.dtype[Any]) -> Any:
    with numpy.errstate(over="ignore"):  # beyond float16: an infinity
        return dtype.type(value)


@st.composite
def tensor_cases(draw: st.DrawFn) -> tuple[UniformQuantizer, numpy.ndarray]:
    """A per-tensor quantizer (n_bits 1-16, signed or not, symmetric, narrow, clipping or not)
    and float16/float32/float64 values, with exact ties, signed zeros and infinities."""
    n_bits = draw(st.integers(1, 16))
    is_signed = draw(st.booleans())
    symmetric = draw(st.booleans())
    offset = 2 ** (n_bits - 1) if is_signed else 0
    scale = draw(st.sampled_from(SCALES))
    zero_point = 0 if symmetric else draw(st.sampled_from(ZERO_POINTS))
    clipping = draw(st.integers(0, 4)) > 0
    quantizer = UniformQuantizer(
        QuantizationOptions(n_bits, is_signed=is_signed),
        None,
        UniformQuantizationParameters(1.0, zero_point, offset),
        no_clipping=not clipping,
    )
    quantizer.scale = scale  # kept as given (a float32 scale divides float32 values in float32)
    quantizer.is_narrow = draw(st.booleans())
    dtype = numpy.dtype(draw(st.sampled_from(("float16", "float32", "float64"))))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
    width = dtype.itemsize * 8
    anywhere = st.floats(allow_nan=False, width=width)  # infinities too: clipped
    elements = st.one_of(
        anywhere if clipping else st.floats(-1e4, 1e4, width=width),
        # multiples of scale / 2: ties (exact for power-of-two scales), -0.0 codes from small negatives
        st.integers(-600, 600).map(lambda halves: numpy.float64(halves) * float(scale) / 2),
        st.sampled_from((0.0, -0.0, -0.4 * float(scale), 0.4 * float(scale))),
    )
    values = draw(hnp.arrays(dtype, shape, elements=elements.map(lambda value: cast(value, dtype))))
    return quantizer, values


@given(case=tensor_cases(), index=st.integers(0, 2))
@settings(max_examples=150)
def test_codes_in_every_dtype_are_the_int64_codes_cast(
    case: tuple[UniformQuantizer, numpy.ndarray], index: int
) -> None:
    quantizer, values = case
    clip_range = clip_range_of(quantizer)
    reference = int64_codes(quantizer, values)
    for path in PATHS:
        with on_path(path):
            for request in spellings(index):
                got = outcome(lambda: quantizer.quant(values, dtype=request))  # noqa: B023
                assert got == expected(reference, request, clip_range), (path, request)


@given(case=tensor_cases())
@settings(max_examples=80)
def test_out_receives_the_codes_of_its_dtype(case: tuple[UniformQuantizer, numpy.ndarray]) -> None:
    quantizer, values = case
    clip_range = clip_range_of(quantizer)
    reference = int64_codes(quantizer, values)
    for path in PATHS:
        with on_path(path):
            for dtype in CODE_DTYPES:
                buffer = numpy.full(numpy.shape(values), 3, dtype=dtype)
                want = expected(reference, dtype, clip_range)
                try:
                    result = quantizer.quant(values, out=buffer)
                except IntquantError as error:
                    assert want == ("error", type(error).__name__)
                    assert (buffer == 3).all()  # refused before writing
                    continue
                assert result is buffer
                assert bits(numpy.asarray(buffer)[()])[::3] == want[::3]  # dtype and bytes
                assert buffer.shape == numpy.shape(values)


@given(case=quantizer_cases())
@settings(max_examples=120)
def test_per_axis_and_per_block_codes_in_every_dtype(case: tuple[UniformQuantizer, numpy.ndarray]) -> None:
    # Any granularity, rounding mode and input dtype: the plain paths of every kind of plan.
    quantizer, values = case
    clip_range = clip_range_of(quantizer)
    for path in ("plain", "compiled"):
        with on_path(path):
            reference = quantizer.quant(values)
            for dtype in CODE_DTYPES:
                want = expected(reference, dtype, clip_range)
                assert outcome(lambda: quantizer.quant(values, dtype=dtype)) == want  # noqa: B023
                buffer = numpy.zeros(numpy.shape(values), dtype=dtype)
                if want[0] == "error":
                    with pytest.raises(InvalidValueError):
                        quantizer.quant(values, out=buffer)
                    assert not buffer.any()
                else:
                    assert quantizer.quant(values, dtype=dtype, out=buffer) is buffer
                    assert bits(numpy.asarray(buffer)[()])[::3] == want[::3]


def test_per_axis_and_per_block_quantizers_with_dtype_and_out() -> None:
    values = numpy.random.default_rng(5).normal(size=(6, 8)).astype(numpy.float32)
    for granularity in ({"axis": 1}, {"block_size": (3, 4)}):
        quantizer = QuantizedArray(8, values, is_signed=True, **granularity).quantizer
        codes = quantizer.quant(values)
        assert bits(quantizer.quant(values, dtype=numpy.int8)) == bits(codes.astype(numpy.int8))
        buffer = numpy.empty(values.shape, dtype=numpy.int16)
        assert quantizer.quant(values, out=buffer) is buffer
        assert bits(buffer) == bits(codes.astype(numpy.int16))
        with pytest.raises(InvalidValueError, match="not all exactly representable as uint8"):
            quantizer.quant(values, dtype="uint8")


def test_array_parameters_that_numpy_broadcasts_fill_out_of_the_broadcast_shape() -> None:
    quantizer = UniformQuantizer(
        QuantizationOptions(8, is_signed=True), None, UniformQuantizationParameters(0.1, 0, 128)
    )
    quantizer.scale = numpy.array([0.1, 0.2, 0.3])  # no axis: the generic plan, numpy broadcasting
    values = numpy.linspace(-2, 2, 4).reshape(4, 1)  # codes of shape (4, 3)
    buffer = numpy.empty((4, 3), dtype=numpy.int8)
    assert quantizer.quant(values, out=buffer) is buffer
    assert bits(buffer) == bits(quantizer.quant(values).astype(numpy.int8))
    with pytest.raises(InvalidValueError, match=r"out has shape \(4, 1\); the codes have shape \(4, 3\)"):
        quantizer.quant(values, out=numpy.empty((4, 1), dtype=numpy.int8))


def _signed_8_bits() -> UniformQuantizer:
    return UniformQuantizer(
        QuantizationOptions(8, is_signed=True), None, UniformQuantizationParameters(0.05, 3, 128)
    )


@pytest.mark.parametrize("path", PATHS)
def test_a_range_the_dtype_cannot_hold_is_refused_before_computing(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = numpy.linspace(-5, 5, 1000, dtype=numpy.float32)
    values[7] = numpy.nan  # computing would raise for the NaN
    unsigned_16 = UniformQuantizer(QuantizationOptions(16), None, UniformQuantizationParameters(0.05, 3, 0))
    unsigned_25 = UniformQuantizer(QuantizationOptions(25), None, UniformQuantizationParameters(0.05, 3, 0))
    refusals = [
        (_signed_8_bits(), ("uint8", "uint16", "uint32")),
        (unsigned_16, ("int8", "uint8", "int16")),
        (unsigned_25, ("float32", "int8", "int16", "uint16")),
    ]
    monkeypatch.setattr(_compiled, "quantize_floats", _never_called)
    with on_path(path):
        for quantizer, names in refusals:
            for name in names:
                with pytest.raises(InvalidValueError, match=f"not all exactly representable as {name}"):
                    quantizer.quant(values, dtype=name)
                buffer = numpy.full(values.shape, 1, dtype=name)
                with pytest.raises(InvalidValueError, match=f"not all exactly representable as {name}"):
                    quantizer.quant(values, out=buffer)
                assert (buffer == 1).all()


def _never_called(*arguments: Any) -> Any:
    raise AssertionError("the codes were computed before the dtype was checked")


def test_without_clipping_the_codes_themselves_must_fit() -> None:
    quantizer = UniformQuantizer(
        QuantizationOptions(8), None, UniformQuantizationParameters(1.0, 0, 0), no_clipping=True
    )
    values = numpy.linspace(-300, 300, 100_000)  # codes in [-300, 300]
    for path in PATHS:
        with on_path(path):
            assert quantizer.quant(values, dtype="smallest").dtype == numpy.int16
            assert bits(quantizer.quant(values, dtype="int16")) == bits(
                quantizer.quant(values).astype("int16")
            )
            buffer = numpy.full(values.shape, 9, dtype=numpy.int8)
            with pytest.raises(InvalidValueError, match=r"codes in \[-300, 300\] .* int8"):
                quantizer.quant(values, out=buffer)
            assert (buffer == 9).all()  # checked before out is written
            with pytest.raises(InvalidValueError, match=r"codes in \[-300, 300\] .* uint16"):
                quantizer.quant(values, dtype=numpy.uint16)
            with pytest.raises(InvalidValueError, match="beyond int64"):
                quantizer.quant(numpy.array([1e300, 1.0] * 40_000), dtype=numpy.int8)


@pytest.mark.parametrize(
    "dtype", [numpy.complex64, bool, numpy.float16, numpy.uint64, "int4x", "U3", object, None.__class__]
)
def test_other_dtypes_are_refused(dtype: Any) -> None:
    with pytest.raises(
        InvalidTypeError, match=r"quant can return codes as int8, uint8, int16, .* or 'smallest'"
    ):
        _signed_8_bits().quant(numpy.zeros(3), dtype=dtype)


def test_refused_buffers_are_left_untouched() -> None:
    quantizer = _signed_8_bits()
    values = numpy.linspace(-3, 3, 60, dtype=numpy.float32)
    storage = numpy.full(200, 5, dtype=numpy.int8)
    read_only = numpy.full(60, 5, dtype=numpy.int8)
    read_only.flags.writeable = False
    refusals: list[tuple[Any, dict[str, Any], type[Exception], str]] = [
        (numpy.full(59, 5, dtype=numpy.int8), {}, InvalidValueError, r"out has shape \(59,\)"),
        (numpy.full((6, 10), 5, dtype=numpy.int8), {}, InvalidValueError, "out has shape"),
        (numpy.full(60, 5, dtype=numpy.float16), {}, InvalidTypeError, "out has dtype float16"),
        (numpy.full(60, 5, dtype=numpy.uint64), {}, InvalidTypeError, "out has dtype uint64"),
        (numpy.full(60, 5, dtype=numpy.bool_), {}, InvalidTypeError, "out has dtype bool"),
        (storage[::2][:60], {}, InvalidValueError, "C-contiguous"),
        (numpy.full((60, 2), 5, dtype=numpy.int8)[:, 0], {}, InvalidValueError, "C-contiguous"),
        (read_only, {}, InvalidValueError, "read-only"),
        (numpy.full(60, 5, dtype=numpy.int8), {"dtype": numpy.int16}, InvalidValueError, "differ"),
        (numpy.full(60, 5, dtype=numpy.int8), {"dtype": "smallest"}, InvalidValueError, "'smallest'"),
        (numpy.full(60, 5, dtype=numpy.int8), {"dtype": "float16"}, InvalidTypeError, "can return codes"),
    ]
    for path in PATHS:
        with on_path(path):
            for buffer, keywords, error, message in refusals:
                before = buffer.copy()
                with pytest.raises(error, match=message):
                    quantizer.quant(values, out=buffer, **keywords)
                assert bits(buffer) == bits(before)
            with pytest.raises(InvalidTypeError, match="out must be a numpy array"):
                quantizer.quant(values, out=[0] * 60)  # type: ignore[arg-type]
            assert (storage == 5).all()


def test_a_buffer_overlapping_the_values_is_refused() -> None:
    quantizer = _signed_8_bits()
    for path in PATHS:
        with on_path(path):
            values = numpy.linspace(-3, 3, 64, dtype=numpy.float32)
            snapshot = values.copy()
            for buffer in (
                values.view(numpy.int32),
                values.view(numpy.int8)[:64],
                values[32:].view(numpy.int8)[:64],
            ):
                with pytest.raises(InvalidValueError, match="out overlaps the values"):
                    quantizer.quant(values, out=buffer)
            assert bits(values) == bits(snapshot)
            twin = numpy.empty(64, dtype=numpy.int32)  # a separate buffer of the same bytes' size
            assert quantizer.quant(values, out=twin) is twin


def test_nan_values_found_while_writing() -> None:
    quantizer = _signed_8_bits()
    values = numpy.linspace(-3, 3, 2000, dtype=numpy.float32)
    values[1500] = numpy.nan
    for path in PATHS:
        with on_path(path):
            buffer = numpy.full(values.shape, 5, dtype=numpy.int8)
            with pytest.raises(InvalidValueError, match="cannot quantize NaN") as raised:
                quantizer.quant(values, out=buffer)
            if path == "plain":  # found before writing
                assert "partly written" not in str(raised.value) and (buffer == 5).all()
            else:  # found by the one pass that writes
                assert "out has been partly written" in str(raised.value)


def test_zero_d_values() -> None:
    quantizer = _signed_8_bits()
    for path in PATHS:
        with on_path(path):
            # -0.16 / 0.05 + 3 rounds to -0.0: float codes hold 0.0, as the int64 code cast does
            for value in (numpy.float32(0.37), numpy.array(0.37), 0.37, numpy.float16(-0.01), -0.16):
                codes = quantizer.quant(value)
                for dtype in (dtype for dtype in CODE_DTYPES if dtype.kind != "u"):  # signed codes
                    got = quantizer.quant(value, dtype=dtype)
                    assert type(got) is dtype.type and bits(got) == bits(
                        numpy.asarray(codes).astype(dtype)[()]
                    )
                    buffer = numpy.zeros((), dtype=dtype)
                    assert quantizer.quant(value, out=buffer) is buffer
                    assert bits(buffer[()]) == bits(got)
                with pytest.raises(
                    InvalidValueError, match=r"out has shape \(1,\); the codes have shape \(\)"
                ):
                    quantizer.quant(value, out=numpy.zeros(1, dtype=numpy.int8))


def test_stochastic_rounding_in_another_dtype() -> None:
    values = numpy.random.default_rng(6).normal(size=500)
    quantizer = QuantizedArray(8, values, is_signed=True, rounding="stochastic", seed=11).quantizer
    twin = QuantizedArray(8, values, is_signed=True, rounding="stochastic", seed=11).quantizer
    with pytest.raises(InvalidValueError):
        quantizer.quant(values, dtype=numpy.uint8)  # refused: draws nothing
    buffer = numpy.empty(values.shape, dtype=numpy.int8)
    assert quantizer.quant(values, out=buffer) is buffer
    assert bits(buffer) == bits(twin.quant(values).astype(numpy.int8))
    assert bits(quantizer.quant(values, dtype="float32")) == bits(twin.quant(values).astype(numpy.float32))


# -- dequant


@pytest.mark.parametrize(
    "codes_dtype",
    ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "float16", "float32", "float64"],
)
def test_dequant_in_float32_is_the_float64_values_cast(codes_dtype: str) -> None:
    rng = numpy.random.default_rng(7)
    dtype = numpy.dtype(codes_dtype)
    if dtype.kind == "f":
        codes = (rng.normal(size=3000) * 100).round().astype(dtype)
    else:
        info = numpy.iinfo(dtype)
        codes = rng.integers(max(int(info.min), -(2**40)), min(int(info.max), 2**40), size=3000, dtype=dtype)
    layouts = [codes, codes.reshape(50, 60), codes.reshape(50, 60).T, codes[::3], codes[:0], codes[5]]
    for scale, zero_point in ((0.013, numpy.int64(-3)), (1 / 3, 0), (numpy.float64(7e3), numpy.int64(2**35))):
        quantizer = UniformQuantizer(
            QuantizationOptions(8), None, UniformQuantizationParameters(scale, zero_point, 0)
        )
        for path in PATHS:
            with on_path(path):
                for layout in layouts:
                    values = quantizer.dequant(layout)
                    for request in (numpy.float32, "float32", numpy.dtype(numpy.float64)):
                        target = numpy.dtype(request)
                        want = bits(
                            numpy.asarray(values).astype(target)[()]
                            if numpy.ndim(values) == 0
                            else values.astype(target)
                        )
                        assert bits(quantizer.dequant(layout, dtype=request)) == want
                    assert bits(quantizer.dequant(layout, dtype=None)) == bits(values)


def test_dequant_per_axis_and_per_block_in_float32() -> None:
    values = numpy.random.default_rng(8).normal(size=(6, 8))
    for granularity in ({"axis": 0}, {"block_size": (2, 4)}):
        quantized = QuantizedArray(8, values, **granularity)
        codes = quantized.qvalues.astype(numpy.uint8)
        want = quantized.quantizer.dequant(codes).astype(numpy.float32)
        assert bits(quantized.quantizer.dequant(codes, dtype=numpy.float32)) == bits(want)


@pytest.mark.parametrize("dtype", [numpy.int32, numpy.float16, "smallest", "x", numpy.complex128])
def test_dequant_refuses_other_dtypes(dtype: Any) -> None:
    with pytest.raises(InvalidTypeError, match="dequant can return values as float32 or float64"):
        _signed_8_bits().dequant(numpy.arange(4), dtype=dtype)


def test_dequant_refuses_values_beyond_float32() -> None:
    quantizer = UniformQuantizer(QuantizationOptions(8), None, UniformQuantizationParameters(1e300, 0, 0))
    codes = numpy.arange(-4, 4, dtype=numpy.int8).repeat(10_000)
    for path in PATHS:
        with on_path(path):
            assert numpy.isfinite(quantizer.dequant(codes)).all()
            with pytest.raises(InvalidValueError, match="beyond the largest float32"):
                quantizer.dequant(codes, dtype=numpy.float32)
            small = numpy.zeros(10, dtype=numpy.int8)  # only zeros: representable
            assert bits(quantizer.dequant(small, dtype=numpy.float32)) == bits(numpy.zeros(10, numpy.float32))


# -- dequant into a caller's buffer

VALUES_DTYPES = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))


def dequant_into(quantizer: UniformQuantizer, codes: Any, target: numpy.dtype[Any], **keywords: Any) -> Any:
    """``dequant(codes, out=buffer)`` into a new buffer of ``target`` filled with 7: the buffer's
    bits, or the refusal's outcome (the buffer then checked untouched)."""
    buffer = numpy.full(numpy.shape(quantizer.dequant(codes)), 7, dtype=target)
    try:
        result = quantizer.dequant(codes, out=buffer, **keywords)
    except IntquantError as error:
        assert (buffer == 7).all()  # refused before writing
        return ("error", type(error).__name__)
    assert result is buffer
    return bits(buffer)


def array_outcome(function: Callable[[], Any]) -> Any:
    """``outcome(function)``, the result taken as the array an ``out`` buffer of it would be
    (0-d: an ndarray, not a scalar)."""
    return outcome(lambda: numpy.asarray(function()))


@pytest.mark.parametrize(
    "codes_dtype",
    ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "float16", "float32", "float64"],
)
def test_dequant_into_out_is_dequant_in_its_dtype(codes_dtype: str) -> None:
    rng = numpy.random.default_rng(10)
    dtype = numpy.dtype(codes_dtype)
    if dtype.kind == "f":
        codes = (rng.normal(size=3000) * 100).round().astype(dtype)
    else:
        info = numpy.iinfo(dtype)
        codes = rng.integers(max(int(info.min), -(2**40)), min(int(info.max), 2**40), size=3000, dtype=dtype)
    grid = codes.reshape(50, 60)
    layouts = [codes, grid, grid.T, codes[::3], codes[:0], codes[5], codes[5:6]]
    for scale, zero_point in ((0.013, numpy.int64(-3)), (1 / 3, 0), (numpy.float64(7e3), numpy.int64(2**35))):
        quantizer = UniformQuantizer(
            QuantizationOptions(8), None, UniformQuantizationParameters(scale, zero_point, 0)
        )
        for path in PATHS:
            with on_path(path):
                for layout in layouts:
                    for target in VALUES_DTYPES:
                        want = array_outcome(lambda: quantizer.dequant(layout, dtype=target))  # noqa: B023
                        assert dequant_into(quantizer, layout, target) == want, (path, target)
                        assert dequant_into(quantizer, layout, target, dtype=target.type) == want
                        assert dequant_into(quantizer, layout, target, dtype=target.name) == want


@given(case=quantizer_cases(), which=st.integers(0, 2))
@settings(max_examples=120)
def test_dequant_into_out_per_axis_and_per_block(
    case: tuple[UniformQuantizer, numpy.ndarray], which: int
) -> None:
    # Any granularity: codes of int64, of the smallest dtype, and the float values themselves.
    quantizer, values = case
    for path in ("plain", "compiled", "threads"):
        with on_path(path):
            try:
                codes = [quantizer.quant(values), quantizer.quant(values, dtype="smallest"), values][which]
            except IntquantError:
                codes = values
            for target in VALUES_DTYPES:
                want = array_outcome(lambda: quantizer.dequant(codes, dtype=target))  # noqa: B023
                if want[0] == "error":
                    with pytest.raises(IntquantError):
                        quantizer.dequant(codes, out=numpy.empty(numpy.shape(codes), dtype=target))
                    continue
                assert dequant_into(quantizer, codes, target) == want


def test_dequant_into_out_with_parameters_that_numpy_broadcasts() -> None:
    quantizer = _signed_8_bits()
    quantizer.scale = numpy.array([0.1, 0.2, 0.3])  # no axis: the generic plan, numpy broadcasting
    codes = numpy.arange(-2, 2, dtype=numpy.int8).reshape(4, 1)  # values of shape (4, 3)
    buffer = numpy.empty((4, 3), dtype=numpy.float32)
    assert quantizer.dequant(codes, out=buffer) is buffer
    assert bits(buffer) == bits(quantizer.dequant(codes).astype(numpy.float32))
    with pytest.raises(InvalidValueError, match=r"out has shape \(4, 1\); the values have shape \(4, 3\)"):
        quantizer.dequant(codes, out=numpy.empty((4, 1), dtype=numpy.float32))


def test_dequant_refuses_buffers_before_writing() -> None:
    quantizer = _signed_8_bits()
    codes = numpy.arange(-30, 30, dtype=numpy.int8)
    storage = numpy.full(200, 5, dtype=numpy.float32)
    read_only = numpy.full(60, 5, dtype=numpy.float32)
    read_only.flags.writeable = False
    refusals: list[tuple[Any, dict[str, Any], type[Exception], str]] = [
        (numpy.full(59, 5, dtype=numpy.float32), {}, InvalidValueError, r"out has shape \(59,\); the values"),
        (numpy.full((6, 10), 5, dtype=numpy.float32), {}, InvalidValueError, "out has shape"),
        (numpy.full(60, 5, dtype=numpy.float16), {}, InvalidTypeError, "out has dtype float16; dequant"),
        (numpy.full(60, 5, dtype=numpy.int64), {}, InvalidTypeError, "out has dtype int64"),
        (numpy.full(60, 5, dtype=numpy.complex64), {}, InvalidTypeError, "out has dtype complex64"),
        (storage[::2][:60], {}, InvalidValueError, "C-contiguous"),
        (numpy.full((60, 2), 5, dtype=numpy.float64)[:, 0], {}, InvalidValueError, "C-contiguous"),
        (read_only, {}, InvalidValueError, "read-only"),
        (numpy.full(60, 5, dtype=numpy.float32), {"dtype": numpy.float64}, InvalidValueError, "differ"),
        (numpy.full(60, 5, dtype=numpy.float64), {"dtype": "float32"}, InvalidValueError, "differ"),
        (numpy.full(60, 5, dtype=numpy.float32), {"dtype": "int8"}, InvalidTypeError, "float32 or float64"),
    ]
    for path in PATHS:
        with on_path(path):
            for buffer, keywords, error, message in refusals:
                before = buffer.copy()
                with pytest.raises(error, match=message):
                    quantizer.dequant(codes, out=buffer, **keywords)
                assert bits(buffer) == bits(before)
            with pytest.raises(InvalidTypeError, match="out must be a numpy array to write the values"):
                quantizer.dequant(codes, out=[0.0] * 60)  # type: ignore[arg-type]
            assert (storage == 5).all()


def test_dequant_refuses_a_buffer_overlapping_the_codes() -> None:
    quantizer = _signed_8_bits()
    for path in PATHS:
        with on_path(path):
            floats = numpy.arange(-32, 32, dtype=numpy.float32)
            integers = numpy.arange(-32, 32, dtype=numpy.int32)
            snapshots = (floats.copy(), integers.copy())
            for codes, buffer in (
                (floats, floats),
                (floats, floats.view(numpy.float32)),
                (integers, integers.view(numpy.float32)),
                (integers[:32], integers[16:48].view(numpy.float32)),
            ):
                with pytest.raises(InvalidValueError, match="out overlaps the codes to dequantize"):
                    quantizer.dequant(codes, out=buffer)
            assert bits(floats) == bits(snapshots[0]) and bits(integers) == bits(snapshots[1])
            twin = numpy.empty(64, dtype=numpy.float32)
            assert quantizer.dequant(integers, out=twin) is twin


def test_dequant_overflow_leaves_out_untouched() -> None:
    quantizer = UniformQuantizer(QuantizationOptions(8), None, UniformQuantizationParameters(1e300, 0, 0))
    codes = numpy.arange(-4, 4, dtype=numpy.int8).repeat(10_000)
    for path in PATHS:
        with on_path(path):
            narrow = numpy.full(codes.shape, 5, dtype=numpy.float32)
            with pytest.raises(InvalidValueError, match="beyond the largest float32"):
                quantizer.dequant(codes, out=narrow)
            assert (narrow == 5).all()
            wide = numpy.full(codes.shape, 5, dtype=numpy.float64)
            assert quantizer.dequant(codes, out=wide) is wide
            assert bits(wide) == bits(quantizer.dequant(codes))
            floats = numpy.full(4, 5, dtype=numpy.float64)
            with pytest.raises(InvalidValueError, match="overflows"):  # float codes: 1e300 * 1e10
                quantizer.dequant(numpy.array([0.0, 1.0, 1e10, 2.0]), out=floats)
            assert (floats == 5).all()


def test_dequant_zero_d_codes_into_out() -> None:
    quantizer = _signed_8_bits()
    for path in PATHS:
        with on_path(path):
            for code in (numpy.int8(-7), numpy.array(12), 3, numpy.float32(-2.0), -1.0):
                for target in VALUES_DTYPES:
                    want = quantizer.dequant(code, dtype=target)
                    buffer = numpy.zeros((), dtype=target)
                    assert quantizer.dequant(code, out=buffer) is buffer
                    assert bits(buffer) == bits(numpy.asarray(want))
                with pytest.raises(
                    InvalidValueError, match=r"out has shape \(1,\); the values have shape \(\)"
                ):
                    quantizer.dequant(code, out=numpy.zeros(1, dtype=numpy.float32))


def test_the_pure_numpy_setting_gives_the_same_codes() -> None:
    script = (
        "import sys, numpy, intquant\n"
        "values = numpy.random.default_rng(9).normal(size=200_000).astype(numpy.float32)\n"
        "quantizer = intquant.QuantizedArray(8, values, is_signed=True).quantizer\n"
        "codes = quantizer.quant(values)\n"
        "buffer = numpy.empty(values.shape, dtype=numpy.int8)\n"
        "assert quantizer.quant(values, out=buffer) is buffer\n"
        "assert buffer.tobytes() == codes.astype(numpy.int8).tobytes()\n"
        "assert quantizer.quant(values, dtype='int16').tobytes() == codes.astype('int16').tobytes()\n"
        "floats = quantizer.dequant(buffer, dtype=numpy.float32)\n"
        "assert floats.tobytes() == quantizer.dequant(codes).astype(numpy.float32).tobytes()\n"
        "into = numpy.empty(values.shape, dtype=numpy.float32)\n"
        "assert quantizer.dequant(buffer, out=into) is into and into.tobytes() == floats.tobytes()\n"
        "wide = numpy.empty(values.shape, dtype=numpy.float64)\n"
        "assert quantizer.dequant(buffer, out=wide) is wide\n"
        "assert wide.tobytes() == quantizer.dequant(codes).tobytes()\n"
        "print('numba' in sys.modules)\n"
    )
    environment = {**os.environ, "INTQUANT_PURE_NUMPY": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"

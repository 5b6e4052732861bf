"""An integer layer's compiled call (intquant.integer.fused) gives exactly the plain-numpy codes.

Each test forces the compiled passes on small inputs (``MIN_SIZE = 1``), checks that they were
taken, and compares the codes with the plain path and with the plain-Python reference of
``tests/test_integer_layers.py``, for every requantization mode, linear and convolution layers,
every product dtype and input dtype, and the same refusals.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intquant._numba import dispatch
from intquant.errors import InvalidValueError
from intquant.integer import (
    Conv2d,
    DropLowBits,
    FixedPoint,
    Flatten,
    FloatRescale,
    IntegerConv2d,
    IntegerLinear,
    IntegerNetwork,
    Linear,
    PowerOfTwo,
    ReLU,
    layer,
)
from tests.test_integer_layers import (
    input_codes,
    layer_sources,
    quantizer,
    reference_conv,
    reference_linear,
)

pytest.importorskip("numba", reason="the compiled layer call needs numba (intquant[fast])")


class Calls:
    """Counts the compiled calls."""

    def __init__(self) -> None:
        self.count = 0


@pytest.fixture
def compiled_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    monkeypatch.setattr(dispatch, "MIN_SIZE", 1)
    monkeypatch.setattr(dispatch, "disabled", False)
    assert dispatch.enabled()
    calls = Calls()
    compiled = layer.fused_layer_call

    def counted(*args: Any) -> numpy.ndarray:
        calls.count += 1
        return compiled(*args)

    monkeypatch.setattr(layer, "fused_layer_call", counted)
    yield calls


def plain(function: Any) -> Any:
    """``function()`` with the compiled loops switched off."""
    saved = dispatch.disabled
    dispatch.disabled = True
    try:
        return function()
    finally:
        dispatch.disabled = saved


# The fixture patches the module for the whole test; each example counts its own calls.
SHARED_FIXTURE = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@SHARED_FIXTURE
@given(sources=layer_sources(2), batch=st.integers(1, 5))
def test_linear_compiled_equals_plain_and_reference(
    compiled_calls: Calls, sources: dict[str, Any], batch: int
) -> None:
    seed = sources.pop("seed")
    linear = IntegerLinear(**sources)
    codes = input_codes(linear, (batch, linear.in_features), seed)
    before, calls = codes.copy(), compiled_calls.count
    result = linear(codes)
    assert compiled_calls.count == calls + (linear.requant_plan is not None)
    assert result.dtype == numpy.int64
    numpy.testing.assert_array_equal(result, plain(lambda: linear(codes)))
    assert result.tolist() == reference_linear(linear, codes)
    numpy.testing.assert_array_equal(codes, before)


@SHARED_FIXTURE
@given(
    sources=layer_sources(4),
    batch=st.integers(1, 2),
    stride=st.integers(1, 2),
    padding=st.integers(0, 2),
    size=st.integers(3, 5),
)
def test_conv_compiled_equals_plain_and_reference(
    compiled_calls: Calls, sources: dict[str, Any], batch: int, stride: int, padding: int, size: int
) -> None:
    seed = sources.pop("seed")
    conv = IntegerConv2d(**sources, stride=stride, padding=(padding, 1))
    codes = input_codes(conv, (batch, conv.in_channels, size, size + 1), seed)
    calls = compiled_calls.count
    result = conv(codes)
    assert compiled_calls.count == calls + (conv.requant_plan is not None)
    assert result.flags["C_CONTIGUOUS"]
    numpy.testing.assert_array_equal(result, plain(lambda: conv(codes)))
    assert result.tolist() == reference_conv(conv, codes).tolist()


@pytest.mark.parametrize(
    ("input_bits", "weight_bits", "zero_point", "features", "expected"),
    # int64: raw codes up to 2**24 give a product bound beyond 2**53, while the centered
    # accumulators (zero point 2**23) stay below it, as a layer requires.
    [(8, 8, 3, 40, "float32"), (16, 8, 3, 40, "float64"), (24, 24, 2**23, 100, "int64")],
)
@pytest.mark.parametrize("dtype", [numpy.int64, numpy.int32, numpy.uint16])
def test_every_product_dtype_and_input_dtype(
    compiled_calls: Calls,
    input_bits: int,
    weight_bits: int,
    zero_point: int,
    features: int,
    expected: str,
    dtype: Any,
) -> None:
    rng = numpy.random.default_rng(input_bits + weight_bits)
    low, high = -(2 ** (weight_bits - 1)), 2 ** (weight_bits - 1) - 1
    linear = IntegerLinear(
        rng.integers(low, high, size=(5, features), endpoint=True),
        rng.uniform(1e-6, 1e-3, size=5),
        input_quantizer=quantizer(input_bits, 0.01, zero_point),
        output_quantizer=quantizer(8, 0.5, 100),
        weight_bits=weight_bits,
        bias_codes=rng.integers(-1000, 1000, size=5),
    )
    assert linear.accumulator_plan.product_dtype == expected
    top = min(2**input_bits - 1, numpy.iinfo(dtype).max)
    codes = rng.integers(0, top, size=(7, features), endpoint=True).astype(dtype)
    result = linear(codes)
    assert compiled_calls.count == 1
    numpy.testing.assert_array_equal(result, plain(lambda: linear(codes)))
    assert result.tolist() == reference_linear(linear, codes.astype(numpy.int64))


def test_refusals_are_the_plain_paths(compiled_calls: Calls) -> None:
    linear = IntegerLinear(
        numpy.array([[1, -2, 3]]),
        numpy.array([0.25]),
        input_quantizer=quantizer(4, 0.5, 2),
        output_quantizer=quantizer(4, 0.25, 8),
    )
    for codes in (numpy.array([[3, 0, 16]]), numpy.array([[-1, 0, 5]], dtype=numpy.int8)):
        with pytest.raises(InvalidValueError, match=r"input codes must lie in \[0, 15\]") as compiled:
            linear(codes)
        with pytest.raises(InvalidValueError) as plain_error:
            plain(lambda codes=codes: linear(codes))
        assert str(compiled.value) == str(plain_error.value)
    assert compiled_calls.count == 2
    empty = numpy.zeros((0, 3), dtype=numpy.int64)
    assert linear(empty).shape == (0, 1)
    assert compiled_calls.count == 2  # an empty batch keeps the plain path


@pytest.mark.parametrize("mode", [FloatRescale(), FixedPoint(), PowerOfTwo(), DropLowBits(bits=3)])
def test_network_runs_its_layers_compiled(compiled_calls: Calls, mode: Any) -> None:
    rng = numpy.random.default_rng(7)
    model = [
        Conv2d(rng.normal(size=(4, 2, 3, 3)), rng.normal(size=4), stride=2, padding=1),
        ReLU(),
        Flatten(),
        Linear(rng.normal(size=(6, 4 * 4 * 4)), rng.normal(size=6)),
        ReLU(),
        Linear(rng.normal(size=(3, 6))),
    ]
    x = rng.normal(size=(20, 2, 8, 8))
    network = IntegerNetwork.from_float(model, x, bits=6, requantization=mode)
    codes = network.quantize_input(x)
    steps = network.intermediates(codes)
    assert compiled_calls.count == 3
    for step, expected in zip(steps, plain(lambda: network.intermediates(codes)), strict=True):
        numpy.testing.assert_array_equal(step, expected)
    numpy.testing.assert_array_equal(network.run(codes), steps[-1])

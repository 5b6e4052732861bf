"""Options beyond the seed: rounding modes, range options, code dtypes, and their serialization."""

from __future__ import annotations

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intquant import (
    MinMaxQuantizationStats,
    QuantizationOptions,
    QuantizedArray,
    UniformQuantizationParameters,
    UniformQuantizer,
    dumps,
    loads,
)
from intquant.errors import InvalidOptionsError


def _quantizer(**extras: object) -> UniformQuantizer:
    options = QuantizationOptions(4, is_signed=True, **extras)
    return UniformQuantizer(options, None, UniformQuantizationParameters(numpy.float64(1.0), 0, 8))


# -- rounding
def test_rounding_modes_on_paper() -> None:
    values = numpy.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.2])
    expected = {
        "half_even": [0, 2, 2, 0, -2, 0],
        "half_up": [1, 2, 3, 0, -1, 0],
        "floor": [0, 1, 2, -1, -2, 0],
        "ceil": [1, 2, 3, 0, -1, 1],
    }
    for rounding, codes in expected.items():
        assert _quantizer(rounding=rounding).quant(values).tolist() == codes, rounding


def test_stochastic_rounding_is_unbiased_and_seedable() -> None:
    values = numpy.full(100_000, 0.3)
    codes = _quantizer(rounding="stochastic", seed=7).quant(values)
    assert set(codes.tolist()) == {0, 1}
    assert abs(codes.mean() - 0.3) < 0.01  # E[q] = x
    assert numpy.array_equal(codes, _quantizer(rounding="stochastic", seed=7).quant(values))
    quantizer = _quantizer(rounding="stochastic", seed=7)
    # the noise is a function of (seed, index): successive calls give the same codes
    assert numpy.array_equal(quantizer.quant(values), quantizer.quant(values))
    assert not numpy.array_equal(codes, _quantizer(rounding="stochastic", seed=8).quant(values))


@settings(max_examples=50, deadline=None)
@given(value=st.floats(-7.0, 7.0, allow_nan=False), seed=st.integers(0, 2**32 - 1))
def test_stochastic_codes_are_a_neighbouring_integer(value: float, seed: int) -> None:
    code = int(_quantizer(rounding="stochastic", seed=seed).quant(numpy.array([value]))[0])
    assert numpy.floor(value) <= code <= numpy.ceil(value)


def test_default_rounding_is_the_seeds() -> None:
    values = numpy.random.default_rng(0).normal(size=1000) * 3
    assert numpy.array_equal(_quantizer().quant(values), _quantizer(rounding="half_even").quant(values))


# -- range options
def test_zero_in_range() -> None:
    values = numpy.array([2.0, 3.0, 5.0])
    plain = QuantizedArray(3, values).quantizer
    widened = QuantizedArray(3, values, zero_in_range=True).quantizer
    assert (plain.scale, plain.zero_point) == (3.0 / 7, -5)
    assert (widened.scale, widened.zero_point) == (5.0 / 7, 0)
    assert widened.dequant(widened.quant(numpy.array([0.0])))[0] == 0.0


def test_power_of_two_scale() -> None:
    values = numpy.array([-1.0, 0.3, 2.0])
    quantizer = QuantizedArray(4, values, power_of_two_scale=True).quantizer
    assert quantizer.scale == 0.25  # 3 / 15 = 0.2, rounded up to 2**-2
    assert quantizer.zero_point == 4  # round(-(-1.0) / 0.25)
    symmetric = QuantizedArray(
        4, values, is_signed=True, is_symmetric=True, power_of_two_scale=True
    ).quantizer
    assert (symmetric.scale, symmetric.zero_point) == (0.5, 0)  # 2 / 7 -> 2**-1


# -- code dtypes
@pytest.mark.parametrize("dtype", [numpy.int64, numpy.int32, numpy.float32, numpy.float64, "int32"])
def test_code_dtypes(dtype: object) -> None:
    values = numpy.linspace(-8, 7, 16)
    codes = _quantizer().quant(values, dtype=dtype)
    assert codes.dtype == numpy.dtype(dtype)
    assert codes.tolist() == list(range(-8, 8))


def test_smallest_code_dtype() -> None:
    assert _quantizer().quant(numpy.zeros(3), dtype="smallest").dtype == numpy.int8
    assert (
        QuantizedArray(9, numpy.linspace(0, 1, 5)).quantizer.quant(numpy.zeros(3), dtype="smallest").dtype
        == numpy.int16
    )
    unsigned = QuantizedArray(16, numpy.linspace(0, 1, 5)).quantizer
    assert unsigned.quant(numpy.zeros(3), dtype="smallest").dtype == numpy.uint16


def test_unsupported_code_dtype() -> None:
    with pytest.raises(
        TypeError,
        match="quant can return codes as int8, uint8, int16, uint16, int32, uint32, int64, float32, "
        "float64 or 'smallest'",
    ):
        _quantizer().quant(numpy.zeros(3), dtype=numpy.float16)


def test_codes_that_a_dtype_cannot_hold() -> None:
    quantizer = QuantizedArray(32, numpy.linspace(0, 1, 5)).quantizer
    with pytest.raises(ValueError, match="not all exactly representable as float32"):
        quantizer.quant(numpy.array([1.0]), dtype=numpy.float32)


# -- validation
@pytest.mark.parametrize(
    "extras, error, message",
    [
        ({"rounding": "nearest"}, ValueError, "'rounding' must be one of half_even, half_up"),
        ({"axis": 1.5}, TypeError, "'axis' must be an int or None"),
        ({"block_size": 4}, TypeError, "'block_size' must be a tuple of ints"),
        ({"block_size": (2, 0)}, ValueError, "extents must be at least 1"),
        ({"axis": 0, "block_size": (1, 2)}, InvalidOptionsError, "either 'axis'"),
        ({"zero_in_range": 1}, TypeError, "'zero_in_range' must be True or False"),
        ({"seed": "x"}, TypeError, "'seed' must be an int or None"),
    ],
)
def test_extra_options_are_validated(extras: dict[str, object], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        QuantizationOptions(4, **extras)
    with pytest.raises(error, match=message):
        QuantizedArray(4, numpy.ones(2), **extras)


def test_unknown_options() -> None:
    with pytest.raises(TypeError, match="unknown options \\['colour'\\]"):
        QuantizationOptions(4, colour=1)


# -- serialization
def test_seed_text_is_unchanged_without_extras() -> None:
    options = QuantizationOptions(4)
    assert "rounding" not in dumps(options)
    quantizer = QuantizedArray(4, numpy.linspace(-1, 1, 5)).quantizer
    assert list(quantizer.dump_dict())[:7] == [
        "n_bits", "is_signed", "is_symmetric", "is_qat", "is_narrow", "is_precomputed_qat", "rmax"
    ]  # fmt: skip


def test_extras_round_trip() -> None:
    options = QuantizationOptions(4, rounding="half_up", block_size=(2, 2), power_of_two_scale=True)
    text = dumps(options)
    assert '"rounding": "half_up"' in text and '"block_size": {"type_name": "tuple"' in text
    assert loads(text) == options and dumps(loads(text)) == text
    assert loads(text) != QuantizationOptions(4)
    array = QuantizedArray(4, numpy.arange(16.0).reshape(4, 4), block_size=(2, 2), rounding="floor")
    assert loads(dumps(array)) == array and dumps(loads(dumps(array))) == dumps(array)


def test_extras_survive_copies() -> None:
    options = QuantizationOptions(4, rounding="ceil", axis=1)
    assert options.quant_options == options
    quantizer = UniformQuantizer(options, MinMaxQuantizationStats(1.0, 0.0))
    assert (quantizer.rounding, quantizer.axis) == ("ceil", 1)
    assert quantizer.quant_options == options

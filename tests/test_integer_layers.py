"""Integer layers (intquant.integer.IntegerLinear / IntegerConv2d): a hand-computed case for each
requantization mode, equality with a plain-Python reference of the whole layer (Python integers;
the float formula's one product in Python floats), from_float, the accumulator constraint, and the
unhappy paths of every public method."""

from __future__ import annotations

import math
from typing import Any

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import intquant
from intquant.errors import (
    InvalidDtypeError,
    InvalidOptionsError,
    InvalidTypeError,
    InvalidValueError,
    MissingParameterError,
)
from intquant.integer import (
    Conv2d,
    DropLowBits,
    FixedPoint,
    FloatRescale,
    IntegerConv2d,
    IntegerLinear,
    Linear,
    PowerOfTwo,
)

FLOAT = FloatRescale()
MODES = (FloatRescale(), FixedPoint(), FixedPoint(16, "half_away"), PowerOfTwo(), DropLowBits(bits=2))


def quantizer(n_bits: int, scale: float, zero_point: int, signed: bool = False) -> intquant.UniformQuantizer:
    """A per-tensor quantizer with these parameters, made by hand."""
    options = intquant.QuantizationOptions(n_bits, is_signed=signed)
    offset = 2 ** (n_bits - 1) if signed else 0
    params = intquant.UniformQuantizationParameters(scale, zero_point, offset)
    return intquant.UniformQuantizer(options, params=params)


# -- the hand-computed 2x3 layer ------------------------------------------------------------
#
# input codes q_x = [3, 0, 5], zp_x = 2 -> centered [1, -2, 3] (4-bit unsigned: codes 0..15)
# weights [[1, -2, 3], [0, 4, -1]], bias codes [5, -3]
#   acc[0] = 1*1 + (-2)*(-2) + 3*3 + 5 = 19
#   acc[1] = 1*0 + (-2)*4 + 3*(-1) - 3 = -14
# s_x = 0.5, s_w = [0.25, 0.125], s_y = 0.25 (zp_y = 8): M = [0.5, 0.25]
#   acc * M = [9.5, -3.5]: ties, so each rounding rule shows
# worst case over centered inputs [-2, 13]:
#   channel 0: max 13 + 4 + 39 + 5 = 61, min -2 - 26 - 6 + 5 = -29 (7 signed bits)
#   channel 1: max 0 + 52 + 2 - 3 = 51, min 0 - 8 - 13 - 3 = -24 (7 signed bits)

HAND_INPUT = numpy.array([[3, 0, 5]])
HAND_WEIGHTS = numpy.array([[1, -2, 3], [0, 4, -1]])


def hand_layer(requantization: Any = FLOAT, output: bool = True) -> IntegerLinear:
    return IntegerLinear(
        HAND_WEIGHTS,
        [0.25, 0.125],
        input_quantizer=quantizer(4, 0.5, 2),
        output_quantizer=quantizer(8, 0.25, 8) if output else None,
        bias_codes=[5, -3],
        requantization=requantization,
    )


def test_hand_accumulators_and_worst_case() -> None:
    layer = hand_layer(output=False)
    assert layer(HAND_INPUT).tolist() == [[19, -14]]
    plan = layer.accumulator_plan
    assert plan.accumulator_min.tolist() == [-29, -24]
    assert plan.accumulator_max.tolist() == [61, 51]
    assert plan.weight_sums.tolist() == [2, 3]
    assert plan.input_range == (0, 15)
    assert layer.accumulator_scale.tolist() == [0.125, 0.0625]
    report = layer.accumulators(HAND_INPUT)
    assert report.worst_bits.tolist() == [7, 7]
    assert report.observed_min.tolist() == [19, -14] and report.observed_max.tolist() == [19, -14]
    assert report.observed_bits.tolist() == [6, 5]


@pytest.mark.parametrize(
    ("mode", "expected", "multiplier", "shift"),
    [
        # rint(9.5) = 10, rint(-3.5) = -4 (half to even); + 8
        (FloatRescale(), [18, 4], [0.5, 0.25], [0, 0]),
        # M = 0.5 * 2**0 -> m = 2**30, s = 31; M = 0.5 * 2**-1 -> m = 2**30, s = 32
        (FixedPoint(), [18, 4], [2**30, 2**30], [31, 32]),
        (FixedPoint(rounding="half_away"), [18, 4], [2**30, 2**30], [31, 32]),
        # half up: -3.5 -> -3
        (FixedPoint(rounding="half_up"), [18, 5], [2**30, 2**30], [31, 32]),
        (PowerOfTwo(), [18, 4], [1, 1], [1, 2]),
        # 19 / 4 = 4.75 -> 5, times 2 = 10; -14 / 4 = -3.5 -> -3 (half up), times 1 = -3
        (DropLowBits(bits=2), [18, 5], [2.0, 1.0], [2, 2]),
        # worst case 7 bits, target 5 -> k = 2 (the rounded tops 15, 13 fit 5 bits)
        (DropLowBits(target_bits=5), [18, 5], [2.0, 1.0], [2, 2]),
    ],
)
def test_hand_requantization(mode: Any, expected: list[int], multiplier: list[Any], shift: list[int]) -> None:
    layer = hand_layer(mode)
    assert layer(HAND_INPUT).tolist() == [expected]
    plan = layer.requant_plan
    assert plan is not None
    assert plan.multiplier.tolist() == multiplier
    assert plan.shift.tolist() == shift
    assert plan.output_zero_point == 8 and plan.output_range == (0, 255)
    assert layer.requantize(numpy.array([[19, -14]])).tolist() == [expected]


def test_fused_relu_raises_the_lower_bound() -> None:
    layer = IntegerLinear(
        HAND_WEIGHTS,
        [0.25, 0.125],
        input_quantizer=quantizer(4, 0.5, 2),
        output_quantizer=quantizer(8, 0.25, 8),
        bias_codes=[5, -3],
        relu=True,
    )
    assert layer.output_range == (8, 255)
    assert layer(HAND_INPUT).tolist() == [[18, 8]]


def test_narrowed_input_range_tightens_the_worst_case() -> None:
    layer = IntegerLinear(
        HAND_WEIGHTS,
        [0.25, 0.125],
        input_quantizer=quantizer(4, 0.5, 2),
        bias_codes=[5, -3],
        input_range=(2, 15),
    )
    # centered inputs [0, 13]: channel 0 max 13 + 0 + 39 + 5 = 57, min 0 - 26 + 0 + 5 = -21
    assert layer.accumulator_plan.accumulator_min.tolist()[0] == -21
    assert layer.accumulator_plan.accumulator_max.tolist()[0] == 57
    with pytest.raises(InvalidValueError, match=r"must lie in \[2, 15\]; got codes from 0 to 5"):
        layer(HAND_INPUT)


def test_hand_convolution() -> None:
    # 2x2 kernel of ones, zp_x = 1, padding 1: the padded border is the code 1 (centered 0)
    layer = IntegerConv2d(
        numpy.ones((1, 1, 2, 2), dtype=numpy.int64),
        0.5,
        input_quantizer=quantizer(4, 1.0, 1),
        padding=1,
        stride=2,
    )
    codes = numpy.array([[[[2, 3], [4, 5]]]])  # centered [[1, 2], [3, 4]]
    # windows at (0, 0) and (0, 2), (2, 0), (2, 2) of the padded 4x4 grid: each holds one value
    assert layer(codes).tolist() == [[[[1, 2], [3, 4]]]]
    assert layer.output_shape((1, 1, 2, 2)) == (1, 1, 2, 2)
    # the worst case counts the padding's centered zero: centered range [-1, 14] widened to hold 0
    assert layer.accumulator_plan.accumulator_max.tolist() == [56]
    assert layer.accumulator_plan.accumulator_min.tolist() == [-4]


# -- the plain-Python reference --------------------------------------------------------------


def reference_round_shift(value: int, shift: int, rounding: str) -> int:
    """value / 2**shift rounded by rule, in Python integers."""
    if shift <= 0:
        return value * 2**-shift
    floor, remainder = divmod(value, 2**shift)
    half = 2 ** (shift - 1)
    if remainder > half:
        return floor + 1
    if remainder < half:
        return floor
    if rounding == "half_up":
        return floor + 1
    if rounding == "half_even":
        return floor + (floor & 1)
    return floor + 1 if value >= 0 else floor  # half_away


def reference_requantize(acc: int, channel: int, layer: Any) -> int:
    plan = layer.requant_plan
    m, s = plan.multiplier.tolist()[channel], plan.shift.tolist()[channel]
    lo, hi = plan.output_range
    if plan.formula == "integer":
        y = reference_round_shift(acc * m, s, plan.rounding)
    else:
        y = round(float(reference_round_shift(acc, s, "half_up")) * m)  # round(): half to even
    return min(max(y + plan.output_zero_point, lo), hi)


def reference_linear(layer: IntegerLinear, codes: numpy.ndarray) -> list[list[int]]:
    weights = layer.weight_codes.tolist()
    zp_w, bias = layer.weight_zero_point.tolist(), layer.bias_codes.tolist()
    zp_x = layer.accumulator_plan.input_zero_point
    rows = []
    for row in codes.tolist():
        accs = [
            sum((x - zp_x) * (w - zp_w[o]) for x, w in zip(row, weights[o], strict=True)) + bias[o]
            for o in range(len(weights))
        ]
        if layer.requant_plan is None:
            rows.append(accs)
        else:
            rows.append([reference_requantize(acc, o, layer) for o, acc in enumerate(accs)])
    return rows


def reference_conv(layer: IntegerConv2d, codes: numpy.ndarray) -> numpy.ndarray:
    weights = layer.weight_codes.tolist()
    zp_w, bias = layer.weight_zero_point.tolist(), layer.bias_codes.tolist()
    zp_x = layer.accumulator_plan.input_zero_point
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
    batch, channels, height, width = codes.shape
    image = codes.tolist()

    def at(n: int, c: int, i: int, j: int) -> int:
        i, j = i - ph, j - pw
        return image[n][c][i][j] if 0 <= i < height and 0 <= j < width else zp_x

    out_h, out_w = (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
    result = numpy.zeros((batch, len(weights), out_h, out_w), dtype=object)
    for n in range(batch):
        for o in range(len(weights)):
            for i in range(out_h):
                for j in range(out_w):
                    acc = bias[o] + sum(
                        (at(n, c, i * sh + u, j * sw + v) - zp_x) * (weights[o][c][u][v] - zp_w[o])
                        for c in range(channels)
                        for u in range(kh)
                        for v in range(kw)
                    )
                    result[n, o, i, j] = (
                        acc if layer.requant_plan is None else reference_requantize(acc, o, layer)
                    )
    return result


modes = st.one_of(
    st.just(FloatRescale()),
    st.builds(FixedPoint, st.integers(12, 40), st.sampled_from(("half_even", "half_away", "half_up"))),
    st.builds(PowerOfTwo, st.sampled_from(("half_even", "half_away", "half_up"))),
    st.builds(lambda k: DropLowBits(bits=k), st.integers(0, 6)),
    st.builds(lambda p: DropLowBits(target_bits=p), st.integers(4, 12)),
    st.none(),
)


@st.composite
def quantizers(draw: st.DrawFn) -> intquant.UniformQuantizer:
    n_bits = draw(st.integers(2, 8))
    signed = draw(st.booleans())
    low = -(2 ** (n_bits - 1)) if signed else 0
    zero_point = draw(st.integers(low - 2, low + 2**n_bits + 1))
    scale = draw(st.sampled_from((0.5, 0.1, 0.013, 1 / 3, 2.0, 0.0078125)))
    return quantizer(n_bits, scale, zero_point, signed)


@st.composite
def layer_sources(draw: st.DrawFn, rank: int) -> dict[str, Any]:
    out_channels = draw(st.integers(1, 4))
    shape = (
        (out_channels, draw(st.integers(1, 6)))
        if rank == 2
        else (out_channels, *draw(st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3))))
    )
    weight_bits = draw(st.integers(2, 8))
    signed = draw(st.booleans())
    low, high = (-(2 ** (weight_bits - 1)), 2 ** (weight_bits - 1) - 1) if signed else (0, 2**weight_bits - 1)
    rng = numpy.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    sources: dict[str, Any] = {
        "weight_codes": rng.integers(low, high, size=shape, endpoint=True),
        "weight_scale": rng.uniform(0.001, 0.2, size=out_channels),
        "weight_zero_point": rng.integers(low, high, size=out_channels, endpoint=True),
        "bias_codes": rng.integers(-500, 500, size=out_channels),
        "weight_bits": weight_bits,
        "weight_signed": signed,
        "input_quantizer": draw(quantizers()),
        "relu": False,
    }
    mode = draw(modes)
    if mode is not None:
        sources["output_quantizer"] = draw(quantizers())
        sources["requantization"] = mode
        sources["relu"] = draw(st.booleans())
    sources["seed"] = int(rng.integers(2**32))
    return sources


def input_codes(layer: Any, shape: tuple[int, ...], seed: int) -> numpy.ndarray:
    low, high = layer.input_range
    return numpy.random.default_rng(seed).integers(low, high, size=shape, endpoint=True)


@given(layer_sources(2), st.integers(1, 5))
def test_linear_equals_the_python_reference(sources: dict[str, Any], batch: int) -> None:
    seed = sources.pop("seed")
    layer = IntegerLinear(**sources)
    codes = input_codes(layer, (batch, layer.in_features), seed)
    before = codes.copy()
    result = layer(codes)
    assert result.dtype == numpy.int64
    assert result.tolist() == reference_linear(layer, codes)
    numpy.testing.assert_array_equal(codes, before)
    accumulators = layer.accumulate(codes)
    assert numpy.all(accumulators >= layer.accumulator_plan.accumulator_min)
    assert numpy.all(accumulators <= layer.accumulator_plan.accumulator_max)


@given(layer_sources(4), st.integers(1, 2), st.integers(1, 2), st.integers(0, 2), st.integers(3, 5))
def test_conv_equals_the_python_reference(
    sources: dict[str, Any], batch: int, stride: int, padding: int, size: int
) -> None:
    seed = sources.pop("seed")
    layer = IntegerConv2d(**sources, stride=stride, padding=(padding, 1))
    shape = (batch, layer.in_channels, size, size + 1)
    codes = input_codes(layer, shape, seed)
    result = layer(codes)
    assert result.dtype == numpy.int64
    assert result.shape == layer.output_shape(shape)
    assert result.tolist() == reference_conv(layer, codes).tolist()
    accumulators = layer.accumulate(codes)
    assert numpy.all(accumulators >= layer.accumulator_plan.accumulator_min[:, None, None])
    assert numpy.all(accumulators <= layer.accumulator_plan.accumulator_max[:, None, None])


def test_linear_takes_any_leading_shape() -> None:
    layer = hand_layer()
    codes = numpy.random.default_rng(1).integers(0, 15, size=(2, 3, 4, 3), endpoint=True)
    assert layer(codes).shape == (2, 3, 4, 2)
    numpy.testing.assert_array_equal(layer(codes).reshape(-1, 2), layer(codes.reshape(-1, 3)))
    assert layer(numpy.array([3, 0, 5])).tolist() == [18, 4]
    assert layer(numpy.zeros((0, 3), dtype=numpy.int64)).shape == (0, 2)
    assert layer(numpy.array([[3, 0, 5]], dtype=numpy.uint8)).tolist() == [[18, 4]]


# -- from_float -----------------------------------------------------------------------------


def calibrated(values: numpy.ndarray, n_bits: int = 8) -> intquant.UniformQuantizer:
    return intquant.QuantizedArray(n_bits, values).quantizer


def test_from_float_quantizes_weights_and_bias() -> None:
    rng = numpy.random.default_rng(2)
    x = rng.normal(size=(200, 5))
    weight, bias = rng.normal(size=(3, 5)), rng.normal(size=3)
    x_quantizer = calibrated(x)
    layer = IntegerLinear.from_float(weight, bias, input_quantizer=x_quantizer, weight_bits=6)
    expected = intquant.QuantizedArray(6, weight, is_signed=True, is_symmetric=True, axis=0)
    numpy.testing.assert_array_equal(layer.weight_codes, expected.qvalues)
    numpy.testing.assert_array_equal(layer.weight_scale, expected.quantizer.scale.reshape(-1))
    numpy.testing.assert_array_equal(
        layer.bias_codes, numpy.rint(bias / (x_quantizer.scale * layer.weight_scale)).astype(numpy.int64)
    )
    assert layer.weight_code_range == (-32, 31) and layer.weight_bits == 6
    # the accumulators times s_x * s_w approximate the float layer
    codes = x_quantizer.quant(x)
    real = layer(codes) * layer.accumulator_scale
    error = numpy.abs(real - Linear(weight, bias)(x)).max()
    assert error < 0.15, error
    per_tensor = IntegerLinear.from_float(weight, bias, input_quantizer=x_quantizer, per_channel=False)
    assert len(set(per_tensor.weight_scale.tolist())) == 1


def test_from_float_does_not_change_its_inputs() -> None:
    rng = numpy.random.default_rng(3)
    weight, bias = rng.normal(size=(3, 5)), rng.normal(size=3)
    weight_copy, bias_copy = weight.copy(), bias.copy()
    x_quantizer = calibrated(rng.normal(size=(20, 5)))
    text = intquant.dumps(x_quantizer)
    layer = IntegerLinear.from_float(weight, bias, input_quantizer=x_quantizer)
    numpy.testing.assert_array_equal(weight, weight_copy)
    numpy.testing.assert_array_equal(bias, bias_copy)
    assert intquant.dumps(x_quantizer) == text
    assert layer.input_quantizer is not x_quantizer
    assert intquant.dumps(layer.input_quantizer) == text


def test_objects_are_read_only() -> None:
    layer = hand_layer()
    for array in (layer.weight_codes, layer.weight_scale, layer.bias_codes, layer.accumulator_scale):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1
    with pytest.raises(AttributeError):
        layer.relu = True  # type: ignore[misc]
    held = layer.input_quantizer
    held.scale = numpy.float64(99.0)  # a copy: the layer is unchanged
    assert layer.input_quantizer.scale == 0.5


@pytest.mark.parametrize("target", [10, 12, 14])
def test_accumulator_bits_bounds_the_worst_case(target: int) -> None:
    rng = numpy.random.default_rng(4)
    x = rng.uniform(0, 4, size=(300, 1, 6, 6))
    x_quantizer = calibrated(x)
    weight, bias = rng.normal(size=(4, 1, 3, 3)), rng.normal(size=4)
    free = IntegerConv2d.from_float(weight, bias, input_quantizer=x_quantizer, padding=1)
    assert free.accumulators().max_worst_bits > target  # the constraint has work to do
    layer = IntegerConv2d.from_float(
        weight, bias, input_quantizer=x_quantizer, padding=1, accumulator_bits=target
    )
    report = layer.accumulators(x_quantizer.quant(x))
    assert report.max_worst_bits <= target
    assert report.max_observed_bits is not None and report.max_observed_bits <= target
    assert numpy.all(layer.weight_scale >= free.weight_scale)


def test_from_float_bias_overflow_names_the_channel() -> None:
    x_quantizer = quantizer(8, 1e-6, 0)
    with pytest.raises(
        InvalidValueError, match=r"bias of output channel 1, 1000000.0, quantizes to .* beyond int32"
    ):
        IntegerLinear.from_float([[1.0], [1.0]], [0.0, 1e6], input_quantizer=x_quantizer)


def test_from_float_unhappy_paths() -> None:
    x_quantizer = quantizer(8, 0.1, 0)
    with pytest.raises(
        InvalidValueError, match=r"'weight' must be a non-empty array of shape \(out_features"
    ):
        IntegerLinear.from_float([1.0, 2.0], input_quantizer=x_quantizer)
    with pytest.raises(InvalidValueError, match=r"'bias' must have shape \(1,\)"):
        IntegerLinear.from_float([[1.0, 2.0]], [1.0, 2.0], input_quantizer=x_quantizer)
    with pytest.raises(InvalidValueError, match="'weight' must be finite"):
        IntegerLinear.from_float([[numpy.nan, 2.0]], input_quantizer=x_quantizer)
    with pytest.raises(InvalidValueError, match=r"'weight_bits' must be an int in \[1, 32\]; got 0"):
        IntegerLinear.from_float([[1.0]], input_quantizer=x_quantizer, weight_bits=0)
    with pytest.raises(InvalidValueError, match=r"'accumulator_bits' must be an int in \[2, 53\]; got 1"):
        IntegerLinear.from_float([[1.0]], input_quantizer=x_quantizer, accumulator_bits=1)
    with pytest.raises(InvalidTypeError, match="'per_channel' must be True or False"):
        IntegerLinear.from_float([[1.0]], input_quantizer=x_quantizer, per_channel="yes")
    with pytest.raises(InvalidValueError, match=r"'stride' must be an int >= 1"):
        IntegerConv2d.from_float(numpy.ones((1, 1, 1, 1)), input_quantizer=x_quantizer, stride=0)
    with pytest.raises(InvalidValueError, match=r"'input_range' must satisfy 0 <= lo <= hi <= 255"):
        IntegerLinear.from_float([[1.0]], input_quantizer=x_quantizer, input_range=(-1, 3))


# -- unhappy paths of the constructor and the calls --------------------------------------------


def test_constructor_refuses_bad_sources() -> None:
    q = quantizer(4, 0.5, 2)
    with pytest.raises(
        InvalidDtypeError, match="'weight_codes' must be an array of integer codes; got dtype float64"
    ):
        IntegerLinear([[1.0, 2.0]], 1.0, input_quantizer=q)
    with pytest.raises(
        InvalidValueError, match=r"must have shape \(out_features, in_features\), non-empty; got \(3,\)"
    ):
        IntegerLinear([1, 2, 3], 1.0, input_quantizer=q)
    with pytest.raises(
        InvalidValueError,
        match=r"must lie in \[-8, 7\] \(weight_bits=4, weight_signed=True\); got codes from -9 to 2",
    ):
        IntegerLinear([[-9, 2]], 1.0, input_quantizer=q, weight_bits=4)
    with pytest.raises(
        InvalidValueError, match=r"'weight_scale' must be finite and positive; channel 1 has -1.0"
    ):
        IntegerLinear([[1], [2]], [1.0, -1.0], input_quantizer=q)
    with pytest.raises(
        InvalidValueError, match=r"'weight_scale' must be a number or an array of shape \(2,\)"
    ):
        IntegerLinear([[1], [2]], [1.0, 1.0, 1.0], input_quantizer=q)
    with pytest.raises(
        InvalidValueError,
        match=r"'bias_codes' must lie in \[-2147483648, 2147483647\]; channel 0 has 2147483648",
    ):
        IntegerLinear([[1]], 1.0, input_quantizer=q, bias_codes=[2**31])
    with pytest.raises(
        InvalidValueError, match=r"'bias_codes' must be an int or an integer array of shape \(2,\)"
    ):
        IntegerLinear([[1], [2]], 1.0, input_quantizer=q, bias_codes=[1, 2, 3])
    with pytest.raises(InvalidDtypeError, match="'bias_codes' must be an array of integer codes"):
        IntegerLinear([[1]], 1.0, input_quantizer=q, bias_codes=[0.5])
    with pytest.raises(InvalidTypeError, match="'requantization' must be one of FloatRescale"):
        IntegerLinear([[1]], 1.0, input_quantizer=q, output_quantizer=q, requantization="fixed")
    with pytest.raises(InvalidOptionsError, match="relu=True needs an output quantizer"):
        IntegerLinear([[1]], 1.0, input_quantizer=q, relu=True)
    with pytest.raises(
        InvalidTypeError,
        match=r"'input_quantizer' must be a calibrated intquant\.UniformQuantizer; got float",
    ):
        IntegerLinear([[1]], 1.0, input_quantizer=0.5)  # type: ignore[arg-type]
    with pytest.raises(MissingParameterError, match="'input_quantizer' is not calibrated"):
        IntegerLinear([[1]], 1.0, input_quantizer=intquant.UniformQuantizer(intquant.QuantizationOptions(8)))
    per_axis = intquant.QuantizedArray(8, numpy.ones((2, 3)), axis=0).quantizer
    with pytest.raises(InvalidValueError, match="'output_quantizer' must quantize per tensor"):
        IntegerLinear([[1]], 1.0, input_quantizer=q, output_quantizer=per_axis)
    unclipped = intquant.UniformQuantizer(
        intquant.QuantizationOptions(8),
        params=intquant.UniformQuantizationParameters(0.5, 0, 0),
        no_clipping=True,
    )
    with pytest.raises(InvalidValueError, match="'input_quantizer' must clip its codes"):
        IntegerLinear([[1]], 1.0, input_quantizer=unclipped)
    zero_scale = intquant.UniformQuantizer(
        intquant.QuantizationOptions(8), params=intquant.UniformQuantizationParameters(-0.5, 0, 0)
    )
    with pytest.raises(
        InvalidValueError, match=r"'input_quantizer' must have a finite positive scale; got -0\.5"
    ):
        IntegerLinear([[1]], 1.0, input_quantizer=zero_scale)
    with pytest.raises(
        InvalidValueError, match=r"'input_range' must satisfy 0 <= lo <= hi <= 15 .*; got \(3, 2\)"
    ):
        IntegerLinear([[1]], 1.0, input_quantizer=q, input_range=(3, 2))
    with pytest.raises(
        InvalidValueError, match=r"'stride' must be an int or a pair of ints; got \(1, 2, 3\)"
    ):
        IntegerConv2d(numpy.ones((1, 1, 1, 1), dtype=numpy.int64), 1.0, input_quantizer=q, stride=(1, 2, 3))


def test_constructor_refuses_a_worst_case_beyond_2_53() -> None:
    wide = quantizer(32, 1.0, 0, signed=True)
    weights = numpy.zeros((2, 64), dtype=numpy.int64)
    weights[1] = 2**20  # 64 * 2**31 * 2**20 = 2**57: fits int64, not float64
    with pytest.raises(
        InvalidValueError, match=r"worst-case accumulator of output channel 1 .* not below 2\*\*53"
    ):
        IntegerLinear(weights, 1.0, input_quantizer=wide, weight_bits=22)
    with pytest.raises(
        InvalidValueError, match=r"too large for exact int64 accumulation: 64 products .* beyond 2\*\*62"
    ):
        IntegerLinear(numpy.full((1, 64), 2**31 - 1), 1.0, input_quantizer=wide, weight_bits=32)


def test_calls_refuse_bad_codes() -> None:
    layer = hand_layer()
    with pytest.raises(
        InvalidDtypeError, match=r"input codes must be integer codes; got dtype float64 with shape \(1, 3\)"
    ):
        layer(numpy.array([[3.0, 0.0, 5.0]]))
    with pytest.raises(InvalidValueError, match=r"must have shape \(\.\.\., 3\); got \(1, 4\)"):
        layer(numpy.array([[3, 0, 5, 1]]))
    with pytest.raises(
        InvalidValueError, match=r"input codes must lie in \[0, 15\]; got codes from -1 to 16"
    ):
        layer(numpy.array([[-1, 0, 16]]))
    with pytest.raises(InvalidTypeError, match="input codes must be real numbers"):
        layer(numpy.array([["a", "b", "c"]]))
    with pytest.raises(InvalidValueError, match=r"accumulators must have shape \(\.\.\., 2\); got \(1, 3\)"):
        layer.requantize(numpy.array([[1, 2, 3]]))
    with pytest.raises(InvalidDtypeError, match="accumulators must be integers; got dtype float64"):
        layer.requantize(numpy.array([[1.0, 2.0]]))
    with pytest.raises(InvalidValueError, match=r"channel 1 has 52 outside \[-24, 51\]"):
        layer.requantize(numpy.array([[1, 52]]))
    with pytest.raises(InvalidOptionsError, match="has no output quantizer"):
        hand_layer(output=False).requantize(numpy.array([[1, 2]]))
    with pytest.raises(InvalidValueError, match="cannot observe accumulators on an empty batch"):
        layer.accumulators(numpy.zeros((0, 3), dtype=numpy.int64))
    conv = IntegerConv2d(
        numpy.ones((2, 1, 3, 3), dtype=numpy.int64), 1.0, input_quantizer=quantizer(4, 0.5, 2)
    )
    with pytest.raises(InvalidValueError, match=r"must have shape \(N, 1, H, W\); got \(1, 2, 3, 3\)"):
        conv(numpy.zeros((1, 2, 3, 3), dtype=numpy.int64))
    with pytest.raises(InvalidValueError, match=r"padded by \(0, 0\) are smaller than the kernel \(3, 3\)"):
        conv(numpy.zeros((1, 1, 2, 5), dtype=numpy.int64))
    with pytest.raises(InvalidValueError, match=r"accumulators must have shape \(N, 2, H, W\)"):
        IntegerConv2d(
            numpy.ones((2, 1, 1, 1), dtype=numpy.int64),
            1.0,
            input_quantizer=quantizer(4, 0.5, 2),
            output_quantizer=quantizer(4, 0.5, 2),
        ).requantize(numpy.zeros((1, 2, 3), dtype=numpy.int64))


def test_conv_from_float_matches_the_float_convolution() -> None:
    rng = numpy.random.default_rng(5)
    x = rng.uniform(-1, 1, size=(4, 2, 7, 6))
    weight, bias = rng.normal(size=(3, 2, 3, 2)), rng.normal(size=3)
    x_quantizer = calibrated(x)
    layer = IntegerConv2d.from_float(weight, bias, input_quantizer=x_quantizer, stride=(2, 1), padding=(1, 0))
    real = layer(x_quantizer.quant(x)) * layer.accumulator_scale[:, None, None]
    expected = Conv2d(weight, bias, stride=(2, 1), padding=(1, 0))(x)
    assert real.shape == expected.shape == (4, 3, 4, 5)
    assert numpy.abs(real - expected).max() < 0.1
    assert math.isclose(float(numpy.abs(expected).max()), float(numpy.abs(real).max()), rel_tol=0.05)


def test_replace_makes_a_new_checked_layer() -> None:
    layer = hand_layer(output=False)
    requantized = layer.replace(
        output_quantizer=quantizer(8, 0.25, 8), requantization=FixedPoint(rounding="half_up")
    )
    assert requantized(HAND_INPUT).tolist() == [[18, 5]]
    assert layer.requant_plan is None  # unchanged
    numpy.testing.assert_array_equal(requantized.weight_codes, layer.weight_codes)
    assert repr(requantized) == (
        "IntegerLinear(3->2, weight_bits=8, requantization=FixedPoint(multiplier_bits=31, "
        "rounding='half_up'), relu=False, output=codes)"
    )
    with pytest.raises(InvalidTypeError, match=r"replace\(\) got unknown keywords \['bias'\]"):
        layer.replace(bias=[1.0, 2.0])
    with pytest.raises(InvalidOptionsError, match="relu=True needs an output quantizer"):
        layer.replace(relu=True)

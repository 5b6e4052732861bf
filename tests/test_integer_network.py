"""IntegerNetwork: runs equal the chain of its elements' calls, from_float on a tiny MLP and a tiny
conv net (calibrated on the integer pipeline), the accumulator constraint over a network, the chain
checks, and the unhappy paths of every public method."""

from __future__ import annotations

from typing import Any

import numpy
import pytest

import intquant
from intquant.calibration import PercentileStats
from intquant.errors import InvalidDtypeError, InvalidTypeError, InvalidValueError
from intquant.integer import (
    Conv2d,
    DropLowBits,
    FixedPoint,
    Flatten,
    FloatRescale,
    IntegerFlatten,
    IntegerLinear,
    IntegerNetwork,
    IntegerReLU,
    Linear,
    PowerOfTwo,
    ReLU,
)
from intquant.integer.model import run_float

MODES = (FloatRescale(), FixedPoint(), PowerOfTwo(), DropLowBits(bits=3), DropLowBits(target_bits=14))


def mlp(seed: int = 0) -> tuple[list[Any], numpy.ndarray]:
    rng = numpy.random.default_rng(seed)
    model = [
        Linear(rng.normal(size=(16, 8)) / 3, rng.normal(size=16) / 3),
        ReLU(),
        Linear(rng.normal(size=(12, 16)) / 4, rng.normal(size=12) / 4),
        ReLU(),
        Linear(rng.normal(size=(5, 12)) / 3, rng.normal(size=5) / 3),
    ]
    return model, rng.normal(size=(400, 8))


def conv_net(seed: int = 0) -> tuple[list[Any], numpy.ndarray]:
    rng = numpy.random.default_rng(seed)
    model = [
        Conv2d(rng.normal(size=(4, 2, 3, 3)) / 3, rng.normal(size=4) / 3, padding=1),
        ReLU(),
        Conv2d(rng.normal(size=(3, 4, 2, 2)) / 3, None, stride=2),
        ReLU(),
        Flatten(),
        Linear(rng.normal(size=(4, 3 * 3 * 3)) / 3, rng.normal(size=4) / 3),
    ]
    return model, rng.uniform(0, 1, size=(64, 2, 7, 7))


def chained(network: IntegerNetwork, codes: numpy.ndarray) -> list[numpy.ndarray]:
    outputs = []
    for element in network.elements:
        codes = element(codes)
        outputs.append(codes)
    return outputs


@pytest.mark.parametrize("mode", MODES, ids=repr)
@pytest.mark.parametrize("build", [mlp, conv_net], ids=["mlp", "conv"])
def test_run_equals_the_chain_of_element_calls(build: Any, mode: Any) -> None:
    model, x = build()
    network = IntegerNetwork.from_float(model, x, bits=6, requantization=mode)
    codes = network.quantize_input(x)
    expected = chained(network, codes)
    steps = network.intermediates(codes)
    assert len(steps) == len(model)
    for step, reference in zip(steps, expected, strict=True):
        assert step.dtype == numpy.int64
        numpy.testing.assert_array_equal(step, reference)
    numpy.testing.assert_array_equal(network.run(codes), expected[-1])
    numpy.testing.assert_array_equal(network(x), expected[-1])
    assert all(layer.requantization == mode for layer in network.layers)


@pytest.mark.parametrize("build", [mlp, conv_net], ids=["mlp", "conv"])
def test_from_float_follows_the_float_model(build: Any) -> None:
    model, x = build()
    network = IntegerNetwork.from_float(model, x, bits=8)
    reference = run_float(model, x)
    output = network.dequantize_output(network(x))
    span = float(reference.max() - reference.min())
    assert numpy.abs(output - reference).max() < 0.05 * span
    assert numpy.mean(network.predict(x) == reference.argmax(axis=1)) > 0.9
    # 3 bits lose more than 8 bits: the integer pipeline's error grows as bits shrink
    coarse = IntegerNetwork.from_float(model, x, bits=3)
    assert (
        numpy.abs(coarse.dequantize_output(coarse(x)) - reference).mean()
        > numpy.abs(output - reference).mean()
    )


def test_from_float_calibrates_on_the_integer_pipeline() -> None:
    model, x = mlp(1)
    network = IntegerNetwork.from_float(model, x, bits=8, output_bits=10, activation_bits=7, weight_bits=5)
    first, second, last = network.layers
    codes = network.quantize_input(x)
    # the first layer's output quantizer is calibrated on max(acc * s_x * s_w, 0) (a ReLU follows)
    real = numpy.maximum(first.accumulate(codes) * first.accumulator_scale, 0.0)
    expected = intquant.QuantizedArray(7, real).quantizer
    assert first.output_quantizer.scale == expected.scale
    assert first.output_quantizer.zero_point == expected.zero_point
    # the layer after a ReLU accepts (zp, qmax) only
    assert second.input_range == (int(expected.zero_point), 127)
    assert network.elements[1].zero_point == int(expected.zero_point)
    assert last.output_quantizer.n_bits == 10 and first.weight_bits == 5
    assert first.input_quantizer.n_bits == 7 and not first.input_quantizer.is_signed
    assert network.output_quantizer.n_bits == 10
    assert network.input_quantizer == first.input_quantizer


def test_from_float_with_a_calibrator_leaves_it_unchanged() -> None:
    model, x = mlp(2)
    calibrator = PercentileStats(99.0, bins=64)
    network = IntegerNetwork.from_float(model, x, calibrator=calibrator)
    assert calibrator.is_empty()
    minmax = IntegerNetwork.from_float(model, x)
    # percentiles clip the range: a smaller input scale than min/max's
    assert network.input_quantizer.scale < minmax.input_quantizer.scale
    fresh = PercentileStats(99.0, bins=64)
    fresh.update(x)
    low, high = fresh.range_for(intquant.QuantizationOptions(8))
    assert network.input_quantizer.rmin == low and network.input_quantizer.rmax == high


@pytest.mark.parametrize("build", [mlp, conv_net], ids=["mlp", "conv"])
def test_accumulator_bits_holds_over_the_network(build: Any) -> None:
    model, x = build()
    free = IntegerNetwork.from_float(model, x, bits=8)
    limit = 14
    assert not free.accumulator_report(limit_bits=limit).fits
    network = IntegerNetwork.from_float(model, x, bits=8, accumulator_bits=limit)
    report = network.accumulator_report(x, limit_bits=limit)
    assert report.fits and report.max_worst_bits <= limit
    assert report.max_observed_bits is not None and report.max_observed_bits <= limit
    assert len(report.layers) == len(network.layers)
    assert report.layers[0].name.startswith("0: Integer")
    for row, layer in zip(report.layers, network.layers, strict=True):
        numpy.testing.assert_array_equal(row.worst_max, layer.accumulator_plan.accumulator_max)
    assert f"fits {limit} bits" in str(report)
    reference = run_float(model, x)
    agreement = numpy.mean(network.predict(x) == reference.argmax(axis=1))
    assert agreement > 0.7


def test_report_without_data_has_no_observed_ranges() -> None:
    model, x = mlp()
    report = IntegerNetwork.from_float(model, x).accumulator_report()
    assert report.limit_bits is None and report.fits
    assert all(row.observed_min is None for row in report.layers)


def test_inputs_are_not_changed() -> None:
    model, x = conv_net()
    x_copy = x.copy()
    network = IntegerNetwork.from_float(model, x)
    numpy.testing.assert_array_equal(x, x_copy)
    codes = network.quantize_input(x)
    codes_copy = codes.copy()
    network.run(codes)
    network.intermediates(codes)
    numpy.testing.assert_array_equal(codes, codes_copy)


def test_a_hand_built_network_may_end_in_accumulators() -> None:
    model, x = mlp()
    built = IntegerNetwork.from_float(model, x)
    last = built.layers[-1]
    bare = IntegerLinear(
        last.weight_codes,
        last.weight_scale,
        input_quantizer=last.input_quantizer,
        bias_codes=last.bias_codes,
        input_range=last.input_range,
    )
    network = IntegerNetwork(built.input_quantizer, [*built.elements[:-1], bare])
    codes = network.quantize_input(x)
    accumulators = network.run(codes)
    numpy.testing.assert_array_equal(accumulators, last.accumulate(network.intermediates(codes)[-2]))
    numpy.testing.assert_array_equal(
        network.dequantize_output(accumulators), accumulators * last.accumulator_scale
    )
    assert network.output_quantizer is None


# -- the chain checks and unhappy paths ------------------------------------------------------


def test_the_chain_is_checked() -> None:
    model, x = mlp()
    network = IntegerNetwork.from_float(model, x)
    first, relu, second = network.elements[:3]
    q = network.input_quantizer
    with pytest.raises(InvalidValueError, match=r"element 1 \(IntegerReLU\) has zero_point 999"):
        IntegerNetwork(q, [first, IntegerReLU(999), second])
    hidden = intquant.UniformQuantizer(
        intquant.QuantizationOptions(8), params=intquant.UniformQuantizationParameters(0.5, 8, 0)
    )
    a = IntegerLinear([[1, 2]], 0.1, input_quantizer=q, output_quantizer=hidden)
    b = IntegerLinear([[3]], 0.1, input_quantizer=hidden, input_range=(8, 255))
    assert IntegerNetwork(q, [a, IntegerReLU(8), b]).run(numpy.array([[1, 2]])).shape == (1, 1)
    with pytest.raises(
        InvalidValueError,
        match=r"element 1 \(IntegerLinear\) accepts input codes in \[8, 255\], but it receives codes in "
        r"\[0, 255\]",
    ):
        IntegerNetwork(q, [a, b])  # the ReLU left out: the codes are not narrowed
    with pytest.raises(
        InvalidValueError, match=r"element 1 \(IntegerLinear\) has an input quantizer of scale"
    ):
        IntegerNetwork(q, [first, first])
    with pytest.raises(InvalidValueError, match=r"element 0 \(IntegerLinear\) has an input quantizer"):
        IntegerNetwork(q, [second])
    bare = IntegerLinear(first.weight_codes, first.weight_scale, input_quantizer=q)
    with pytest.raises(
        InvalidValueError, match=r"element 1 \(IntegerReLU\) follows a layer without output quantizer"
    ):
        IntegerNetwork(q, [bare, relu])
    narrow = IntegerLinear(
        first.weight_codes,
        first.weight_scale,
        input_quantizer=q,
        output_quantizer=first.output_quantizer,
        input_range=(5, 200),
    )
    with pytest.raises(
        InvalidValueError, match=r"accepts input codes in \[5, 200\], but it receives codes in \[0, 255\]"
    ):
        IntegerNetwork(q, [narrow])
    with pytest.raises(InvalidTypeError, match=r"element 0 \(Linear\): an IntegerNetwork holds"):
        IntegerNetwork(q, [model[0]])  # type: ignore[list-item]
    with pytest.raises(InvalidValueError, match="at least one IntegerLinear or IntegerConv2d"):
        IntegerNetwork(q, [IntegerFlatten()])
    with pytest.raises(InvalidTypeError, match="'elements' must be a sequence"):
        IntegerNetwork(q, first)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match="'input_quantizer' must be a calibrated"):
        IntegerNetwork(None, [first])  # type: ignore[arg-type]


def test_run_refuses_bad_codes() -> None:
    model, x = conv_net()
    network = IntegerNetwork.from_float(model, x)
    codes = network.quantize_input(x[:2])
    with pytest.raises(InvalidDtypeError, match="input codes must be integer codes; got dtype float64"):
        network.run(codes.astype(numpy.float64))
    with pytest.raises(InvalidValueError, match=r"input codes must lie in \[0, 255\]; got codes from -1 to"):
        network.run(codes - 1)
    with pytest.raises(
        InvalidValueError,
        match=r"element 0 \(IntegerConv2d\): IntegerConv2d input codes must have shape \(N, 2, H, W\)",
    ):
        network.run(codes[:, :1])
    with pytest.raises(
        InvalidValueError,
        match=r"element 5 \(IntegerLinear\): IntegerLinear input codes "
        r"must have shape \(\.\.\., 27\); got \(2, 48\)",
    ):
        network.intermediates(numpy.zeros((2, 2, 9, 9), dtype=numpy.int64))
    with pytest.raises(InvalidTypeError, match="the inputs must be real numbers"):
        network(numpy.array([["a"]]))
    with pytest.raises(InvalidDtypeError, match="output codes must be integer codes"):
        network.dequantize_output(numpy.zeros((2, 4)))
    with pytest.raises(InvalidValueError, match=r"'limit_bits' must be an int >= 1; got 0"):
        network.accumulator_report(limit_bits=0)


def test_from_float_refuses_bad_arguments() -> None:
    model, x = mlp()
    with pytest.raises(InvalidValueError, match="at least one Linear or Conv2d"):
        IntegerNetwork.from_float([ReLU()], x)
    with pytest.raises(
        InvalidTypeError,
        match=r"model element 1 must be a Linear, Conv2d, ReLU or Flatten .* got IntegerReLU",
    ):
        IntegerNetwork.from_float([model[0], IntegerReLU(0)], x)  # type: ignore[list-item]
    with pytest.raises(InvalidTypeError, match="'model' must be a sequence"):
        IntegerNetwork.from_float(model[0], x)  # type: ignore[arg-type]
    with pytest.raises(
        InvalidValueError,
        match=r"model element 0 \(Linear\): IntegerLinear input codes "
        r"must have shape \(\.\.\., 8\); got \(400, 3\)",
    ):
        IntegerNetwork.from_float(model, x[:, :3])
    with pytest.raises(InvalidValueError, match=r"'x_calibration' must be a non-empty batch"):
        IntegerNetwork.from_float(model, x[:0])
    with pytest.raises(InvalidValueError, match="'x_calibration' must be finite"):
        IntegerNetwork.from_float(model, numpy.full((3, 8), numpy.nan))
    with pytest.raises(InvalidValueError, match=r"'bits' must be an int in \[1, 32\]; got 0"):
        IntegerNetwork.from_float(model, x, bits=0)
    with pytest.raises(InvalidValueError, match=r"'output_bits' must be an int in \[1, 32\]; got 40"):
        IntegerNetwork.from_float(model, x, output_bits=40)
    with pytest.raises(
        InvalidTypeError, match="'calibrator' must be a per-tensor intquant calibration object"
    ):
        IntegerNetwork.from_float(model, x, calibrator=PercentileStats(axis=0))
    with pytest.raises(InvalidTypeError, match="'calibrator' must be a per-tensor"):
        IntegerNetwork.from_float(model, x, calibrator="percentile")
    with pytest.raises(InvalidTypeError, match="'requantization' must be one of"):
        IntegerNetwork.from_float(model, x, requantization="float")
    conv = [Conv2d(numpy.ones((2, 1, 2, 2))), Flatten(), Linear(numpy.ones((1, 5)))]
    with pytest.raises(
        InvalidValueError,
        match=r"model element 2 \(Linear\): IntegerLinear input codes "
        r"must have shape \(\.\.\., 5\); got \(3, 18\)",
    ):
        IntegerNetwork.from_float(conv, numpy.ones((3, 1, 4, 4)))


def test_elements_refuse_bad_codes() -> None:
    with pytest.raises(
        InvalidDtypeError, match="IntegerReLU input codes must be integers; got dtype float64"
    ):
        IntegerReLU(0)(numpy.array([0.5]))
    with pytest.raises(InvalidDtypeError, match="IntegerFlatten input codes must be integers"):
        IntegerFlatten()(numpy.array([[0.5]]))
    with pytest.raises(InvalidTypeError, match="'zero_point' must be an int"):
        IntegerReLU(0.5)  # type: ignore[arg-type]
    assert IntegerReLU(2)(numpy.array([[1, 2, 3]], dtype=numpy.uint8)).tolist() == [[2, 2, 3]]
    assert IntegerFlatten()(numpy.zeros((2, 3, 4), dtype=numpy.int8)).shape == (2, 12)


def test_from_float_handles_ranges_of_one_value() -> None:
    # A channel holding one negative weight, and a constant calibration input: the seed's rule
    # for a range of one value v gives the scale v (negative here); the network keeps positive
    # scales with the same real values (codes -1 at scale |v|; the range widened to hold 0).
    model = [Linear(numpy.array([[-0.5], [0.3]]), numpy.array([1.0, 2.0]))]
    network = IntegerNetwork.from_float(model, numpy.full((5, 1), -2.0), bits=8)
    layer = network.layers[0]
    numpy.testing.assert_array_equal(layer.weight_scale, [0.5, 0.3])
    numpy.testing.assert_array_equal(layer.weight_codes.ravel(), [-1, 1])
    assert network.input_quantizer.scale > 0
    x = numpy.array([[-2.0], [0.0]])
    expected = numpy.array([[2.0, 1.4], [1.0, 2.0]])  # the float model
    dequantized = network.dequantize_output(network(x))
    assert numpy.abs(dequantized - expected).max() <= network.output_quantizer.scale

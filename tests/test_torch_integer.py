"""intquant.torch's integer networks: the integers of the numpy layers, computed by torch.

Every comparison is ``torch.equal`` on int64 tensors against the numpy executors (the layers'
``__call__``/``accumulate``/``requantize``, ``network.run``): bit for bit, for each
requantization mode and rounding, per-tensor and per-channel and asymmetric weights, linear and
convolution layers (stride, padding), 4/8/12-bit and wider codes (each product dtype), batch
shapes, the constraint mode, and random small networks (hypothesis). The compiled test uses the
``aot_eager`` backend (seconds); ``INTQUANT_TEST_INDUCTOR=1`` also runs inductor.
"""

from __future__ import annotations

import os
from typing import Any

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip(
    "torch", reason="intquant.torch's integer networks need PyTorch (intquant[torch])"
)

import intquant  # noqa: E402
from intquant import QuantizedArray  # noqa: E402
from intquant.errors import (  # noqa: E402
    InvalidDtypeError,
    InvalidOptionsError,
    InvalidTypeError,
    InvalidValueError,
)
from intquant.integer import (  # noqa: E402
    Conv2d,
    DropLowBits,
    FixedPoint,
    Flatten,
    FloatRescale,
    IntegerConv2d,
    IntegerFlatten,
    IntegerLinear,
    IntegerNetwork,
    IntegerReLU,
    Linear,
    PowerOfTwo,
    ReLU,
)
from intquant.integer.rounding import round_shift as numpy_round_shift  # noqa: E402
from intquant.torch import (  # noqa: E402
    IntegerFlattenModule,
    IntegerLayerModule,
    IntegerNetworkModule,
    IntegerReLUModule,
    float32_is_exact,
    integer_module,
    round_shift,
    run_integer_network,
)

ROUNDINGS = ("half_even", "half_away", "half_up")
FLOAT_RESCALE = FloatRescale()
MODES: tuple[Any, ...] = (
    FloatRescale(),
    *(FixedPoint(rounding=rounding) for rounding in ROUNDINGS),
    FixedPoint(multiplier_bits=12, rounding="half_even"),
    *(PowerOfTwo(rounding=rounding) for rounding in ROUNDINGS),
    DropLowBits(bits=3),
    DropLowBits(target_bits=10),
)


# -- helpers


def _quantizer(bits: int, low: float, high: float, signed: bool = False) -> Any:
    return QuantizedArray(bits, numpy.array([low, high]), is_signed=signed).quantizer


def _tensor(array: numpy.ndarray) -> Any:
    return torch.from_numpy(numpy.array(array))  # a C-contiguous copy, 0-d kept


def _assert_same(actual: Any, expected: numpy.ndarray) -> None:
    assert isinstance(actual, torch.Tensor)
    assert actual.dtype == torch.int64
    reference = torch.from_numpy(numpy.asarray(expected))
    assert reference.dtype == torch.int64
    assert actual.shape == reference.shape
    if not torch.equal(actual, reference):
        differ = int((actual != reference).sum())
        raise AssertionError(f"{differ} of {actual.numel()} codes differ from numpy's")


def _input_codes(layer: Any, shape: tuple[int, ...], rng: numpy.random.Generator) -> numpy.ndarray:
    low, high = layer.accumulator_plan.input_range
    return rng.integers(low, high, size=shape, endpoint=True, dtype=numpy.int64)


def _linear(
    rng: numpy.random.Generator,
    *,
    in_features: int = 24,
    out_features: int = 7,
    input_bits: int = 8,
    weight_bits: int = 8,
    output_bits: int | None = 8,
    per_channel: bool = True,
    asymmetric: bool = False,
    requantization: Any = FLOAT_RESCALE,
    relu: bool = False,
    bias: bool = True,
) -> IntegerLinear:
    """A linear layer from random weight codes (signed, or unsigned around a zero point)."""
    input_quantizer = _quantizer(input_bits, -1.5, 2.0)
    output_quantizer = None if output_bits is None else _quantizer(output_bits, -3.0, 4.0)
    half = 2 ** (weight_bits - 1)
    if asymmetric:  # unsigned codes, a zero point per channel around the middle
        codes = rng.integers(0, 2 * half, size=(out_features, in_features))
        zero_point: Any = rng.integers(half // 2, half + half // 2 + 1, size=out_features)
    else:
        codes = rng.integers(-half, half, size=(out_features, in_features))
        zero_point = 0
    scale: Any = rng.uniform(0.5, 2.0, size=out_features) / half if per_channel else 1.0 / half
    bias_codes = rng.integers(-(2**12), 2**12, size=out_features) if bias else None
    return IntegerLinear(
        codes,
        scale,
        input_quantizer=input_quantizer,
        output_quantizer=output_quantizer,
        weight_zero_point=zero_point,
        bias_codes=bias_codes,
        requantization=requantization,
        relu=relu,
        weight_bits=weight_bits,
        weight_signed=not asymmetric,
    )


def _conv(
    rng: numpy.random.Generator,
    *,
    channels: int = 3,
    out_channels: int = 5,
    kernel: tuple[int, int] = (3, 3),
    stride: Any = 1,
    padding: Any = 0,
    input_bits: int = 8,
    weight_bits: int = 8,
    asymmetric: bool = False,
    requantization: Any = FLOAT_RESCALE,
    output_bits: int | None = 8,
) -> IntegerConv2d:
    input_quantizer = _quantizer(input_bits, -0.5, 3.0)  # zero point inside the codes: padding matters
    output_quantizer = None if output_bits is None else _quantizer(output_bits, -6.0, 6.0)
    half = 2 ** (weight_bits - 1)
    shape = (out_channels, channels, *kernel)
    if asymmetric:
        codes = rng.integers(0, 2 * half, size=shape)
        zero_point: Any = rng.integers(half // 2, half + half // 2 + 1, size=out_channels)
    else:
        codes = rng.integers(-half, half, size=shape)
        zero_point = 0
    return IntegerConv2d(
        codes,
        rng.uniform(0.5, 2.0, size=out_channels) / (half * channels),
        input_quantizer=input_quantizer,
        output_quantizer=output_quantizer,
        weight_zero_point=zero_point,
        bias_codes=rng.integers(-500, 500, size=out_channels),
        requantization=requantization,
        stride=stride,
        padding=padding,
        weight_bits=weight_bits,
        weight_signed=not asymmetric,
    )


def _check_layer(layer: Any, codes: numpy.ndarray) -> None:
    """The module's accumulators and outputs are the numpy layer's, bit for bit."""
    module = IntegerLayerModule.from_layer(layer)
    _assert_same(module.accumulate(_tensor(codes)), layer.accumulate(codes))
    _assert_same(module(_tensor(codes)), layer(codes))


# -- round_shift


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=20),
    shift=st.integers(0, 63),
    rounding=st.sampled_from(ROUNDINGS),
)
def test_round_shift_matches_numpy(values: list[int], shift: int, rounding: str) -> None:
    array = numpy.array(values, dtype=numpy.int64)
    expected = numpy_round_shift(array, shift, rounding)
    _assert_same(round_shift(torch.tensor(values, dtype=torch.int64), shift, rounding), expected)
    shifts = numpy.resize(numpy.array([shift, max(shift - 7, 0), 1, 0]), array.shape)
    _assert_same(
        round_shift(_tensor(array), _tensor(shifts), rounding), numpy_round_shift(array, shifts, rounding)
    )


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_round_shift_ties_and_left_shifts(rounding: str) -> None:
    values = numpy.arange(-40, 41, dtype=numpy.int64)
    for shift in (-3, -1, 0, 1, 2, 3):
        _assert_same(
            round_shift(_tensor(values), shift, rounding), numpy_round_shift(values, shift, rounding)
        )
    mixed = numpy.resize(numpy.array([-2, 0, 1, 3]), values.shape)
    _assert_same(
        round_shift(_tensor(values), _tensor(mixed), rounding), numpy_round_shift(values, mixed, rounding)
    )
    # by hand: -2.5, -1.5, 1.5, 2.5
    halves = round_shift(torch.tensor([-5, -3, 3, 5]), 1, rounding).tolist()
    assert (
        halves
        == {"half_even": [-2, -2, 2, 2], "half_away": [-3, -2, 2, 3], "half_up": [-2, -1, 2, 3]}[rounding]
    )


def test_round_shift_refuses_unknown_rounding_and_shift() -> None:
    with pytest.raises(InvalidValueError, match=r"rounding must be one of .*got 'nearest'"):
        round_shift(torch.tensor([1]), 1, "nearest")
    with pytest.raises(InvalidValueError, match=r"shift must be in \[-63, 63\]; got 64"):
        round_shift(torch.tensor([1]), 64, "half_up")
    with pytest.raises(
        InvalidDtypeError, match=r"round_shift takes an int64 tensor of values; got torch.int32"
    ):
        round_shift(torch.tensor([1], dtype=torch.int32), 1, "half_up")


# -- layers


@pytest.mark.parametrize("mode", MODES, ids=repr)
@pytest.mark.parametrize("per_channel", [True, False], ids=["per_channel", "per_tensor"])
def test_linear_matches_numpy_for_each_mode(mode: Any, per_channel: bool) -> None:
    rng = numpy.random.default_rng(1)
    layer = _linear(rng, per_channel=per_channel, requantization=mode)
    assert layer.requant_plan is not None
    expected_formula = "float" if isinstance(mode, (FloatRescale, DropLowBits)) else "integer"
    assert layer.requant_plan.formula == expected_formula
    _check_layer(layer, _input_codes(layer, (50, 24), rng))


@pytest.mark.parametrize("mode", MODES, ids=repr)
def test_asymmetric_weights_and_relu(mode: Any) -> None:
    rng = numpy.random.default_rng(2)
    layer = _linear(rng, asymmetric=True, relu=True, requantization=mode)
    assert bool((layer.accumulator_plan.weight_zero_point != 0).all())
    codes = _input_codes(layer, (4, 9, 24), rng)  # batch shape (4, 9)
    _check_layer(layer, codes)
    _check_layer(layer, codes[0, 0])  # no batch axis: (24,) -> (7,)
    assert (
        int(IntegerLayerModule.from_layer(layer)(_tensor(codes)).min()) >= layer.requant_plan.output_range[0]
    )


@pytest.mark.parametrize(
    ("stride", "padding", "kernel"),
    [(1, 0, (3, 3)), ((2, 1), (1, 2), (3, 3)), (2, 1, (2, 1)), ((1, 3), (2, 0), (1, 2))],
)
@pytest.mark.parametrize("asymmetric", [False, True], ids=["symmetric", "asymmetric"])
def test_conv_matches_numpy(stride: Any, padding: Any, kernel: tuple[int, int], asymmetric: bool) -> None:
    rng = numpy.random.default_rng(3)
    for mode in (FloatRescale(), FixedPoint(rounding="half_away"), PowerOfTwo(), DropLowBits(bits=2)):
        layer = _conv(
            rng, kernel=kernel, stride=stride, padding=padding, asymmetric=asymmetric, requantization=mode
        )
        codes = _input_codes(layer, (3, 3, 9, 8), rng)
        _check_layer(layer, codes)


def test_layers_without_output_quantizer_give_accumulators() -> None:
    rng = numpy.random.default_rng(4)
    for layer, shape in (
        (_linear(rng, output_bits=None, asymmetric=True), (6, 24)),
        (_conv(rng, output_bits=None, padding=1), (2, 3, 5, 5)),
    ):
        codes = _input_codes(layer, shape, rng)
        module = IntegerLayerModule.from_layer(layer)
        _assert_same(module(_tensor(codes)), layer(codes))
        with pytest.raises(InvalidOptionsError, match="no output quantizer"):
            module.requantize(module.accumulate(_tensor(codes)))


def test_requantize_alone_matches_numpy_and_checks_ranges() -> None:
    rng = numpy.random.default_rng(5)
    layer = _conv(rng, requantization=FixedPoint())
    module = IntegerLayerModule.from_layer(layer)
    plan = layer.accumulator_plan
    accumulators = rng.integers(plan.accumulator_min, plan.accumulator_max, size=(2, 4, 3, 5), endpoint=True)
    accumulators = numpy.moveaxis(accumulators, -1, 1)  # (N, O, H, W), each channel in its range
    _assert_same(module.requantize(_tensor(accumulators)), layer.requantize(accumulators))
    beyond = accumulators.copy()
    beyond[1, 2, 0, 0] = plan.accumulator_max[2] + 1
    with pytest.raises(InvalidValueError, match=r"channel 2 has .* outside"):
        module.requantize(_tensor(beyond))
    with pytest.raises(InvalidValueError, match=r"accumulators must have shape \(N, 5, H, W\)"):
        module.requantize(_tensor(accumulators[0]))


@pytest.mark.parametrize(
    ("bits", "product_dtype"),
    [(4, "float32"), (8, "float32"), (12, "float64")],
)
def test_each_product_dtype(bits: int, product_dtype: str) -> None:
    rng = numpy.random.default_rng(bits)
    linear = _linear(rng, in_features=64, input_bits=bits, weight_bits=bits, output_bits=bits)
    conv = _conv(rng, channels=8, input_bits=bits, weight_bits=bits, output_bits=bits, padding=1)
    for layer, shape in ((linear, (33, 64)), (conv, (2, 8, 7, 6))):
        assert layer.accumulator_plan.product_dtype == product_dtype
        _check_layer(layer, _input_codes(layer, shape, rng))


def _wide_layer(kind: str, rng: numpy.random.Generator) -> Any:
    """A layer whose raw-code product needs int64: 20-bit input codes near a zero point of about
    2**20 (the input range narrowed around it) and 31-bit weight codes; the centered worst case
    stays far below 2**53."""
    input_quantizer, output_quantizer = _quantizer(20, -1.0, 0.001), _quantizer(8, -1.0, 1.0)
    zp = int(input_quantizer.zero_point)
    # M = s_x * s_w / s_y = 1e-8 against accumulators of about 2**34: output codes of all sizes
    weight_scale = 1e-8 * float(output_quantizer.scale) / float(input_quantizer.scale)
    common: dict[str, Any] = {
        "input_quantizer": input_quantizer,
        "output_quantizer": output_quantizer,
        "input_range": (zp - 3, min(zp + 3, 2**20 - 1)),
        "weight_bits": 32,
        "requantization": FixedPoint(),
    }
    if kind == "linear":
        codes = rng.integers(-(2**31), 2**31, size=(3, 8))
        return IntegerLinear(codes, weight_scale, bias_codes=rng.integers(-100, 100, size=3), **common)
    codes = rng.integers(-(2**31), 2**31, size=(3, 2, 2, 2))
    return IntegerConv2d(codes, weight_scale, padding=1, stride=(1, 2), **common)


@pytest.mark.parametrize("kind", ["linear", "conv2d"])
def test_int64_product(kind: str) -> None:
    rng = numpy.random.default_rng(6)
    layer = _wide_layer(kind, rng)
    assert layer.accumulator_plan.product_dtype == "int64"
    shape = (5, 8) if kind == "linear" else (2, 2, 4, 5)
    _check_layer(layer, _input_codes(layer, shape, rng))


def test_float32_falls_back_to_float64_when_torch_would_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """With oneDNN disabled, CPU torch convolves float32 with NNPACK's Winograd transform, which
    rounds integer products: the module then computes in float64 and stays exact."""
    rng = numpy.random.default_rng(7)
    layer = _conv(rng, channels=8, out_channels=16, padding=1)
    assert layer.accumulator_plan.product_dtype == "float32"
    codes = _input_codes(layer, (32, 8, 12, 12), rng)  # a batch of 16 or more: NNPACK's case
    cpu = torch.device("cpu")
    assert float32_is_exact(cpu, convolution=True)
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)
    assert not float32_is_exact(cpu, convolution=True)
    assert float32_is_exact(cpu, convolution=False)  # matmul does not use NNPACK
    _check_layer(layer, codes)
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", True)
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")  # TF32 allowed: float32 no longer trusted
        assert not float32_is_exact(cpu, convolution=False)
        linear = _linear(rng)
        _check_layer(linear, _input_codes(linear, (20, 24), rng))
    finally:
        torch.set_float32_matmul_precision(previous)


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int16, torch.int32])
def test_narrow_integer_codes(dtype: Any) -> None:
    rng = numpy.random.default_rng(8)
    layer = _linear(rng, input_bits=7)  # codes 0..127 fit int8 and uint8
    codes = _input_codes(layer, (10, 24), rng)
    module = IntegerLayerModule.from_layer(layer)
    _assert_same(module(_tensor(codes).to(dtype)), layer(codes))


def test_empty_batches() -> None:
    rng = numpy.random.default_rng(9)
    layer = _linear(rng, requantization=FixedPoint())
    conv = _conv(rng)
    _assert_same(
        IntegerLayerModule.from_layer(layer)(torch.zeros((0, 24), dtype=torch.int64)),
        layer(numpy.zeros((0, 24), dtype=numpy.int64)),
    )
    empty = numpy.zeros((0, 3, 5, 5), dtype=numpy.int64)
    _assert_same(IntegerLayerModule.from_layer(conv)(_tensor(empty)), conv(empty))


# -- elements and networks


def test_relu_and_flatten_modules() -> None:
    codes = numpy.arange(-6, 18, dtype=numpy.int64).reshape(2, 3, 2, 2)
    _assert_same(IntegerReLUModule.from_element(IntegerReLU(3))(_tensor(codes)), IntegerReLU(3)(codes))
    _assert_same(IntegerFlattenModule()(_tensor(codes)), IntegerFlatten()(codes))
    _assert_same(IntegerFlattenModule()(_tensor(codes[:, 0, 0, 0])), IntegerFlatten()(codes[:, 0, 0, 0]))
    with pytest.raises(
        InvalidDtypeError, match=r"IntegerReLU input codes must be integer codes; got dtype torch.float32"
    ):
        IntegerReLUModule(0)(torch.zeros(3))
    with pytest.raises(InvalidValueError, match="IntegerFlatten needs codes with a batch axis"):
        IntegerFlattenModule()(torch.tensor(3))
    with pytest.raises(InvalidTypeError, match="got str"):
        integer_module("relu")  # type: ignore[arg-type]


def _digits_like(rng: numpy.random.Generator, samples: int = 120) -> numpy.ndarray:
    return rng.normal(size=(samples, 1, 8, 8)) + numpy.linspace(-1, 1, 64).reshape(1, 1, 8, 8)


def _conv_network(rng: numpy.random.Generator, **options: Any) -> tuple[IntegerNetwork, numpy.ndarray]:
    model = [
        Conv2d(rng.normal(size=(4, 1, 3, 3)), rng.normal(size=4), stride=1, padding=1),
        ReLU(),
        Conv2d(rng.normal(size=(6, 4, 3, 3)) / 3, rng.normal(size=6), stride=2, padding=(1, 0)),
        ReLU(),
        Flatten(),
        Linear(rng.normal(size=(16, 6 * 4 * 3)) / 8, rng.normal(size=16)),
        ReLU(),
        Linear(rng.normal(size=(10, 16)) / 4, rng.normal(size=10)),
    ]
    x = _digits_like(rng)
    return IntegerNetwork.from_float(model, x, **options), x


@pytest.mark.parametrize(
    "options",
    [
        {"bits": 8},
        {"bits": 4, "per_channel": False},
        {"bits": 12, "requantization": FixedPoint(rounding="half_up")},
        {"bits": 8, "requantization": PowerOfTwo(rounding="half_away")},
        {"bits": 8, "requantization": DropLowBits(target_bits=12)},
        {"bits": 8, "accumulator_bits": 16},
        {"bits": 8, "accumulator_bits": 12, "requantization": FixedPoint()},
        {"weight_bits": 4, "activation_bits": 8, "output_bits": 12},
    ],
    ids=repr,
)
def test_network_matches_numpy(options: dict[str, Any]) -> None:
    rng = numpy.random.default_rng(10)
    network, x = _conv_network(rng, **options)
    codes = network.quantize_input(x)
    module = IntegerNetworkModule(network)
    _assert_same(module(_tensor(codes)), network.run(codes))
    for actual, expected in zip(
        module.intermediates(_tensor(codes)), network.intermediates(codes), strict=True
    ):
        _assert_same(actual, expected)
    if "accumulator_bits" in options:
        assert network.accumulator_report(limit_bits=options["accumulator_bits"]).fits


def test_float_input_and_helpers_match_numpy() -> None:
    rng = numpy.random.default_rng(11)
    network, x = _conv_network(rng, bits=8)
    for dtype in (numpy.float64, numpy.float32):
        values = x.astype(dtype)
        module = IntegerNetworkModule(network, float_input=True)
        expected = network(values)
        _assert_same(module(_tensor(values)), expected)
        _assert_same(module.quantize_input(_tensor(values)), network.quantize_input(values))
        _assert_same(module.predict(_tensor(values)), network.predict(values))
        _assert_same(run_integer_network(network, _tensor(values), float_input=True), expected)
    codes = network.run(network.quantize_input(x))
    dequantized = IntegerNetworkModule(network).dequantize_output(_tensor(codes))
    assert torch.equal(dequantized, torch.from_numpy(network.dequantize_output(codes)))
    _assert_same(run_integer_network(network, _tensor(network.quantize_input(x))), codes)


def test_network_with_accumulator_output() -> None:
    rng = numpy.random.default_rng(12)
    x = rng.normal(size=(40, 5))
    network = IntegerNetwork.from_float([Linear(rng.normal(size=(3, 5)))], x, bits=8)
    module = IntegerNetworkModule(network)
    codes = network.quantize_input(x)
    _assert_same(module(_tensor(codes)), network.run(codes))
    assert torch.equal(
        module.dequantize_output(module(_tensor(codes))),
        torch.from_numpy(network.dequantize_output(network.run(codes))),
    )


def test_module_keeps_dtypes_and_state() -> None:
    rng = numpy.random.default_rng(13)
    network, x = _conv_network(rng, bits=8)
    codes = _tensor(network.quantize_input(x))
    module = IntegerNetworkModule(network)
    expected = module(codes)
    dtypes = {name: buffer.dtype for name, buffer in module.named_buffers()}
    assert dtypes["elements.0.multiplier"] == torch.float64
    module.half()  # casts float buffers of ordinary modules; these keep their dtypes
    assert {name: buffer.dtype for name, buffer in module.named_buffers()} == dtypes
    assert torch.equal(module(codes), expected)
    # the state_dict holds each module's state format only: the plans come from the network
    assert sorted(module.state_dict()) == [f"elements.{index}.state" for index in range(8)]
    other_network, _ = _conv_network(numpy.random.default_rng(99), bits=8)
    module.load_state_dict(IntegerNetworkModule(other_network).state_dict())
    assert torch.equal(module(codes), expected)
    restored = IntegerNetworkModule(intquant.loads(intquant.dumps(network)))
    assert torch.equal(restored(codes), expected)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_random_networks_match_numpy(data: st.DataObject) -> None:
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = numpy.random.default_rng(seed)
    conv = data.draw(st.booleans())
    bits = data.draw(st.sampled_from([3, 4, 6, 8, 10, 12]))
    mode = data.draw(st.sampled_from(MODES))
    per_channel = data.draw(st.booleans())
    model: list[Any] = []
    if conv:
        channels = data.draw(st.integers(1, 3))
        size = data.draw(st.integers(3, 6))
        out = data.draw(st.integers(1, 4))
        kernel = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
        stride = (data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2)))
        padding = (data.draw(st.integers(0, 1)), data.draw(st.integers(0, 1)))
        model += [
            Conv2d(
                rng.normal(size=(out, channels, *kernel)),
                rng.normal(size=out),
                stride=stride,
                padding=padding,
            ),
            ReLU(),
            Flatten(),
        ]
        x = rng.normal(size=(data.draw(st.integers(1, 6)), channels, size, size))
        features = int(numpy.prod(model[0](x).shape[1:]))
    else:
        features = data.draw(st.integers(1, 12))
        x = rng.normal(size=(data.draw(st.integers(1, 6)), features)) * data.draw(
            st.sampled_from([0.1, 1.0, 30.0])
        )
    hidden = data.draw(st.integers(1, 8))
    model += [Linear(rng.normal(size=(hidden, features))), ReLU(), Linear(rng.normal(size=(3, hidden)))]
    try:
        network = IntegerNetwork.from_float(model, x, bits=bits, per_channel=per_channel, requantization=mode)
    except (
        InvalidValueError
    ):  # e.g. a fixed-point shift out of range for this draw: not this backend's concern
        return
    codes = network.quantize_input(x)
    module = IntegerNetworkModule(network)
    _assert_same(module(_tensor(codes)), network.run(codes))


# -- unhappy paths


def test_refuses_bad_codes_as_numpy_does() -> None:
    rng = numpy.random.default_rng(14)
    network, x = _conv_network(rng, bits=8)
    module = IntegerNetworkModule(network)
    codes = network.quantize_input(x)
    with pytest.raises(
        InvalidDtypeError, match=r"codes must be integer codes; got dtype torch.float64 .*quantize_input"
    ):
        module(torch.from_numpy(x))
    with pytest.raises(InvalidTypeError, match=r"must be a torch.Tensor of integer codes; got ndarray"):
        module(codes)  # type: ignore[arg-type]
    beyond = codes.copy()
    beyond[0, 0, 0, 0] = 256
    with pytest.raises(
        InvalidValueError, match=r"input codes must lie in \[0, 255\]; got codes from \d+ to 256"
    ):
        module(_tensor(beyond))
    with pytest.raises(
        InvalidValueError, match=r"IntegerConv2d input codes must have shape \(N, 1, H, W\); got \(2, 64\)"
    ):
        module(_tensor(codes.reshape(-1, 64)[:2]))
    with pytest.raises(InvalidValueError, match=r"smaller than the kernel"):
        module(_tensor(codes[:, :, :0, :]))
    with pytest.raises(InvalidDtypeError, match=r"got dtype torch.bool"):
        module(torch.zeros((1, 1, 8, 8), dtype=torch.bool))
    with pytest.raises(InvalidDtypeError, match=r"got dtype torch.int64"):
        module.quantize_input(_tensor(codes))
    with pytest.raises(
        InvalidTypeError, match=r"IntegerNetworkModule takes an intquant.integer.IntegerNetwork; got list"
    ):
        IntegerNetworkModule([])  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match="float_input must be a bool; got int"):
        IntegerNetworkModule(network, float_input=1)  # type: ignore[arg-type]


def test_layer_refuses_like_numpy() -> None:
    rng = numpy.random.default_rng(15)
    layer = _linear(rng, relu=True)
    module = IntegerLayerModule.from_layer(layer)
    codes = _input_codes(layer, (3, 24), rng)
    for bad in (codes[:, :5], numpy.array(5)):
        with pytest.raises(InvalidValueError) as numpy_error:
            layer(bad)
        with pytest.raises(InvalidValueError) as torch_error:
            module(_tensor(bad))
        assert str(torch_error.value) == str(numpy_error.value)
    below = codes.copy()
    below[1, 1] = -1
    with pytest.raises(InvalidValueError) as numpy_error:
        layer(below)
    with pytest.raises(InvalidValueError) as torch_error:
        module(_tensor(below))
    assert str(torch_error.value) == str(numpy_error.value)
    with pytest.raises(InvalidTypeError, match="takes an IntegerLinear or IntegerConv2d; got IntegerReLU"):
        IntegerLayerModule.from_layer(IntegerReLU(0))  # type: ignore[arg-type]
    with pytest.raises(
        InvalidTypeError, match=r"needs an intquant.integer.plan.AccumulatorPlan; got NoneType"
    ):
        IntegerLayerModule(None)  # type: ignore[arg-type]


def test_codes_after_a_relu_below_the_zero_point_are_refused() -> None:
    """A layer after a fused ReLU proves its bounds over (zp, qmax): the module refuses codes
    below zp, as the numpy layer does; the network's first layer feeds it only such codes."""
    rng = numpy.random.default_rng(16)
    first_input, middle = _quantizer(8, -1.0, 1.0), _quantizer(8, -1.0, 2.0)
    zp = int(middle.zero_point)
    assert zp > 0
    first = IntegerLinear(
        rng.integers(-127, 128, size=(5, 6)),
        0.01,
        input_quantizer=first_input,
        output_quantizer=middle,
        relu=True,
    )
    second = IntegerLinear(
        rng.integers(-127, 128, size=(2, 5)),
        0.01,
        input_quantizer=middle,
        output_quantizer=_quantizer(8, -5.0, 5.0),
        input_range=(zp, 255),
        requantization=FixedPoint(),
    )
    network = IntegerNetwork(first_input, [first, second])
    codes = rng.integers(0, 256, size=(30, 6))
    module = IntegerNetworkModule(network)
    _assert_same(module(_tensor(codes)), network.run(codes))
    below = numpy.full((1, 5), zp - 1)
    with pytest.raises(
        InvalidValueError, match=rf"input codes must lie in \[{zp}, 255\]; got codes from {zp - 1}"
    ):
        module.elements[1](_tensor(below))
    with pytest.raises(InvalidValueError, match=rf"input codes must lie in \[{zp}, 255\]"):
        second(below)


# -- torch.compile


def _compiled_matches(backend: str) -> None:
    torch._dynamo.reset()
    rng = numpy.random.default_rng(17)
    network, x = _conv_network(rng, bits=8, requantization=FixedPoint())
    codes = _tensor(network.quantize_input(x))
    module = IntegerNetworkModule(network)
    compiled = torch.compile(module, backend=backend, fullgraph=True)
    _assert_same(compiled(codes), network.run(codes.numpy()))
    _assert_same(compiled(codes[:7]), network.run(codes[:7].numpy()))
    beyond = codes.clone()
    beyond[0, 0, 0, 0] = 300
    with pytest.raises(RuntimeError, match=r"input codes must lie in \[0, 255\]"):
        compiled(beyond)


def test_compiled_module_gives_the_same_integers() -> None:
    _compiled_matches("aot_eager")


@pytest.mark.skipif(
    os.environ.get("INTQUANT_TEST_INDUCTOR") != "1",
    reason="inductor compiles C++ (about a minute here); set INTQUANT_TEST_INDUCTOR=1 to run it",
)
@pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"
)  # inductor's imports
def test_inductor_module_gives_the_same_integers() -> None:
    _compiled_matches("inductor")

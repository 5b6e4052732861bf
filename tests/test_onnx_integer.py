"""intquant.onnx.integer: integer layers and networks exported to ONNX give, run by onnxruntime,
exactly the int64 codes of the numpy executors (``network.run``, ``layer(codes)``), on every
route (MatMulInteger/ConvInteger, the float routes), every requantization mode and rounding."""

from __future__ import annotations

from typing import Any

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import intquant
from intquant.errors import InvalidTypeError, InvalidValueError
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
)
from intquant.integer.plan import ROUNDINGS
from intquant.onnx import integer_layer_to_onnx, integer_network_to_onnx
from intquant.packing import unpack_codes

onnx = pytest.importorskip(
    "onnx", reason="intquant.onnx.integer builds models with onnx: pip install 'intquant[onnx]'"
)
ort = pytest.importorskip(
    "onnxruntime",
    reason="the exported models are checked by running them in onnxruntime: pip install onnxruntime",
)

MODES = (
    FloatRescale(),
    *(FixedPoint(rounding=rounding) for rounding in ROUNDINGS),
    FixedPoint(multiplier_bits=12),
    *(PowerOfTwo(rounding=rounding) for rounding in ROUNDINGS),
    DropLowBits(bits=3),
    DropLowBits(target_bits=10),
)
INTEGER_OPS = {"MatMulInteger", "ConvInteger"}


# -- helpers


def quantizer(n_bits: int, scale: float, zero_point: int, signed: bool = False) -> intquant.UniformQuantizer:
    """A per-tensor quantizer with these parameters, made by hand."""
    options = intquant.QuantizationOptions(n_bits, is_signed=signed)
    offset = 2 ** (n_bits - 1) if signed else 0
    return intquant.UniformQuantizer(
        options, params=intquant.UniformQuantizationParameters(scale, zero_point, offset)
    )


def session(model: Any, optimized: bool = True) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    if not optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run(model: Any, x: numpy.ndarray, optimized: bool = True) -> numpy.ndarray:
    """``model`` checked (full check, with shape inference) and run on ``x``."""
    onnx.checker.check_model(model, full_check=True)
    (output,) = session(model, optimized).run(None, {model.graph.input[0].name: x})
    return numpy.asarray(output)


def assert_same(actual: numpy.ndarray, expected: numpy.ndarray) -> None:
    assert actual.dtype == numpy.int64
    assert expected.dtype == numpy.int64
    numpy.testing.assert_array_equal(actual, expected, strict=True)


def ops(model: Any) -> list[str]:
    return [node.op_type for node in model.graph.node]


def four_bit_initializers(model: Any) -> list[Any]:
    kinds = (onnx.TensorProto.INT4, onnx.TensorProto.UINT4)
    return [tensor for tensor in model.graph.initializer if tensor.data_type in kinds]


def input_codes(layer: Any, shape: tuple[int, ...], rng: numpy.random.Generator) -> numpy.ndarray:
    low, high = layer.accumulator_plan.input_range
    return rng.integers(low, high, size=shape, endpoint=True, dtype=numpy.int64)


def mlp(rng: numpy.random.Generator) -> list[Any]:
    return [
        Linear(rng.normal(size=(12, 9)), rng.normal(size=12)),
        ReLU(),
        Linear(rng.normal(size=(5, 12)), rng.normal(size=5)),
    ]


def cnn(rng: numpy.random.Generator) -> list[Any]:
    """Two convolutions (stride (2, 1), padding (1, 2); padding 1) and a linear layer, for
    inputs (N, 3, 9, 8): (N, 5, 5, 11), then (N, 4, 6, 12)."""
    return [
        Conv2d(rng.normal(size=(5, 3, 3, 2)), rng.normal(size=5), stride=(2, 1), padding=(1, 2)),
        ReLU(),
        Conv2d(rng.normal(size=(4, 5, 2, 2)), rng.normal(size=4), padding=1),
        ReLU(),
        Flatten(),
        Linear(rng.normal(size=(3, 4 * 6 * 12)), rng.normal(size=3)),
    ]


# -- every requantization mode and rounding, on both layer kinds


@pytest.mark.parametrize("mode", MODES, ids=repr)
def test_mlp_every_mode(mode: Any) -> None:
    rng = numpy.random.default_rng(1)
    x = rng.normal(size=(41, 9))
    network = IntegerNetwork.from_float(mlp(rng), x, bits=8, requantization=mode)
    model = integer_network_to_onnx(network)
    assert ops(model).count("MatMulInteger") == 2
    codes = network.quantize_input(x)
    assert_same(run(model, codes), network.run(codes))


@pytest.mark.parametrize("mode", MODES, ids=repr)
def test_cnn_every_mode(mode: Any) -> None:
    rng = numpy.random.default_rng(2)
    x = rng.normal(size=(7, 3, 9, 8))
    network = IntegerNetwork.from_float(cnn(rng), x, bits=8, requantization=mode)
    model = integer_network_to_onnx(network)
    assert ops(model).count("ConvInteger") == 2 and ops(model).count("MatMulInteger") == 1
    codes = network.quantize_input(x)
    assert_same(run(model, codes), network.run(codes))


def every_code_layer(mode: Any) -> IntegerLinear:
    """``acc = q_x - 128`` for every input code (K = 1, weight code 1, two channels of real
    multipliers 1/8 and 2): each shift meets its ties, positive and negative, and the output
    clip; PowerOfTwo's second channel shifts left (s = -1)."""
    return IntegerLinear(
        [[1], [1]],
        [0.25, 4.0],
        input_quantizer=quantizer(8, 0.5, 128),
        output_quantizer=quantizer(8, 1.0, 100),
        requantization=mode,
    )


@pytest.mark.parametrize(
    "modes",
    [
        [FixedPoint(rounding=rounding) for rounding in ROUNDINGS],
        [PowerOfTwo(rounding=rounding) for rounding in ROUNDINGS],
    ],
    ids=["fixed_point", "power_of_two"],
)
def test_roundings_at_every_tie(modes: list[Any]) -> None:
    codes = numpy.arange(256, dtype=numpy.int64).reshape(-1, 1)
    expected = []
    for mode in modes:
        layer = every_code_layer(mode)
        assert layer.requant_plan is not None and layer.requant_plan.formula == "integer"
        shifts = layer.requant_plan.shift
        assert len(set(shifts.tolist())) == 2  # per-channel shifts broadcast
        assert shifts.max() > 0 and (shifts.min() <= 0) == (layer.requant_plan.mode == "power_of_two")
        reference = layer(codes)
        for optimized in (True, False):
            assert_same(run(integer_layer_to_onnx(layer), codes, optimized), reference)
        expected.append(reference)
    # the data tell the three rules apart, so a wrong rule cannot pass
    assert not numpy.array_equal(expected[0], expected[1])
    assert not numpy.array_equal(expected[0], expected[2])
    assert not numpy.array_equal(expected[1], expected[2])


@pytest.mark.parametrize("mode", [FloatRescale(), DropLowBits(bits=3), DropLowBits(bits=5)], ids=repr)
def test_float_formula_at_every_tie(mode: Any) -> None:
    codes = numpy.arange(256, dtype=numpy.int64).reshape(-1, 1)
    layer = IntegerLinear(
        [[1], [3]],
        [0.25, 0.5],  # M = 1/8 and 1/4: rint meets ties (FloatRescale), half_up drops bits (DropLowBits)
        input_quantizer=quantizer(8, 0.5, 128),
        output_quantizer=quantizer(8, 1.0, 3),
        requantization=mode,
    )
    assert layer.requant_plan is not None and layer.requant_plan.formula == "float"
    assert_same(run(integer_layer_to_onnx(layer), codes), layer(codes))


# -- weights: per tensor, per channel, asymmetric; inputs signed and unsigned


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_per_tensor_and_per_channel_weights(per_channel: bool, kind: str) -> None:
    rng = numpy.random.default_rng(3)
    if kind == "linear":
        model, x = mlp(rng), rng.normal(size=(9, 9))
    else:
        model, x = cnn(rng), rng.normal(size=(3, 3, 9, 8))
    network = IntegerNetwork.from_float(model, x, per_channel=per_channel, requantization=FixedPoint())
    plan = network.layers[0].requant_plan
    assert plan is not None and (len(set(plan.multiplier.tolist())) > 1) == per_channel
    codes = network.quantize_input(x)
    assert_same(run(integer_network_to_onnx(network), codes), network.run(codes))


def asymmetric_layer(kind: str, zero_point: Any, input_quantizer: Any, rng: numpy.random.Generator) -> Any:
    """Unsigned 8-bit weights with zero points ``zero_point``, a bias, FixedPoint."""
    shared = {
        "input_quantizer": input_quantizer,
        "output_quantizer": quantizer(8, 40.0, 120),
        "weight_zero_point": zero_point,
        "weight_bits": 8,
        "weight_signed": False,
        "bias_codes": rng.integers(-3000, 3000, size=5),
        "requantization": FixedPoint(),
    }
    if kind == "linear":
        return IntegerLinear(rng.integers(0, 256, size=(5, 11)), rng.uniform(0.5, 1.0, size=5), **shared)
    return IntegerConv2d(
        rng.integers(0, 256, size=(5, 2, 3, 3)), rng.uniform(0.05, 0.1, size=5), stride=2, padding=1, **shared
    )


@pytest.mark.parametrize("zero_points", ["zero", "shared", "per_channel"])
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_asymmetric_weights(zero_points: str, kind: str) -> None:
    rng = numpy.random.default_rng(4)
    zero_point = {"zero": 0, "shared": 131, "per_channel": rng.integers(0, 256, size=5)}[zero_points]
    layer = asymmetric_layer(kind, zero_point, quantizer(8, 0.1, 77), rng)
    codes = input_codes(layer, (6, 11) if kind == "linear" else (6, 2, 7, 6), rng)
    model = integer_layer_to_onnx(layer)
    # ConvInteger takes one weight zero point: per-channel ones add a window-sum ConvInteger
    expected_ops = 1 if kind == "linear" or zero_points != "per_channel" else 2
    assert sum(op in INTEGER_OPS for op in ops(model)) == expected_ops
    assert_same(run(model, codes), layer(codes))
    assert_same(run(integer_layer_to_onnx(layer, accumulation="float"), codes), layer(codes))


@pytest.mark.parametrize("weight_signed", [True, False])
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_signed_input_codes_use_int8(weight_signed: bool, kind: str) -> None:
    """int8 input codes: the weights go to int8 as well (shifted by -128 when unsigned), since
    onnxruntime's mixed-signedness kernels are not exact."""
    rng = numpy.random.default_rng(5)
    signed_input = quantizer(8, 0.1, -5, signed=True)
    if weight_signed:
        shared = {"weight_bits": 8, "weight_signed": True, "weight_zero_point": 0}
        weights = rng.integers(-128, 128, size=(5, 11) if kind == "linear" else (5, 2, 3, 3))
    else:
        shared = {"weight_bits": 8, "weight_signed": False, "weight_zero_point": 140}
        weights = rng.integers(0, 256, size=(5, 11) if kind == "linear" else (5, 2, 3, 3))
    output = quantizer(8, 30.0, 0, signed=True)
    if kind == "linear":
        layer: Any = IntegerLinear(
            weights, 1.0, input_quantizer=signed_input, output_quantizer=output, **shared
        )
        codes = input_codes(layer, (8, 11), rng)
    else:
        layer = IntegerConv2d(
            weights, 0.2, input_quantizer=signed_input, output_quantizer=output, padding=2, **shared
        )
        codes = input_codes(layer, (2, 2, 5, 6), rng)
    codes[0] = layer.accumulator_plan.input_range[0]  # the extremes, where a saturating kernel errs
    codes[1] = layer.accumulator_plan.input_range[1]
    model = integer_layer_to_onnx(layer)
    casts = [node for node in model.graph.node if node.op_type == "Cast" and node.input[0] == "x"]
    assert [attribute.i for node in casts for attribute in node.attribute] == [onnx.TensorProto.INT8]
    assert_same(run(model, codes), layer(codes))


# -- bit widths: 8 (integer operators), 4 (INT4 initializers), 12 (float routes)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_four_bit_weights_are_int4_initializers(kind: str) -> None:
    rng = numpy.random.default_rng(6)
    if kind == "linear":
        model, x = mlp(rng), rng.normal(size=(13, 9))
    else:
        model, x = cnn(rng), rng.normal(size=(3, 3, 9, 8))
    network = IntegerNetwork.from_float(model, x, bits=4, requantization=FixedPoint())
    codes = network.quantize_input(x)
    exported = integer_network_to_onnx(network)
    packed = four_bit_initializers(exported)
    assert len(packed) == len(network.layers)
    assert all(op in INTEGER_OPS for op in ops(exported) if op.endswith("Integer"))
    assert sum(op in INTEGER_OPS for op in ops(exported)) == len(network.layers)
    # the stored nibbles are the weight codes shifted into the 4-bit type: two a byte, low first
    for tensor, layer in zip(packed, network.layers, strict=True):
        signed = tensor.data_type == onnx.TensorProto.INT4
        stored = onnx.numpy_helper.to_array(tensor).astype(numpy.int64)
        unpacked = unpack_codes(
            numpy.frombuffer(tensor.raw_data, numpy.uint8), 4, signed=signed, shape=stored.shape
        )
        numpy.testing.assert_array_equal(unpacked, stored)
        if isinstance(layer, IntegerLinear):  # stored (K, O), one shift a channel
            assert numpy.unique(stored - layer.weight_codes.T, axis=0).shape[0] == 1
        else:  # stored (O, C, kh, kw), one shift for all
            assert numpy.unique(stored - layer.weight_codes).size == 1
    assert_same(run(exported, codes), network.run(codes))
    unpacked_model = integer_network_to_onnx(network, int4_weights=False)
    assert not four_bit_initializers(unpacked_model)
    assert_same(run(unpacked_model, codes), network.run(codes))
    older = integer_network_to_onnx(network, opset=20)  # no 4-bit types before opset 21
    assert not four_bit_initializers(older)
    assert_same(run(older, codes), network.run(codes))


def test_four_bit_weights_on_the_float_route() -> None:
    rng = numpy.random.default_rng(7)
    x = rng.normal(size=(10, 9))
    network = IntegerNetwork.from_float(mlp(rng), x, weight_bits=4, activation_bits=8)
    exported = integer_network_to_onnx(network, accumulation="float")
    assert not INTEGER_OPS & set(ops(exported))
    assert [tensor.data_type for tensor in four_bit_initializers(exported)] == [onnx.TensorProto.INT4] * 2
    codes = network.quantize_input(x)
    assert_same(run(exported, codes), network.run(codes))


def test_twelve_bits_take_the_float_routes() -> None:
    rng = numpy.random.default_rng(8)
    x = rng.normal(size=(5, 3, 9, 8))
    network = IntegerNetwork.from_float(cnn(rng), x, bits=12, requantization=FixedPoint())
    exported = integer_network_to_onnx(network)
    names = ops(exported)
    assert not INTEGER_OPS & set(names)
    # beyond float32 (2**24): the convolutions' windows by a one-hot Conv, then MatMuls in float64
    assert names.count("Conv") == 2 and names.count("MatMul") == 3
    doubles = [
        node
        for node in exported.graph.node
        if node.op_type == "Cast" and node.attribute[0].i == onnx.TensorProto.DOUBLE
    ]
    assert len(doubles) >= 3
    codes = network.quantize_input(x)
    assert_same(run(exported, codes), network.run(codes))
    with pytest.raises(InvalidValueError, match="fit neither uint8 nor int8"):
        integer_network_to_onnx(network, accumulation="integer")


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_float_route_at_eight_bits(kind: str) -> None:
    rng = numpy.random.default_rng(9)
    if kind == "linear":
        model, x = mlp(rng), rng.normal(size=(7, 9))
    else:
        model, x = cnn(rng), rng.normal(size=(2, 3, 9, 8))
    network = IntegerNetwork.from_float(model, x, requantization=PowerOfTwo())
    exported = integer_network_to_onnx(network, accumulation="float")
    assert not INTEGER_OPS & set(ops(exported))
    codes = network.quantize_input(x)
    assert_same(run(exported, codes), network.run(codes))


def test_int32_bound_sends_a_layer_to_the_float_route() -> None:
    """40000 products of 8-bit codes can exceed int32 (40000 * 255 * 255 > 2**31)."""
    rng = numpy.random.default_rng(10)
    layer = IntegerLinear(
        rng.integers(-127, 128, size=(3, 40000)),
        0.01,
        input_quantizer=quantizer(8, 0.1, 0),
        output_quantizer=quantizer(8, 2000.0, 128),
    )
    with pytest.raises(InvalidValueError, match="beyond int32"):
        integer_layer_to_onnx(layer, accumulation="integer")
    exported = integer_layer_to_onnx(layer)
    assert "MatMulInteger" not in ops(exported)
    codes = numpy.full((2, 40000), 255, dtype=numpy.int64)
    codes[1] = rng.integers(0, 256, size=40000)
    assert_same(run(exported, codes), layer(codes))


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_int64_product_beyond_float64(kind: str) -> None:
    """Centered bound (2**23 - 1) * 2 * (2**30 - 1), about 2**54: an int64 MatMul (after a
    float32 window extraction for the convolution); the worst case itself is below 2**53."""
    top, weight = 2**23 - 1, 2**30 - 1
    shared = {"input_quantizer": quantizer(24, 1.0, 0), "input_range": (0, top), "weight_bits": 32}
    if kind == "linear":
        layer: Any = IntegerLinear([[weight, -weight]], 1.0, **shared)
        codes = numpy.array([[top, 0], [0, top], [top, top], [top - 1, 3]], dtype=numpy.int64)
    else:
        layer = IntegerConv2d([[[[weight, -weight]]]], 1.0, padding=(0, 1), **shared)
        codes = numpy.array([[[[top, 0, top, 5], [0, top, 1, top]]]], dtype=numpy.int64)
    exported = integer_layer_to_onnx(layer)
    assert "MatMul" in ops(exported) and "float64" not in exported.doc_string
    assert "int64 MatMul" in exported.doc_string
    assert_same(run(exported, codes), layer(codes))


def test_conv_windows_need_24_bit_codes() -> None:
    layer = IntegerConv2d(
        numpy.ones((1, 1, 1, 2), dtype=numpy.int64),
        1.0,
        input_quantizer=quantizer(28, 1.0, 2**27),
        weight_bits=2,
    )
    with pytest.raises(InvalidValueError, match="cannot hold; use at most 24-bit input codes"):
        integer_layer_to_onnx(layer)


# -- batches, float inputs, accumulators, opsets


def test_batch_sizes_one_and_odd() -> None:
    rng = numpy.random.default_rng(11)
    x = rng.normal(size=(31, 3, 9, 8))
    network = IntegerNetwork.from_float(cnn(rng), x, requantization=FixedPoint())
    model = session(integer_network_to_onnx(network))
    for size in (1, 7, 31):
        codes = network.quantize_input(x[:size])
        (output,) = model.run(None, {"x": codes})
        assert output.shape == (size, 3)
        assert_same(output, network.run(codes))


@pytest.mark.parametrize("dtype", [numpy.float16, numpy.float32, numpy.float64])
def test_float_inputs(dtype: Any) -> None:
    rng = numpy.random.default_rng(12)
    x = rng.normal(size=(25, 9)).astype(dtype)
    network = IntegerNetwork.from_float(mlp(rng), x.astype(numpy.float64), requantization=DropLowBits(bits=2))
    exported = integer_network_to_onnx(network, inputs="float", input_dtype=dtype)
    assert exported.graph.input[0].type.tensor_type.elem_type == onnx.helper.np_dtype_to_tensor_dtype(
        numpy.dtype(dtype)
    )
    assert_same(run(exported, x), network(x))
    # values beyond the calibration range clip like intquant's quantizer
    wide = (x * 40).astype(dtype)
    assert_same(run(exported, wide), network(wide))


def test_float_inputs_of_a_conv_layer() -> None:
    rng = numpy.random.default_rng(13)
    x = rng.normal(size=(4, 3, 9, 8))
    network = IntegerNetwork.from_float(cnn(rng), x)
    layer = network.layers[0]
    exported = integer_layer_to_onnx(layer, inputs="float", input_dtype=numpy.float64)
    assert_same(run(exported, x), layer(layer.input_quantizer.quant(x).astype(numpy.int64)))


def test_a_layer_without_output_quantizer_outputs_accumulators() -> None:
    rng = numpy.random.default_rng(14)
    layer = IntegerConv2d(
        rng.integers(-8, 8, size=(3, 2, 2, 2)),
        0.1,
        input_quantizer=quantizer(8, 0.5, 9),
        bias_codes=[100, -7, 0],
        stride=(1, 2),
        padding=(2, 0),
        weight_bits=4,
    )
    codes = input_codes(layer, (3, 2, 6, 7), rng)
    exported = integer_layer_to_onnx(layer)
    assert len(four_bit_initializers(exported)) == 1
    assert_same(run(exported, codes), layer(codes))


def test_oldest_opset_and_names() -> None:
    rng = numpy.random.default_rng(15)
    x = rng.normal(size=(6, 9))
    network = IntegerNetwork.from_float(mlp(rng), x, bits=4, requantization=FixedPoint(rounding="half_away"))
    exported = integer_network_to_onnx(network, opset=13, input_name="codes", output_name="input_codes")
    assert exported.opset_import[0].version == 13 and not four_bit_initializers(exported)
    assert [value.name for value in exported.graph.input] == ["codes"]
    assert [value.name for value in exported.graph.output] == ["input_codes"]
    codes = network.quantize_input(x)
    assert_same(run(exported, codes), network.run(codes))
    floats = integer_network_to_onnx(
        network, inputs="float", input_name="input_float64", output_name="input_codes"
    )
    assert_same(run(floats, x.astype(numpy.float32)), network(x.astype(numpy.float32)))


def test_declared_shapes() -> None:
    rng = numpy.random.default_rng(19)
    # a flatten first: any rank; the default declares (batch, ?, ?, ?)
    x = rng.normal(size=(5, 2, 6))
    flat = IntegerNetwork.from_float([Flatten(), Linear(rng.normal(size=(3, 12)))], x)
    assert len(integer_network_to_onnx(flat).graph.input[0].type.tensor_type.shape.dim) == 4
    exported = integer_network_to_onnx(flat, shape=["batch", 2, 6])
    codes = flat.quantize_input(x)
    assert_same(run(exported, codes), flat.run(codes))
    # a linear layer takes leading dimensions (..., K)
    network = IntegerNetwork.from_float(mlp(rng), rng.normal(size=(20, 9)), requantization=FixedPoint())
    codes = network.quantize_input(rng.normal(size=(2, 3, 9)))
    for accumulation in ("auto", "float"):
        exported = integer_network_to_onnx(network, shape=["batch", "time", 9], accumulation=accumulation)
        assert [dim.dim_value for dim in exported.graph.output[0].type.tensor_type.shape.dim] == [0, 0, 5]
        assert_same(run(exported, codes), network.run(codes))
    with pytest.raises(
        InvalidValueError,
        match=r"'shape' \('batch', 8\) does not fit the network: the input needs \(\.\.\., 9\)",
    ):
        integer_network_to_onnx(network, shape=("batch", 8))
    conv = IntegerNetwork.from_float(cnn(rng), rng.normal(size=(2, 3, 9, 8)))
    with pytest.raises(InvalidValueError, match=r"needs \(N, 3, H, W\) for the first convolution"):
        integer_network_to_onnx(conv, shape=("batch", 3, 9))
    with pytest.raises(InvalidValueError, match="each dimension of 'shape' must be"):
        integer_network_to_onnx(conv, shape=("batch", 3, -9, 8))
    exported = integer_network_to_onnx(conv, shape=(2, 3, 9, 8))
    codes = conv.quantize_input(rng.normal(size=(2, 3, 9, 8)))
    assert_same(run(exported, codes), conv.run(codes))


def test_the_network_is_not_changed() -> None:
    rng = numpy.random.default_rng(16)
    x = rng.normal(size=(6, 9))
    network = IntegerNetwork.from_float(mlp(rng), x)
    before = intquant.dumps(network)
    integer_network_to_onnx(network, inputs="float")
    assert intquant.dumps(network) == before


# -- unhappy paths


def test_refuses_what_is_not_an_integer_network() -> None:
    rng = numpy.random.default_rng(17)
    network = IntegerNetwork.from_float(mlp(rng), rng.normal(size=(6, 9)))
    with pytest.raises(
        InvalidTypeError, match=r"expected an intquant\.integer\.IntegerNetwork; got IntegerLinear"
    ):
        integer_network_to_onnx(network.layers[0])  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match="IntegerLinear or IntegerConv2d; got IntegerNetwork"):
        integer_layer_to_onnx(network)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"inputs": "values"},
            InvalidValueError,
            r"'inputs' must be one of \('codes', 'float'\); got 'values'",
        ),
        ({"accumulation": 3}, InvalidTypeError, "'accumulation' must be one of"),
        ({"accumulation": "fast"}, InvalidValueError, "'accumulation' must be one of"),
        ({"input_dtype": numpy.int64}, InvalidTypeError, "'input_dtype' must be float16, float32 or float64"),
        ({"input_dtype": "no such dtype"}, InvalidTypeError, "'input_dtype' must be a float dtype"),
        ({"int4_weights": "yes"}, InvalidTypeError, "'int4_weights' must be True or False"),
        ({"opset": 12}, InvalidValueError, "'opset' must be at least 13"),
        ({"input_name": "y"}, InvalidValueError, "'input_name' and 'output_name' must differ"),
        ({"output_name": ""}, InvalidValueError, "'output_name' must be a non-empty name"),
    ],
)
def test_refuses_bad_options(options: dict[str, Any], error: type[Exception], message: str) -> None:
    rng = numpy.random.default_rng(18)
    network = IntegerNetwork.from_float(mlp(rng), rng.normal(size=(6, 9)))
    with pytest.raises(error, match=message):
        integer_network_to_onnx(network, **options)


# -- random small networks


@st.composite
def small_networks(draw: st.DrawFn) -> tuple[IntegerNetwork, numpy.ndarray]:
    """A random MLP or CNN of 2 to 12 bits, calibrated on at least two samples and with at
    least two values per weight channel (from_float cannot calibrate a single value)."""
    rng = numpy.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        width = draw(st.integers(2, 6))
        model: list[Any] = [Linear(rng.normal(size=(width, 5)), rng.normal(size=width))]
        if draw(st.booleans()):
            model += [ReLU(), Linear(rng.normal(size=(3, width)))]
        x = rng.normal(size=(draw(st.integers(2, 9)), 5))
    else:
        channels = draw(st.integers(1, 4))
        kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
        model = [
            Conv2d(
                rng.normal(size=(channels, 2, *kernel)),
                rng.normal(size=channels),
                stride=stride,
                padding=padding,
            )
        ]
        if draw(st.booleans()):
            rows, columns = (
                1 + (6 + 2 * pad - k) // s for pad, k, s in zip(padding, kernel, stride, strict=True)
            )
            model += [ReLU(), Flatten(), Linear(rng.normal(size=(2, channels * rows * columns)))]
        x = rng.normal(size=(draw(st.integers(2, 4)), 2, 6, 6))
    network = IntegerNetwork.from_float(
        model,
        x,
        weight_bits=draw(st.integers(2, 12)),
        activation_bits=draw(st.integers(2, 12)),
        per_channel=draw(st.booleans()),
        requantization=draw(st.sampled_from(MODES)),
    )
    return network, x


@settings(max_examples=25, deadline=None)
@given(case=small_networks(), accumulation=st.sampled_from(["auto", "float"]), int4=st.booleans())
def test_random_small_networks(
    case: tuple[IntegerNetwork, numpy.ndarray], accumulation: str, int4: bool
) -> None:
    network, x = case
    codes = network.quantize_input(x)
    exported = integer_network_to_onnx(network, accumulation=accumulation, int4_weights=int4)
    assert_same(run(exported, codes), network.run(codes))

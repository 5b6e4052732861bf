"""intquant.onnx's QDQ insertion: calibrate_tensors, insert_qdq, run by onnxruntime on real models.

The main model is an MLP trained on scikit-learn's digits (64 -> 32 ReLU -> 10), built with
``onnx.helper`` as ``Gemm -> Relu -> MatMul -> Add``: one Gemm weight and one MatMul weight.
"""

from __future__ import annotations

import copy
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy
import pytest

from intquant import (
    MinMaxQuantizationStats,
    QuantizationOptions,
    QuantizedArray,
    UniformQuantizationParameters,
    UniformQuantizer,
)
from intquant.calibration import EntropyStats, MovingAverageMinMaxStats, MSEStats, PercentileStats
from intquant.errors import InvalidDtypeError, InvalidTypeError, InvalidValueError
from intquant.onnx import METHODS, calibrate_tensors, insert_qdq, quantizable_tensors

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

_SEED = 20240601
_ACTIVATIONS = QuantizationOptions(8, zero_in_range=True)
_WEIGHTS = QuantizationOptions(8, is_signed=True, is_symmetric=True)


# -- models


def _model(
    nodes: list[Any],
    inputs: list[Any],
    outputs: list[Any],
    weights: dict[str, numpy.ndarray],
    opset: int = 21,
) -> Any:
    graph = helper.make_graph(
        nodes,
        "test",
        inputs,
        outputs,
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    onnx.checker.check_model(model)
    return model


def _float_input(name: str, *dims: Any) -> Any:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(dims))


def _session(model: Any, optimized: bool = True) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimized:  # the graph as written: Q/DQ computed as such, no fused integer kernels
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


class Digits:
    """The digits MLP: float model, data split, batches of calibration data."""

    def __init__(self) -> None:
        sklearn_datasets = pytest.importorskip(
            "sklearn.datasets", reason="the digits data set needs scikit-learn"
        )
        neural_network = pytest.importorskip("sklearn.neural_network")
        exceptions = pytest.importorskip("sklearn.exceptions")
        images, labels = sklearn_datasets.load_digits(return_X_y=True)
        order = numpy.random.default_rng(0).permutation(len(images))
        images = (images[order] / 16.0).astype(numpy.float32)
        labels = labels[order]
        self.train, self.train_labels = images[:1200], labels[:1200]
        self.test, self.test_labels = images[1200:], labels[1200:]
        with warnings.catch_warnings():  # stopped before convergence on purpose: a fast test
            warnings.simplefilter("ignore", exceptions.ConvergenceWarning)
            mlp = neural_network.MLPClassifier(hidden_layer_sizes=(32,), max_iter=100, random_state=0)
            mlp.fit(self.train, self.train_labels)
        self.weights = {
            "W1": mlp.coefs_[0].astype(numpy.float32),
            "b1": mlp.intercepts_[0].astype(numpy.float32),
            "W2": mlp.coefs_[1].astype(numpy.float32),
            "b2": mlp.intercepts_[1].astype(numpy.float32),
        }
        self.model = self.build(21)
        self.batches = [self.train[start : start + 200] for start in range(0, 1200, 200)]

    def build(self, opset: int) -> Any:
        nodes = [
            helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], name="gemm"),
            helper.make_node("Relu", ["h"], ["r"], name="relu"),
            helper.make_node("MatMul", ["r", "W2"], ["m"], name="matmul"),
            helper.make_node("Add", ["m", "b2"], ["logits"], name="add"),
        ]
        return _model(
            nodes, [_float_input("x", "n", 64)], [_float_input("logits", "n", 10)], self.weights, opset
        )

    def accuracy(self, model: Any) -> float:
        (logits,) = _session(model).run(None, {"x": self.test})
        return float(numpy.mean(numpy.argmax(logits, axis=1) == self.test_labels))


@pytest.fixture(scope="module")
def digits() -> Digits:
    return Digits()


def _initializer(model: Any, name: str) -> numpy.ndarray:
    (tensor,) = [tensor for tensor in model.graph.initializer if tensor.name == name]
    return numpy_helper.to_array(tensor)


def _node(model: Any, output: str) -> Any:
    (node,) = [node for node in model.graph.node if output in node.output]
    return node


def _axis(node: Any) -> int | None:
    return next((attribute.i for attribute in node.attribute if attribute.name == "axis"), None)


# -- accuracy on digits


def test_qdq_digits_mlp_keeps_its_accuracy(digits: Digits) -> None:
    """8 bits: within 1 point of the float model; 4 bits (int4/uint4, opset 21): within 3 points
    (measured with onnxruntime 1.32: float 96.1%, 8 bits 96.0%, 4 bits 95.6%; docs/onnx.md)."""
    float_accuracy = digits.accuracy(digits.model)
    assert float_accuracy > 0.95  # a trained model, not chance
    for bits, tolerance in ((8, 0.01), (4, 0.03)):
        quantizers = calibrate_tensors(
            digits.model,
            digits.batches,
            activation_options=QuantizationOptions(bits, zero_in_range=True),
            weight_options=QuantizationOptions(bits, is_signed=True, is_symmetric=True),
        )
        assert list(quantizers) == ["x", "r", "W1", "W2"]
        quantized = insert_qdq(digits.model, quantizers)
        onnx.checker.check_model(quantized)
        codes = {tensor.name: tensor.data_type for tensor in quantized.graph.initializer}
        assert codes["W1_quantized"] == (TensorProto.INT8 if bits == 8 else TensorProto.INT4)
        assert codes["x_zero_point"] == (TensorProto.UINT8 if bits == 8 else TensorProto.UINT4)
        accuracy = digits.accuracy(quantized)
        assert abs(accuracy - float_accuracy) <= tolerance, (bits, accuracy, float_accuracy)


def test_the_qdq_graph(digits: Digits) -> None:
    quantizers = calibrate_tensors(digits.model, digits.batches)
    quantized = insert_qdq(digits.model, quantizers)
    ops = [node.op_type for node in quantized.graph.node]
    assert ops == [
        "QuantizeLinear",
        "DequantizeLinear",  # the input
        "DequantizeLinear",
        "DequantizeLinear",  # the weights, from their codes
        "Gemm",
        "Relu",
        "QuantizeLinear",
        "DequantizeLinear",
        "MatMul",
        "Add",
    ]
    assert list(_node(quantized, "h").input) == ["x_dequantized", "W1_dequantized", "b1"]
    assert list(_node(quantized, "m").input) == ["r_dequantized", "W2_dequantized"]
    names = {tensor.name for tensor in quantized.graph.initializer}
    assert {"W1", "W2"}.isdisjoint(names)  # the float weights are gone
    assert {"b1", "b2", "W1_quantized", "W1_scale", "W1_zero_point", "x_scale", "r_zero_point"} <= names
    assert [value.name for value in quantized.graph.output] == ["logits"]  # outputs stay float


def test_qdq_parameters_are_intquant_quantizers(digits: Digits) -> None:
    """Codes, scales (float64 rounded to the nearest float32), zero points and axes equal the
    quantizers', and those equal intquant's own, computed directly."""
    batches = digits.batches[:2]  # under 50,000 values: no compiled loops to load
    quantizers = calibrate_tensors(digits.model, batches)
    quantized = insert_qdq(digits.model, quantizers)
    for name, axis in (("W1", 1), ("W2", 1)):  # Gemm (K, N) and MatMul (K, N): one scale per column
        values = digits.weights[name]
        expected = QuantizedArray(8, values, options=_WEIGHTS, axis=axis).quantizer
        quantizer = quantizers[name]
        assert quantizer.axis == axis
        numpy.testing.assert_array_equal(quantizer.scale, expected.scale)
        numpy.testing.assert_array_equal(quantizer.zero_point, expected.zero_point)
        codes = _initializer(quantized, f"{name}_quantized")
        assert codes.dtype == numpy.int8
        numpy.testing.assert_array_equal(codes, quantizer.quant(values))
        scale = _initializer(quantized, f"{name}_scale")
        assert scale.dtype == numpy.float32 and scale.shape == (values.shape[1],)
        numpy.testing.assert_array_equal(scale, numpy.asarray(quantizer.scale).ravel().astype(numpy.float32))
        numpy.testing.assert_array_equal(_initializer(quantized, f"{name}_zero_point"), 0)
        assert _axis(_node(quantized, f"{name}_dequantized")) == axis
    # the input: min/max over the batches = one pass over their values
    data = numpy.concatenate(batches)
    stats = MinMaxQuantizationStats()
    stats.compute_quantization_stats(data)
    expected = UniformQuantizer(_ACTIVATIONS, stats)
    expected.compute_quantization_parameters(_ACTIVATIONS, stats)
    # the hidden activation: the values onnxruntime computes, collected by us
    with_r = copy.deepcopy(digits.model)
    with_r.graph.output.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, None))
    (hidden,) = _session(with_r).run(["r"], {"x": data})
    hidden_stats = MinMaxQuantizationStats()
    hidden_stats.compute_quantization_stats(hidden)
    expected_hidden = UniformQuantizer(_ACTIVATIONS, hidden_stats)
    expected_hidden.compute_quantization_parameters(_ACTIVATIONS, hidden_stats)
    for name, reference in (("x", expected), ("r", expected_hidden)):
        quantizer = quantizers[name]
        assert (quantizer.scale, quantizer.zero_point) == (reference.scale, reference.zero_point)
        scale = _initializer(quantized, f"{name}_scale")
        assert scale.dtype == numpy.float32 and scale.shape == ()
        assert scale == numpy.float32(quantizer.scale)
        zero_point = _initializer(quantized, f"{name}_zero_point")
        assert zero_point.dtype == numpy.uint8 and zero_point == quantizer.zero_point
        assert _axis(_node(quantized, f"{name}_quantized")) is None


def test_what_the_qdq_nodes_compute() -> None:
    """Activations: ``(clip(rint(x / s) + z, low, high) - z) * s`` in float32; weights: their
    intquant codes ``(q - z) * s`` in float32, per channel."""
    rng = numpy.random.default_rng(_SEED)
    values = rng.normal(size=(50, 6)).astype(numpy.float32)
    weight = (rng.normal(size=(6, 3)) * [0.1, 1.0, 10.0]).astype(numpy.float32)
    nodes = [helper.make_node("Identity", ["x"], ["a"]), helper.make_node("Identity", ["w"], ["b"])]
    model = _model(
        nodes,
        [_float_input("x", "n", 6)],
        [_float_input("a", "n", 6), _float_input("b", 6, 3)],
        {"w": weight},
    )
    activation = QuantizedArray(8, values[:10], is_signed=True).quantizer  # most values beyond its range
    weight_quantizer = QuantizedArray(6, weight, is_signed=True, axis=1).quantizer  # 6 bits: int8 codes
    quantized = insert_qdq(model, {"x": activation, "w": weight_quantizer})
    a, b = _session(quantized, optimized=False).run(None, {"x": values})
    scale = numpy.float32(activation.scale)
    zero_point = numpy.float32(activation.zero_point)
    codes = numpy.clip(numpy.rint(values / scale) + zero_point, -128, 127)
    assert a.tobytes() == ((codes - zero_point) * scale).astype(numpy.float32).tobytes()
    weight_codes = weight_quantizer.quant(weight)
    assert weight_codes.min() >= -32 and weight_codes.max() <= 31
    scales = numpy.asarray(weight_quantizer.scale).astype(numpy.float32)
    expected = (weight_codes - numpy.asarray(weight_quantizer.zero_point)).astype(numpy.float32) * scales
    assert b.tobytes() == expected.tobytes()
    assert numpy.max(numpy.abs(b - weight)) <= numpy.max(scales) / 2 * 1.001


# -- calibration methods


@pytest.mark.parametrize("method", sorted(METHODS))
def test_each_method_folds_the_batches_in(digits: Digits, method: str) -> None:
    batches = [batch[:60] for batch in digits.batches[:3]]
    quantizers = calibrate_tensors(digits.model, batches, activations=["x"], weights=[], method=method)
    assert list(quantizers) == ["x"]
    stats = METHODS[method]()
    for batch in batches:
        stats.update(batch)
    options = QuantizationOptions(8, zero_in_range=True)
    expected = UniformQuantizer(options, stats)
    expected.compute_quantization_parameters(options, stats)
    assert (quantizers["x"].scale, quantizers["x"].zero_point) == (expected.scale, expected.zero_point)


def test_a_calibration_object_as_method(digits: Digits) -> None:
    batches = digits.batches[:2]
    template = PercentileStats(99.0, bins=256)
    quantizers = calibrate_tensors(digits.model, batches, weights=[], method=template)
    assert template.is_empty()  # each activation calibrated a copy
    for name in ("x", "r"):
        assert quantizers[name].scale > 0
    stats = PercentileStats(99.0, bins=256)
    for batch in batches:
        stats.update(batch)
    low, high = stats.range_for(QuantizationOptions(8))
    assert quantizers["x"].scale == pytest.approx((high - min(low, 0.0)) / 255, rel=1e-12)
    used = PercentileStats()
    used.update(numpy.ones(4))
    with pytest.raises(InvalidValueError, match=r"has already seen data; pass a new one"):
        calibrate_tensors(digits.model, batches, method=used)
    for method in (EntropyStats(bins=128), MSEStats(bins=128), MovingAverageMinMaxStats(0.5)):
        assert calibrate_tensors(digits.model, batches, weights=[], method=method)["r"].scale > 0


def test_calibration_data_forms(digits: Digits) -> None:
    batch = digits.train[:100]
    expected = calibrate_tensors(digits.model, [{"x": batch}], weights=[])
    for data in (batch, {"x": batch}, [batch], iter([batch[:50], batch[50:]])):
        quantizers = calibrate_tensors(digits.model, data, weights=[])
        for name in ("x", "r"):
            assert (quantizers[name].scale, quantizers[name].zero_point) == (
                expected[name].scale,
                expected[name].zero_point,
            )


# -- weights per channel: the axis of each operator


def test_conv_and_transposed_gemm_weights_are_per_output_channel(tmp_path: Path) -> None:
    rng = numpy.random.default_rng(_SEED)
    conv = (rng.normal(size=(4, 1, 3, 3)) * [[[[0.1]]], [[[1.0]]], [[[3.0]]], [[[0.5]]]]).astype(
        numpy.float32
    )
    dense = rng.normal(size=(5, 4 * 6 * 6)).astype(numpy.float32)  # Gemm with transB=1: (N, K)
    nodes = [
        helper.make_node("Conv", ["image", "kernel"], ["c"], name="conv"),
        helper.make_node("Relu", ["c"], ["cr"]),
        helper.make_node("Flatten", ["cr"], ["flat"]),
        helper.make_node("Gemm", ["flat", "dense"], ["out"], transB=1, name="dense"),
    ]
    model = _model(
        nodes,
        [_float_input("image", "n", 1, 8, 8)],
        [_float_input("out", "n", 5)],
        {"kernel": conv, "dense": dense},
    )
    assert quantizable_tensors(model) == (["image", "flat"], ["kernel", "dense"])
    images = rng.uniform(0, 1, size=(40, 1, 8, 8)).astype(numpy.float32)
    path = tmp_path / "conv.onnx"
    onnx.save(model, path)
    quantizers = calibrate_tensors(str(path), images)  # a path works too
    assert (quantizers["kernel"].axis, quantizers["dense"].axis) == (0, 0)
    quantized = insert_qdq(path, quantizers)
    for name, channels in (("kernel", 4), ("dense", 5)):
        assert _axis(_node(quantized, f"{name}_dequantized")) == 0
        assert _initializer(quantized, f"{name}_scale").shape == (channels,)
        expected = QuantizedArray(
            8, {"kernel": conv, "dense": dense}[name], options=_WEIGHTS, axis=0
        ).quantizer
        numpy.testing.assert_array_equal(quantizers[name].scale, expected.scale)
    (reference,) = _session(model).run(None, {"image": images})
    (result,) = _session(quantized).run(None, {"image": images})
    error = numpy.sqrt(numpy.mean((result - reference) ** 2)) / numpy.sqrt(numpy.mean(reference**2))
    assert error < 0.02  # 8 bits: about 1% relative error
    per_tensor = calibrate_tensors(model, images, per_channel=False)
    assert per_tensor["kernel"].axis is None and numpy.ndim(per_tensor["kernel"].scale) == 0
    assert _axis(_node(insert_qdq(model, per_tensor), "kernel_dequantized")) is None


def test_a_weight_whose_consumers_disagree_on_the_axis() -> None:
    weight = numpy.ones((3, 3), numpy.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["a"], name="matmul"),
        helper.make_node("Gemm", ["x", "w"], ["b"], transB=1, name="gemm"),
    ]
    model = _model(
        nodes, [_float_input("x", 2, 3)], [_float_input("a", 2, 3), _float_input("b", 2, 3)], {"w": weight}
    )
    data = numpy.ones((2, 3), numpy.float32)
    with pytest.raises(
        InvalidValueError,
        match=r"'w' feeds nodes that need different channel axes \(1 for "
        r"MatMul matmul, 0 for Gemm gemm\).*per_channel=False",
    ):
        calibrate_tensors(model, data)
    assert calibrate_tensors(model, data, per_channel=False)["w"].axis is None


# -- the model given is kept; names are made unique; old-style initializer inputs


def test_the_given_model_is_not_changed_and_names_stay_unique(digits: Digits) -> None:
    model = copy.deepcopy(digits.model)
    model.graph.node.append(helper.make_node("Identity", ["logits"], ["x_quantized"]))
    model.graph.output.append(_float_input("x_quantized", "n", 10))
    model.graph.input.append(helper.make_tensor_value_info("W2", TensorProto.FLOAT, [32, 10]))  # IR 3 style
    before = model.SerializeToString()
    quantizers = calibrate_tensors(model, digits.batches[:1])
    assert "W2" not in quantizable_tensors(model)[0]  # an initializer, even listed as an input
    quantized = insert_qdq(model, quantizers)
    assert model.SerializeToString() == before
    assert "x_quantized_2" in _node(quantized, "x_dequantized").input
    assert "W2" not in [value.name for value in quantized.graph.input]  # its initializer is gone
    (logits, copied) = _session(quantized).run(None, {"x": digits.test[:5]})
    assert numpy.array_equal(logits, copied)


# -- errors


def _tiny(opset: int = 21) -> Any:
    """``y = MatMul(x, w)`` with an int64 input ``idx`` gathered into ``g`` (non-float tensors)."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["y"]),
        helper.make_node("Gather", ["w", "idx"], ["g"], axis=0),
    ]
    inputs = [_float_input("x", 2, 3), helper.make_tensor_value_info("idx", TensorProto.INT64, [1])]
    outputs = [_float_input("y", 2, 3), _float_input("g", 1, 3)]
    return _model(nodes, inputs, outputs, {"w": numpy.eye(3, dtype=numpy.float32)}, opset)


_TINY_BATCH = {"x": numpy.ones((2, 3), numpy.float32), "idx": numpy.array([0])}


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"activations": ["nope"]}, InvalidValueError, r"no tensor named 'nope' .* include 'x', 'idx'"),
        ({"activations": ["w"]}, InvalidValueError, r"'w' is an initializer .* list it under weights"),
        ({"weights": ["x"]}, InvalidValueError, r"'x' is computed when the model runs .* under activations"),
        ({"activations": ["idx"]}, InvalidDtypeError, r"'idx' is of ONNX element type INT64; only float32"),
        ({"activations": ["x", "x"]}, InvalidValueError, r"'x' is listed twice"),
        ({"activations": "x"}, InvalidTypeError, r"activation names must be a list of str"),
        (
            {"method": "median"},
            InvalidTypeError,
            r"unknown calibration method 'median'; choose one of minmax",
        ),
        ({"method": 3}, InvalidTypeError, r"'method' must be one of minmax"),
        ({"activation_options": 8}, InvalidTypeError, r"'activation_options' must be a QuantizationOptions"),
        (
            {"weight_options": QuantizationOptions(8, axis=0)},
            InvalidValueError,
            r"'weight_options' sets axis=0 .* the granularity is chosen here",
        ),
        ({"per_channel": 1}, InvalidTypeError, r"'per_channel' must be True or False"),
    ],
    ids=[
        "unknown",
        "weight-as-activation",
        "activation-as-weight",
        "not-float",
        "twice",
        "str-names",
        "unknown-method",
        "method-type",
        "options-type",
        "options-axis",
        "per-channel-flag",
    ],
)
def test_bad_calibration_arguments(arguments: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        calibrate_tensors(_tiny(), _TINY_BATCH, **arguments)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        ([], InvalidValueError, r"holds no batches"),
        (
            {"x": _TINY_BATCH["x"]},
            InvalidValueError,
            r"batch 0 must give exactly the model's inputs \['x', "
            r"'idx'\]; missing \['idx'\]",
        ),
        ([_TINY_BATCH, {**_TINY_BATCH, "z": 1}], InvalidValueError, r"batch 1 .*; unknown \['z'\]"),
        (_TINY_BATCH["x"], InvalidTypeError, r"batch 0 is a ndarray; the model has 2 inputs \(x, idx\)"),
        (
            {**_TINY_BATCH, "x": numpy.ones((2, 3))},
            InvalidDtypeError,
            r"input 'x' takes ONNX FLOAT values; "
            r"got float64",
        ),
        ("x.npy", InvalidTypeError, r"'calibration_data' must be a mapping"),
    ],
    ids=["empty", "missing", "unknown", "array-for-two-inputs", "dtype", "str"],
)
def test_bad_calibration_data(data: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        calibrate_tensors(_tiny(), data, activations=["y"], weights=[])


def test_no_activations_need_no_data_and_no_run() -> None:
    quantizers = calibrate_tensors(_tiny(), [], activations=[], weights=["w"])
    assert list(quantizers) == ["w"]


def _activation_quantizer(n_bits: int, **options: Any) -> UniformQuantizer:
    return QuantizedArray(n_bits, numpy.linspace(-1.0, 3.0, 50), **options).quantizer


@pytest.mark.parametrize(
    ("quantizers", "error", "message"),
    [
        ({"nope": _activation_quantizer(8)}, InvalidValueError, r"no tensor named 'nope'"),
        ({"idx": _activation_quantizer(8)}, InvalidDtypeError, r"'idx' is of ONNX element type INT64"),
        (
            {"x": "q"},
            InvalidTypeError,
            r"activation 'x' must be a UniformQuantizer \(e.g. from calibrate_tensors\); got str",
        ),
        ([("x", _activation_quantizer(8))], InvalidTypeError, r"'quantizers' must map tensor names"),
        (
            {"x": _activation_quantizer(6)},
            InvalidValueError,
            r"codes of activation 'x' lie in \[0, 63\] \(6 bits\), but QuantizeLinear saturates to a whole",
        ),
        (
            {"x": _activation_quantizer(8, is_signed=True, is_narrow=True)},
            InvalidValueError,
            r"lie in \[-127, 127\] \(8 bits, narrow\)",
        ),
        (
            {"x": _activation_quantizer(8, rounding="half_up")},
            InvalidValueError,
            r"activation 'x' rounds 'half_up', but QuantizeLinear rounds half to even",
        ),
        (
            {"x": QuantizedArray(8, numpy.linspace(1.0, 3.0, 50)).quantizer},
            InvalidValueError,
            r"zero point -128 of activation 'x' lies outside uint8 \[0, 255\] .* zero_in_range=True",
        ),
        (
            {"w": QuantizedArray(20, numpy.eye(3), is_signed=True).quantizer},
            InvalidValueError,
            r"codes of weight 'w' lie in \[-524288, 524287\] .* no DequantizeLinear integer type holds",
        ),
        (
            {"w": QuantizedArray(4, numpy.eye(3), block_size=(1, 3)).quantizer},
            InvalidValueError,
            r"weight 'w' is per block",
        ),
        (
            {
                "w": UniformQuantizer(
                    QuantizationOptions(4), None, UniformQuantizationParameters(0.5, 0, 0), no_clipping=True
                )
            },
            InvalidValueError,
            r"weight 'w' does not clip its codes \(no_clipping is set\)",
        ),
    ],
    ids=[
        "unknown",
        "not-float",
        "not-a-quantizer",
        "not-a-mapping",
        "6-bit-activation",
        "narrow",
        "rounding",
        "zero-point",
        "20-bit-weight",
        "per-block",
        "no-clipping",
    ],
)
def test_bad_quantizers(quantizers: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        insert_qdq(_tiny(), quantizers)


def test_bit_widths_and_opsets() -> None:
    four = {"x": _activation_quantizer(4), "w": QuantizedArray(4, numpy.eye(3), is_signed=True).quantizer}
    sixteen = {"x": _activation_quantizer(16, is_signed=True)}
    quantized = insert_qdq(_tiny(21), {**four})
    types = {tensor.name: tensor.data_type for tensor in quantized.graph.initializer}
    assert (types["x_zero_point"], types["w_quantized"]) == (TensorProto.UINT4, TensorProto.INT4)
    assert {tensor.name: tensor.data_type for tensor in insert_qdq(_tiny(21), sixteen).graph.initializer}[
        "x_zero_point"
    ] == TensorProto.INT16
    for quantizers, what in ((four, r"activation 'x' need uint4"), (sixteen, r"activation 'x' need int16")):
        with pytest.raises(
            InvalidValueError,
            match=what + r" .* from opset 21; the model imports opset 17\. "
            r"Convert the model first",
        ):
            insert_qdq(_tiny(17), quantizers)
    # 4-bit weights before opset 21: int8 holds their codes
    weights = insert_qdq(_tiny(17), {"w": four["w"]})
    assert {tensor.name: tensor.data_type for tensor in weights.graph.initializer}[
        "w_quantized"
    ] == TensorProto.INT8
    with pytest.raises(InvalidValueError, match=r"need opset 13 or newer; the model imports opset 11"):
        insert_qdq(_tiny(11), {"w": four["w"]})


def test_weights_may_round_any_way_activations_only_half_to_even() -> None:
    weight = QuantizedArray(8, numpy.linspace(-1, 1, 9).reshape(3, 3), is_signed=True, rounding="half_up")
    quantized = insert_qdq(_tiny(), {"w": weight.quantizer})
    numpy.testing.assert_array_equal(
        _initializer(quantized, "w_quantized"), weight.quantizer.quant(numpy.eye(3, dtype=numpy.float32))
    )


def test_a_missing_onnxruntime_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from intquant.errors import MissingDependencyError

    model = _tiny()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` raise ImportError
    with pytest.raises(MissingDependencyError, match=r'runs models .* onnxruntime .* "intquant\[onnx\]"'):
        calibrate_tensors(model, _TINY_BATCH, activations=["y"], weights=[])
    assert list(calibrate_tensors(model, [], activations=[])) == ["w"]  # weights need no run
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingDependencyError, match=r"builds and reads models with the onnx package"):
        insert_qdq(model, {})

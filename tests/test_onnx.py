"""intquant.onnx: models that pass the checker and, run by onnxruntime, give intquant's results."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy
import pytest

from intquant import (
    QuantizationOptions,
    QuantizedArray,
    UniformQuantizationParameters,
    UniformQuantizer,
)
from intquant.errors import (
    IntquantError,
    InvalidTypeError,
    InvalidValueError,
    MissingParameterError,
)
from intquant.onnx import (
    MissingDependencyError,
    code_dtype,
    dequantize_model,
    dequantizer_to_onnx,
    quantize_model,
    quantizer_to_onnx,
)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

_RNG_SEED = 20240601


def _check(model: Any) -> None:
    """``onnx.checker.check_model``, on a copy with a stand-in rank where the input and output
    declare none (any rank: the checker wants declared shapes, see test_any_rank_and_the_checker)."""
    checked = onnx.ModelProto()
    checked.CopyFrom(model)
    for value in (*checked.graph.input, *checked.graph.output):
        if not value.type.tensor_type.HasField("shape"):
            value.type.tensor_type.shape.dim.add().dim_param = "stand_in"
    onnx.checker.check_model(checked)


def _session(model: Any) -> Any:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _run(model: Any, x: numpy.ndarray, names: tuple[str, str] = ("x", "y")) -> numpy.ndarray:
    """Check ``model`` (one input ``x``, one output ``y`` unless ``names`` says otherwise) and run
    it on ``x`` in onnxruntime."""
    _check(model)
    assert [value.name for value in model.graph.input] == [names[0]]
    assert [value.name for value in model.graph.output] == [names[1]]
    (y,) = _session(model).run(None, {names[0]: x})
    return numpy.asarray(y)


def _ops(model: Any) -> list[str]:
    return [node.op_type for node in model.graph.node]


def _output_dtype(model: Any) -> numpy.dtype[Any]:
    return numpy.dtype(onnx.helper.tensor_dtype_to_np_dtype(model.graph.output[0].type.tensor_type.elem_type))


def _qdq_reference(values: numpy.ndarray, quantizer: UniformQuantizer) -> numpy.ndarray:
    """QuantizeLinear then Clip, in numpy: ``clip(rint(f32(x) / f32(scale)) + zero_point, low, high)``."""
    scale = numpy.asarray(quantizer.scale, dtype=numpy.float32)
    quotient = values.astype(numpy.float32) / scale  # float32 / float32 array: float32 on numpy 1 and 2
    codes = numpy.rint(quotient).astype(numpy.int64) + numpy.asarray(quantizer.zero_point, dtype=numpy.int64)
    return numpy.clip(codes, *_bounds(quantizer))


def _bounds(quantizer: UniformQuantizer) -> tuple[numpy.ndarray, numpy.ndarray]:
    """The clipping range, ``[-offset (+1 if narrow), 2**n_bits - 1 - offset]`` (per channel)."""
    offset = numpy.asarray(quantizer.offset)
    return -offset + (1 if quantizer.is_narrow else 0), 2**quantizer.n_bits - 1 - offset


# -- both exports, per-tensor and per-axis, every width and flag combination

_FLAGS = {
    "unsigned": {},
    "signed": {"is_signed": True},
    "symmetric": {"is_signed": True, "is_symmetric": True},
}


def _calibration_data(per_axis: bool) -> numpy.ndarray:
    rng = numpy.random.default_rng(_RNG_SEED)
    if per_axis:  # three channels along axis 1 with different ranges
        return (rng.normal(size=(300, 3)) * [1.0, 4.0, 0.25] + [0.0, 1.0, -0.5]).astype(numpy.float32)
    return rng.normal(size=1200).astype(numpy.float32)


@pytest.mark.parametrize("n_bits", range(2, 17))
@pytest.mark.parametrize("flags", sorted(_FLAGS))
@pytest.mark.parametrize("narrow", [False, True], ids=["full", "narrow"])
@pytest.mark.parametrize("per_axis", [False, True], ids=["per-tensor", "per-axis"])
def test_onnxruntime_gives_intquant_results(n_bits: int, flags: str, narrow: bool, per_axis: bool) -> None:
    values = _calibration_data(per_axis)
    options = {**_FLAGS[flags], "is_narrow": narrow, "axis": 1 if per_axis else None}
    quantizer = QuantizedArray(n_bits, values, **options).quantizer
    data = numpy.concatenate([values, values * 1.5])  # a third of it beyond the range: clipped
    codes = quantizer.quant(data)
    assert numpy.any(codes == _bounds(quantizer)[1])  # the top code is reached: values are clipped

    exact = _run(quantize_model(quantizer, exact=True), data)
    assert exact.dtype == numpy.int64
    numpy.testing.assert_array_equal(exact, codes)
    restored = _run(dequantize_model(quantizer, exact=True), codes)
    assert restored.dtype == numpy.float64
    assert restored.tobytes() == quantizer.dequant(codes).tobytes()  # bit for bit

    standard_model = quantize_model(quantizer)
    standard = _run(standard_model, data)
    assert standard.dtype == code_dtype(quantizer) == _output_dtype(standard_model)
    # onnxruntime computes QuantizeLinear's formula exactly ...
    numpy.testing.assert_array_equal(standard.astype(numpy.int64), _qdq_reference(data, quantizer))
    # ... which differs from intquant's by one, rarely, and only near half-way points.
    differ = standard.astype(numpy.int64) != codes
    assert numpy.all(numpy.abs(standard.astype(numpy.int64) - codes)[differ] == 1)
    assert numpy.count_nonzero(differ) <= data.size // 100
    scale = numpy.broadcast_to(numpy.asarray(quantizer.scale, dtype=numpy.float32), data.shape)
    quotient = data[differ] / scale[differ]
    shifted = numpy.broadcast_to(numpy.asarray(quantizer.zero_point), data.shape)[differ] + quotient
    half_way = numpy.abs(quotient - numpy.floor(quotient) - numpy.float32(0.5))
    assert numpy.all(half_way <= numpy.spacing(numpy.abs(shifted).astype(numpy.float32)))

    stored = _run(dequantize_model(quantizer), codes.astype(standard.dtype))
    assert stored.dtype == numpy.float32
    numpy.testing.assert_allclose(stored, quantizer.dequant(codes), rtol=1e-6, atol=1e-6 * numpy.max(scale))


def test_exact_and_standard_formulas_on_paper() -> None:
    # scale 0.5, zero point 3, 4 bits: x / scale = [-4, 0.5, 1.5, 2, 20]
    quantizer = UniformQuantizer(QuantizationOptions(4), None, UniformQuantizationParameters(0.5, 3, 0))
    values = numpy.array([-2.0, 0.25, 0.75, 1.0, 10.0], dtype=numpy.float32)
    # intquant: clip(rint([-1, 3.5, 4.5, 5, 23]), 0, 15)
    assert _run(quantize_model(quantizer, exact=True), values).tolist() == [0, 4, 4, 5, 15]
    # QuantizeLinear: clip(rint([-4, 0.5, 1.5, 2, 20]) + 3, 0, 15): the two ties go the other way
    assert _run(quantize_model(quantizer), values).tolist() == [0, 3, 5, 5, 15]


# -- the exact export in every input dtype and rounding mode


@pytest.mark.parametrize("rounding", ["half_even", "half_up", "floor", "ceil"])
@pytest.mark.parametrize(
    "dtype", ["float16", "float32", "float64", "int8", "int32", "int64", "uint16"], ids=str
)
def test_exact_export_in_every_dtype_and_rounding(dtype: str, rounding: str) -> None:
    rng = numpy.random.default_rng(_RNG_SEED)
    raw = numpy.clip(rng.normal(size=4000) * 40, -120, 120)
    data = (numpy.abs(raw) if numpy.dtype(dtype).kind == "u" else raw).astype(dtype)
    for n_bits in (3, 8, 16, 20, 24, 32):  # from 17 unsigned bits, float32 adds the zero point in float64
        calibration = data.astype(numpy.float64) * 0.8 + 0.37
        quantizer = QuantizedArray(n_bits, calibration, rounding=rounding).quantizer
        model = quantize_model(quantizer, exact=True, input_dtype=dtype)
        codes = _run(model, data)
        numpy.testing.assert_array_equal(codes, quantizer.quant(data), err_msg=f"{n_bits} bits")
        assert codes.dtype == numpy.int64


def test_exact_export_picks_each_channels_dtypes() -> None:
    rng = numpy.random.default_rng(_RNG_SEED)
    # 20 unsigned bits: zero points -2163, 524347 and 3158993; float32 values add the first in
    # float32 and the others (>= 65536) in float64, as numpy 1.24 does
    values = numpy.stack([rng.uniform(0, 1, 500), rng.uniform(-1, 1, 500), rng.uniform(-3, -2, 500)])
    values = values.astype(numpy.float32)
    quantizer = QuantizedArray(20, values, axis=0).quantizer
    assert (numpy.abs(quantizer.zero_point.ravel()) >= 65536).tolist() == [False, True, True]
    model = quantize_model(quantizer, exact=True)
    assert "Where" in _ops(model)
    numpy.testing.assert_array_equal(_run(model, values), quantizer.quant(values))


def test_channels_with_different_clipping_ranges() -> None:
    # a constant channel has offset 0 even for signed codes: its range is [0, 15], the other's [-8, 7]
    rng = numpy.random.default_rng(_RNG_SEED)
    values = numpy.stack([rng.normal(size=200), numpy.full(200, 3.0)]).astype(numpy.float32)
    quantizer = QuantizedArray(4, values, axis=0, is_signed=True).quantizer
    assert quantizer.offset.ravel().tolist() == [8, 0]
    data = numpy.concatenate([values, values * 3], axis=1)
    for exact in (True, False):
        model = quantize_model(quantizer, exact=exact)
        assert _ops(model)[-2:] == (["Min", "Cast"] if exact else ["Max", "Min"])
        numpy.testing.assert_array_equal(_run(model, data), quantizer.quant(data))


def test_exact_export_per_block() -> None:
    rng = numpy.random.default_rng(_RNG_SEED)
    values = rng.normal(size=(4, 60)).astype(numpy.float32) * numpy.linspace(0.1, 10, 60, dtype=numpy.float32)
    for n_bits in (4, 20):  # 20 bits: blocks add their zero points in different dtypes
        quantizer = QuantizedArray(n_bits, values, block_size=(2, 20)).quantizer
        model = quantize_model(quantizer, exact=True)
        assert model.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 60
        codes = _run(model, values * 1.25)
        numpy.testing.assert_array_equal(codes, quantizer.quant(values * 1.25))
        restored = _run(dequantize_model(quantizer, exact=True), codes)
        assert restored.tobytes() == quantizer.dequant(codes).tobytes()


def test_exact_export_of_a_zero_dimensional_input() -> None:
    # numpy 1.24 divides a 0-d float32 value by a float64 scale in float64, an array in float32
    quantizer = QuantizedArray(8, numpy.array([-1.0, 0.3, 2.5], dtype=numpy.float32)).quantizer
    scalar_model = quantize_model(quantizer, exact=True, shape=())
    assert _ops(scalar_model)[0] == "Cast"
    array_model = quantize_model(quantizer, exact=True, shape=["n"])
    assert _ops(array_model)[0] == "Div"
    any_rank = quantize_model(quantizer, exact=True)  # both, and an If on the input's rank
    assert _ops(any_rank) == ["Shape", "Size", "Equal", "If"]
    # values a few ulps from half-way points, where float32 and float64 arithmetic round to
    # different codes: the 0-d rule matters there
    scale, zero_point = numpy.float64(quantizer.scale), quantizer.zero_point
    half_way = ((numpy.arange(256) + 0.5 - zero_point) * scale).astype(numpy.float32)
    near = numpy.concatenate([half_way + step * numpy.spacing(half_way) for step in range(-3, 4)])
    in_float64 = numpy.rint(near.astype(numpy.float64) / scale + zero_point)
    in_float32 = numpy.rint(near / numpy.float32(scale) + numpy.float32(zero_point))
    differ = near[in_float64 != in_float32][::10]
    assert differ.size > 20
    values = numpy.random.default_rng(_RNG_SEED).normal(size=300).astype(numpy.float32)
    for value in [*differ, *values[:50]]:
        expected = quantizer.quant(numpy.array(value))
        assert _run(scalar_model, numpy.array(value)) == expected
        assert _run(any_rank, numpy.array(value)) == expected
    for model in (array_model, any_rank):
        numpy.testing.assert_array_equal(_run(model, values), quantizer.quant(values))
        numpy.testing.assert_array_equal(_run(model, differ), quantizer.quant(differ))


def test_per_tensor_models_take_any_rank_by_default() -> None:
    # the README's case: 64x64 weights
    weights = numpy.random.default_rng(_RNG_SEED).normal(size=(64, 64)).astype(numpy.float32)
    quantizer = QuantizedArray(8, weights, is_signed=True).quantizer
    codes = quantizer.quant(weights)
    models = {
        "standard": quantizer_to_onnx(quantizer),
        "exact": quantizer_to_onnx(quantizer, exact=True),
        "dequantize": dequantizer_to_onnx(quantizer),
        "dequantize exact": dequantizer_to_onnx(quantizer, exact=True),
    }
    for model in models.values():
        for value in (*model.graph.input, *model.graph.output):
            assert not value.type.tensor_type.HasField("shape")  # any rank
    for values in (weights, weights[0], weights.reshape(4, 16, 64), weights[0, 0, ...]):  # 2-D, 1-D, 3-D, 0-d
        expected = numpy.asarray(quantizer.quant(values))  # a numpy scalar for 0-d values
        numpy.testing.assert_array_equal(_run(models["exact"], values), expected)
        standard = _run(models["standard"], values)
        assert standard.shape == numpy.shape(expected)
        numpy.testing.assert_array_equal(standard, _qdq_reference(values, quantizer).reshape(standard.shape))
        restored = _run(models["dequantize exact"], expected)
        assert restored.tobytes() == numpy.asarray(quantizer.dequant(expected)).tobytes()
        narrow = numpy.asarray(expected).astype(standard.dtype)
        numpy.testing.assert_allclose(
            _run(models["dequantize"], narrow), quantizer.dequant(expected), rtol=1e-6
        )
    assert numpy.array_equal(_run(models["exact"], weights), codes)


def test_any_rank_and_the_checker() -> None:
    # ONNX's IR allows an input without a declared shape (any shape); onnx's checker asks for
    # one (onnx/onnx#2932). docs/onnx.md says so: give shape= for a model the checker accepts.
    quantizer = _linspace_quantizer(8)
    with pytest.raises(onnx.checker.ValidationError, match=r"Field 'shape' of 'type' is required"):
        onnx.checker.check_model(quantizer_to_onnx(quantizer))
    for exact in (False, True):
        model = quantizer_to_onnx(quantizer, exact=exact, shape=[None, None])
        onnx.checker.check_model(model)
        assert len(model.graph.input[0].type.tensor_type.shape.dim) == 2
        values = numpy.linspace(-2, 2, 60, dtype=numpy.float32).reshape(6, 10)
        expected = quantizer.quant(values) if exact else _qdq_reference(values, quantizer)
        numpy.testing.assert_array_equal(_run(model, values), expected)


def test_one_element_array_parameters_give_their_rank() -> None:
    # numpy broadcasts values of lower rank against (1, 1) parameters up to rank 2
    parameters = UniformQuantizationParameters(numpy.array([[0.25]]), numpy.array([[3]]), numpy.array([[0]]))
    quantizer = UniformQuantizer(QuantizationOptions(4), None, parameters)
    values = numpy.linspace(-1, 4, 30, dtype=numpy.float32).reshape(3, 10)
    for exact in (False, True):
        model = quantizer_to_onnx(quantizer, exact=exact)
        dims = model.graph.input[0].type.tensor_type.shape.dim
        assert [dim.dim_param for dim in dims] == ["d0", "d1"]
        expected = quantizer.quant(values) if exact else _qdq_reference(values, quantizer)
        numpy.testing.assert_array_equal(_run(model, values), expected)
    with pytest.raises(InvalidValueError, match=r"cannot reproduce this quantizer on input of rank 1"):
        quantizer_to_onnx(quantizer, exact=True, shape=["n"])
    with pytest.raises(InvalidValueError, match=r"cannot reproduce this quantizer on input of rank 0"):
        dequantizer_to_onnx(quantizer, exact=True, shape=())


def test_input_and_output_names() -> None:
    quantizer = _linspace_quantizer(8, is_signed=True)
    values = numpy.linspace(-1.5, 1.5, 31, dtype=numpy.float32)
    codes = quantizer.quant(values)
    for exact in (False, True):
        model = quantizer_to_onnx(quantizer, exact=exact, input_name="weights", output_name="codes")
        produced = _run(model, values, names=("weights", "codes"))
        if exact:
            numpy.testing.assert_array_equal(produced, codes)
        restore = dequantizer_to_onnx(quantizer, exact=exact, input_name="codes", output_name="weights")
        _run(restore, produced, names=("codes", "weights"))
    # a name an inner node would take otherwise ("scale", "cast") stays the model's own
    model = quantizer_to_onnx(quantizer, exact=True, input_name="scale", output_name="cast", shape=["n"])
    numpy.testing.assert_array_equal(_run(model, values, names=("scale", "cast")), codes)


def test_the_old_names_are_the_new_functions() -> None:
    assert quantize_model is quantizer_to_onnx
    assert dequantize_model is dequantizer_to_onnx


# -- intquant's int64 codes into the standard dequantization model


@pytest.mark.parametrize("per_axis", [False, True], ids=["per-tensor", "per-axis"])
@pytest.mark.parametrize("n_bits", [4, 8, 12])
def test_the_standard_dequantizer_takes_intquant_codes(per_axis: bool, n_bits: int) -> None:
    values = _calibration_data(per_axis)
    quantizer = QuantizedArray(n_bits, values, is_signed=True, axis=1 if per_axis else None).quantizer
    codes = quantizer.quant(values * 1.5)  # int64, some of them clipped
    assert codes.dtype == numpy.int64
    narrow = code_dtype(quantizer)
    reference = _run(dequantizer_to_onnx(quantizer), codes.astype(narrow))
    model = dequantizer_to_onnx(quantizer, codes_dtype=numpy.int64)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert _ops(model) == ["Clip", "Cast", "DequantizeLinear"]
    restored = _run(model, codes)
    assert restored.tobytes() == reference.tobytes()  # the cast is exact for intquant's codes
    scale = numpy.max(numpy.asarray(quantizer.scale))
    numpy.testing.assert_allclose(restored, quantizer.dequant(codes), rtol=1e-6, atol=1e-6 * scale)


def test_codes_beyond_the_type_saturate() -> None:
    quantizer = _linspace_quantizer(8)  # uint8 codes, zero point 127
    info = numpy.iinfo(numpy.uint8)
    wide = numpy.array([-(2**40), -300, -1, 0, 17, 255, 256, 70000, 2**40], dtype=numpy.int64)
    saturated = numpy.clip(wide, info.min, info.max).astype(numpy.uint8)
    expected = _run(dequantizer_to_onnx(quantizer), saturated)
    for dtype in ("int64", "int32", "int16"):
        codes = wide[(wide >= numpy.iinfo(dtype).min) & (wide <= numpy.iinfo(dtype).max)]
        model = dequantizer_to_onnx(quantizer, codes_dtype=dtype)
        restored = _run(model, codes.astype(dtype))
        mask = (wide >= numpy.iinfo(dtype).min) & (wide <= numpy.iinfo(dtype).max)
        assert restored.tobytes() == expected[mask].tobytes(), dtype
    assert _ops(dequantizer_to_onnx(quantizer, codes_dtype="int16"))[:2] == ["Cast", "Clip"]  # via int32
    assert _ops(dequantizer_to_onnx(quantizer, codes_dtype="uint8")) == ["DequantizeLinear"]
    # a narrower type than the codes' is cast only: every code it holds fits
    signed = _linspace_quantizer(12, is_signed=True)  # int16 codes
    assert _ops(dequantizer_to_onnx(signed, codes_dtype="int8")) == ["Cast", "DequantizeLinear"]
    small = numpy.array([-128, -3, 0, 127], dtype=numpy.int8)
    restored = _run(dequantizer_to_onnx(signed, codes_dtype="int8"), small)
    assert restored.tobytes() == _run(dequantizer_to_onnx(signed), small.astype(numpy.int16)).tobytes()


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "int32", "uint32", "int64", "uint64"])
def test_the_exact_dequantizer_takes_any_integer_codes(dtype: str) -> None:
    quantizer = _linspace_quantizer(8, -3.0, 7.0)
    info = numpy.iinfo(dtype)
    codes = numpy.array([info.min, 0, 1, 100, info.max], dtype=dtype)
    restored = _run(dequantizer_to_onnx(quantizer, exact=True, codes_dtype=dtype), codes)
    assert restored.dtype == numpy.float64
    assert restored.tobytes() == quantizer.dequant(codes).tobytes()


@pytest.mark.parametrize("kind", ["no_clipping", "inferred QAT"])
def test_quantizers_without_clipping_export_exactly_only(kind: str) -> None:
    if kind == "no_clipping":
        quantizer = UniformQuantizer(
            QuantizationOptions(4), None, UniformQuantizationParameters(0.25, 3, 0), no_clipping=True
        )
    else:
        values = numpy.array([0.0, 0.5, 1.0, 1.5])  # on a uniform grid: QAT infers the scale 0.5
        quantizer = QuantizedArray(2, values, is_qat=True).quantizer
    data = numpy.array([-100.0, -0.3, 0.0, 0.6, 1.7, 1000.0], dtype=numpy.float32)
    model = quantize_model(quantizer, exact=True)
    assert "Clip" not in _ops(model)
    codes = _run(model, data)
    numpy.testing.assert_array_equal(codes, quantizer.quant(data))
    assert codes.max() > 2**quantizer.n_bits  # not clipped
    with pytest.raises(InvalidValueError, match=r"does not clip its codes .* Use exact=True"):
        quantize_model(quantizer)
    with pytest.raises(InvalidValueError, match=r"does not clip its codes"):
        dequantize_model(quantizer)


# -- the narrowest type


def _linspace_quantizer(
    n_bits: int, low: float = -1.0, high: float = 1.0, **options: Any
) -> UniformQuantizer:
    return QuantizedArray(n_bits, numpy.linspace(low, high, 101), **options).quantizer


@pytest.mark.parametrize(
    ("quantizer", "dtype", "ops"),
    [
        (_linspace_quantizer(4, is_signed=True), "int8", ["QuantizeLinear", "Clip"]),
        (_linspace_quantizer(4), "uint8", ["QuantizeLinear", "Clip"]),
        (_linspace_quantizer(8), "uint8", ["QuantizeLinear"]),
        (_linspace_quantizer(8, is_signed=True), "int8", ["QuantizeLinear"]),
        (_linspace_quantizer(8, is_signed=True, is_narrow=True), "int8", ["QuantizeLinear", "Clip"]),
        (_linspace_quantizer(12), "uint16", ["QuantizeLinear", "Cast", "Clip", "Cast"]),
        (_linspace_quantizer(12, is_signed=True), "int16", ["QuantizeLinear", "Cast", "Clip", "Cast"]),
        (_linspace_quantizer(16), "uint16", ["QuantizeLinear"]),
        (_linspace_quantizer(16, is_signed=True), "int16", ["QuantizeLinear"]),
        # values in [3, 5]: the zero point -382 lies outside [0, 255], so int16 and a Clip
        (_linspace_quantizer(8, 3.0, 5.0), "int16", ["QuantizeLinear", "Cast", "Clip", "Cast"]),
    ],
    ids=["4s", "4u", "8u", "8s", "8s-narrow", "12u", "12s", "16u", "16s", "8u-positive"],
)
def test_the_narrowest_integer_type(quantizer: UniformQuantizer, dtype: str, ops: list[str]) -> None:
    assert code_dtype(quantizer) == numpy.dtype(dtype)
    assert code_dtype(quantizer, exact=True) == numpy.int64
    model = quantize_model(quantizer)
    assert _ops(model) == ops
    assert _output_dtype(model) == numpy.dtype(dtype)
    values = numpy.linspace(-3, 8, 1001, dtype=numpy.float32)
    numpy.testing.assert_array_equal(_run(model, values), _qdq_reference(values, quantizer))
    assert _ops(dequantize_model(quantizer)) == ["DequantizeLinear"]


def test_older_opsets() -> None:
    quantizer = _linspace_quantizer(8)
    values = numpy.linspace(-2, 2, 101, dtype=numpy.float32)
    for exact in (False, True):
        model = quantize_model(quantizer, exact=exact, opset=13)
        assert model.opset_import[0].version == 13
        expected = quantizer.quant(values) if exact else _qdq_reference(values, quantizer)
        numpy.testing.assert_array_equal(_run(model, values), expected)
    with pytest.raises(
        InvalidValueError, match=r"need QuantizeLinear's uint16 type, which arrived in opset 21"
    ):
        quantize_model(_linspace_quantizer(12), opset=13)
    assert _ops(quantize_model(_linspace_quantizer(12), exact=True, opset=13, shape=["n"]))[0] == "Div"
    with pytest.raises(InvalidValueError, match=r"'opset' must be at least 13"):
        quantize_model(quantizer, opset=12)


@pytest.mark.parametrize("n_bits", [17, 24, 32])
def test_codes_wider_than_sixteen_bits_need_the_exact_export(n_bits: int) -> None:
    quantizer = _linspace_quantizer(n_bits, is_signed=True)
    with pytest.raises(InvalidValueError, match=r"fit no QuantizeLinear integer type .* exact=True"):
        quantize_model(quantizer)
    values = numpy.linspace(-2, 2, 101, dtype=numpy.float32)
    numpy.testing.assert_array_equal(
        _run(quantize_model(quantizer, exact=True), values), quantizer.quant(values)
    )


# -- errors


def test_per_block_quantizers_have_no_standard_export() -> None:
    values = numpy.random.default_rng(_RNG_SEED).normal(size=(4, 8))
    quantizer = QuantizedArray(4, values, block_size=(2, 4)).quantizer
    with pytest.raises(InvalidValueError, match=r"per-block parameters \(block_size=\(2, 4\)\)"):
        quantize_model(quantizer)
    with pytest.raises(InvalidValueError, match=r"per-block parameters"):
        dequantize_model(quantizer)
    with pytest.raises(InvalidValueError, match=r"'shape' \(4, 4\) does not fit"):
        quantize_model(quantizer, exact=True, shape=(4, 4))


def test_missing_parameters() -> None:
    with pytest.raises(MissingParameterError, match=r"no scale, zero_point, offset yet"):
        quantize_model(UniformQuantizer(QuantizationOptions(8)))
    without_options = UniformQuantizer(None, None, UniformQuantizationParameters(0.5, 0, 0))
    with pytest.raises(MissingParameterError, match=r"no options \(n_bits\)"):
        quantize_model(without_options, exact=True)
    with pytest.raises(MissingParameterError, match=r"no scale, zero_point yet"):
        dequantize_model(UniformQuantizer(QuantizationOptions(8)), exact=True)
    # intquant dequantizes without options (no n_bits, no offset), and so does the exact export
    codes = numpy.array([-3, 0, 5, 1000])
    restored = _run(dequantize_model(without_options, exact=True), codes)
    assert restored.tolist() == without_options.dequant(codes).tolist() == [-1.5, 0.0, 2.5, 500.0]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda q: quantize_model(object()),
            InvalidTypeError,
            r"expected a UniformQuantizer .*; got object\.",
        ),
        (
            lambda q: quantize_model(q, input_dtype="complex64"),
            InvalidTypeError,
            r"'input_dtype' must be one of",
        ),
        (
            lambda q: quantize_model(q, input_dtype="bogus"),
            InvalidTypeError,
            r"'input_dtype' must be a numpy",
        ),
        (lambda q: quantize_model(q, exact=1), InvalidTypeError, r"'exact' must be True or False; got 1"),
        (lambda q: quantize_model(q, opset="21"), InvalidTypeError, r"'opset' must be an int"),
        (lambda q: quantize_model(q, shape=(-1,)), InvalidValueError, r"a size >= 0, a non-empty name"),
        (lambda q: quantize_model(q, shape="n"), InvalidTypeError, r"'shape' must be a sequence"),
        (lambda q: quantizer_to_onnx(q, input_name=3), InvalidTypeError, r"'input_name' must be a str"),
        (
            lambda q: dequantizer_to_onnx(q, output_name=None),
            InvalidTypeError,
            r"'output_name' must be a str",
        ),
        (
            lambda q: quantizer_to_onnx(q, output_name=""),
            InvalidValueError,
            r"'output_name' must be a non-empty",
        ),
        (
            lambda q: dequantizer_to_onnx(q, input_name="v", output_name="v"),
            InvalidValueError,
            r"'input_name' and 'output_name' must differ .* both are 'v'",
        ),
        (
            lambda q: dequantizer_to_onnx(q, codes_dtype=numpy.float32),
            InvalidTypeError,
            r"'codes_dtype' must be one of int8, .*; got float32",
        ),
        (
            lambda q: dequantizer_to_onnx(q, codes_dtype="bogus"),
            InvalidTypeError,
            r"'codes_dtype' must be a numpy integer dtype; got 'bogus'",
        ),
    ],
    ids=[
        "not-a-quantizer",
        "complex",
        "not-a-dtype",
        "exact",
        "opset",
        "negative-size",
        "str-shape",
        "input-name-type",
        "output-name-type",
        "empty-name",
        "equal-names",
        "float-codes",
        "bogus-codes",
    ],
)
def test_bad_arguments(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call(_linspace_quantizer(8))


def test_quantizers_onnx_cannot_reproduce() -> None:
    stochastic = _linspace_quantizer(4, rounding="stochastic", seed=0)
    with pytest.raises(InvalidValueError, match=r"stochastic rounding draws random numbers"):
        quantize_model(stochastic, exact=True)
    half_up = _linspace_quantizer(4, rounding="half_up")
    with pytest.raises(InvalidValueError, match=r"rounds 'half_up'; use exact=True"):
        quantize_model(half_up)
    tiny = UniformQuantizer(QuantizationOptions(8), None, UniformQuantizationParameters(1e-50, 0, 0))
    with pytest.raises(InvalidValueError, match=r"float32 cannot hold the scale 1e-50"):
        quantize_model(tiny)
    assert _run(
        quantize_model(tiny, exact=True, input_dtype=numpy.float64), numpy.array([1e-48])
    ).tolist() == [100]
    zero = UniformQuantizer(QuantizationOptions(8), None, UniformQuantizationParameters(0.0, 0, 0))
    with pytest.raises(InvalidValueError, match=r"scale must be finite and non-zero"):
        quantize_model(zero, exact=True)


def test_per_axis_shape() -> None:
    quantizer = QuantizedArray(8, _calibration_data(per_axis=True), axis=1).quantizer
    dims = quantize_model(quantizer).graph.input[0].type.tensor_type.shape.dim
    assert [(dim.dim_param, dim.dim_value) for dim in dims] == [("d0", 0), ("", 3)]
    dims = quantize_model(quantizer, shape=(7, "c")).graph.input[0].type.tensor_type.shape.dim
    assert [(dim.dim_param, dim.dim_value) for dim in dims] == [("", 7), ("", 3)]
    with pytest.raises(InvalidValueError, match=r"'shape' \(7, 4\) does not fit .* \('any', 3\)"):
        quantize_model(quantizer, shape=(7, 4))
    with pytest.raises(InvalidValueError, match=r"'shape' \(3,\) does not fit"):
        quantize_model(quantizer, shape=(3,))


def test_a_missing_onnx_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    quantizer = _linspace_quantizer(8)
    for build in (quantizer_to_onnx, dequantizer_to_onnx):
        with pytest.raises(MissingDependencyError, match=r'pip install "intquant\[onnx\]"') as raised:
            build(quantizer)
        assert isinstance(raised.value, IntquantError)
        assert isinstance(raised.value, ImportError)
    assert code_dtype(quantizer) == numpy.uint8  # needs no onnx


def test_importing_intquant_does_not_import_onnx() -> None:
    script = (
        "import sys, intquant, intquant.onnx\n"
        "for name in ('onnx', 'onnxruntime'):\n"
        "    assert name not in sys.modules, f'{name} imported'"
    )
    subprocess.run([sys.executable, "-c", script], check=True)

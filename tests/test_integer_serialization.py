"""JSON of the integer layers and networks: round trips give the same codes for every
requantization mode and both layer kinds, the versioned tags are written, and tampered texts are
refused with a SerializationError naming the field."""

from __future__ import annotations

import json
from typing import Any

import numpy
import pytest

import intquant
from intquant.errors import SerializationError
from intquant.integer import (
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
from intquant.integer.requantize import describe

MODES = (
    FloatRescale(),
    FixedPoint(),
    FixedPoint(20, "half_away"),
    PowerOfTwo("half_up"),
    DropLowBits(bits=3),
    DropLowBits(target_bits=12),
)


def build_layer(kind: str, mode: Any) -> tuple[Any, numpy.ndarray]:
    rng = numpy.random.default_rng(7)
    if kind == "linear":
        x = rng.normal(size=(50, 6))
        x_quantizer = intquant.QuantizedArray(8, x).quantizer
        codes = x_quantizer.quant(x)
        bare = IntegerLinear.from_float(
            rng.normal(size=(4, 6)), rng.normal(size=4), input_quantizer=x_quantizer
        )
    else:
        x = rng.uniform(0, 2, size=(3, 2, 6, 6))
        x_quantizer = intquant.QuantizedArray(8, x).quantizer
        codes = x_quantizer.quant(x)
        bare = IntegerConv2d.from_float(
            rng.normal(size=(4, 2, 3, 3)),
            rng.normal(size=4),
            input_quantizer=x_quantizer,
            stride=2,
            padding=1,
        )
    output = intquant.QuantizedArray(
        8, bare(codes) * bare.accumulator_scale.reshape((-1,) if kind == "linear" else (-1, 1, 1))
    ).quantizer
    klass = type(bare)
    layer = klass(
        bare.weight_codes,
        bare.weight_scale,
        input_quantizer=x_quantizer,
        output_quantizer=output,
        bias_codes=bare.bias_codes,
        requantization=mode,
        relu=True,
        **({"stride": 2, "padding": 1} if kind == "conv" else {}),
    )
    return layer, codes


@pytest.mark.parametrize("mode", MODES, ids=repr)
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_layer_round_trip(kind: str, mode: Any) -> None:
    layer, codes = build_layer(kind, mode)
    text = intquant.dumps(layer)
    loaded = intquant.loads(text)
    assert type(loaded) is type(layer) and loaded == layer
    assert intquant.dumps(loaded) == text
    numpy.testing.assert_array_equal(loaded(codes), layer(codes))
    assert loaded.requantization == mode
    for name in ("multiplier", "shift", "real_multiplier"):
        numpy.testing.assert_array_equal(
            getattr(loaded.requant_plan, name), getattr(layer.requant_plan, name)
        )
    document = json.loads(text)
    assert document["type_name"] == f"intquant.{type(layer).__name__}"
    assert document["format_version"] == 1
    fields = document["serialized_value"]
    assert "accumulator_min" not in fields and "product_dtype" not in fields  # plans are recomputed
    assert fields["requantization"] == describe(mode)
    assert fields["weight_codes"]["dtype"] == "int64" and fields["weight_scale"]["dtype"] == "float64"


def network_of(model: list[Any], x: numpy.ndarray, mode: Any) -> IntegerNetwork:
    return IntegerNetwork.from_float(model, x, bits=6, requantization=mode, accumulator_bits=16)


@pytest.mark.parametrize("mode", MODES, ids=repr)
def test_network_round_trip(mode: Any) -> None:
    rng = numpy.random.default_rng(8)
    model = [
        Conv2d(rng.normal(size=(3, 1, 3, 3)), rng.normal(size=3), padding=1),
        ReLU(),
        Flatten(),
        Linear(rng.normal(size=(4, 3 * 5 * 5)) / 5, rng.normal(size=4)),
    ]
    x = rng.normal(size=(20, 1, 5, 5))
    network = network_of(model, x, mode)
    text = intquant.dumps(network)
    loaded = intquant.loads(text)
    assert isinstance(loaded, IntegerNetwork) and loaded == network
    codes = network.quantize_input(x)
    numpy.testing.assert_array_equal(loaded.run(codes), network.run(codes))
    for ours, theirs in zip(loaded.intermediates(codes), network.intermediates(codes), strict=True):
        numpy.testing.assert_array_equal(ours, theirs)
    document = json.loads(text)
    assert document["type_name"] == "intquant.IntegerNetwork" and document["format_version"] == 1
    tags = [element["type_name"] for element in document["serialized_value"]["elements"]]
    assert tags == [
        "intquant.IntegerConv2d",
        "intquant.IntegerReLU",
        "intquant.IntegerFlatten",
        "intquant.IntegerLinear",
    ]
    assert intquant.dumps(intquant.loads(intquant.dumps(IntegerFlatten()))) == intquant.dumps(
        IntegerFlatten()
    )
    assert intquant.loads(intquant.dumps(IntegerReLU(3))) == IntegerReLU(3)


# -- tampered texts --------------------------------------------------------------------------


def layer_document() -> dict[str, Any]:
    layer, _ = build_layer("conv", FixedPoint())
    return json.loads(intquant.dumps(layer))


def loads(document: dict[str, Any]) -> Any:
    return intquant.loads(json.dumps(document))


def array(values: Any, dtype: str) -> dict[str, Any]:
    return {"type_name": "numpy_array", "serialized_value": values, "dtype": dtype}


def test_the_untampered_document_loads() -> None:
    assert isinstance(loads(layer_document()), IntegerConv2d)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("weight_codes", None, r"field 'weight_codes' must be an array of dtype int64; got None"),
        (
            "weight_scale",
            array([1, 1, 1, 1], "int64"),
            r"field 'weight_scale' must be an array of dtype float64; got an array of dtype int64",
        ),
        (
            "bias_codes",
            array([1, 2, 3], "int64"),
            r"'bias_codes' must be an int or an integer array of shape \(4,\)",
        ),
        (
            "bias_codes",
            array([2**31, 0, 0, 0], "int64"),
            r"'bias_codes' must lie in \[-2147483648, 2147483647\]; channel 0 has 2147483648",
        ),
        (
            "weight_zero_point",
            array([0, 0], "int64"),
            r"'weight_zero_point' must be an int or an integer array of shape \(4,\)",
        ),
        ("weight_bits", 2, r"'weight_codes' must lie in \[-2, 1\] \(weight_bits=2"),
        ("weight_bits", "8", r"field 'weight_bits' must be an int; got '8'"),
        ("relu", 1, r"field 'relu' must be true or false"),
        ("requantization", {"mode": "magic"}, r"field 'requantization'.*'mode' must be one of"),
        (
            "requantization",
            {"mode": "fixed_point", "multiplier_bits": 31},
            r"field 'requantization'.*expected the keys",
        ),
        (
            "requantization",
            {"mode": "fixed_point", "multiplier_bits": 3, "rounding": "half_even"},
            r"field 'requantization'",
        ),
        ("input_range", [0, 999], r"'input_range' must satisfy 0 <= lo <= hi <= 255"),
        ("input_range", [0], r"field 'input_range' must be a pair of ints"),
        ("stride", [0, 1], r"'stride' must be an int >= 1"),
        ("padding", "1", r"field 'padding' must be a pair of ints"),
        ("input_quantizer", 3, r"field 'input_quantizer' must be a UniformQuantizer"),
        ("output_quantizer", [], r"field 'output_quantizer' must be a UniformQuantizer or null"),
    ],
)
def test_tampered_layer_fields(field: str, value: Any, message: str) -> None:
    document = layer_document()
    document["serialized_value"][field] = value
    with pytest.raises(SerializationError, match=message):
        loads(document)


def test_tampered_weights() -> None:
    document = layer_document()
    fields = document["serialized_value"]
    codes = numpy.array(fields["weight_codes"]["serialized_value"])
    fields["weight_codes"] = array(codes.astype(float).tolist(), "float64")
    with pytest.raises(
        SerializationError,
        match="field 'weight_codes' must be an array of dtype int64; got an array of dtype float64",
    ):
        loads(document)
    fields["weight_codes"] = array(
        codes[:, :1].tolist(), "int64"
    )  # (4, 1, 3, 3): another input channel count
    assert isinstance(loads(document), IntegerConv2d)
    fields["weight_codes"] = array(codes.reshape(4, -1).tolist(), "int64")
    with pytest.raises(
        SerializationError, match=r"IntegerConv2d must have shape \(out_channels, in_channels, kh, kw\)"
    ):
        loads(document)
    fields["weight_codes"] = array((codes * 0 + 300).tolist(), "int64")
    with pytest.raises(SerializationError, match=r"'weight_codes' must lie in \[-128, 127\]"):
        loads(document)


@pytest.mark.parametrize("change", ["missing", "unknown"])
def test_missing_or_unknown_fields(change: str) -> None:
    document = layer_document()
    if change == "missing":
        del document["serialized_value"]["bias_codes"]
        expected = r"missing \['bias_codes'\], unknown \[\]"
    else:
        document["serialized_value"]["accumulator_min"] = 0
        expected = r"missing \[\], unknown \['accumulator_min'\]"
    with pytest.raises(SerializationError, match=rf"IntegerConv2d fields must be exactly .*; {expected}"):
        loads(document)


def test_tampered_elements_and_network() -> None:
    with pytest.raises(SerializationError, match="IntegerReLU field 'zero_point' must be an int; got '0'"):
        intquant.loads(
            '{"type_name": "intquant.IntegerReLU", "format_version": 1, '
            '"serialized_value": {"zero_point": "0"}}'
        )
    with pytest.raises(SerializationError, match="IntegerReLU fields must be exactly zero_point"):
        intquant.loads('{"type_name": "intquant.IntegerReLU", "format_version": 1, "serialized_value": {}}')
    with pytest.raises(SerializationError, match="IntegerFlatten has no fields"):
        intquant.loads(
            '{"type_name": "intquant.IntegerFlatten", "format_version": 1, "serialized_value": {"a": 1}}'
        )
    with pytest.raises(SerializationError, match="format version 2 was written by a newer intquant"):
        intquant.loads(
            '{"type_name": "intquant.IntegerFlatten", "format_version": 2, "serialized_value": {}}'
        )
    rng = numpy.random.default_rng(9)
    network = IntegerNetwork.from_float(
        [Linear(rng.normal(size=(2, 3))), ReLU(), Linear(rng.normal(size=(2, 2)))], rng.normal(size=(10, 3))
    )
    document = json.loads(intquant.dumps(network))
    elements = document["serialized_value"]["elements"]
    relu = {"type_name": "intquant.IntegerReLU", "format_version": 1, "serialized_value": {"zero_point": 77}}
    document["serialized_value"]["elements"] = [elements[0], relu, elements[2]]
    with pytest.raises(
        SerializationError,
        match=r"invalid serialized IntegerNetwork: element 1 \(IntegerReLU\) has zero_point 77",
    ):
        loads(document)
    document["serialized_value"]["elements"] = [elements[0], 5]
    with pytest.raises(
        SerializationError, match="IntegerNetwork field 'elements' must be a list of IntegerLinear"
    ):
        loads(document)
    document["serialized_value"]["elements"] = elements
    del document["serialized_value"]["input_quantizer"]
    with pytest.raises(
        SerializationError, match="IntegerNetwork fields must be exactly input_quantizer, elements"
    ):
        loads(document)

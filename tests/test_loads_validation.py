"""``loads`` checks every field against what makes it usable (docs/serialization.md).

Text whose fields would give wrong codes or raw errors later is refused at ``loads`` with a
``SerializationError`` naming the object and the field; every text the reference (Concrete ML
1.7.0) and intquant write still loads and re-dumps byte for byte.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import intquant
from intquant import QuantizedArray, dumps, loads
from intquant.errors import IntquantError, SerializationError

GOLDEN_FILE = Path(__file__).parent / "data" / "golden_public.jsonl"


def _array(values: Any, dtype: str) -> dict[str, Any]:
    return {"type_name": "numpy_array", "serialized_value": values, "dtype": dtype}


def _integer(value: int, dtype: str) -> dict[str, Any]:
    return {"type_name": "numpy_integer", "serialized_value": value, "dtype": dtype}


def _float(value: float, dtype: str) -> dict[str, Any]:
    return {"type_name": "numpy_float", "serialized_value": value, "dtype": dtype}


def _document(obj: Any) -> dict[str, Any]:
    return json.loads(dumps(obj))


# An 8-bit signed quantizer (offset 128) and the texts of its three parameter sets.
QUANTIZER = QuantizedArray(8, numpy.linspace(-1, 1, 11), is_signed=True).quantizer
DOCUMENTS = {
    "UniformQuantizer": _document(QUANTIZER),
    "UniformQuantizationParameters": _document(QUANTIZER.quant_params),
    "MinMaxQuantizationStats": _document(QUANTIZER.quant_stats),
}


def _edited(owner: str = "UniformQuantizer", **fields: Any) -> str:
    """The text of ``owner`` (see DOCUMENTS) with ``fields`` replaced."""
    document = copy.deepcopy(DOCUMENTS[owner])
    document["serialized_value"].update(fields)
    return json.dumps(document)


def _refused(text: str, field: str) -> SerializationError:
    with pytest.raises(SerializationError, match=f"'{field}'") as caught:
        loads(text)
    return caught.value


def test_the_unedited_texts_load() -> None:
    assert loads(_edited()) == QUANTIZER
    assert loads(_edited("UniformQuantizationParameters")) == QUANTIZER.quant_params
    assert loads(_edited("MinMaxQuantizationStats")) == QUANTIZER.quant_stats


# -- the repros of the issue: text that loaded and then gave wrong codes

WRONG_CODES = [
    ("offset", 1180591620717411303424),
    ("offset", -5),
    ("offset", True),
    ("offset", 128.5),
    ("offset", _integer(128, "uint8")),  # -offset wraps to 128 in uint8
    ("zero_point", True),
    ("zero_point", 1e300),
]


@pytest.mark.parametrize("field, value", WRONG_CODES, ids=[f"{f}={v!r}" for f, v in WRONG_CODES])
def test_fields_that_gave_wrong_codes_are_refused(field: str, value: Any) -> None:
    error = _refused(_edited(**{field: value}), field)
    assert str(error).startswith(f"UniformQuantizer field '{field}' must be")


def test_two_dimensional_parameters_without_a_granularity_are_refused() -> None:
    text = _edited(
        scale=_array([[0.1, 0.2], [0.3, 0.4]], "float64"), zero_point=_array([[1, 2], [3, 4]], "int64")
    )
    _refused(text, "scale")
    with pytest.raises(SerializationError, match="fit no granularity"):
        loads(text)


# -- one rule per field


OFFSETS_REFUSED = [
    1180591620717411303424,
    2**31 + 1,
    -5,
    256,  # above 2**(n_bits-1) for this 8-bit quantizer
    True,
    128.5,
    128.0,
    "128",
    [128],
    {"offset": 128},
    _integer(128, "uint8"),
    _integer(100, "int8"),  # int8 cannot hold the upper bound 2**8 - 1
    _float(128.0, "float64"),
    _array([128], "uint64"),
    _array([128.0], "float64"),
    _array([], "int64"),
]
OFFSETS_ACCEPTED = [0, 128, 64, None, _integer(128, "int64"), _integer(128, "int16")]


@pytest.mark.parametrize("offset", OFFSETS_REFUSED, ids=repr)
def test_offsets_must_be_ints_from_0_to_2_to_the_n_bits_minus_1(offset: Any) -> None:
    _refused(_edited(offset=offset), "offset")
    # Standalone parameters have no n_bits: an int in [0, 2**31] is in range there.
    if type(offset) is not int or not 0 <= offset <= 2**31:
        _refused(_edited("UniformQuantizationParameters", offset=offset), "offset")


@pytest.mark.parametrize("offset", OFFSETS_ACCEPTED, ids=repr)
def test_offsets_in_range_load_and_round_trip(offset: Any) -> None:
    text = _edited(offset=offset)
    assert dumps(loads(text)) == text


def test_without_n_bits_an_offset_is_at_most_2_to_the_31() -> None:
    assert loads(_edited("UniformQuantizationParameters", offset=2**31)).offset == 2**31
    _refused(_edited("UniformQuantizationParameters", offset=2**31 + 1), "offset")
    _refused(_edited("UniformQuantizationParameters", offset=_integer(128, "int32")), "offset")


ZERO_POINTS_REFUSED = [
    True,
    1e300,
    0.5,
    -3.25,
    float("nan"),
    float("inf"),
    2**63,
    "3",
    [3],
    {"zero_point": 3},
    _integer(2**64 - 1, "uint64"),
    _float(0.5, "float32"),
    _array([1.5, 2.0], "float64"),
    _array([2**63], "uint64"),
    _array([True], "bool"),
]
ZERO_POINTS_ACCEPTED = [
    0,
    -40000,
    2**62,
    3.0,
    None,
    _integer(7, "int64"),
    _integer(7, "uint8"),
    _float(7.0, "float64"),
    _float(-3.0, "float32"),
]


@pytest.mark.parametrize("zero_point", ZERO_POINTS_REFUSED, ids=repr)
def test_zero_points_must_be_integers_within_int64(zero_point: Any) -> None:
    for owner in ("UniformQuantizer", "UniformQuantizationParameters"):
        _refused(_edited(owner, zero_point=zero_point), "zero_point")


@pytest.mark.parametrize("zero_point", ZERO_POINTS_ACCEPTED, ids=repr)
def test_integer_zero_points_load_and_round_trip(zero_point: Any) -> None:
    text = _edited(zero_point=zero_point)
    assert dumps(loads(text)) == text


SCALES_REFUSED = [
    "0.1",
    [0.1],
    {"scale": 0.1},
    True,
    0.0,
    float("nan"),
    float("inf"),
    2**70,
    _float(0.0, "float64"),
    _float(float("nan"), "float64"),
    _array([0.1, 0.0], "float64"),
    _array([], "float64"),
    _array([True], "bool"),
]
SCALES_ACCEPTED = [
    0.5,
    -0.25,
    2,
    None,
    _float(0.5, "float32"),
    _integer(2, "int64"),
    _array([[0.5]], "float64"),
]


@pytest.mark.parametrize("scale", SCALES_REFUSED, ids=repr)
def test_scales_must_be_finite_non_zero_numbers(scale: Any) -> None:
    for owner in ("UniformQuantizer", "UniformQuantizationParameters"):
        _refused(_edited(owner, scale=scale), "scale")


@pytest.mark.parametrize("scale", SCALES_ACCEPTED, ids=repr)
def test_real_scales_load_and_round_trip(scale: Any) -> None:
    text = _edited(scale=scale)
    assert dumps(loads(text)) == text


RANGES_REFUSED = [
    ("rmin", "1"),
    ("rmin", [1.0]),
    ("rmin", {"rmin": 1.0}),
    ("rmin", True),
    ("rmin", 2**70),
    ("rmin", _array([], "float64")),
    ("rmin", _array([1.0, 2.0], "float64")),  # rmax is a scalar: not one shape
    ("rmax", "1"),
    ("rmax", [1.0]),
    ("rmax", {"rmax": 1.0}),
    ("rmax", False),
    ("rmax", _array([True], "bool")),
]
RANGES_ACCEPTED = [
    ("rmin", None),
    ("rmin", -1),
    ("rmin", float("nan")),  # the reference writes the range of data holding NaN
    ("rmax", _float(float("inf"), "float32")),
    ("rmax", _integer(3, "int16")),
]


@pytest.mark.parametrize("field, value", RANGES_REFUSED, ids=[f"{f}={v!r}" for f, v in RANGES_REFUSED])
def test_ranges_must_be_numbers_or_arrays_of_one_shape(field: str, value: Any) -> None:
    for owner in ("UniformQuantizer", "MinMaxQuantizationStats"):
        _refused(_edited(owner, **{field: value}), field)


@pytest.mark.parametrize("field, value", RANGES_ACCEPTED, ids=[f"{f}={v!r}" for f, v in RANGES_ACCEPTED])
def test_numeric_ranges_load_and_round_trip(field: str, value: Any) -> None:
    text = _edited("MinMaxQuantizationStats", **{field: value})
    assert dumps(loads(text)) == text


UVALUES_REFUSED = [
    "abc",
    {"uvalues": [1.0]},
    [1.0, 2.0],
    1.0,
    True,
    _float(1.0, "float64"),
    _array([True, False], "bool"),
    [_array([1.0], "float64")],  # a per-block list, but rmin/rmax are per tensor
]
UVALUES_ACCEPTED = [None, _array([1, 2, 3], "int64"), _array([], "float32"), _array([0.5], "float16")]


@pytest.mark.parametrize("uvalues", UVALUES_REFUSED, ids=repr)
def test_uvalues_must_be_numeric_arrays(uvalues: Any) -> None:
    for owner in ("UniformQuantizer", "MinMaxQuantizationStats"):
        _refused(_edited(owner, uvalues=uvalues), "uvalues")


@pytest.mark.parametrize("uvalues", UVALUES_ACCEPTED, ids=repr)
def test_numeric_uvalues_load_and_round_trip(uvalues: Any) -> None:
    text = _edited("MinMaxQuantizationStats", uvalues=uvalues)
    assert dumps(loads(text)) == text


def test_per_block_uvalues_are_one_array_per_block() -> None:
    values = numpy.linspace(-1, 1, 12).reshape(3, 4)
    stats = intquant.MinMaxQuantizationStats()
    stats.compute_quantization_stats(values, axis=0)
    text = dumps(stats)
    assert dumps(loads(text)) == text
    document = json.loads(text)
    document["serialized_value"]["uvalues"] = document["serialized_value"]["uvalues"][:2]
    _refused(json.dumps(document), "uvalues")
    document["serialized_value"]["uvalues"] = _array([1.0], "float64")
    _refused(json.dumps(document), "uvalues")


# -- parameter arrays must fit a granularity


def _grid(scale: list[Any], zero_point: list[Any]) -> dict[str, Any]:
    return {"scale": _array(scale, "float64"), "zero_point": _array(zero_point, "int64")}


GRIDS_REFUSED = [
    _grid([[0.1, 0.2], [0.3, 0.4]], [[1, 2], [3, 4]]),  # two dimensions vary: per block without block_size
    _grid([[0.1], [0.2]], [[1, 2, 3]]),  # (2, 1) and (1, 3): no common shape
    _grid([0.1, 0.2], [1, 2, 3]),
    {"scale": _array([0.1, 0.2], "float64"), "offset": _array([0, 128, 0], "int64")},
    _grid([0.1, 0.2], [[3]]),  # (2,) and (1, 1) broadcast to (1, 2): the codes would gain a dimension
]
GRIDS_ACCEPTED = [
    _grid([[[[0.1]]], [[[0.2]]]], [[[[1]]], [[[2]]]]),  # Concrete ML's per-channel (C, 1, 1, 1)
    _grid([[0.1, 0.2, 0.3]], [[1, 2, 3]]),  # (1, C)
    {"scale": _array([0.1, 0.2], "float64"), "zero_point": 0},  # a scalar zero point broadcasts
    _grid([0.1, 0.2], [3]),  # a one-element zero point
]


@pytest.mark.parametrize("fields", GRIDS_REFUSED, ids=range(len(GRIDS_REFUSED)))
def test_parameter_arrays_that_fit_no_granularity_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(SerializationError, match=r"UniformQuantizer fields '.*fit no granularity"):
        loads(_edited(**fields))


@pytest.mark.parametrize("fields", GRIDS_ACCEPTED, ids=range(len(GRIDS_ACCEPTED)))
def test_per_channel_parameter_arrays_load(fields: dict[str, Any]) -> None:
    text = _edited(**fields)
    assert dumps(loads(text)) == text


def test_per_block_grids_load_with_their_block_size_or_as_standalone_parameters() -> None:
    values = numpy.linspace(-1, 1, 24).reshape(4, 6)
    array = QuantizedArray(4, values, block_size=(2, 3), is_signed=True)
    assert numpy.shape(array.quantizer.scale) == (2, 2)
    for obj in (array, array.quantizer, array.quantizer.quant_params):
        text = dumps(obj)
        assert dumps(loads(text)) == text
    # The same grid on a quantizer without block_size fits no granularity.
    document = _document(array.quantizer)
    del document["serialized_value"]["block_size"]
    document["type_name"] = "UniformQuantizer"
    del document["format_version"]
    with pytest.raises(SerializationError, match="fit no granularity"):
        loads(json.dumps(document))


def test_quantized_array_values_must_keep_their_shape_under_per_channel_parameters() -> None:
    array = QuantizedArray(4, numpy.linspace(-1, 1, 6).reshape(2, 3), scale=0.5, zero_point=0, offset=0)
    document = _document(array)
    fields = document["serialized_value"]["quantizer"]["serialized_value"]
    fields["scale"] = _array([0.5, 0.25, 0.125], "float64")  # one per column: fits (2, 3)
    assert loads(json.dumps(document)).quantizer.scale.shape == (3,)
    fields["scale"] = _array([[0.5], [0.25], [0.125]], "float64")  # (3, 1) against (2, 3)
    error = _refused(json.dumps(document), "values")
    assert "do not broadcast" in str(error)


@pytest.mark.parametrize(
    "field, value",
    [("values", "1.0"), ("values", [1.0, 2.0]), ("qvalues", {"a": 1}), ("qvalues", 3)],
)
def test_quantized_array_values_must_be_numpy_arrays(field: str, value: Any) -> None:
    document = _document(QuantizedArray(4, numpy.linspace(-1, 1, 6)))
    document["serialized_value"][field] = value
    _refused(json.dumps(document), field)


# -- number tags: the value must be one the dtype represents


TAGS_REFUSED = [
    (_integer(300, "uint8"), "needs a value within \\[0, 255\\]"),
    (_integer(-1, "uint64"), "needs a value within \\[0, 18446744073709551615\\]"),
    (_integer(2**63, "int64"), "needs a value within"),
    (_integer(2049, "float16"), "holds exactly"),
    (_integer(1, "bool"), "needs an integer or float dtype"),
    (_array([1.7, -2.9], "int64"), "needs integers; got 1.7"),
    (_array([float("nan")], "int64"), "needs integers"),
    (_array([256], "uint8"), "needs values within \\[0, 255\\]"),
    (_array([-1, 2**64], "uint64"), "needs values within"),
    (_float(1e300, "float32"), "which would become inf"),
    (_float(2.5, "int64"), "needs an integral value"),
    (_array([70000.0], "float16"), "needs values within"),
    (_array([1e300, 1.0], "float32"), "needs values within"),
    (_array([[1.0], [2.0, 3.0]], "float64"), "ragged"),
    (_array([1, 0], "bool"), "needs true/false elements"),
    (_array([True, False], "float64"), "needs numbers, not true/false"),
    (_array([1, None], "int64"), "needs nested lists of numbers"),
    (_array(["1"], "float64"), "needs nested lists of numbers"),
]


@pytest.mark.parametrize("tag, message", TAGS_REFUSED, ids=[json.dumps(t) for t, _ in TAGS_REFUSED])
def test_number_tags_must_fit_their_dtype(tag: dict[str, Any], message: str) -> None:
    with pytest.raises(SerializationError, match=message):
        loads(json.dumps(tag))


@pytest.mark.parametrize(
    "value",
    [
        numpy.uint64(2**64 - 1),
        numpy.int64(-(2**63)),
        numpy.uint8(255),
        numpy.float32(numpy.nan),
        numpy.float16(-numpy.inf),
        numpy.float32(3.4028235e38),
        numpy.array([2**64 - 1, 0, 5], dtype=numpy.uint64),
        numpy.array([[-(2**63), 2**63 - 1]], dtype=numpy.int64),
        numpy.array([numpy.nan, numpy.inf, -numpy.inf, 65504.0], dtype=numpy.float16),
        numpy.array([True, False]),
        numpy.array(3.5),
        numpy.zeros((0, 3), dtype=numpy.int8),
    ],
    ids=repr,
)
def test_every_value_dumps_writes_loads_back_exactly(value: Any) -> None:
    text = dumps(value)
    loaded = loads(text)
    assert type(loaded) is type(value) and loaded.dtype == value.dtype
    assert numpy.asarray(loaded).tobytes() == numpy.asarray(value).tobytes()
    assert dumps(loaded) == text


def test_errors_name_the_object_and_the_field() -> None:
    document = _document(QuantizedArray(8, numpy.linspace(-1, 1, 11), is_signed=True))
    quantizer = document["serialized_value"]["quantizer"]["serialized_value"]
    quantizer["zero_point"] = _integer(300, "uint8")
    with pytest.raises(SerializationError) as caught:
        loads(json.dumps(document))
    assert str(caught.value) == (
        "QuantizedArray field 'quantizer': UniformQuantizer field 'zero_point': a numpy_integer of "
        "dtype uint8 needs a value within [0, 255]; got 300"
    )
    quantizer["zero_point"] = 0
    quantizer["offset"] = -5
    with pytest.raises(
        SerializationError, match="UniformQuantizer field 'offset' must be an int in \\[0, 128\\]"
    ):
        loads(json.dumps(document))


# -- everything the reference and intquant write still loads


def _texts(value: Any) -> list[str]:
    """The serialized texts in a golden case: strings holding a tagged JSON object."""
    if isinstance(value, str):
        return [value] if value.startswith('{"type_name"') else []
    if isinstance(value, dict):
        return [text for item in value.values() for text in _texts(item)]
    if isinstance(value, list):
        return [text for item in value for text in _texts(item)]
    return []


def test_every_golden_text_loads_and_dumps_identically() -> None:
    cases = [json.loads(line) for line in GOLDEN_FILE.read_text().splitlines()]
    texts = [text for case in cases for text in _texts(case["expect"]) + _texts(case["recipe"])]
    assert len(texts) > 2000
    assert sum('"dumps": ' in line for line in GOLDEN_FILE.read_text().splitlines()) > 1000
    for text in texts:
        assert dumps(loads(text)) == text


_DTYPES = st.sampled_from([numpy.float32, numpy.float64])
_SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5)


@st.composite
def _quantized_arrays(draw: st.DrawFn) -> QuantizedArray:
    values = draw(hnp.arrays(_DTYPES, _SHAPES, elements=st.floats(-1e3, 1e3, allow_nan=False, width=32)))
    n_bits = draw(st.integers(2, 16))
    kind = draw(st.sampled_from(["tensor", "axis", "block"]))
    options: dict[str, Any] = {}
    if kind == "axis":
        options["axis"] = draw(st.integers(-values.ndim, values.ndim - 1))
    elif kind == "block":
        options["block_size"] = tuple(
            draw(st.sampled_from([d for d in range(1, size + 1) if size % d == 0])) for size in values.shape
        )
    flavour = draw(st.sampled_from(["unsigned", "signed", "symmetric", "qat"]))
    if flavour != "unsigned":
        options["is_signed"] = flavour != "qat" or draw(st.booleans())
    if flavour == "symmetric":
        options["is_symmetric"] = True
    if flavour == "qat":
        options["is_qat"] = True
    spread = float(values.max()) - float(values.min())
    assume(spread == 0 or spread >= 1e-3)
    try:
        return QuantizedArray(n_bits, values, **options)
    except IntquantError:  # e.g. parameters that would not be finite: no quantizer to dump
        assume(False)
        raise


@settings(max_examples=150, deadline=None)
@given(array=_quantized_arrays())
def test_every_quantizer_quantized_array_makes_round_trips(array: QuantizedArray) -> None:
    for obj in (array, array.quantizer, array.quantizer.quant_params, array.quantizer.quant_stats):
        text = dumps(obj)
        assert dumps(loads(text)) == text
    assert loads(dumps(array)) == array

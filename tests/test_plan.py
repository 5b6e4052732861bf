"""The quantization plan: made once per (parameters, dtype, shape), cached by value, executed
the same everywhere; restricted plans give a chunk exactly the codes of the whole."""

from __future__ import annotations

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intquant import QuantizationOptions, QuantizedArray, UniformQuantizationParameters, UniformQuantizer
from intquant._core.execute import dequantize_with, quantize_with
from intquant._core.plan import (
    CONCRETE_ML_1_7,
    INFERRED_QAT,
    NO_CLIPPING,
    representable_range,
    restricted_dequant_plan,
    restricted_quant_plan,
)
from intquant.errors import InvalidValueError, MissingParameterError

RNG = numpy.random.default_rng(11)
MATRIX = RNG.normal(size=(12, 10)).astype(numpy.float32)


def _quantizer(**options: object) -> UniformQuantizer:
    return QuantizedArray(6, MATRIX, is_signed=True, **options).quantizer


def test_a_plan_is_cached_by_value_and_never_stale() -> None:
    quantizer = _quantizer()
    first = quantizer.quant_plan(numpy.float32, (3, 4))
    assert quantizer.quant_plan(numpy.float32, (5, 6)) is first  # per tensor: any shape of one rank
    assert quantizer.quant_plan(numpy.float32, ()) is not first  # 0-d values promote as scalars
    twin = UniformQuantizer(quantizer.quant_options, None, quantizer.quant_params)
    assert twin.quant_plan(numpy.float32, (5, 1)) is first  # equal parameters, same plan
    quantizer.scale = quantizer.scale * 2
    changed = quantizer.quant_plan(numpy.float32, (3, 4))
    assert changed is not first and changed.steps[0].scale == numpy.float32(quantizer.scale)
    assert first.convention == changed.convention == CONCRETE_ML_1_7


def test_equal_parameters_of_other_types_get_other_plans() -> None:
    # numpy 1.24 adds int64(300) to float16 values in float32, but float64(300.0) in float16.
    plans = [
        UniformQuantizer(
            QuantizationOptions(16), None, UniformQuantizationParameters(0.013, zero_point, 0)
        ).quant_plan(numpy.float16, (4,))
        for zero_point in (numpy.int64(300), numpy.float64(300.0))
    ]
    assert [plan.steps[0].addition for plan in plans] == [numpy.dtype("float32"), numpy.dtype("float16")]


def test_the_plan_records_the_steps_numpy_1_24_takes() -> None:
    quantizer = UniformQuantizer(QuantizationOptions(8), None, UniformQuantizationParameters(0.5, 70000, 0))
    (step,) = quantizer.quant_plan(numpy.float32, (3,)).steps
    assert (step.division, step.addition) == (numpy.dtype("float32"), numpy.dtype("float64"))
    quantizer.scale, quantizer.zero_point, quantizer.offset = 2, 0, 128  # an integer scale, as from
    # JSON ("scale": 2): true division of integers runs in float64
    (step,) = quantizer.quant_plan(numpy.int64, (3,)).steps
    assert step.division == numpy.dtype("float64") and step.scale.dtype == numpy.float64
    assert quantizer.quant(numpy.array([7, 9, -3])).tolist() == [4, 4, -2]  # ties to even


def test_why_a_plan_does_not_clip() -> None:
    quantizer = _quantizer()
    assert quantizer.quant_plan(numpy.float64, (2,)).unclipped is None
    quantizer.no_clipping = True
    assert quantizer.quant_plan(numpy.float64, (2,)).bounds is None
    assert quantizer.quant_plan(numpy.float64, (2,)).unclipped == NO_CLIPPING
    qat = QuantizedArray(3, numpy.array([0.0, 0.5, 1.0, 1.5]), is_qat=True).quantizer
    assert qat.quant_plan(numpy.float64, (2,)).unclipped == INFERRED_QAT


def test_plans_are_validated_once_when_made() -> None:
    quantizer = _quantizer()
    quantizer.scale = numpy.float64(0)
    with pytest.raises(InvalidValueError, match="the scale must be finite and non-zero"):
        quantizer.quant_plan(numpy.float32, (2,))
    with pytest.raises(MissingParameterError, match="no scale, zero_point, offset yet"):
        UniformQuantizer(QuantizationOptions(4)).quant_plan(numpy.float32, (2,))
    per_axis = _quantizer(axis=0)
    with pytest.raises(InvalidValueError, match=r"block grid of shape \(12, 1\)"):
        per_axis.quant_plan(numpy.float32, (10, 12))


def test_per_axis_and_per_block_layouts_broadcast_without_a_loop() -> None:
    per_axis = _quantizer(axis=1).quant_plan(numpy.float32, MATRIX.shape)
    assert per_axis.layout is not None and per_axis.layout.view is None
    assert per_axis.steps[0].scale.shape == (1, 10)
    per_block = _quantizer(block_size=(4, 5)).quant_plan(numpy.float32, MATRIX.shape)
    assert per_block.layout is not None and per_block.layout.view == (3, 4, 2, 5)
    assert per_block.steps[0].scale.shape == (3, 1, 2, 1)


def test_representable_range_is_where_codes_do_not_clip() -> None:
    quantizer = _quantizer(axis=0)
    plan = quantizer.quant_plan(numpy.float64, MATRIX.shape)
    bounds = representable_range(plan)
    assert bounds is not None
    low, high = bounds
    assert low.shape == high.shape == (12, 1)
    restored = quantizer.dequant(quantizer.quant(MATRIX))
    assert numpy.all((restored >= low) & (restored <= high))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    options=st.sampled_from([{}, {"axis": 0}, {"axis": 1}, {"block_size": (3, 5)}, {"block_size": (4, 2)}]),
    rows=st.tuples(st.integers(0, 12), st.integers(0, 12)).map(sorted),
    columns=st.tuples(st.integers(0, 10), st.integers(0, 10)).map(sorted),
)
def test_a_restricted_plan_gives_a_region_the_codes_of_the_whole(
    options: dict, rows: list[int], columns: list[int]
) -> None:
    quantizer = _quantizer(**options)
    values = MATRIX * numpy.float32(1.3)  # some values beyond the calibration range: clipped
    region = (slice(*rows), slice(*columns))
    codes = quantizer.quant(values)
    plan = quantizer.quant_plan(values.dtype, values.shape)
    part = quantize_with(restricted_quant_plan(plan, region), numpy.ascontiguousarray(values[region]))
    assert numpy.array_equal(part, codes[region])
    restored = quantizer.dequant(codes)
    dequant_plan = quantizer.dequant_plan(codes.dtype, codes.shape)
    part_values = dequantize_with(restricted_dequant_plan(dequant_plan, region), codes[region].copy())
    assert part_values.dtype == restored.dtype
    assert numpy.array_equal(part_values, restored[region])


def test_changing_a_parameter_array_in_place_never_reaches_a_cached_plan() -> None:
    first = _quantizer(axis=0)
    codes = first.quant(MATRIX)
    first.scale[0] *= 2  # in place: the cached plan keeps its own copy
    assert not numpy.array_equal(first.quant(MATRIX), codes)
    twin = _quantizer(axis=0)  # the original values again: the first plan, unchanged
    assert numpy.array_equal(twin.quant(MATRIX), codes)
    plan = twin.quant_plan(MATRIX.dtype, MATRIX.shape)
    assert not plan.scale.flags.writeable

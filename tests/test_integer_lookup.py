"""A layer's requantization as a table lookup on the rounded accumulator (what an FHE compiler
evaluates): the table gives exactly ``requantize`` for every accumulator in the worst-case range."""

from __future__ import annotations

from typing import Any

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from intquant.errors import InvalidOptionsError, InvalidValueError
from intquant.integer import DropLowBits, FixedPoint, FloatRescale, IntegerLinear
from intquant.integer.requantize import lookup_table
from intquant.integer.rounding import round_shift
from tests.test_integer_layers import layer_sources, quantizer


def every_accumulator(layer: IntegerLinear, limit: int = 4096) -> numpy.ndarray:
    """Accumulators (rows, O): every value of each channel's worst-case range when it is small,
    else both ends and evenly spaced values between them."""
    plan = layer.accumulator_plan
    columns = []
    for low, high in zip(plan.accumulator_min.tolist(), plan.accumulator_max.tolist(), strict=True):
        if high - low < limit:
            column = numpy.arange(low, high + 1, dtype=numpy.int64)
        else:
            column = numpy.unique(numpy.linspace(low, high, limit).round().astype(numpy.int64))
        columns.append(numpy.resize(column, limit))  # a shorter column repeats its values
    return numpy.stack(columns, axis=1)


def table_codes(layer: IntegerLinear, accumulators: numpy.ndarray) -> numpy.ndarray:
    offset, table = layer.lookup_table()
    rounded = round_shift(accumulators, layer.requant_plan.shift, "half_up")
    channels = numpy.arange(layer.out_channels)
    return table[channels, rounded - offset]


@given(layer_sources(2), st.sampled_from([FloatRescale(), DropLowBits(bits=3), DropLowBits(target_bits=6)]))
def test_the_table_is_the_requantization(sources: dict[str, Any], mode: Any) -> None:
    sources.pop("seed")
    sources.setdefault("output_quantizer", quantizer(8, 0.05, 128))
    sources["requantization"] = mode
    layer = IntegerLinear(**sources)
    accumulators = every_accumulator(layer)
    numpy.testing.assert_array_equal(table_codes(layer, accumulators), layer.requantize(accumulators))


def test_a_hand_table() -> None:
    # weights [[1, -2]], 4-bit inputs with zero point 0 (codes 0..15): acc in [-30, 15];
    # M = s_x * s_w / s_y = 1 * 1 / 2 = 0.5, two bits dropped: m = 0.5 * 2**2 = 2.
    layer = IntegerLinear(
        numpy.array([[1, -2]]),
        numpy.array([1.0]),
        input_quantizer=quantizer(4, 1.0, 0),
        output_quantizer=quantizer(4, 2.0, 8),
        requantization=DropLowBits(bits=2),
    )
    assert layer.accumulator_plan.accumulator_min.tolist() == [-30]
    assert layer.accumulator_plan.accumulator_max.tolist() == [15]
    offset, table = layer.lookup_table()
    # a = (acc + 2) >> 2 runs from -7 (acc = -30) to 4 (acc = 15); code = clip(rint(a * 2) + 8, 0, 15)
    assert offset.tolist() == [-7]
    expected = [min(max(round(a * 2) + 8, 0), 15) for a in range(-7, 5)]
    assert table.tolist() == [expected]


def test_channels_of_different_widths_share_one_table() -> None:
    layer = IntegerLinear(
        numpy.array([[1, 1], [5, 5]]),
        numpy.array([0.5, 0.1]),
        input_quantizer=quantizer(4, 1.0, 0),
        output_quantizer=quantizer(8, 1.0, 0),
        requantization=DropLowBits(bits=1),
    )
    offset, table = layer.lookup_table()
    widths = (layer.accumulator_plan.accumulator_max + 1) // 2 - offset + 1
    assert table.shape == (2, int(widths.max()))
    narrow = int(numpy.argmin(widths))
    row = table[narrow]
    assert (row[widths[narrow] - 1 :] == row[widths[narrow] - 1]).all()  # repeats its last code
    numpy.testing.assert_array_equal(
        table_codes(layer, every_accumulator(layer)), layer.requantize(every_accumulator(layer))
    )


def test_refusals() -> None:
    sources = {
        "weight_codes": numpy.array([[100, -100] * 32]),
        "weight_scale": numpy.array([0.01]),
        "input_quantizer": quantizer(8, 0.01, 0),
        "output_quantizer": quantizer(8, 0.05, 128),
    }
    with pytest.raises(InvalidValueError, match="integer formula rounds after multiplying"):
        IntegerLinear(**sources, requantization=FixedPoint()).lookup_table()
    with pytest.raises(InvalidValueError, match=r"take \d+ values, more than max_entries=1000"):
        IntegerLinear(**sources).lookup_table(max_entries=1000)
    _, table = IntegerLinear(**sources, requantization=DropLowBits(target_bits=10)).lookup_table(
        max_entries=1024
    )
    assert table.shape[1] <= 1024
    no_output = {key: value for key, value in sources.items() if key != "output_quantizer"}
    with pytest.raises(InvalidOptionsError, match="no output quantizer"):
        IntegerLinear(**no_output).lookup_table()
    plan = IntegerLinear(**sources).requant_plan
    assert plan is not None
    with pytest.raises(InvalidValueError, match="must not exceed"):
        lookup_table(plan, numpy.array([5]), numpy.array([4]))

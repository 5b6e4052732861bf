"""The pure kernels of ``intquant.integer``, each against a plain-Python-integer reference.

``round_shift`` and every requantization mode equal, bit for bit, the same formula computed with
Python ints and ``fractions.Fraction`` (the real multiplier's rounding included); ``accumulate``
equals ``(q_x - zp_x) @ (q_w - zp_w).T + b`` in Python ints (a naive loop for the convolution)
in each product dtype; the worst-case range equals brute force; the constraint mode's scales fit,
keep what already fits, and are minimal.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from typing import Any

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from intquant.errors import InvalidTypeError, InvalidValueError, SerializationError
from intquant.integer.accumulator import (
    AccumulatorReport,
    LayerAccumulators,
    observed_range,
    signed_bits,
    worst_case_bits,
    worst_case_range,
)
from intquant.integer.constraint import fit_weight_scales
from intquant.integer.plan import ROUNDINGS, AccumulatorPlan
from intquant.integer.product import accumulate, choose_product_dtype, conv_windows
from intquant.integer.requantize import (
    DropLowBits,
    FixedPoint,
    FloatRescale,
    PowerOfTwo,
    describe,
    mode_from_dict,
    plan_requantization,
    requantize,
)
from intquant.integer.rounding import round_shift

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


# ---------------------------------------------------------------------------------------------
# Plain-Python references
# ---------------------------------------------------------------------------------------------


def ref_round(value: Fraction, rounding: str) -> int:
    """``value`` to an integer: the nearest one, a tie by ``rounding``."""
    floor = math.floor(value)
    rest = value - floor
    if rest != Fraction(1, 2):
        return floor + (rest > Fraction(1, 2))
    if rounding == "half_up":
        return floor + 1
    if rounding == "half_even":
        return floor + (floor % 2)
    return floor + 1 if value > 0 else floor  # half_away


def ref_round_shift(value: int, shift: int, rounding: str) -> int:
    if shift <= 0:
        return value * 2**-shift
    return ref_round(Fraction(value, 2**shift), rounding)


def ref_signed_bits(value: int) -> int:
    bits = 1
    while not -(2 ** (bits - 1)) <= value <= 2 ** (bits - 1) - 1:
        bits += 1
    return bits


def ref_fixed_point(multiplier: float, magnitude: int, bits: int) -> tuple[int, int]:
    """``(m, s)`` by the contract, in Fractions: ``M = f * 2**e``, ``f`` in [1/2, 1),
    ``m = round(f * 2**B)`` (half even), ``B`` lowered until ``magnitude * m < 2**63`` and
    ``s <= 62``."""
    exact = Fraction(multiplier)
    exponent = 0
    while exact / Fraction(2) ** exponent >= 1:
        exponent += 1
    while exact / Fraction(2) ** exponent < Fraction(1, 2):
        exponent -= 1
    fraction = exact / Fraction(2) ** exponent
    for width in range(bits, 7, -1):
        integer, power = round(fraction * 2**width), exponent
        if integer == 2**width:
            integer, power = integer // 2, power + 1
        if width - power < 0:
            raise AssertionError("a negative shift")
        if magnitude * integer < 2**63 and width - power <= 62:
            return integer, width - power
    raise AssertionError("no multiplier width fits")


def ref_power_of_two(multiplier: float) -> int:
    """The ``s`` with ``M * 2**s`` in ``[2**-0.5, 2**0.5)``: the nearest power of two in log."""
    exact = Fraction(multiplier)
    guess = round(-math.log2(multiplier))  # within one of the answer; the test below is exact
    for shift in range(guess - 2, guess + 3):
        scaled = exact * Fraction(2) ** shift
        if Fraction(1, 2) <= scaled * scaled < 2:
            return shift
    raise AssertionError("no shift found")


def ref_requantize(acc: int, channel: int, mode: Any, plan: Any, magnitude: int) -> int:
    """One output code by the mode's definition, from the real multiplier (the plan's fields are
    not used, but for the drop count of ``DropLowBits(target_bits=...)``, checked separately);
    ``magnitude`` is the channel's worst-case ``max|acc|``."""
    multiplier = float(plan.real_multiplier[channel])
    lo, hi = plan.output_range
    zero_point = plan.output_zero_point
    if isinstance(mode, FloatRescale):
        code = round(float(acc) * multiplier)
    elif isinstance(mode, DropLowBits):
        dropped = mode.bits if mode.bits is not None else int(plan.shift[channel])
        scaled = float(Fraction(multiplier) * 2**dropped)
        code = round(float(ref_round_shift(acc, dropped, "half_up")) * scaled)
    elif isinstance(mode, FixedPoint):
        integer, shift = ref_fixed_point(multiplier, magnitude, mode.multiplier_bits)
        code = ref_round(Fraction(acc * integer, 2**shift), mode.rounding)
    else:
        code = ref_round_shift(acc, ref_power_of_two(multiplier), mode.rounding)
    return min(max(code + zero_point, lo), hi)


def make_plan(mode: Any, multiplier: Any, low: Any, high: Any, zero_point: int, output_range: Any) -> Any:
    return plan_requantization(
        mode, numpy.asarray(multiplier, dtype=numpy.float64), numpy.asarray(low), numpy.asarray(high),
        zero_point, output_range,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# round_shift
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rounding", "expected"),
    [
        # values / 4 for -10 -6 -5 -2 2 5 6 10 (ties at -2.5 -1.5 -0.5 0.5 1.5 2.5)
        ("half_even", [-2, -2, -1, 0, 0, 1, 2, 2]),
        ("half_away", [-3, -2, -1, -1, 1, 1, 2, 3]),
        ("half_up", [-2, -1, -1, 0, 1, 1, 2, 3]),
    ],
)
def test_round_shift_hand_cases(rounding: str, expected: list[int]) -> None:
    values = numpy.array([-10, -6, -5, -2, 2, 5, 6, 10], dtype=numpy.int64)
    result = round_shift(values, 2, rounding)
    assert result.dtype == numpy.int64
    assert result.tolist() == expected


def test_round_shift_non_positive_shift_is_exact_multiplication() -> None:
    values = numpy.array([-3, 0, 5], dtype=numpy.int64)
    assert round_shift(values, 0, "half_even").tolist() == [-3, 0, 5]
    assert round_shift(values, -3, "half_up").tolist() == [-24, 0, 40]
    assert round_shift(values, numpy.array([-1, 2, 1]), "half_away").tolist() == [-6, 0, 3]


def test_round_shift_at_the_int64_limits() -> None:
    values = numpy.array([INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX], dtype=numpy.int64)
    for shift in (1, 2, 31, 62, 63):
        for rounding in ROUNDINGS:
            expected = [ref_round_shift(int(v), shift, rounding) for v in values]
            assert round_shift(values, shift, rounding).tolist() == expected, (shift, rounding)


def _shift_and_values(draw: st.DrawFn, shift: int, shape: tuple[int, ...]) -> numpy.ndarray:
    if shift <= 0:  # the caller guarantees no overflow
        limit = 2 ** (63 + shift) - 1
        elements = st.integers(-limit, limit)
    else:
        tie = st.tuples(st.integers(-(2 ** (63 - shift)), 2 ** (63 - shift) - 1), st.sampled_from([0, 1, -1]))
        elements = st.one_of(
            st.integers(INT64_MIN, INT64_MAX),
            st.integers(-1000, 1000),
            # exact ties and their neighbours: (2j + 1) * 2**(s-1) + {-1, 0, 1}
            tie.map(lambda pair: (2 * pair[0] + 1) * 2 ** (shift - 1) + pair[1]).filter(
                lambda v: INT64_MIN <= v <= INT64_MAX
            ),
        )
    return draw(hnp.arrays(numpy.int64, shape, elements=elements))


@given(data=st.data(), shift=st.integers(-40, 63), rounding=st.sampled_from(ROUNDINGS))
def test_round_shift_equals_python_integers(data: st.DataObject, shift: int, rounding: str) -> None:
    values = _shift_and_values(data.draw, shift, data.draw(st.sampled_from([(0,), (1,), (7,), (3, 4)])))
    original = values.copy()
    result = round_shift(values, shift, rounding)
    assert result.dtype == numpy.int64 and result.shape == values.shape
    expected = [ref_round_shift(int(value), shift, rounding) for value in values.reshape(-1)]
    assert result.reshape(-1).tolist() == expected
    numpy.testing.assert_array_equal(values, original)  # not modified


@given(
    shifts=st.lists(st.integers(-5, 63), min_size=1, max_size=5),
    rows=st.integers(0, 6),
    rounding=st.sampled_from(ROUNDINGS),
    data=st.data(),
)
def test_round_shift_per_channel_shifts(
    shifts: list[int], rows: int, rounding: str, data: st.DataObject
) -> None:
    shift = numpy.array(shifts, dtype=numpy.int64)
    limit = 2**57  # a left shift of 5 keeps it within int64
    elements = st.one_of(st.integers(-limit, limit), st.integers(-64, 64))
    values = data.draw(hnp.arrays(numpy.int64, (rows, len(shifts)), elements=elements))
    result = round_shift(values, shift, rounding)
    expected = [
        [ref_round_shift(int(v), s, rounding) for v, s in zip(row, shifts, strict=True)] for row in values
    ]
    assert result.tolist() == expected


def test_round_shift_broadcasts_the_shift() -> None:
    values = numpy.array([5, -6, 7], dtype=numpy.int64)
    shift = numpy.array([[0], [1], [2]])
    result = round_shift(values, shift, "half_even")
    assert result.shape == (3, 3)
    assert result.tolist() == [[ref_round_shift(v, s, "half_even") for v in (5, -6, 7)] for s in (0, 1, 2)]
    assert round_shift(numpy.array([[5], [6]]), numpy.array([1, 2]), "half_away").tolist() == [[3, 1], [3, 2]]


def test_round_shift_refuses_bad_arguments() -> None:
    values = numpy.array([1, 2])
    with pytest.raises(InvalidValueError, match=r"'rounding' must be one of .*got 'nearest'"):
        round_shift(values, 1, "nearest")
    with pytest.raises(InvalidTypeError, match=r"'values' must be an integer array; got dtype float64"):
        round_shift(numpy.array([1.5]), 1, "half_even")
    with pytest.raises(InvalidValueError, match=r"'shift' must be in \[-63, 63\]; got values in \[64, 64\]"):
        round_shift(values, 64, "half_even")
    with pytest.raises(InvalidValueError, match=r"got values in \[-70, 1\]"):
        round_shift(values, numpy.array([-70, 1]), "half_even")
    with pytest.raises(InvalidTypeError, match=r"'shift' must be an int or an integer array; got float"):
        round_shift(values, 1.0, "half_even")  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match=r"'shift' must be an int .*got True"):
        round_shift(values, True, "half_even")


# ---------------------------------------------------------------------------------------------
# Requantization modes
# ---------------------------------------------------------------------------------------------

MODES = [
    FloatRescale(),
    FixedPoint(),
    FixedPoint(multiplier_bits=12, rounding="half_away"),
    FixedPoint(multiplier_bits=53, rounding="half_up"),
    PowerOfTwo(),
    PowerOfTwo(rounding="half_away"),
    PowerOfTwo(rounding="half_up"),
    DropLowBits(bits=0),
    DropLowBits(bits=3),
    DropLowBits(target_bits=8),
]

# Real multipliers: arbitrary floats, and dyadic ones (j / 2**i) that make exact ties.
MULTIPLIERS = st.one_of(
    st.floats(2.0**-24, 3.0, allow_nan=False, allow_infinity=False),
    st.tuples(st.integers(1, 63), st.integers(0, 12)).map(lambda pair: pair[0] / 2 ** pair[1]),
)
OUTPUT_RANGES = [(0, 255), (-128, 127), (0, 15), (-(2**31), 2**31 - 1)]


@st.composite
def requant_cases(draw: st.DrawFn) -> tuple[Any, numpy.ndarray, numpy.ndarray, numpy.ndarray, int, Any, int]:
    """(mode, accumulators, worst min, worst max, output zero point, output range, channel axis)."""
    mode = draw(st.sampled_from(MODES))
    channels = draw(st.integers(1, 4))
    conv = draw(st.booleans())
    shape = (draw(st.integers(0, 4)), channels, 2, 3) if conv else (draw(st.integers(0, 6)), channels)
    magnitude = draw(st.sampled_from([2**8, 2**20, 2**40]))
    acc = draw(hnp.arrays(numpy.int64, shape, elements=st.integers(-magnitude, magnitude)))
    margin = draw(st.integers(0, magnitude))
    low = numpy.full(channels, -magnitude - margin, dtype=numpy.int64)
    high = numpy.full(channels, magnitude + margin, dtype=numpy.int64)
    zero_point = draw(st.integers(-10, 300))
    output_range = draw(st.sampled_from(OUTPUT_RANGES))
    if draw(st.booleans()):  # a fused ReLU
        output_range = (max(output_range[0], zero_point), output_range[1])
        if output_range[0] > output_range[1]:
            output_range = (output_range[1], output_range[1])
    multiplier = numpy.array(draw(st.lists(MULTIPLIERS, min_size=channels, max_size=channels)))
    return mode, acc, low, high, zero_point, output_range, multiplier, 1 if conv else -1


@given(case=requant_cases())
@settings(max_examples=300)
def test_requantize_equals_python_reference(case: Any) -> None:
    mode, acc, low, high, zero_point, output_range, multiplier, axis = case
    plan = make_plan(mode, multiplier, low, high, zero_point, output_range)
    original = acc.copy()
    codes = requantize(acc, plan, axis)
    assert codes.dtype == numpy.int64 and codes.shape == acc.shape
    numpy.testing.assert_array_equal(acc, original)
    moved = numpy.moveaxis(acc, axis, -1)
    magnitudes = numpy.maximum(-low, high).tolist()
    expected = [
        ref_requantize(int(value), channel, mode, plan, magnitudes[channel])
        for row in moved.reshape(-1, moved.shape[-1])
        for channel, value in enumerate(row)
    ]
    assert numpy.moveaxis(codes, axis, -1).reshape(-1).tolist() == expected


@given(
    multiplier=st.one_of(MULTIPLIERS, st.floats(2.0**-80, 2.0**12)),
    magnitude=st.one_of(st.integers(0, 2**62), st.integers(0, 2**20)),
    bits=st.integers(8, 62),
)
def test_fixed_point_multiplier_and_shift(multiplier: float, magnitude: int, bits: int) -> None:
    try:
        expected = ref_fixed_point(multiplier, magnitude, bits)
    except AssertionError as reason:
        message = "needs a shift of -" if "negative" in str(reason) else "(overflows int64|even with a 8-bit)"
        with pytest.raises(InvalidValueError, match=f"FixedPoint: channel 0's .*{message}"):
            make_plan(FixedPoint(bits), [multiplier], [-magnitude], [magnitude], 0, (0, 255))
        return
    plan = make_plan(FixedPoint(bits), [multiplier], [-magnitude], [magnitude], 0, (0, 255))
    assert (int(plan.multiplier[0]), int(plan.shift[0])) == expected
    assert plan.multiplier.dtype == plan.shift.dtype == numpy.int64 and plan.formula == "integer"
    assert magnitude * int(plan.multiplier[0]) < 2**63 and 0 <= int(plan.shift[0]) <= 62
    assert int(plan.multiplier[0]).bit_length() <= bits


def test_fixed_point_lowers_its_bits_for_wide_accumulators() -> None:
    plan = make_plan(FixedPoint(31), [0.3], [-(2**40)], [2**40], 0, (0, 255))
    multiplier = int(plan.multiplier[0])
    assert multiplier.bit_length() == 23  # 2**40 * m < 2**63 leaves 23 bits
    acc = numpy.array([[2**40], [-(2**40)], [12345]], dtype=numpy.int64)
    expected = [[ref_requantize(int(v), 0, FixedPoint(31), plan, 2**40)] for v in acc[:, 0]]
    assert requantize(acc, plan, -1).tolist() == expected


def test_power_of_two_shift_is_the_nearest_power() -> None:
    # 2**-0.5 ~ 0.70711: just above rounds to shift 0... below to shift 1
    plan = make_plan(
        PowerOfTwo(), [0.7072, 0.7070, 1.0, 0.25, 3.0, 2**-20], [-100] * 6, [100] * 6, 0, (0, 255)
    )
    assert plan.shift.tolist() == [0, 1, 0, 2, -2, 20]
    assert plan.multiplier.tolist() == [1] * 6
    boundary = math.sqrt(0.5)  # the float nearest 2**-0.5 is rational: decided exactly
    assert int(make_plan(PowerOfTwo(), [boundary], [0], [0], 0, (0, 1)).shift[0]) == ref_power_of_two(
        boundary
    )


def test_drop_low_bits_target() -> None:
    # worst case [-1000, 1000]: 11 bits; fitting 8 bits needs k = 3 (1000/8 = 125 <= 127)
    plan = make_plan(DropLowBits(target_bits=8), [0.01, 0.02], [-1000, -10], [1000, 10], 0, (0, 255))
    assert plan.shift.tolist() == [3, 3] and plan.formula == "float"
    numpy.testing.assert_array_equal(plan.multiplier, numpy.array([0.01, 0.02]) * 8)
    # [-1024, 1020]: 11 bits; k = 3 gives -128 and round(127.5) = 128: one more bit to drop
    plan = make_plan(DropLowBits(target_bits=8), [0.01], [-1024], [1020], 0, (0, 255))
    assert plan.shift.tolist() == [4]
    plan = make_plan(DropLowBits(target_bits=16), [0.01], [-1024], [1020], 0, (0, 255))
    assert plan.shift.tolist() == [0]


@given(low=st.integers(-(2**50), 0), high=st.integers(0, 2**50), target=st.integers(2, 40))
def test_drop_low_bits_target_is_the_smallest_that_fits(low: int, high: int, target: int) -> None:
    plan = make_plan(DropLowBits(target_bits=target), [0.5], [low], [high], 0, (0, 255))
    dropped = int(plan.shift[0])

    def fits(k: int) -> bool:
        ends = (ref_round_shift(low, k, "half_up"), ref_round_shift(high, k, "half_up"))
        return max(map(ref_signed_bits, ends)) <= target

    assert fits(dropped)
    assert dropped == 0 or not fits(dropped - 1)


def test_modes_refuse_bad_values() -> None:
    with pytest.raises(
        InvalidValueError, match=r"'multiplier_bits' must be an int in \[8, 62\]; got 7. \(FixedPoint"
    ):
        FixedPoint(multiplier_bits=7)
    with pytest.raises(InvalidTypeError, match=r"'multiplier_bits' must be an int in \[8, 62\]; got True"):
        FixedPoint(multiplier_bits=True)
    with pytest.raises(InvalidValueError, match=r"FixedPoint: 'rounding' must be one of .*got 'nearest'"):
        FixedPoint(rounding="nearest")
    with pytest.raises(InvalidTypeError, match=r"PowerOfTwo: 'rounding' must be one of .*got 1 of type int"):
        PowerOfTwo(rounding=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match=r"DropLowBits: give exactly one of 'bits'.*got bits=None"):
        DropLowBits()
    with pytest.raises(InvalidValueError, match=r"got bits=2, target_bits=8"):
        DropLowBits(bits=2, target_bits=8)
    with pytest.raises(InvalidValueError, match=r"'bits' must be an int in \[0, 62\]; got -1. \(DropLowBits"):
        DropLowBits(bits=-1)
    with pytest.raises(InvalidValueError, match=r"'target_bits' must be an int in \[2, 64\]; got 1"):
        DropLowBits(target_bits=1)
    assert FixedPoint(numpy.int64(20)).multiplier_bits == 20
    assert type(FixedPoint(numpy.int64(20)).multiplier_bits) is int


def test_plan_requantization_refuses_bad_arguments() -> None:
    ok: dict[str, Any] = {
        "real_multiplier": numpy.array([0.5]),
        "accumulator_min": numpy.array([-10]),
        "accumulator_max": numpy.array([10]),
        "output_zero_point": 0,
        "output_range": (0, 255),
    }
    with pytest.raises(InvalidTypeError, match=r"'mode' must be FloatRescale\(\).*got 'float'"):
        plan_requantization("float", **ok)  # type: ignore[arg-type]
    for multiplier in ([0.0], [-1.0], [math.nan], [math.inf]):
        with pytest.raises(InvalidValueError, match=r"'real_multiplier' must be finite and positive"):
            plan_requantization(FloatRescale(), **{**ok, "real_multiplier": numpy.array(multiplier)})
    with pytest.raises(
        InvalidValueError, match=r"'accumulator_min' must be a 1-D integer array of shape \(1,\)"
    ):
        plan_requantization(FloatRescale(), **{**ok, "accumulator_min": numpy.array([-1, 2])})
    with pytest.raises(
        InvalidValueError, match=r"'accumulator_max' must be a 1-D integer array.*dtype float64"
    ):
        plan_requantization(FloatRescale(), **{**ok, "accumulator_max": numpy.array([1.0])})
    with pytest.raises(InvalidValueError, match=r"'accumulator_min' must be <= 'accumulator_max'"):
        plan_requantization(FloatRescale(), **{**ok, "accumulator_min": numpy.array([11])})
    with pytest.raises(
        InvalidValueError, match=r"'output_range' must be a tuple \(lo, hi\) of ints, lo <= hi"
    ):
        plan_requantization(FloatRescale(), **{**ok, "output_range": (5, 4)})
    with pytest.raises(InvalidTypeError, match=r"'output_zero_point' must be an int"):
        plan_requantization(FloatRescale(), **{**ok, "output_zero_point": 0.5})
    with pytest.raises(
        InvalidValueError, match=r"channel 0's multiplier .* needs a shift of 63 even with a 8-bit"
    ):
        plan_requantization(FixedPoint(), **{**ok, "real_multiplier": numpy.array([2.0**-56])})
    with pytest.raises(
        InvalidValueError, match=r"channel 0's multiplier 1024.0 needs a shift of -1; expected"
    ):
        plan_requantization(FixedPoint(10), **{**ok, "real_multiplier": numpy.array([1024.0])})
    assert (
        plan_requantization(FixedPoint(), **{**ok, "real_multiplier": numpy.array([2.0**-55])}).shift[0] == 62
    )
    with pytest.raises(InvalidValueError, match=r"channel 1's worst-case accumulator magnitude"):
        plan_requantization(
            FixedPoint(),
            **{**ok, "real_multiplier": numpy.array([0.5, 0.5]), "accumulator_min": numpy.array([0, 0]),
               "accumulator_max": numpy.array([1, 2**60])},
        )  # fmt: skip
    with pytest.raises(
        InvalidValueError, match=r"PowerOfTwo: channel 0's multiplier 1024.0 gives a shift of -10"
    ):
        plan_requantization(PowerOfTwo(), **{**ok, "real_multiplier": numpy.array([1024.0]),
                                             "accumulator_max": numpy.array([2**60])})  # fmt: skip
    with pytest.raises(InvalidValueError, match=r"PowerOfTwo: .*gives a shift of 70"):
        plan_requantization(PowerOfTwo(), **{**ok, "real_multiplier": numpy.array([2.0**-70])})


def test_requantize_refuses_bad_accumulators() -> None:
    plan = make_plan(FloatRescale(), [0.5, 0.25], [-10, -10], [10, 10], 0, (0, 255))
    with pytest.raises(InvalidValueError, match=r"must have 2 channels along axis -1; got shape \(4, 3\)"):
        requantize(numpy.zeros((4, 3), dtype=numpy.int64), plan, -1)
    with pytest.raises(InvalidValueError, match=r"must have 2 channels along axis 1; got shape \(4, 3\)"):
        requantize(numpy.zeros((4, 3), dtype=numpy.int64), plan, 1)
    with pytest.raises(InvalidTypeError, match=r"'accumulators' must be an integer array; got dtype float64"):
        requantize(numpy.zeros((4, 2)), plan, -1)


@pytest.mark.parametrize("mode", MODES)
def test_describe_round_trips(mode: Any) -> None:
    payload = describe(mode)
    assert mode_from_dict(payload) == mode


def test_describe_payloads() -> None:
    assert describe(FloatRescale()) == {"mode": "float"}
    assert describe(FixedPoint()) == {"mode": "fixed_point", "multiplier_bits": 31, "rounding": "half_even"}
    assert describe(PowerOfTwo("half_up")) == {"mode": "power_of_two", "rounding": "half_up"}
    assert describe(DropLowBits(bits=4)) == {"mode": "drop_low_bits", "bits": 4, "target_bits": None}
    with pytest.raises(InvalidTypeError, match=r"'mode' must be a requantization mode; got None"):
        describe(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1], r"must be a JSON object; got list"),
        ({"mode": "nearest"}, r"'mode' must be one of \('float', 'fixed_point'.*got 'nearest'"),
        ({}, r"'mode' must be one of .*got None"),
        ({"mode": "float", "bits": 3}, r"mode 'float': expected the keys \['mode'\]; got \['bits', 'mode'\]"),
        (
            {"mode": "fixed_point", "multiplier_bits": 31},
            r"expected the keys \['mode', 'multiplier_bits', 'rounding'\]",
        ),
        (
            {"mode": "fixed_point", "multiplier_bits": True, "rounding": "half_even"},
            r"field 'multiplier_bits' has True",
        ),
        (
            {"mode": "fixed_point", "multiplier_bits": 4, "rounding": "half_even"},
            r"'multiplier_bits' must be an int in",
        ),
        (
            {"mode": "fixed_point", "multiplier_bits": "31", "rounding": "half_even"},
            r"'multiplier_bits' must be an int",
        ),
        (
            {"mode": "power_of_two", "rounding": "up"},
            r"mode 'power_of_two': PowerOfTwo: 'rounding' must be one of",
        ),
        ({"mode": "drop_low_bits", "bits": None, "target_bits": None}, r"give exactly one of 'bits'"),
        ({"mode": "drop_low_bits", "bits": 2.0, "target_bits": None}, r"field 'bits' has 2.0 of type float"),
    ],
)
def test_mode_from_dict_is_strict(payload: Any, message: str) -> None:
    with pytest.raises(SerializationError, match=message):
        mode_from_dict(payload)


# ---------------------------------------------------------------------------------------------
# The product: accumulate and conv_windows
# ---------------------------------------------------------------------------------------------


def accumulator_plan(
    kind: str,
    weight_codes: numpy.ndarray,
    weight_zero_point: Any,
    bias_codes: Any,
    input_zero_point: int,
    input_range: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
) -> AccumulatorPlan:
    """A plan as the layers build it (raw-code bound for the dtype; worst case over the range,
    widened to 0 for a padded convolution)."""
    weights = numpy.asarray(weight_codes, dtype=numpy.int64)
    count = weights.shape[0]
    flat = weights.reshape(count, -1)
    zero_points = numpy.broadcast_to(numpy.asarray(weight_zero_point, dtype=numpy.int64), (count,)).copy()
    bias = numpy.asarray(bias_codes, dtype=numpy.int64).reshape(count)
    lo, hi = input_range
    centered = (lo - input_zero_point, hi - input_zero_point)
    if any(padding):
        centered = (min(centered[0], 0), max(centered[1], 0))
    worst_min, worst_max = worst_case_range(flat - zero_points[:, None], bias, centered)
    raw_input = max(abs(lo), abs(hi), abs(input_zero_point) if any(padding) else 0)
    raw_weight = int(numpy.abs(flat).max()) if flat.size else 0
    return AccumulatorPlan(
        kind=kind,  # type: ignore[arg-type]
        weight_codes=weights,
        weight_zero_point=zero_points,
        weight_sums=flat.sum(axis=1),
        bias_codes=bias,
        input_zero_point=input_zero_point,
        input_range=input_range,
        stride=stride,
        padding=padding,
        accumulator_min=worst_min,
        accumulator_max=worst_max,
        product_dtype=choose_product_dtype(flat.shape[1], raw_input, raw_weight),
    )


def reference_linear(codes: numpy.ndarray, plan: AccumulatorPlan) -> numpy.ndarray:
    x = codes.astype(object) - plan.input_zero_point
    w = plan.weight_codes.astype(object) - plan.weight_zero_point.astype(object)[:, None]
    return x @ w.T + plan.bias_codes.astype(object)


def reference_conv(codes: numpy.ndarray, plan: AccumulatorPlan) -> numpy.ndarray:
    batch, channels, height, width = codes.shape
    count, _, rows, columns = plan.weight_codes.shape
    (sh, sw), (ph, pw) = plan.stride, plan.padding
    out_h, out_w = (height + 2 * ph - rows) // sh + 1, (width + 2 * pw - columns) // sw + 1
    zp = plan.input_zero_point
    out = numpy.zeros((batch, count, out_h, out_w), dtype=object)
    for n, o, i, j in itertools.product(range(batch), range(count), range(out_h), range(out_w)):
        total = int(plan.bias_codes[o])
        for c, u, v in itertools.product(range(channels), range(rows), range(columns)):
            y, x = i * sh + u - ph, j * sw + v - pw
            value = int(codes[n, c, y, x]) if 0 <= y < height and 0 <= x < width else zp
            total += (value - zp) * (int(plan.weight_codes[o, c, u, v]) - int(plan.weight_zero_point[o]))
        out[n, o, i, j] = total
    return out


# (input code range, weight code bound, weight zero point range, K range) per product dtype:
# float32 needs K * a * w < 2**24, float64 < 2**53, int64 beyond.
DTYPE_CASES = {
    "float32": ((0, 255), 127, (0, 0), (1, 64)),
    "float64": ((-(2**15), 2**15 - 1), 2**15, (-3, 3), (1, 40)),
    "int64": ((-(2**28), 2**28), 2**28, (-5, 5), (1, 12)),
}


@st.composite
def linear_cases(draw: st.DrawFn, dtype: str) -> tuple[AccumulatorPlan, numpy.ndarray]:
    (lo, hi), bound, (zw_lo, zw_hi), (k_lo, k_hi) = DTYPE_CASES[dtype]
    size = draw(st.integers(k_lo, k_hi))
    count = draw(st.integers(1, 5))
    # at least one weight at the bound, so that the raw-code bound selects the dtype
    weights = draw(hnp.arrays(numpy.int64, (count, size), elements=st.integers(-bound, bound)))
    weights[0, 0] = bound
    zero_point = draw(st.integers(lo, hi))
    plan = accumulator_plan(
        "linear",
        weights,
        draw(hnp.arrays(numpy.int64, (count,), elements=st.integers(zw_lo, zw_hi))),
        draw(hnp.arrays(numpy.int64, (count,), elements=st.integers(-(2**31), 2**31 - 1))),
        zero_point,
        (lo, hi),
    )
    shape = draw(st.sampled_from([(size,), (0, size), (3, size), (2, 3, size)]))
    corners = st.sampled_from([lo, hi])
    codes = draw(hnp.arrays(numpy.int64, shape, elements=st.one_of(st.integers(lo, hi), corners)))
    return plan, codes


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
@given(data=st.data())
def test_accumulate_linear_equals_python_integers(dtype: str, data: st.DataObject) -> None:
    plan, codes = data.draw(linear_cases(dtype))
    assert plan.product_dtype == dtype  # the magnitudes force it
    original = codes.copy()
    result = accumulate(codes, plan)
    assert result.dtype == numpy.int64 and result.shape == (*codes.shape[:-1], plan.out_channels)
    assert result.tolist() == reference_linear(codes, plan).tolist()
    numpy.testing.assert_array_equal(codes, original)


def test_each_product_dtype_is_reached_and_exact_at_its_limit() -> None:
    # float32: 256 * 255 * 255 < 2**24, every input at its maximum: the largest exact sum
    plan = accumulator_plan("linear", numpy.full((2, 256), 255), 0, [0, 7], 0, (0, 255))
    assert plan.product_dtype == "float32"
    codes = numpy.full((3, 256), 255, dtype=numpy.int64)
    assert accumulate(codes, plan).tolist() == [[256 * 255 * 255, 256 * 255 * 255 + 7]] * 3
    # float64: 2**20 * 2**16 * 2**15 = 2**51 < 2**53
    plan = accumulator_plan("linear", numpy.full((1, 2**20), 2**15 - 1), 0, [0], 0, (-(2**16), 2**16))
    assert plan.product_dtype == "float64"
    codes = numpy.full((1, 2**20), 2**16 - 1, dtype=numpy.int64)
    assert accumulate(codes, plan).tolist() == [[2**20 * (2**16 - 1) * (2**15 - 1)]]
    # int64: 2 * (2**30 - 1)**2 > 2**53; sums of odd products are not exact in float64
    plan = accumulator_plan("linear", numpy.array([[2**30 - 1, 2**30 - 3]]), 0, [1], 0, (0, 2**30))
    assert plan.product_dtype == "int64"
    codes = numpy.array([[2**30 - 1, 2**30 - 5]], dtype=numpy.int64)
    assert accumulate(codes, plan).tolist() == [[(2**30 - 1) ** 2 + (2**30 - 3) * (2**30 - 5) + 1]]


def test_accumulate_widens_when_the_weight_zero_point_needs_it() -> None:
    # raw bound 256 * 255 * 255 < 2**24 picks float32, but the centered weights (q_w + 255, up
    # to 510) make sums up to 2**25 with odd multiples of 2: not exact in float32
    weights = numpy.tile([255, 254], (3, 128))
    plan = accumulator_plan("linear", weights, -255, [0, 0, 0], 0, (0, 255))
    assert plan.product_dtype == "float32"
    codes = numpy.tile([255, 253], (2, 128)).astype(numpy.int64)
    assert accumulate(codes, plan).tolist() == reference_linear(codes, plan).tolist()


@st.composite
def conv_cases(draw: st.DrawFn, dtype: str) -> tuple[AccumulatorPlan, numpy.ndarray]:
    (lo, hi), bound, (zw_lo, zw_hi), _ = DTYPE_CASES[dtype]
    channels, count = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 1)))
    height = draw(st.integers(max(1, kernel[0] - 2 * padding[0]), 6))
    width = draw(st.integers(max(1, kernel[1] - 2 * padding[1]), 6))
    weights = draw(hnp.arrays(numpy.int64, (count, channels, *kernel), elements=st.integers(-bound, bound)))
    weights[0, 0, 0, 0] = bound
    plan = accumulator_plan(
        "conv2d",
        weights,
        draw(hnp.arrays(numpy.int64, (count,), elements=st.integers(zw_lo, zw_hi))),
        draw(hnp.arrays(numpy.int64, (count,), elements=st.integers(-1000, 1000))),
        draw(st.integers(lo, hi)),
        (lo, hi),
        stride,
        padding,
    )
    corners = st.sampled_from([lo, hi])
    codes = draw(
        hnp.arrays(
            numpy.int64, (draw(st.integers(0, 2)), channels, height, width),
            elements=st.one_of(st.integers(lo, hi), corners),
        )
    )  # fmt: skip
    return plan, codes


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
@given(data=st.data())
@settings(max_examples=60)
def test_accumulate_conv2d_equals_a_naive_loop(dtype: str, data: st.DataObject) -> None:
    plan, codes = data.draw(conv_cases(dtype))
    assert plan.product_dtype == dtype
    original = codes.copy()
    result = accumulate(codes, plan)
    expected = reference_conv(codes, plan)
    assert result.dtype == numpy.int64 and result.shape == expected.shape
    assert result.flags.c_contiguous
    assert result.tolist() == expected.tolist()
    numpy.testing.assert_array_equal(codes, original)


def test_accumulate_conv2d_product_dtypes() -> None:
    rng = numpy.random.default_rng(3)
    for dtype, (input_range, bound, _, _) in DTYPE_CASES.items():
        weights = rng.integers(-bound, bound + 1, size=(4, 3, 3, 3))
        weights[0, 0, 0, 0] = bound
        plan = accumulator_plan("conv2d", weights, 0, [5, 6, 7, 8], 3, input_range, (2, 1), (1, 1))
        assert plan.product_dtype == dtype
        codes = rng.integers(input_range[0], input_range[1] + 1, size=(2, 3, 5, 4))
        assert accumulate(codes, plan).tolist() == reference_conv(codes, plan).tolist()


def test_conv_windows_layout() -> None:
    codes = numpy.arange(2 * 2 * 3 * 4).reshape(2, 2, 3, 4)
    windows = conv_windows(codes, (2, 3), (1, 2), (1, 0), -7)
    assert windows.dtype == numpy.int64 and windows.shape == (2, 4, 1, 12)
    padded = numpy.pad(codes, ((0, 0), (0, 0), (1, 1), (0, 0)), constant_values=-7)
    for n, i in itertools.product(range(2), range(4)):
        assert windows[n, i, 0].tolist() == padded[n, :, i : i + 2, 0:3].reshape(-1).tolist()
    with pytest.raises(
        InvalidValueError, match=r"The kernel \(5, 1\) does not fit the input of shape \(2, 2, 3, 4\)"
    ):
        conv_windows(codes, (5, 1), (1, 1), (0, 0), 0)
    with pytest.raises(InvalidValueError, match=r"'codes' must be \(N, C, H, W\); got shape \(3, 4\)"):
        conv_windows(codes[0, 0], (1, 1), (1, 1), (0, 0), 0)


def test_choose_product_dtype() -> None:
    assert choose_product_dtype(0, 10**9, 10**9) == "float32"
    assert choose_product_dtype(1, 2**12, 2**12 - 1) == "float32"
    assert choose_product_dtype(1, 2**12, 2**12) == "float64"
    assert choose_product_dtype(2, 2**26, 2**26 - 1) == "float64"
    assert choose_product_dtype(2, 2**26, 2**26) == "int64"
    assert choose_product_dtype(2**40, 2**40, 2**40) == "int64"
    with pytest.raises(InvalidValueError, match=r"'max_abs_input' must be an int >= 0; got -1"):
        choose_product_dtype(3, -1, 2)


# ---------------------------------------------------------------------------------------------
# Worst-case range, bits, reports
# ---------------------------------------------------------------------------------------------


def brute_force(weights: numpy.ndarray, bias: numpy.ndarray, inputs: Any) -> tuple[list[int], list[int]]:
    sums = [[sum(int(w) * x for w, x in zip(row, point, strict=True)) + int(b) for point in inputs]
            for row, b in zip(weights, bias, strict=True)]  # fmt: skip
    return [min(row) for row in sums], [max(row) for row in sums]


@given(
    weights=hnp.arrays(
        numpy.int64, st.tuples(st.integers(1, 2), st.integers(1, 3)), elements=st.integers(-9, 9)
    ),
    low=st.integers(-4, 3),
    span=st.integers(0, 3),
    bias=st.integers(-20, 20),
)
def test_worst_case_range_equals_every_input(weights: numpy.ndarray, low: int, span: int, bias: int) -> None:
    biases = numpy.full(weights.shape[0], bias)
    points = list(itertools.product(range(low, low + span + 1), repeat=weights.shape[1]))
    minimum, maximum = worst_case_range(weights, biases, (low, low + span))
    assert minimum.dtype == maximum.dtype == numpy.int64
    assert (minimum.tolist(), maximum.tolist()) == brute_force(weights, biases, points)


@given(
    weights=hnp.arrays(
        numpy.int64, st.tuples(st.integers(1, 4), st.integers(1, 8)), elements=st.integers(-(2**20), 2**20)
    ),
    ends=st.tuples(st.integers(-(2**20), 2**20), st.integers(-(2**20), 2**20)).map(sorted),
    bias=hnp.arrays(numpy.int64, 4, elements=st.integers(-(2**31), 2**31 - 1)),
)
def test_worst_case_range_equals_the_corners(
    weights: numpy.ndarray, ends: list[int], bias: numpy.ndarray
) -> None:
    biases = bias[: weights.shape[0]]
    corners = list(itertools.product(ends, repeat=weights.shape[1]))
    minimum, maximum = worst_case_range(weights, biases, (ends[0], ends[1]))
    assert (minimum.tolist(), maximum.tolist()) == brute_force(weights, biases, corners)


@given(
    weights=hnp.arrays(
        numpy.int64, st.tuples(st.integers(0, 6), st.integers(0, 300)), elements=st.integers(-128, 127)
    ),
    ends=st.tuples(st.integers(-300, 300), st.integers(-300, 300)).map(sorted),
)
def test_worst_case_range_by_definition(weights: numpy.ndarray, ends: list[int]) -> None:
    lo, hi = ends
    bias = numpy.arange(weights.shape[0]) * 1000 - 2000
    minimum, maximum = worst_case_range(weights, bias, (lo, hi))
    rows = [[int(w) for w in row] for row in weights]
    assert minimum.tolist() == [
        sum(min(w * lo, w * hi) for w in row) + int(b) for row, b in zip(rows, bias, strict=True)
    ]
    assert maximum.tolist() == [
        sum(max(w * lo, w * hi) for w in row) + int(b) for row, b in zip(rows, bias, strict=True)
    ]
    assert worst_case_bits(weights, bias, (lo, hi)).tolist() == [
        max(ref_signed_bits(a), ref_signed_bits(b))
        for a, b in zip(minimum.tolist(), maximum.tolist(), strict=True)
    ]


def test_worst_case_range_beyond_int64() -> None:
    # K * max|w| beyond int64, the bounds within: summed exactly with Python ints
    weights = numpy.array([[2**62, 2**62, -(2**62)]])
    minimum, maximum = worst_case_range(weights, numpy.array([0]), (-1, 0))
    assert (minimum.tolist(), maximum.tolist()) == ([-(2**63)], [2**62])
    weights = numpy.array([[2**62] * 4])
    with pytest.raises(
        InvalidValueError, match=r"minimum of channel 0 is -18889465931478580854784, beyond int64"
    ):
        worst_case_range(weights, numpy.array([0]), (-1024, 1024))
    assert worst_case_bits(weights, numpy.array([0]), (-1024, 1024)).tolist() == [76]


def test_worst_case_range_refuses_bad_arguments() -> None:
    with pytest.raises(
        InvalidValueError, match=r"'centered_weights' must be a 2-D integer array \(O, K\); got shape \(3,\)"
    ):
        worst_case_range(numpy.array([1, 2, 3]), numpy.array([0]), (0, 1))
    with pytest.raises(InvalidValueError, match=r"got shape \(1, 2\), dtype float64"):
        worst_case_range(numpy.array([[1.0, 2.0]]), numpy.array([0]), (0, 1))
    with pytest.raises(
        InvalidValueError, match=r"'bias_codes' must be an integer array of shape \(1,\); got shape \(2,\)"
    ):
        worst_case_range(numpy.array([[1, 2]]), numpy.array([0, 1]), (0, 1))
    with pytest.raises(
        InvalidValueError,
        match=r"'input_range' must be a pair \(lo, hi\) of ints with lo <= hi; got \(2, 1\)",
    ):
        worst_case_range(numpy.array([[1, 2]]), numpy.array([0]), (2, 1))
    with pytest.raises(InvalidValueError, match=r"got \(0, 1.5\)"):
        worst_case_range(numpy.array([[1, 2]]), numpy.array([0]), (0, 1.5))  # type: ignore[arg-type]


def test_signed_bits_hand_cases() -> None:
    values = [0, -1, 1, 127, -128, 128, -129, INT64_MAX, INT64_MIN]
    expected = [1, 1, 2, 8, 8, 9, 9, 64, 64]
    array = numpy.array(values, dtype=numpy.int64)
    assert signed_bits(array, array).tolist() == expected
    assert signed_bits(numpy.array([-128]), numpy.array([128])).tolist() == [9]
    assert signed_bits(-3, numpy.array([[0], [4]])).tolist() == [[3], [4]]


@given(st.integers(INT64_MIN, INT64_MAX), st.integers(INT64_MIN, INT64_MAX))
def test_signed_bits_equals_python(low: int, high: int) -> None:
    assert int(signed_bits(numpy.array(low), numpy.array(high))) == max(
        ref_signed_bits(low), ref_signed_bits(high)
    )


def test_signed_bits_refuses_non_integers() -> None:
    with pytest.raises(InvalidTypeError, match=r"'minimum' must be an integer array; got dtype float64"):
        signed_bits(numpy.array([1.0]), numpy.array([1]))
    with pytest.raises(InvalidValueError, match=r"'maximum' must fit int64"):
        signed_bits(numpy.array([1]), numpy.array([2**64], dtype=object))
    with pytest.raises(
        InvalidValueError, match=r"'maximum' must fit int64; got a maximum of 18446744073709551615"
    ):
        signed_bits(numpy.array([1]), numpy.array([2**64 - 1], dtype=numpy.uint64))


def test_observed_range() -> None:
    acc = numpy.arange(24).reshape(2, 3, 4) - 10
    low, high = observed_range(acc, 1)
    assert (low.tolist(), high.tolist()) == ([-10, -6, -2], [5, 9, 13])
    low, high = observed_range(acc, -1)
    assert (low.tolist(), high.tolist()) == ([-10, -9, -8, -7], [10, 11, 12, 13])
    with pytest.raises(InvalidValueError, match=r"No accumulator to observe: got shape \(0, 3\)"):
        observed_range(numpy.zeros((0, 3), dtype=numpy.int64), -1)
    with pytest.raises(InvalidValueError, match=r"'channel_axis' 2 is out of range for shape \(0, 3\)"):
        observed_range(numpy.zeros((0, 3), dtype=numpy.int64), 2)


def test_layer_accumulators_and_report() -> None:
    first = LayerAccumulators.from_ranges(
        "dense_0",
        numpy.array([-40000, -5]),
        numpy.array([70000, 5]),
        numpy.array([-300, -1]),
        numpy.array([900, 2]),
    )
    assert first.worst_bits.tolist() == [18, 4] and first.observed_bits is not None
    assert first.observed_bits.tolist() == [11, 3]
    assert (first.max_worst_bits, first.max_observed_bits, first.channels) == (18, 11, 2)
    with pytest.raises(ValueError, match="read-only"):
        first.worst_min[0] = 0
    second = LayerAccumulators.from_ranges("dense_1", numpy.array([-100]), numpy.array([99]))
    assert (second.max_worst_bits, second.max_observed_bits) == (8, None)
    report = AccumulatorReport((first, second), limit_bits=16)
    assert (report.max_worst_bits, report.max_observed_bits, report.fits) == (18, 11, False)
    assert AccumulatorReport([first, second], limit_bits=18).fits
    assert AccumulatorReport((first,)).fits and AccumulatorReport(()).max_worst_bits == 0
    lines = str(report).splitlines()
    assert lines[0].split() == [
        "layer",
        "channels",
        "worst-case",
        "range",
        "bits",
        "observed",
        "range",
        "bits",
        "limit",
    ]
    assert lines[1].split() == [
        "dense_0",
        "2",
        "[-40000,",
        "70000]",
        "18",
        "[-300,",
        "900]",
        "11",
        "exceeds",
        "16",
        "bits",
    ]
    assert lines[2].split() == ["dense_1", "1", "[-100,", "99]", "8", "-", "-", "fits", "16", "bits"]
    assert lines[3] == "network: worst case 18 bits, observed 11 bits; exceeds 16 bits"
    assert str(AccumulatorReport((second,))).splitlines()[-1] == "network: worst case 8 bits"


def test_layer_accumulators_refuse_bad_fields() -> None:
    bits = numpy.array([1])
    with pytest.raises(InvalidTypeError, match=r"'name' must be a str; got 3"):
        LayerAccumulators(3, bits, bits, bits)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match=r"'worst_max' must be shape \(1,\); got shape \(2,\)"):
        LayerAccumulators("a", bits, numpy.array([1, 2]), bits)
    with pytest.raises(
        InvalidValueError, match=r"give all of 'observed_min', 'observed_max', 'observed_bits' or none"
    ):
        LayerAccumulators("a", bits, bits, bits, observed_min=bits)
    with pytest.raises(InvalidTypeError, match=r"'layers' must hold LayerAccumulators; got int"):
        AccumulatorReport((1,))  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match=r"'limit_bits' must be an int >= 1; got 0"):
        AccumulatorReport((), limit_bits=0)


# ---------------------------------------------------------------------------------------------
# Constraint mode
# ---------------------------------------------------------------------------------------------


def fit_bits(weight: numpy.ndarray, bias: Any, scales: numpy.ndarray, case: dict[str, Any]) -> numpy.ndarray:
    """Worst-case bits of each channel with these scales, computed as the layer does."""
    codes = numpy.clip(numpy.rint(weight / scales[:, None]), *case["weight_code_range"]).astype(numpy.int64)
    bias_codes = (
        numpy.zeros(len(scales), dtype=numpy.int64)
        if bias is None
        else numpy.rint(bias / (case["input_scale"] * scales)).astype(numpy.int64)
    )
    low, high = worst_case_range(codes, bias_codes, case["centered_input_range"])
    return signed_bits(low, high)


@st.composite
def constraint_cases(
    draw: st.DrawFn, with_bias: bool
) -> tuple[numpy.ndarray, Any, numpy.ndarray, dict[str, Any]]:
    count, size = draw(st.integers(1, 5)), draw(st.integers(1, 80))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = numpy.random.default_rng(seed)
    weight = rng.normal(size=(count, size)) * draw(st.sampled_from([0.01, 1.0, 50.0]))
    weight_bits = draw(st.sampled_from([4, 8]))
    qmax = 2 ** (weight_bits - 1) - 1
    scales = numpy.abs(weight).max(axis=1) / qmax
    scales[scales == 0] = 1.0
    bias = rng.normal(size=count) * draw(st.sampled_from([0.1, 5.0])) if with_bias else None
    zero_point = draw(st.sampled_from([0, 128, 255]))
    case = {
        "weight_code_range": (-qmax, qmax),
        "input_scale": draw(st.sampled_from([0.01, 0.1, 1.0])),
        "centered_input_range": (0 - zero_point, 255 - zero_point),
    }
    return weight, bias, scales, case


def check_fit(
    weight: numpy.ndarray, bias: Any, scales: numpy.ndarray, case: dict[str, Any], target: int, minimal: bool
) -> None:
    original = scales.copy()
    fitted = fit_weight_scales(weight, bias, scales, target_bits=target, **case)
    numpy.testing.assert_array_equal(scales, original)
    assert fitted.dtype == numpy.float64 and fitted.shape == scales.shape
    assert numpy.all(fit_bits(weight, bias, fitted, case) <= target)
    already = fit_bits(weight, bias, scales, case) <= target
    assert numpy.array_equal(fitted[already], scales[already])
    assert numpy.all(fitted[~already] > scales[~already])
    if minimal:
        smaller = numpy.maximum(fitted * 0.99, scales)
        changed = ~already
        assert not numpy.any(fit_bits(weight, bias, smaller, case)[changed] <= target)


@given(case=constraint_cases(with_bias=False), target=st.integers(2, 20))
@settings(max_examples=60)
def test_fit_weight_scales_without_bias_is_minimal(case: Any, target: int) -> None:
    check_fit(*case, target=target, minimal=True)


@given(case=constraint_cases(with_bias=True), target=st.integers(4, 20))
@settings(max_examples=60)
def test_fit_weight_scales_with_bias_fits(case: Any, target: int) -> None:
    check_fit(*case, target=target, minimal=False)


def test_fit_weight_scales_at_eight_bits_into_sixteen() -> None:
    rng = numpy.random.default_rng(5)
    weight, bias = rng.normal(size=(64, 64)), rng.normal(size=64)
    scales = numpy.abs(weight).max(axis=1) / 127
    case = {"weight_code_range": (-127, 127), "input_scale": 0.05, "centered_input_range": (0, 255)}
    assert fit_bits(weight, bias, scales, case).max() > 16  # the case needs the constraint
    check_fit(weight, bias, scales, case, 16, minimal=True)
    check_fit(weight, bias, scales, case, 12, minimal=True)


def test_fit_weight_scales_refusals() -> None:
    weight, scales = numpy.ones((2, 8)), numpy.full(2, 1 / 127)
    case: dict[str, Any] = {
        "weight_code_range": (-127, 127),
        "input_scale": 0.1,
        "centered_input_range": (0, 255),
    }
    with pytest.raises(InvalidValueError, match=r"'target_bits' must be an int in \[2, 64\]; got 1"):
        fit_weight_scales(weight, None, scales, target_bits=1, **case)
    with pytest.raises(
        InvalidValueError, match=r"No weight scale keeps the worst-case accumulator of channel\(s\) \[0, 1\]"
    ):
        fit_weight_scales(weight, None, scales, target_bits=4, **{**case, "weight_code_range": (1, 7)})
    with pytest.raises(InvalidValueError, match=r"channel\(s\) \[1\] within 8 bits"):
        fit_weight_scales(
            weight, numpy.array([0.0, 1e300]), scales, target_bits=8, **{**case, "input_scale": 1e-300}
        )
    with pytest.raises(InvalidValueError, match=r"'weight_scale' must be positive; got \[0.0, 1.0\]"):
        fit_weight_scales(weight, None, numpy.array([0.0, 1.0]), target_bits=8, **case)
    with pytest.raises(InvalidValueError, match=r"'weight' must be finite; got 1 non-finite value"):
        fit_weight_scales(numpy.array([[1.0, math.nan]]), None, numpy.ones(1), target_bits=8, **case)
    with pytest.raises(
        InvalidValueError, match=r"'bias' must be a real array of shape \(2,\); got shape \(3,\)"
    ):
        fit_weight_scales(weight, numpy.ones(3), scales, target_bits=8, **case)
    with pytest.raises(InvalidValueError, match=r"'input_scale' must be a positive finite number; got -0.1"):
        fit_weight_scales(weight, None, scales, target_bits=8, **{**case, "input_scale": -0.1})
    with pytest.raises(InvalidValueError, match=r"'centered_input_range' must be a pair"):
        fit_weight_scales(weight, None, scales, target_bits=8, **{**case, "centered_input_range": (3, 1)})

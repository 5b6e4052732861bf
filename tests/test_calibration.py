"""Calibration methods: each formula on known answers, update/merge rules, errors, serialization."""

from __future__ import annotations

import json
import math
import types
from typing import Any

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import intquant
from intquant import MinMaxQuantizationStats, QuantizationOptions, UniformQuantizer
from intquant._core.execute import dequantize, quantize
from intquant._core.formulas import choose_uniform_parameters, integer_bounds
from intquant.calibration import EntropyStats, MovingAverageMinMaxStats, MSEStats, PercentileStats
from intquant.errors import (
    InvalidOptionsError,
    InvalidTypeError,
    InvalidValueError,
    MissingParameterError,
    SerializationError,
)

HISTOGRAM_CLASSES = (PercentileStats, MSEStats, EntropyStats)
ALL_CLASSES = (*HISTOGRAM_CLASSES, MovingAverageMinMaxStats)
EIGHT_BITS = QuantizationOptions(8)

GAUSSIAN = numpy.random.default_rng(20240601).normal(size=100_000)
OUTLIERS = numpy.array([25.0, -30.0, 40.0, 22.0])
GAUSSIAN_WITH_OUTLIERS = numpy.concatenate([GAUSSIAN, OUTLIERS])


def _rng(seed: int = 0) -> numpy.random.Generator:
    """A seeded generator per test, so that no test depends on which ran before it."""
    return numpy.random.default_rng(seed)


def _small(cls: type) -> Any:
    """An instance of ``cls`` with a small histogram (fast range_for)."""
    return cls() if cls is MovingAverageMinMaxStats else cls(bins=16)


def _filled(cls: type, values: Any) -> Any:
    stats = _small(cls)
    stats.update(values)
    return stats


def _floats(pair: tuple[Any, Any]) -> tuple[float, float]:
    return float(pair[0]), float(pair[1])


def _width(stats: Any) -> float:
    state = stats.dump_dict()
    return float(state["high"] - state["low"]) / state["bins"]


def _quantization_mse(values: numpy.ndarray, low: Any, high: Any, options: Any) -> float:
    quantizer = UniformQuantizer(options)
    quantizer.compute_quantization_parameters(options, MinMaxQuantizationStats(rmax=high, rmin=low))
    return float(numpy.mean((quantizer.dequant(quantizer.quant(values)) - values) ** 2))


# -- percentile


def test_percentile_on_paper() -> None:
    # 0..16 on 16 bins of width 1: counts 1 (x15) and 2 (16 shares the last bin), N = 17.
    # 90%: 15.3 values -> bin 15 (15 below it) -> 15 + 0.3/2; 10%: 1.7 -> bin 1 -> 1 + 0.7/1.
    stats = PercentileStats(percentile=90, bins=16)
    stats.update(numpy.arange(17))
    low, high = stats.range_for(EIGHT_BITS)
    assert type(low) is numpy.float64 and type(high) is numpy.float64
    assert math.isclose(low, 1.7, abs_tol=1e-12) and math.isclose(high, 15.15, abs_tol=1e-12)
    assert (stats.rmin, stats.rmax) == (low, high)


def test_percentile_of_uniform_data() -> None:
    stats = PercentileStats(percentile=99)
    stats.update(numpy.linspace(0.0, 1.0, 200_001))
    low, high = _floats(stats.range_for(EIGHT_BITS))
    assert abs(low - 0.01) < 1e-5 and abs(high - 0.99) < 1e-5


def test_percentile_100_is_the_observed_range() -> None:
    values = _rng().normal(size=1000).astype(numpy.float32)
    stats = PercentileStats(percentile=100, bins=16)
    stats.update(values)
    assert stats.range_for(EIGHT_BITS) == (numpy.float64(values.min()), numpy.float64(values.max()))


def test_percentile_clips_outliers_and_ignores_the_options() -> None:
    stats = PercentileStats()
    stats.update(GAUSSIAN_WITH_OUTLIERS)
    low, high = _floats(stats.range_for(EIGHT_BITS))
    assert -4.5 < low < -3.3 and 3.3 < high < 4.5  # the 0.01% tails of N(0, 1) are near 3.7
    assert stats.range_for(QuantizationOptions(3, is_signed=True, is_symmetric=True)) == (low, high)


# -- moving average


def test_moving_average_by_hand() -> None:
    stats = MovingAverageMinMaxStats(averaging_constant=0.25)
    stats.update([0.0, 8.0])  # the first batch sets the range: (0, 8)
    stats.update(numpy.array([-4.0, 4.0]))  # (0 + 0.25 * (-4 - 0), 8 + 0.25 * (4 - 8)) = (-1, 7)
    assert _floats(stats.range_for(EIGHT_BITS)) == (-1.0, 7.0)
    stats.update(numpy.array([[2, 15]]))  # (-1 + 0.25 * 3, 7 + 0.25 * 8) = (-0.25, 9)
    assert stats.range_for(QuantizationOptions(4, is_signed=True)) == (-0.25, 9.0)
    assert type(stats.rmin) is numpy.float64 and (stats.rmin, stats.rmax) == (-0.25, 9.0)
    state = stats.dump_dict()
    assert (state["minimum"], state["maximum"]) == (-4.0, 15.0)  # the exact observed extremes


def test_moving_average_recurrence_on_random_batches() -> None:
    constant = 0.1
    batches = [_rng().normal(size=50) * (1 + k) for k in range(10)]
    stats = MovingAverageMinMaxStats(constant)
    low, high = batches[0].min(), batches[0].max()
    for batch in batches:
        stats.update(batch)
    for batch in batches[1:]:
        low = low + constant * (batch.min() - low)
        high = high + constant * (batch.max() - high)
    assert stats.range_for(EIGHT_BITS) == (low, high)


def test_moving_average_constant_one_keeps_the_last_batch() -> None:
    stats = MovingAverageMinMaxStats(1)
    stats.update([-5.0, 5.0])
    stats.update([1.0, 2.0])
    assert _floats(stats.range_for(EIGHT_BITS)) == (1.0, 2.0)


def test_moving_average_merge_applies_the_other_range_as_one_batch() -> None:
    first, second = MovingAverageMinMaxStats(0.5), MovingAverageMinMaxStats(0.5)
    first.update([0.0, 4.0])
    second.update([-10.0, 10.0])
    second.update([-2.0, 2.0])  # second's range: (-6, 6)
    expected = MovingAverageMinMaxStats(0.5)
    expected.update([0.0, 4.0])
    expected.update([-6.0, 6.0])
    first.merge(second)
    assert first.range_for(EIGHT_BITS) == expected.range_for(EIGHT_BITS) == (-3.0, 5.0)
    assert (first.dump_dict()["minimum"], first.dump_dict()["maximum"]) == (-10.0, 10.0)
    empty = MovingAverageMinMaxStats(0.5)
    empty.merge(second)  # an empty object copies the other
    assert empty == second
    second.merge(MovingAverageMinMaxStats(0.5))  # merging an empty object changes nothing
    assert second.range_for(EIGHT_BITS) == (-6.0, 6.0)


# -- minimum squared error


def _documented_mse_errors(stats: MSEStats, options: Any) -> dict[tuple[float, float], float]:
    """Every candidate range of MSEStats's search, as its docstring states them, with its error."""
    state = stats.dump_dict()
    counts = state["counts"]
    width = (state["high"] - state["low"]) / state["bins"]
    centres = state["low"] + (numpy.arange(state["bins"]) + 0.5) * width
    m, big_m, k_max = float(state["minimum"]), float(state["maximum"]), stats.candidates
    errors = {}
    for k in range(k_max, 0, -1):
        if m < 0 < big_m:
            reach = max(-m, big_m) * (k / k_max)
            low, high = max(m, -reach), min(big_m, reach)
        elif m >= 0:
            low, high = m, big_m - (k_max - k) / k_max * (big_m - m)
        else:
            low, high = m + (k_max - k) / k_max * (big_m - m), big_m
        scale, zero_point, offset = choose_uniform_parameters(
            numpy.float64(low),
            numpy.float64(high),
            options.n_bits,
            is_signed=options.is_signed,
            is_symmetric=options.is_symmetric,
            is_qat=False,
            is_precomputed_qat=False,
            uvalues=None,
            scale=None,
        )
        bounds = integer_bounds(options.n_bits, offset, options.is_narrow)
        restored = dequantize(quantize(centres, scale, zero_point, bounds), scale, zero_point)
        errors[(low, high)] = sum(
            float(n) * (float(r) - float(c)) ** 2 for n, r, c in zip(counts, restored, centres, strict=True)
        )
    return errors


@pytest.mark.parametrize(
    "options",
    [
        QuantizationOptions(3),
        QuantizationOptions(3, is_signed=True),
        QuantizationOptions(3, is_signed=True, is_symmetric=True),
        QuantizationOptions(2, is_signed=True, is_symmetric=True),
    ],
)
@pytest.mark.parametrize("shift", [0.0, 12.0, -12.0])  # both signs, positive, negative data
def test_mse_follows_its_documented_search(options: QuantizationOptions, shift: float) -> None:
    values = numpy.concatenate([_rng().laplace(size=2000), [9.0, -7.5]]) + shift
    stats = MSEStats(bins=64, candidates=25)
    stats.update(values)
    narrow = QuantizationOptions(options.n_bits, options.is_signed, options.is_symmetric)
    narrow.is_narrow = True
    for chosen in (options, narrow):
        errors = _documented_mse_errors(stats, chosen)
        assert len(errors) == 25 and next(iter(errors)) == _floats((values.min(), values.max()))
        best = _floats(stats.range_for(chosen))
        assert errors[best] <= min(errors.values()) * (1 + 1e-12)  # sums differ in order only


def test_mse_of_one_sign_data_keeps_the_near_end() -> None:
    positive = numpy.append(_rng().uniform(2.0, 3.0, size=5000), 50.0)
    stats = MSEStats()
    stats.update(positive)
    low, high = stats.range_for(QuantizationOptions(4))
    assert low == positive.min() and float(high) < 50
    stats.compute_quantization_stats(-positive)
    low, high = stats.range_for(QuantizationOptions(4))
    assert high == -positive.min() and float(low) > -50


def test_mse_with_one_candidate_is_the_observed_range() -> None:
    stats = MSEStats(bins=16, candidates=1)
    stats.update(GAUSSIAN_WITH_OUTLIERS)
    assert _floats(stats.range_for(QuantizationOptions(4))) == (-30.0, 40.0)


def test_mse_depends_on_the_options_and_is_recomputed_after_an_update() -> None:
    stats = MSEStats()
    stats.update(GAUSSIAN_WITH_OUTLIERS)
    four, eight = stats.range_for(QuantizationOptions(4)), stats.range_for(EIGHT_BITS)
    assert float(four[1]) < float(eight[1])  # fewer levels: clipping pays off sooner
    assert stats.rmax == eight[1]
    stats.compute_quantization_stats(GAUSSIAN * 0.01)  # cached ranges are forgotten
    assert float(stats.range_for(QuantizationOptions(4))[1]) < 0.1


def test_mse_on_one_bit_symmetric_options_is_refused() -> None:
    stats = _filled(MSEStats, [-1.0, 1.0])
    with pytest.raises(InvalidValueError, match="symmetric quantization on 1 bit\\(s\\) has no level"):
        stats.range_for(QuantizationOptions(1, is_signed=True, is_symmetric=True))


# -- entropy (its procedure in detail: tests/test_entropy.py)


def test_entropy_keeps_the_range_of_uniform_data() -> None:
    values = _rng().uniform(-1.0, 1.0, size=100_000)
    stats = EntropyStats()
    stats.update(values)
    low, high = _floats(stats.range_for(EIGHT_BITS))
    assert values.min() <= low < -0.99 and 0.99 < high <= values.max()


def test_entropy_clips_outliers_where_that_pays() -> None:
    stats = EntropyStats()
    stats.update(GAUSSIAN_WITH_OUTLIERS)
    for options in (QuantizationOptions(4), QuantizationOptions(4, is_signed=True, is_symmetric=True)):
        low, high = _floats(stats.range_for(options))
        assert low == -high and 1.5 < high < 6.0  # N(0, 1) kept, the four outliers clipped
    # At 8 bits clipping the four outliers costs more than the finer steps gain: the guard keeps
    # the observed range (see EntropyStats).
    assert _floats(stats.range_for(EIGHT_BITS)) == (-30.0, 40.0)
    assert (stats.rmin, stats.rmax) == stats.range_for(EIGHT_BITS)


def test_entropy_range_is_one_sided_for_one_sign_data() -> None:
    magnitudes = numpy.abs(GAUSSIAN[:1000])
    positive = _filled(EntropyStats, magnitudes)
    low, high = positive.range_for(QuantizationOptions(2))
    assert low == magnitudes.min() and low < float(high) <= magnitudes.max()  # the near end stays
    negative = _filled(EntropyStats, -magnitudes)
    mirrored_low, mirrored_high = _floats(negative.range_for(QuantizationOptions(2)))
    assert mirrored_high == -magnitudes.min() and -magnitudes.max() <= mirrored_low < mirrored_high
    assert abs(mirrored_low + float(high)) <= _width(positive)  # the mirror image, to a bin
    zeros = _filled(EntropyStats, numpy.zeros(5))
    assert _floats(zeros.range_for(EIGHT_BITS)) == (0.0, 0.0)


def test_entropy_without_room_to_search_keeps_the_whole_range() -> None:
    # 16 bins over (-30, 40) are 4.4 wide; 8-bit steps of 70/255 are finer than that: no search.
    stats = _filled(EntropyStats, GAUSSIAN_WITH_OUTLIERS)
    assert _floats(stats.range_for(EIGHT_BITS)) == (-30.0, 40.0)


# -- better than min/max on data with outliers


@pytest.mark.parametrize(
    "options", [QuantizationOptions(4), QuantizationOptions(4, is_signed=True, is_symmetric=True)]
)
@pytest.mark.parametrize("cls", [MSEStats, EntropyStats])
def test_mse_and_entropy_beat_min_max_at_4_bits(cls: type, options: QuantizationOptions) -> None:
    stats = cls()
    stats.update(GAUSSIAN_WITH_OUTLIERS)
    low, high = stats.range_for(options)
    calibrated = _quantization_mse(GAUSSIAN_WITH_OUTLIERS, low, high, options)
    minmax = MinMaxQuantizationStats()
    minmax.compute_quantization_stats(GAUSSIAN_WITH_OUTLIERS)
    assert calibrated < 0.1 * _quantization_mse(GAUSSIAN_WITH_OUTLIERS, minmax.rmin, minmax.rmax, options)


# -- the histogram: batches, widening, merging


@pytest.mark.parametrize("cls", HISTOGRAM_CLASSES)
def test_batches_inside_the_first_range_equal_one_pass(cls: type) -> None:
    first = numpy.concatenate([GAUSSIAN[:500], OUTLIERS])
    rest = numpy.clip(GAUSSIAN[500:3000] * 3, -30.0, 40.0)
    batched, one_pass = _small(cls), _small(cls)
    batched.update(first)
    batched.update(rest[:1000])
    batched.update(rest[1000:].reshape(-1, 3))
    one_pass.update(numpy.concatenate([first, rest]))
    assert batched == one_pass


def test_many_batches_give_the_one_pass_percentiles_within_a_bin() -> None:
    values = GAUSSIAN_WITH_OUTLIERS[_rng().permutation(GAUSSIAN_WITH_OUTLIERS.size)]
    batched, one_pass = PercentileStats(99.9), PercentileStats(99.9)
    for batch in numpy.array_split(values, 25):
        batched.update(batch)
    one_pass.update(values)
    tolerance = max(_width(batched), _width(one_pass))
    for mine, theirs in zip(batched.range_for(EIGHT_BITS), one_pass.range_for(EIGHT_BITS), strict=True):
        assert abs(float(mine) - float(theirs)) <= tolerance
    state = batched.dump_dict()
    assert int(state["counts"].sum()) == values.size
    assert (state["minimum"], state["maximum"]) == (values.min(), values.max())


@pytest.mark.parametrize("cls", [MSEStats, EntropyStats])
def test_many_batches_calibrate_about_as_well_as_one_pass(cls: type) -> None:
    values = GAUSSIAN_WITH_OUTLIERS[_rng().permutation(GAUSSIAN_WITH_OUTLIERS.size)]
    batched, one_pass = cls(), cls()
    for batch in numpy.array_split(values, 25):
        batched.update(batch)
    one_pass.update(values)
    options = QuantizationOptions(4, is_signed=True)
    errors = [_quantization_mse(values, *stats.range_for(options), options) for stats in (batched, one_pass)]
    assert errors[0] <= 1.1 * errors[1]


def test_widening_never_moves_a_count_to_another_bin() -> None:
    stats = PercentileStats(bins=64)
    batches = [_rng().uniform(-1 - 0.37 * k, 1 + 0.53 * k, size=300) for k in range(30)]
    for batch in batches:
        stats.update(batch)
    state = stats.dump_dict()
    values = numpy.concatenate(batches)
    # The documented bin of every value on the final grid: no count drifted in 29 widenings.
    bins = numpy.floor((values - state["low"]) / (state["high"] - state["low"]) * 64)
    expected = numpy.bincount(numpy.clip(bins, 0, 63).astype(int), minlength=64)
    assert state["counts"].tolist() == expected.tolist()
    assert state["low"] <= values.min() and state["high"] >= values.max()
    assert state["high"] - state["low"] < 2 * (values.max() - values.min()) + 4 * _width(stats)


def test_widening_from_a_single_value() -> None:
    stats = PercentileStats(bins=16)
    stats.update(numpy.full(3, 2.0))
    assert stats.dump_dict()["low"] == stats.dump_dict()["high"] == 2.0
    assert _floats(stats.range_for(EIGHT_BITS)) == (2.0, 2.0)
    stats.update([0.0, 4.0])
    state = stats.dump_dict()
    assert (state["low"], state["high"]) == (0.0, 4.0)
    assert state["counts"].tolist() == [1] + [0] * 7 + [3] + [0] * 6 + [1]


@pytest.mark.parametrize("far", [1e12, 1e300])
def test_widening_by_many_orders_of_magnitude(far: float) -> None:
    stats = PercentileStats(100, bins=16)
    stats.update([0.0, 1e-300 if far > 1e100 else 1.0])
    stats.update([far])  # 2**32 old bins or more: the new grid is exactly [0, far]
    state = stats.dump_dict()
    assert (state["low"], state["high"]) == (0.0, far)
    assert state["counts"].tolist() == [2] + [0] * 14 + [1]
    assert _floats(stats.range_for(EIGHT_BITS)) == (0.0, far)


def test_mse_near_the_float64_limit() -> None:
    stats = _filled(MSEStats, [-1e300, 0.0, 1e300])  # errors overflow to inf: the widest wins
    assert _floats(stats.range_for(QuantizationOptions(4))) == (-1e300, 1e300)


def test_entropy_histogram_counts_exact_zeros_apart() -> None:
    stats = _filled(EntropyStats, [-3.0, 0.0, 1.0, -0.0, 2.0])
    state = stats.dump_dict()
    assert (state["low"], state["high"], state["minimum"], state["maximum"]) == (-3.0, 2.0, -3.0, 2.0)
    assert state["zeros"] == 2 and type(state["zeros"]) is numpy.int64
    assert int(state["counts"].sum()) == 3 and state["counts"][9] == 0  # 0 is in bin 9 of 16
    stats.update(numpy.zeros(3, dtype=numpy.float32))
    assert stats.dump_dict()["zeros"] == 5


@pytest.mark.parametrize("cls", HISTOGRAM_CLASSES)
def test_merge_of_batches_with_the_same_extremes_is_exact(cls: type) -> None:
    ends = numpy.array([-30.0, 40.0])
    first = numpy.concatenate([ends, GAUSSIAN[:700]])
    second = numpy.concatenate([GAUSSIAN[700:2000], ends])
    merged, other, sequential = _small(cls), _small(cls), _small(cls)
    merged.update(first)
    other.update(second)
    merged.merge(other)
    sequential.update(first)
    sequential.update(second)
    assert merged == sequential
    assert merged.range_for(QuantizationOptions(3)) == sequential.range_for(QuantizationOptions(3))


@pytest.mark.parametrize("cls", HISTOGRAM_CLASSES)
def test_merge_of_a_narrower_or_wider_histogram(cls: type) -> None:
    wide, narrow = GAUSSIAN_WITH_OUTLIERS[:3000], GAUSSIAN[5000:8000] * 0.5
    for first, second in ((wide, narrow), (narrow, wide)):
        merged, other, one_pass = cls(bins=64), cls(bins=64), cls(bins=64)
        merged.update(first)
        other.update(second)
        merged.merge(other)
        one_pass.update(numpy.concatenate([first, second]))
        state, reference = merged.dump_dict(), one_pass.dump_dict()
        assert int(state["counts"].sum()) == first.size + second.size
        assert (state["minimum"], state["maximum"]) == (reference["minimum"], reference["maximum"])
    percentiles = [PercentileStats(99, bins=64) for _ in range(3)]
    percentiles[0].update(wide)
    percentiles[1].update(narrow)
    percentiles[0].merge(percentiles[1])
    percentiles[2].update(numpy.concatenate([wide, narrow]))
    tolerance = 2 * max(_width(percentiles[0]), _width(percentiles[2]))
    for mine, theirs in zip(
        percentiles[0].range_for(EIGHT_BITS), percentiles[2].range_for(EIGHT_BITS), strict=True
    ):
        assert abs(float(mine) - float(theirs)) <= tolerance


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_merge_does_not_change_the_other(cls: type) -> None:
    target, other = _filled(cls, GAUSSIAN[:100]), _filled(cls, OUTLIERS)
    before = type(other).load_dict(other.dump_dict())
    target.merge(other)
    assert other == before
    empty = _small(cls)
    empty.merge(other)  # an empty object takes the other's state...
    assert empty == other
    empty.update(GAUSSIAN[:50] * 100)  # ...and later updates leave the other alone
    assert other == before and empty != other


@pytest.mark.parametrize("cls", HISTOGRAM_CLASSES)
def test_merge_with_empty_objects_and_itself(cls: type) -> None:
    stats = _filled(cls, GAUSSIAN[:100])
    before = type(stats).load_dict(stats.dump_dict())
    stats.merge(_small(cls))
    assert stats == before
    stats.merge(stats)
    assert stats.dump_dict()["counts"].tolist() == (2 * before.dump_dict()["counts"]).tolist()


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_merge_needs_the_same_class(cls: type) -> None:
    other = PercentileStats() if cls is not PercentileStats else MSEStats()
    with pytest.raises(
        InvalidTypeError,
        match=f"{cls.__name__}.merge expects another {cls.__name__}; got {type(other).__name__}",
    ):
        _small(cls).merge(other)


@pytest.mark.parametrize(
    "first, second, message",
    [
        (
            PercentileStats(99.0),
            PercentileStats(99.9),
            "percentile=99.0, bins=2048, the other percentile=99.9",
        ),
        (
            MSEStats(candidates=10),
            MSEStats(candidates=20),
            "candidates=10, the other bins=2048, candidates=20",
        ),
        (
            EntropyStats(bins=16),
            EntropyStats(bins=32),
            "this object has bins=16, candidates=128, the other bins=32, candidates=128",
        ),
        (MovingAverageMinMaxStats(0.5), MovingAverageMinMaxStats(0.25), "averaging_constant=0.5, the other"),
    ],
)
def test_merge_needs_the_same_configuration(first: Any, second: Any, message: str) -> None:
    second.update([1.0, 2.0])
    with pytest.raises(InvalidValueError, match=f"same configuration; .*{message}"):
        first.merge(second)
    assert first.is_empty()


@settings(max_examples=40)
@given(
    first=hnp.arrays(numpy.float64, st.integers(1, 40), elements=st.floats(-1e6, 1e6, width=64)),
    fractions=st.lists(st.floats(0, 1), min_size=1, max_size=40),
    bins=st.integers(16, 48),
)
def test_update_inside_the_first_range_equals_one_pass(
    first: numpy.ndarray, fractions: list[float], bins: int
) -> None:
    low, high = first.min(), first.max()
    second = numpy.array([low + fraction * (high - low) for fraction in fractions]).clip(low, high)
    for cls in HISTOGRAM_CLASSES:
        batched, one_pass = cls(bins=bins), cls(bins=bins)
        batched.update(first)
        batched.update(second)
        one_pass.update(numpy.concatenate([first, second]))
        assert batched == one_pass


@settings(max_examples=40)
@given(
    batches=st.lists(
        hnp.arrays(numpy.float64, st.integers(1, 20), elements=st.floats(-1e9, 1e9, width=64)),
        min_size=1,
        max_size=6,
    ),
    percentile=st.floats(50.01, 100),
)
def test_batches_keep_counts_extremes_and_a_range_inside_them(
    batches: list[numpy.ndarray], percentile: float
) -> None:
    values = numpy.concatenate(batches)
    for stats in (PercentileStats(percentile, bins=16), EntropyStats(bins=16), MSEStats(16, 5)):
        for batch in batches:
            stats.update(batch)
        state = stats.dump_dict()
        zeros = int(state["zeros"]) if isinstance(stats, EntropyStats) else 0
        assert int(state["counts"].sum()) + zeros == values.size
        assert zeros == (int(numpy.count_nonzero(values == 0)) if isinstance(stats, EntropyStats) else 0)
        assert (state["minimum"], state["maximum"]) == (values.min(), values.max())
        low, high = _floats(stats.range_for(QuantizationOptions(3, is_signed=True)))
        assert values.min() <= low <= high <= values.max()
        assert type(stats).load_dict(stats.dump_dict()) == stats


# -- every object: contract, validation, errors


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_empty_objects(cls: type) -> None:
    stats = _small(cls)
    assert stats.is_empty() and stats.rmin is None and stats.rmax is None and stats.uvalues is None
    with pytest.raises(MissingParameterError, match=f"this {cls.__name__} has no values yet"):
        stats.range_for(EIGHT_BITS)
    with pytest.raises(MissingParameterError, match=f"this {cls.__name__} has no values yet"):
        intquant.UniformQuantizationParameters().compute_quantization_parameters(EIGHT_BITS, stats)


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_objects_stand_where_minmax_statistics_are_read(cls: type) -> None:
    stats = _filled(cls, GAUSSIAN_WITH_OUTLIERS.astype(numpy.float32))
    assert not stats.is_empty() and stats.uvalues is None
    rmin, rmax = stats.range_for(EIGHT_BITS)
    assert type(stats.rmin) is numpy.float64 and (stats.rmin, stats.rmax) == (rmin, rmax)
    quantizer = UniformQuantizer(EIGHT_BITS, stats, None)
    assert (quantizer.rmin, quantizer.rmax, quantizer.uvalues) == (rmin, rmax, None)
    quantizer.compute_quantization_parameters(EIGHT_BITS, stats)
    assert quantizer.scale == numpy.float64((rmax - rmin) / 255)
    assert quantizer.quant(numpy.array([rmin, rmax])).tolist() == [0, 255]


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_compute_quantization_stats_starts_again(cls: type) -> None:
    stats, fresh = _filled(cls, OUTLIERS), _filled(cls, GAUSSIAN[:200])
    stats.compute_quantization_stats(GAUSSIAN[:200])
    assert stats == fresh


@pytest.mark.parametrize("cls", ALL_CLASSES)
@pytest.mark.parametrize(
    "values, error, message",
    [
        (numpy.zeros((0, 3)), InvalidValueError, "cannot calibrate on an empty array \\(shape \\(0, 3\\)"),
        (numpy.array([1.0, numpy.nan]), InvalidValueError, "containing NaN \\(shape \\(2,\\)"),
        (numpy.array([numpy.inf]), InvalidValueError, "containing an infinity"),
        (numpy.array(["a"]), InvalidTypeError, "calibration values must be real numbers"),
        (numpy.array([True, False]), InvalidTypeError, "got a bool array of shape \\(2,\\)"),
        (numpy.array([1 + 2j]), InvalidTypeError, "got dtype complex128"),
    ],
)
def test_bad_batches_are_refused_and_change_nothing(
    cls: type, values: Any, error: type, message: str
) -> None:
    stats = _filled(cls, GAUSSIAN[:100])
    before = cls.load_dict(stats.dump_dict())
    with pytest.raises(error, match=message):
        stats.update(values)
    with pytest.raises(error, match=message):
        stats.compute_quantization_stats(values)
    assert stats == before


@pytest.mark.parametrize("cls", HISTOGRAM_CLASSES)
def test_a_spread_beyond_float64_is_refused(cls: type) -> None:
    message = "cannot histogram values from -1e\\+308 to 1e\\+308: their spread overflows float64"
    stats = _small(cls)
    with pytest.raises(InvalidValueError, match=message):
        stats.update([-1e308, 1e308])
    assert stats.is_empty()
    stats.update([1e308])
    with pytest.raises(InvalidValueError, match=message):
        stats.update([-1e308])
    other = _filled(cls, [-1e308])
    with pytest.raises(InvalidValueError, match=message):
        stats.merge(other)
    assert stats == _filled(cls, [1e308])


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_inputs_are_not_changed(cls: type) -> None:
    values = numpy.array([[-3.5, 1.25], [0.5, 2.0]], dtype=numpy.float32)
    before = values.copy()
    stats = _small(cls)
    stats.update(values)
    stats.compute_quantization_stats(values)
    stats.merge(_filled(cls, values))
    assert numpy.array_equal(values, before) and values.dtype == numpy.float32


@pytest.mark.parametrize(
    "make, error, message",
    [
        (
            lambda: PercentileStats(50),
            InvalidValueError,
            "'percentile' must be a number in \\(50, 100\\]; got 50",
        ),
        (lambda: PercentileStats(100.5), InvalidValueError, "got 100.5. Use e.g. 99.99"),
        (lambda: PercentileStats(float("nan")), InvalidValueError, "'percentile' must be a number"),
        (lambda: PercentileStats("99"), InvalidTypeError, "got '99' of type str"),
        (lambda: PercentileStats(True), InvalidTypeError, "got True of type bool"),
        (
            lambda: PercentileStats(bins=8),
            InvalidValueError,
            "'bins' must be an int in \\[16, 16777216\\]; got 8. Use 16 to 16777216 bins",
        ),
        (
            lambda: PercentileStats(bins=16.0),
            InvalidTypeError,
            "'bins' must be an int in \\[16, 16777216\\]; got 16.0 of type",
        ),
        (lambda: MSEStats(bins=-1), InvalidValueError, r"'bins' must be an int in \[16, 16777216\]; got -1"),
        (lambda: PercentileStats(bins=10**12), InvalidValueError, r"in \[16, 16777216\]; got 1000000000000"),
        (lambda: EntropyStats(bins=2**16), InvalidValueError, r"in \[16, 8192\]; got 65536"),
        (lambda: MSEStats(candidates=0), InvalidValueError, "'candidates' must be an int >= 1; got 0"),
        (lambda: MSEStats(candidates=2.5), InvalidTypeError, "'candidates' must be an int >= 1; got 2.5"),
        (lambda: EntropyStats(bins=None), InvalidTypeError, r"'bins' must be an int in \[16, 8192\]; got No"),
        (
            lambda: MovingAverageMinMaxStats(0),
            InvalidValueError,
            "'averaging_constant' must be a number in \\(0, 1\\]",
        ),
        (lambda: MovingAverageMinMaxStats(1.5), InvalidValueError, "got 1.5. Use e.g. 0.01"),
        (lambda: MovingAverageMinMaxStats("x"), InvalidTypeError, "got 'x' of type str"),
    ],
)
def test_bad_constructor_arguments(make: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        make()


def test_good_constructor_arguments() -> None:
    assert PercentileStats(numpy.float32(100), numpy.int64(16)).percentile == 100.0
    assert PercentileStats(51).bins == 2048
    assert MSEStats(16, candidates=1).candidates == 1
    assert MovingAverageMinMaxStats(1).averaging_constant == 1.0
    assert EntropyStats().bins == 2048


@pytest.mark.parametrize("cls", ALL_CLASSES)
@pytest.mark.parametrize(
    "options, error, message",
    [
        (object(), InvalidTypeError, "range_for expects quantization options .* got object without n_bits"),
        (types.SimpleNamespace(n_bits=8), InvalidTypeError, "without is_signed, is_symmetric"),
        (
            types.SimpleNamespace(n_bits=8, is_signed=False, is_symmetric=True),
            InvalidOptionsError,
            "is_symmetric=True needs is_signed=True",
        ),
        (types.SimpleNamespace(n_bits=0, is_signed=False, is_symmetric=False), InvalidValueError, "got 0"),
        (
            types.SimpleNamespace(n_bits=4, is_signed="yes", is_symmetric=False),
            InvalidTypeError,
            "'is_signed'",
        ),
    ],
)
def test_bad_options_are_refused(cls: type, options: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        _filled(cls, [0.0, 1.0]).range_for(options)


def test_duck_typed_options_are_accepted() -> None:
    options = types.SimpleNamespace(n_bits=4, is_signed=True, is_symmetric=True)
    stats = _filled(MSEStats, GAUSSIAN[:500])
    assert stats.range_for(options) == stats.range_for(QuantizationOptions(4, True, True))


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_equality_and_repr(cls: type) -> None:
    first, second = _filled(cls, [1.0, 2.0]), _filled(cls, [1.0, 2.0])
    assert first == second and (first != second) is False
    second.update([3.0])
    assert first != second and first != 3
    with pytest.raises(TypeError, match="unhashable"):
        hash(first)
    assert repr(first).startswith(f"{cls.__name__}(") and "[1.0, 2.0]" in repr(first)
    assert repr(_small(cls)).endswith("no values)")
    other_configuration = {
        PercentileStats: PercentileStats(99, bins=16),
        MSEStats: MSEStats(16, candidates=7),
        EntropyStats: EntropyStats(32),
        MovingAverageMinMaxStats: MovingAverageMinMaxStats(0.5),
    }
    assert _small(cls) != other_configuration[cls]


# -- serialization


@pytest.mark.parametrize("cls", ALL_CLASSES)
@pytest.mark.parametrize("filled", [False, True])
def test_dump_dict_and_text_round_trip(cls: type, filled: bool) -> None:
    stats = _filled(cls, GAUSSIAN_WITH_OUTLIERS[:1000]) if filled else _small(cls)
    assert cls.load_dict(stats.dump_dict()) == stats
    text = intquant.dumps(stats)
    assert json.loads(text)["type_name"] == f"intquant.{cls.__name__}"
    assert json.loads(text)["format_version"] == 2
    rebuilt = intquant.loads(text)
    assert type(rebuilt) is cls and rebuilt == stats
    if filled:
        assert rebuilt.range_for(QuantizationOptions(3)) == stats.range_for(QuantizationOptions(3))
        rebuilt.update([1e3])
        assert rebuilt != stats  # no shared state


def test_dump_dict_contents() -> None:
    stats = PercentileStats(99.5, bins=16)
    assert stats.dump_dict() == {
        "percentile": 99.5,
        "bins": 16,
        "axis": None,
        "block_size": None,
        "counts": None,
        "low": None,
        "high": None,
        "minimum": None,
        "maximum": None,
    }
    stats.update(numpy.arange(16, dtype=numpy.int8))
    metadata = stats.dump_dict()
    assert list(metadata) == [
        "percentile", "bins", "axis", "block_size", "counts", "low", "high", "minimum", "maximum"
    ]  # fmt: skip
    assert metadata["counts"].dtype == numpy.int64 and metadata["counts"].tolist() == [1] * 16
    assert all(type(metadata[name]) is numpy.float64 for name in ("low", "high", "minimum", "maximum"))
    assert list(MSEStats().dump_dict())[:4] == ["bins", "candidates", "axis", "block_size"]
    assert list(EntropyStats().dump_dict()) == [
        "bins", "candidates", *list(PercentileStats().dump_dict())[2:], "zeros"
    ]  # fmt: skip
    moving = _filled(MovingAverageMinMaxStats, [1, 2])
    assert moving.dump_dict() == {
        "averaging_constant": 0.01,
        "axis": None,
        "block_size": None,
        "average_min": 1.0,
        "average_max": 2.0,
        "minimum": 1.0,
        "maximum": 2.0,
    }


_STATE = ("counts", "low", "high", "minimum", "maximum")


def _histogram_metadata(**changes: Any) -> dict[str, Any]:
    metadata = _filled(PercentileStats, [0.0, 1.0, 2.0]).dump_dict()
    metadata.update(changes)
    return metadata


def _entropy_metadata(**changes: Any) -> dict[str, Any]:
    metadata = _filled(EntropyStats, [0.0, 1.0, 2.0]).dump_dict()
    metadata.update(changes)
    return metadata


@pytest.mark.parametrize(
    "cls, metadata, message",
    [
        (PercentileStats, [1, 2], "PercentileStats.load_dict expects a dict; got list"),
        (PercentileStats, {"percentile": 99.0}, "missing: \\['bins', 'axis', 'block_size', 'counts'"),
        (PercentileStats, _histogram_metadata(extra=1), "unknown: \\['extra'\\]"),
        (
            PercentileStats,
            _histogram_metadata(percentile=20.0),
            "invalid configuration: 'percentile' must be",
        ),
        (
            PercentileStats,
            _histogram_metadata(bins=17),
            "'counts' must have shape \\(17,\\), one count per bin \\(per axis or block: the block",
        ),
        (
            PercentileStats,
            _histogram_metadata(counts=[1] * 16),
            "'counts' must be a numpy integer array.* got list",
        ),
        (PercentileStats, _histogram_metadata(counts=numpy.ones(16)), "got an array of dtype float64"),
        (
            PercentileStats,
            _histogram_metadata(counts=numpy.full(16, -1)),
            "non-negative integers below 2\\*\\*53",
        ),
        (PercentileStats, _histogram_metadata(counts=numpy.zeros(16, numpy.int64)), "must not be all 0"),
        (
            PercentileStats,
            _histogram_metadata(counts=numpy.ones((2, 16), numpy.int64)),
            "a per-tensor state holds one value per field .* grid of shape \\(2,\\). Set 'axis'",
        ),
        (PercentileStats, _histogram_metadata(axis="0"), "invalid granularity: 'axis' must be an int"),
        (PercentileStats, _histogram_metadata(axis=0, block_size=(1,)), "invalid granularity: give either"),
        (PercentileStats, _histogram_metadata(low=None), "all None \\(no values yet\\); got None for low"),
        (PercentileStats, _histogram_metadata(low=0.5), "low <= minimum <= maximum <= high; got low=0.5"),
        (
            PercentileStats,
            _histogram_metadata(high=numpy.float64("inf")),
            "'high' must be a finite float64; got inf",
        ),
        (PercentileStats, _histogram_metadata(low=-(10**400)), "'low' must be a finite float64; got -1000"),
        (PercentileStats, _histogram_metadata(minimum="0"), "'minimum' must be a number or None; got '0'"),
        (PercentileStats, _histogram_metadata(maximum=True), "'maximum' must be a number or None; got True"),
        (
            MSEStats,
            {"bins": 16, "candidates": 0, **dict.fromkeys(("axis", "block_size", *_STATE))},
            "'candidates' must be an int >= 1",
        ),
        (
            EntropyStats,
            {
                "bins": 16,
                "candidates": 8,
                **dict.fromkeys(("axis", "block_size", *_STATE, "zeros")),
                "low": 0.0,
            },
            "got None for counts, high, minimum, maximum, zeros",
        ),
        (EntropyStats, _entropy_metadata(zeros=numpy.int64(-1)), "'zeros' must be non-negative integers"),
        (EntropyStats, _entropy_metadata(zeros=1.5), "'zeros' must be a non-negative integer"),
        (EntropyStats, _entropy_metadata(zeros=numpy.zeros(2, numpy.int64)), "'zeros' must be a non-neg"),
        (
            MovingAverageMinMaxStats,
            {
                "averaging_constant": 2.0,
                "axis": None,
                "block_size": None,
                "average_min": None,
                "average_max": None,
                "minimum": None,
                "maximum": None,
            },
            "invalid configuration",
        ),
        (
            MovingAverageMinMaxStats,
            {
                "averaging_constant": 0.5,
                "axis": None,
                "block_size": None,
                "average_min": 1.0,
                "average_max": None,
                "minimum": None,
                "maximum": None,
            },
            "either all of average_min",
        ),
        (
            MovingAverageMinMaxStats,
            {
                "averaging_constant": 0.5,
                "axis": None,
                "block_size": None,
                "average_min": 0.0,
                "average_max": 2.0,
                "minimum": 1.0,
                "maximum": 3.0,
            },
            "minimum <= average_min <= average_max <= maximum",
        ),
        (
            MovingAverageMinMaxStats,
            {"averaging_constant": 0.5},
            "missing: \\['axis', 'block_size', 'average_min'",
        ),
        (
            MovingAverageMinMaxStats,
            {**_filled(MovingAverageMinMaxStats, [1.0]).dump_dict(), "average_min": numpy.zeros(2)},
            "a per-tensor state holds one value per field",
        ),
    ],
)
def test_bad_metadata_is_refused(cls: type, metadata: Any, message: str) -> None:
    with pytest.raises(SerializationError, match=message):
        cls.load_dict(metadata)


# -- texts of format versions 0 and 1 (per tensor, no axis/block_size keys)


@pytest.mark.parametrize("cls", [PercentileStats, MSEStats, MovingAverageMinMaxStats])
def test_version_0_and_1_texts_load(cls: type) -> None:
    stats = _filled(cls, GAUSSIAN_WITH_OUTLIERS[:1000])
    payload = json.loads(intquant.dumps(stats))["serialized_value"]
    payload = {key: value for key, value in payload.items() if key not in ("axis", "block_size")}
    for header in (
        {"type_name": f"intquant.{cls.__name__}", "format_version": 1},
        {"type_name": cls.__name__},  # intquant 0.1: read as version 0
    ):
        assert intquant.loads(json.dumps({**header, "serialized_value": payload})) == stats
    with pytest.raises(SerializationError, match="unknown: \\['axis', 'block_size'\\]"):
        cls.load_dict(stats.dump_dict(), 1)


def _absolute_entropy_text(values: numpy.ndarray, bins: int) -> str:
    """What intquant 0.2 wrote for ``EntropyStats(bins).update(values)``: a histogram of |x|."""
    magnitudes = numpy.abs(values)
    high = float(magnitudes.max())
    bin_of = numpy.clip(numpy.floor(magnitudes / high * bins), 0, bins - 1).astype(numpy.intp)
    payload = {
        "bins": bins,
        "counts": numpy.bincount(bin_of, minlength=bins).astype(numpy.int64),
        "low": numpy.float64(0.0),
        "high": numpy.float64(high),
        "minimum": numpy.float64(values.min()),
        "maximum": numpy.float64(values.max()),
    }
    encoded = json.loads(intquant.dumps(payload))
    return json.dumps(
        {"type_name": "intquant.EntropyStats", "format_version": 1, "serialized_value": encoded}
    )


@pytest.mark.parametrize("sign", ["both", "positive", "negative"])
def test_version_1_entropy_texts_load_as_histograms_of_the_values(sign: str) -> None:
    magnitudes = numpy.abs(GAUSSIAN[:5000])
    values = {"both": GAUSSIAN[:5000], "positive": magnitudes, "negative": -magnitudes}[sign]
    text = _absolute_entropy_text(values, 64)
    loaded = intquant.loads(text)
    assert type(loaded) is EntropyStats and (loaded.bins, loaded.candidates) == (64, 128)
    state = loaded.dump_dict()
    assert (state["minimum"], state["maximum"], state["zeros"]) == (values.min(), values.max(), 0)
    assert int(state["counts"].sum()) == values.size
    high = float(magnitudes.max())
    expected_grid = {"both": (-high, high), "positive": (0.0, high), "negative": (-high, 0.0)}[sign]
    assert (float(state["low"]), float(state["high"])) == expected_grid
    magnitude_counts = json.loads(text)["serialized_value"]["counts"]["serialized_value"]
    if sign == "both":  # each magnitude bin's count split: half to -x, the rest to x, by centres
        counts = numpy.array(magnitude_counts)
        below, above = counts // 2, counts - counts // 2
        expected = numpy.concatenate([(below[0::2] + below[1::2])[::-1], above[0::2] + above[1::2]])
        assert state["counts"].tolist() == expected.tolist()  # magnitude bins 2j, 2j+1 -> 31-j, 32+j
    else:  # one sign: the same counts, mirrored for negative values
        order = 1 if sign == "positive" else -1
        assert state["counts"].tolist() == magnitude_counts[::order]
    low, high_end = _floats(loaded.range_for(QuantizationOptions(4, is_signed=True, is_symmetric=True)))
    assert values.min() <= low <= high_end <= values.max()


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"low": numpy.float64(-1.0), "minimum": numpy.float64(-1.0)},
            "low == 0, minimum <= maximum and max\\(-minimum, maximum\\) <= high",
        ),
        ({"counts": None}, "got None for counts"),
        ({"candidates": 8}, "unknown: \\['candidates'\\]"),
        ({"counts": numpy.ones(8, numpy.int64)}, "'counts' must have shape \\(64,\\)"),
    ],
)
def test_bad_version_1_entropy_texts_are_refused(changes: dict[str, Any], message: str) -> None:
    text = _absolute_entropy_text(GAUSSIAN[:100], 64)
    metadata = intquant.loads(json.dumps(json.loads(text)["serialized_value"]))
    with pytest.raises(SerializationError, match=message):
        EntropyStats.load_dict({**metadata, **changes}, 1)

"""MinMaxQuantizationStats: calibration, the uniform-grid check, copies."""

from __future__ import annotations

import numpy
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from intquant import MinMaxQuantizationStats, QuantizationOptions
from intquant.errors import MissingParameterError


def test_statistics_keep_the_values_dtype() -> None:
    stats = MinMaxQuantizationStats()
    stats.compute_quantization_stats(numpy.array([[0.5, -1.0], [0.25, 0.125]], dtype=numpy.float32))
    assert type(stats.rmin) is numpy.float32 and type(stats.rmax) is numpy.float32
    assert stats.uvalues.dtype == numpy.float32
    assert stats.uvalues.tolist() == numpy.array([-1.0, 0.12, 0.25, 0.5], numpy.float32).tolist()


def test_lists_and_integers_calibrate() -> None:
    stats = MinMaxQuantizationStats()
    stats.compute_quantization_stats([3, 1, 2, 3])
    assert (stats.rmin, stats.rmax, stats.uvalues.tolist()) == (1, 3, [1, 2, 3])


@pytest.mark.parametrize(
    "bad, message", [(numpy.nan, "NaN"), (numpy.inf, "an infinity"), (-numpy.inf, "an infinity")]
)
def test_non_finite_values_are_refused(bad: float, message: str) -> None:
    stats = MinMaxQuantizationStats(rmax=1.0, rmin=0.0)
    with pytest.raises(
        ValueError, match=f"cannot calibrate on values containing {message} \\(shape \\(2,\\)"
    ):
        stats.compute_quantization_stats(numpy.array([1.0, bad]))
    assert (stats.rmax, stats.rmin, stats.uvalues) == (1.0, 0.0, None)  # unchanged


def test_empty_values_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot calibrate on an empty array \\(shape \\(0, 3\\)"):
        MinMaxQuantizationStats().compute_quantization_stats(numpy.zeros((0, 3)))


def test_non_numbers_are_refused() -> None:
    with pytest.raises(TypeError, match="must be real numbers"):
        MinMaxQuantizationStats().compute_quantization_stats(numpy.array(["x"]))
    with pytest.raises(TypeError, match="got a bool array"):
        MinMaxQuantizationStats().compute_quantization_stats(numpy.array([True]))


def test_the_input_is_not_changed() -> None:
    values = numpy.array([0.123, -0.004, 0.004])
    before = values.copy()
    MinMaxQuantizationStats().compute_quantization_stats(values)
    assert numpy.array_equal(values, before)


def test_uniform_grid_check() -> None:
    stats = MinMaxQuantizationStats()
    stats.compute_quantization_stats(numpy.array([0.0, 0.5, 1.5, 2.0, 0.5]))
    assert stats.check_is_uniform_quantized(QuantizationOptions(3))
    assert not stats.check_is_uniform_quantized(QuantizationOptions(1))


def test_uniform_grid_check_needs_uvalues() -> None:
    with pytest.raises(MissingParameterError, match="uvalues is None"):
        MinMaxQuantizationStats(rmax=1.0, rmin=0.0).check_is_uniform_quantized(QuantizationOptions(3))
    with pytest.raises(AssertionError):
        MinMaxQuantizationStats().check_is_uniform_quantized(QuantizationOptions(3))


def test_uniform_grid_check_needs_values() -> None:
    stats = MinMaxQuantizationStats(rmax=1.0, rmin=0.0, uvalues=numpy.array([]))
    with pytest.raises(ValueError, match="uvalues is empty"):
        stats.check_is_uniform_quantized(QuantizationOptions(3))


def test_equality_and_copies() -> None:
    stats = MinMaxQuantizationStats(rmax=2.0, rmin=-1.0, uvalues=numpy.array([-1.0, 2.0]))
    copy = stats.quant_stats
    assert copy == stats and copy.uvalues is not stats.uvalues
    copy.uvalues[0] = 5.0
    assert stats.uvalues[0] == -1.0
    assert stats != MinMaxQuantizationStats(rmax=2.0, rmin=-1.0, uvalues=numpy.array([-1.0]))
    assert MinMaxQuantizationStats.load_dict(stats.dump_dict()) == stats


# -- streaming: update and merge
def _one_pass(*batches: numpy.ndarray) -> MinMaxQuantizationStats:
    stats = MinMaxQuantizationStats()
    stats.compute_quantization_stats(numpy.concatenate(batches))
    return stats


def _bits(stats: MinMaxQuantizationStats) -> tuple[bytes, bytes, bytes, str]:
    return (
        numpy.asarray(stats.rmin).tobytes(),
        numpy.asarray(stats.rmax).tobytes(),
        numpy.asarray(stats.uvalues).tobytes(),
        numpy.asarray(stats.rmin).dtype.str,
    )


@settings(max_examples=100, deadline=None)
@given(
    batches=st.lists(
        hnp.arrays(numpy.float64, st.integers(1, 30), elements=st.floats(-50, 50, allow_nan=False)),
        min_size=1,
        max_size=5,
    )
)
def test_updates_equal_one_pass(batches: list[numpy.ndarray]) -> None:
    rounded = numpy.round(numpy.concatenate(batches), 2)
    signs = numpy.signbit(rounded[rounded == 0])
    assume(signs.all() or not signs.any())  # both signed zeros: see the next test
    streamed = MinMaxQuantizationStats()
    for batch in batches:
        streamed.update(batch)
    assert _bits(streamed) == _bits(_one_pass(*batches))
    assert type(streamed.rmin) is type(_one_pass(*batches).rmin)
    merged = MinMaxQuantizationStats()
    for batch in batches:
        part = MinMaxQuantizationStats()
        part.compute_quantization_stats(batch)
        merged.merge(part)
    assert _bits(merged) == _bits(streamed)


def test_with_both_signed_zeros_the_first_batchs_zero_is_kept() -> None:
    # One pass keeps the zero numpy 1.24's sort of all the data leaves first, which summaries
    # cannot know; a merge keeps the first batch's zero (documented).
    stats = MinMaxQuantizationStats()
    stats.update(numpy.array([-0.001, 1.0]))
    stats.update(numpy.array([0.001, 2.0]))
    assert stats.uvalues.tolist() == [0.0, 1.0, 2.0] and numpy.signbit(stats.uvalues[0])


def test_merge_leaves_the_other_unchanged_and_accepts_empty_ones() -> None:
    first, second = MinMaxQuantizationStats(), MinMaxQuantizationStats()
    first.compute_quantization_stats(numpy.array([0.5, 1.5]))
    second.compute_quantization_stats(numpy.array([-3.0]))
    before = second.dumps()
    first.merge(second)
    assert second.dumps() == before
    assert (first.rmin, first.rmax, first.uvalues.tolist()) == (-3.0, 1.5, [-3.0, 0.5, 1.5])
    first.merge(MinMaxQuantizationStats())
    assert first.rmin == -3.0
    empty = MinMaxQuantizationStats()
    empty.merge(first)
    assert empty == first


def test_batches_must_share_a_dtype() -> None:
    stats = MinMaxQuantizationStats()
    stats.update(numpy.array([1.0], dtype=numpy.float32))
    with pytest.raises(TypeError, match="cannot merge statistics of float64 values"):
        stats.update(numpy.array([2.0]))
    assert stats.rmax == 1.0  # unchanged


def test_per_axis_statistics() -> None:
    stats = MinMaxQuantizationStats()
    stats.compute_quantization_stats(numpy.array([[1.0, 2.0], [3.0, 5.0]]), axis=1)
    assert stats.rmin.tolist() == [[1.0, 2.0]] and stats.rmax.tolist() == [[3.0, 5.0]]
    assert [uniques.tolist() for uniques in stats.uvalues] == [[1.0, 3.0], [2.0, 5.0]]

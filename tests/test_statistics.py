"""MinMaxQuantizationStats: calibration, the uniform-grid check, copies."""

from __future__ import annotations

import numpy
import pytest

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

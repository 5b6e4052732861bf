"""UniformQuantizationParameters: computing scale, zero point and offset."""

from __future__ import annotations

import numpy
import pytest

from intquant import MinMaxQuantizationStats, QuantizationOptions, UniformQuantizationParameters
from intquant.errors import MissingParameterError


def _computed(options: QuantizationOptions, stats: MinMaxQuantizationStats) -> UniformQuantizationParameters:
    params = UniformQuantizationParameters()
    params.compute_quantization_parameters(options, stats)
    return params


def test_asymmetric_parameters() -> None:
    params = _computed(QuantizationOptions(2), MinMaxQuantizationStats(rmax=3.0, rmin=-1.0))
    assert (params.scale, params.zero_point, params.offset) == (4 / 3, 1, 0)


def test_qat_infers_the_scale_from_a_uniform_grid() -> None:
    stats = MinMaxQuantizationStats()
    stats.compute_quantization_stats(numpy.array([-0.5, 0.0, 0.25, 0.75]))
    params = _computed(QuantizationOptions(3, is_qat=True), stats)
    assert (params.scale, params.zero_point) == (0.25, 0)
    assert type(params.scale) is numpy.float64 and type(params.zero_point) is int


def test_a_preset_scale_is_kept_for_asymmetric_quantization() -> None:
    params = UniformQuantizationParameters(scale=0.1)
    params.compute_quantization_parameters(
        QuantizationOptions(4), MinMaxQuantizationStats(rmax=1.0, rmin=0.0)
    )
    assert params.scale == 0.1 and type(params.scale) is float


def test_statistics_are_required() -> None:
    with pytest.raises(MissingParameterError, match="the statistics have no rmin/rmax yet"):
        _computed(QuantizationOptions(4), MinMaxQuantizationStats())


def test_statistics_must_be_finite() -> None:
    with pytest.raises(ValueError, match="'rmax' must be a finite number \\(or array of them\\); got inf"):
        _computed(QuantizationOptions(4), MinMaxQuantizationStats(rmax=float("inf"), rmin=0.0))


def test_invalid_option_combinations_set_as_attributes_are_refused() -> None:
    options = QuantizationOptions(4)
    options.is_symmetric = True
    with pytest.raises(AssertionError, match="is_symmetric=True needs is_signed=True"):
        _computed(options, MinMaxQuantizationStats(rmax=1.0, rmin=0.0))


def test_one_bit_symmetric_is_refused_and_changes_nothing() -> None:
    params = UniformQuantizationParameters(scale=0.5, zero_point=1, offset=0)
    with pytest.raises(ValueError, match="symmetric quantization on 1 bit\\(s\\) has no level above zero"):
        params.compute_quantization_parameters(
            QuantizationOptions(1, is_signed=True, is_symmetric=True),
            MinMaxQuantizationStats(rmax=1.0, rmin=-1.0),
        )
    assert (params.scale, params.zero_point, params.offset) == (0.5, 1, 0)


def test_n_bits_set_out_of_range_is_refused() -> None:
    options = QuantizationOptions(4)
    options.n_bits = 40
    with pytest.raises(ValueError, match="got 40"):
        _computed(options, MinMaxQuantizationStats(rmax=1.0, rmin=0.0))


def test_copies_and_equality() -> None:
    params = UniformQuantizationParameters(numpy.float64(0.5), numpy.int64(3), 0)
    assert params.quant_params == params
    assert UniformQuantizationParameters.load_dict(params.dump_dict()) == params
    assert params != UniformQuantizationParameters(numpy.float64(0.5), numpy.int64(4), 0)

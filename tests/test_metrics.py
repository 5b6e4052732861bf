"""Error metrics, checked against their definitions."""

from __future__ import annotations

import math

import numpy
import pytest

from intquant import QuantizedArray
from intquant.metrics import QuantizationErrors, choose_n_bits, quantization_error


def test_metrics_follow_their_definitions() -> None:
    values = numpy.array([0.0, 0.1, 0.35, 1.0])
    quantizer = QuantizedArray(2, values).quantizer
    error = quantizer.dequant(quantizer.quant(values)) - values
    metrics = quantization_error(values, quantizer)
    assert metrics["mse"] == numpy.mean(error**2)
    assert metrics["max_abs_error"] == numpy.max(numpy.abs(error))
    assert metrics["sqnr_db"] == 10 * math.log10(numpy.mean(values**2) / numpy.mean(error**2))


def test_exact_quantization_has_infinite_sqnr() -> None:
    values = numpy.array([0.0, 1.0, 2.0, 3.0])
    metrics = quantization_error(values, QuantizedArray(2, values).quantizer)
    assert metrics == {"mse": 0.0, "sqnr_db": math.inf, "max_abs_error": 0.0}


def test_choose_n_bits_is_the_smallest_width_that_meets_the_target() -> None:
    values = numpy.random.default_rng(1).normal(size=2000)
    chosen = choose_n_bits(values, 25.0, is_signed=True)
    sqnr = [
        quantization_error(values, QuantizedArray(n, values, is_signed=True).quantizer)["sqnr_db"]
        for n in (chosen - 1, chosen)
    ]
    assert sqnr[0] < 25.0 <= sqnr[1]


def test_choose_n_bits_skips_widths_the_options_cannot_use() -> None:
    values = numpy.array([-1.0, 1.0])
    assert choose_n_bits(values, 0.0, is_signed=True, is_symmetric=True) == 2


def test_choose_n_bits_errors() -> None:
    with pytest.raises(ValueError, match="no width up to 3 bits reaches 90\\.0 dB"):
        choose_n_bits(numpy.linspace(0, 1, 100), 90.0, max_n_bits=3)
    with pytest.raises(TypeError, match="'target_sqnr_db' must be a number of decibels"):
        choose_n_bits(numpy.ones(3), "high")  # type: ignore[arg-type]


def test_metrics_refuse_to_gather_a_dask_array() -> None:
    dask_array = pytest.importorskip("dask.array", reason="the dask extra is not installed")
    values = numpy.linspace(0.0, 1.0, 100)
    quantizer = QuantizedArray(8, values).quantizer
    with pytest.raises(TypeError, match="values to measure the error of are a dask array"):
        quantization_error(dask_array.from_array(values, chunks=10), quantizer)
    errors = QuantizationErrors()
    with pytest.raises(TypeError, match="restored values are a dask array"):
        errors.add(values, dask_array.from_array(values, chunks=10))
    assert errors.count == 0

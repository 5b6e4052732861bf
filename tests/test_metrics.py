"""Error metrics, checked against their definitions."""

from __future__ import annotations

import math

import numpy

from intquant import QuantizedArray
from intquant.metrics import quantization_error


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

"""Quantization error metrics."""

from __future__ import annotations

import math
from typing import Any

import numpy

__all__ = ["quantization_error"]


def quantization_error(values: Any, quantizer: Any) -> dict[str, float]:
    """Error of ``quantizer.dequant(quantizer.quant(values))`` against ``values``, in float64.

    With ``e = dequant(quant(x)) - x``:

    * ``mse = mean(e**2)``
    * ``sqnr_db = 10 * log10(mean(x**2) / mse)`` (``inf`` when ``mse`` is 0)
    * ``max_abs_error = max(|e|)``

    Examples
    --------
    >>> import numpy
    >>> from intquant import QuantizedArray
    >>> values = numpy.array([0.0, 0.25, 0.5, 1.0])
    >>> error = quantization_error(values, QuantizedArray(2, values).quantizer)
    >>> round(error["max_abs_error"], 4), round(error["sqnr_db"], 2)
    (0.1667, 15.77)
    """
    reference = numpy.asarray(values, dtype=numpy.float64)
    restored = numpy.asarray(quantizer.dequant(quantizer.quant(values)), dtype=numpy.float64)
    error = restored - reference
    mse = float(numpy.mean(error**2))
    power = float(numpy.mean(reference**2))
    sqnr_db = math.inf if mse == 0 else (10 * math.log10(power / mse) if power > 0 else -math.inf)
    return {"mse": mse, "sqnr_db": sqnr_db, "max_abs_error": float(numpy.max(numpy.abs(error)))}

"""Quantization error metrics."""

from __future__ import annotations

import math
from typing import Any

import numpy

from intquant._core.checks import check_n_bits
from intquant._core.foreign import check_not_foreign
from intquant.errors import InvalidTypeError, InvalidValueError
from intquant.quantized_array import QuantizedArray

__all__ = ["QuantizationErrors", "choose_n_bits", "quantization_error"]


class QuantizationErrors:
    """The error of restored values against the originals, accumulated chunk by chunk.

    With ``e = restored - reference`` over every chunk added (``n`` values in all):
    ``mse = sum(e**2) / n``, ``sqnr_db = 10 * log10(sum(x**2) / n / mse)`` (``inf`` when ``mse``
    is 0), ``max_abs_error = max(|e|)``; all in float64. One chunk gives exactly
    :func:`quantization_error`.
    """

    def __init__(self) -> None:
        self.count = 0
        self.squared_error = 0.0
        self.power = 0.0
        self.worst = 0.0

    def add(self, reference: Any, restored: Any) -> None:
        """Fold in one chunk of original values and their restored values (same shape)."""
        check_not_foreign(reference, "reference values")  # in memory: never gather a dask array
        check_not_foreign(restored, "restored values")
        original = numpy.asarray(reference, dtype=numpy.float64)
        error = numpy.asarray(restored, dtype=numpy.float64) - original
        self.count += error.size
        self.squared_error += float(numpy.sum(error**2))
        self.power += float(numpy.sum(original**2))
        if error.size:
            self.worst = max(self.worst, float(numpy.max(numpy.abs(error))))

    def result(self) -> dict[str, float]:
        """``{"mse": ..., "sqnr_db": ..., "max_abs_error": ...}`` of everything added."""
        mse = self.squared_error / self.count
        power = self.power / self.count
        sqnr_db = math.inf if mse == 0 else (10 * math.log10(power / mse) if power > 0 else -math.inf)
        return {"mse": mse, "sqnr_db": sqnr_db, "max_abs_error": self.worst}


def quantization_error(values: Any, quantizer: Any) -> dict[str, float]:
    """Error of ``quantizer.dequant(quantizer.quant(values))`` against ``values``, in float64.

    With ``e = dequant(quant(x)) - x``:

    * ``mse = mean(e**2)``
    * ``sqnr_db = 10 * log10(mean(x**2) / mse)`` (``inf`` when ``mse`` is 0)
    * ``max_abs_error = max(|e|)``

    ``values`` are in memory: a dask array or a torch tensor is refused (``InvalidTypeError``)
    rather than gathered.

    Examples
    --------
    >>> import numpy
    >>> from intquant import QuantizedArray
    >>> values = numpy.array([0.0, 0.25, 0.5, 1.0])
    >>> error = quantization_error(values, QuantizedArray(2, values).quantizer)
    >>> round(error["max_abs_error"], 4), round(error["sqnr_db"], 2)
    (0.1667, 15.77)
    """
    check_not_foreign(values, "values to measure the error of")  # never gather a dask array
    errors = QuantizationErrors()
    errors.add(values, quantizer.dequant(quantizer.quant(values)))
    return errors.result()


def choose_n_bits(values: Any, target_sqnr_db: float, max_n_bits: int = 32, **options: Any) -> int:
    """The smallest ``n_bits`` whose quantization of ``values`` reaches ``target_sqnr_db``.

    Each width from 1 to ``max_n_bits`` is calibrated on ``values`` with the given options
    (``is_signed=``, ``is_symmetric=``, ``axis=``, ``rounding=`` ...) as ``QuantizedArray`` does,
    and ``quantization_error(values, quantizer)["sqnr_db"]`` is compared with the target. Widths
    the options cannot use (1-bit symmetric) are skipped.

    Raises
    ------
    InvalidValueError
        If no width up to ``max_n_bits`` reaches the target.

    Examples
    --------
    >>> import numpy
    >>> values = numpy.random.default_rng(0).normal(size=1000)
    >>> choose_n_bits(values, 30.0)
    7
    """
    if not isinstance(target_sqnr_db, (int, float)) or isinstance(target_sqnr_db, bool):
        raise InvalidTypeError(f"'target_sqnr_db' must be a number of decibels; got {target_sqnr_db!r}.")
    best = -math.inf
    first = 2 if options.get("is_symmetric") else 1  # 1-bit symmetric has no positive level
    for n_bits in range(first, check_n_bits(max_n_bits) + 1):
        quantizer = QuantizedArray(n_bits, values, **options).quantizer
        sqnr = quantization_error(values, quantizer)["sqnr_db"]
        if sqnr >= target_sqnr_db:
            return n_bits
        best = max(best, sqnr)
    raise InvalidValueError(
        f"no width up to {max_n_bits} bits reaches {target_sqnr_db} dB (best: {best:.2f} dB); "
        f"lower the target or allow more bits with max_n_bits=."
    )

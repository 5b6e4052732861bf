"""The seed API: Concrete ML 1.7.0's ``concrete.ml.quantization.quantizers``, standalone.

Quantization utilities for numpy arrays. Every result on valid input is identical to the
reference's (values, dtypes, scalar types, serialized text) on numpy 1.24 and 2.x.
"""

from __future__ import annotations

from intquant._core.formulas import STABILITY_CONST
from intquant._core.members import fill_from_kwargs
from intquant.options import QuantizationOptions
from intquant.parameters import UniformQuantizationParameters
from intquant.quantized_array import QuantizedArray
from intquant.quantizer import UniformQuantizer
from intquant.statistics import MinMaxQuantizationStats

__all__ = [
    "STABILITY_CONST",
    "fill_from_kwargs",
    "QuantizationOptions",
    "MinMaxQuantizationStats",
    "UniformQuantizationParameters",
    "UniformQuantizer",
    "QuantizedArray",
]

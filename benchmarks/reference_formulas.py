"""The reference's formulas (Concrete ML 1.7.0, per intquant's SPEC) in plain numpy, for timing.

Written from the specification: three full-size temporaries for ``quant``, a sort of the rounded
values for the statistics. On float64 inputs these give the reference's results on any numpy.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy


def quant(values: numpy.ndarray, scale: Any, zero_point: Any, low: int, high: int) -> numpy.ndarray:
    """``rint(clip(values / scale + zero_point, low, high))`` as int64."""
    qvalues = values / scale + zero_point
    qvalues = qvalues.clip(low, high)
    qvalues = numpy.rint(qvalues)
    return qvalues.astype(numpy.int64)


def dequant(qvalues: numpy.ndarray, scale: Any, zero_point: Any) -> numpy.ndarray:
    """``scale * (qvalues - float64(zero_point))``."""
    return scale * (qvalues - numpy.asarray(zero_point, dtype=numpy.float64))


def quantized_array(n_bits: int, values: numpy.ndarray) -> numpy.ndarray:
    """``QuantizedArray(n_bits, values)`` (unsigned, asymmetric): copy, statistics, parameters, codes."""
    values = copy.deepcopy(values)
    rmin, rmax = numpy.min(values), numpy.max(values)
    numpy.unique(numpy.round(values, 2))  # uvalues
    levels = 2**n_bits - 1
    scale = numpy.float64((rmax - rmin) / levels)
    zero_point = numpy.round((rmax * 0 - rmin * levels) / (rmax - rmin)).astype(numpy.int64)
    return quant(values, scale, zero_point, 0, levels)

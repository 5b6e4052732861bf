"""intquant: uniform (affine) quantization of numpy arrays, bit-exact with Concrete ML 1.7.0.

>>> import numpy, intquant
>>> qa = intquant.QuantizedArray(4, numpy.array([-1.0, 0.0, 2.0]), is_signed=True)
>>> qa.qvalues.tolist()
[-8, -3, 7]
>>> intquant.loads(intquant.dumps(qa)) == qa
True
"""

from __future__ import annotations

from intquant.packing import pack_codes, packed_size, unpack_codes
from intquant.quantizers import (
    STABILITY_CONST,
    MinMaxQuantizationStats,
    QuantizationOptions,
    QuantizedArray,
    UniformQuantizationParameters,
    UniformQuantizer,
    fill_from_kwargs,
)
from intquant.serialization import dump, dumps, load, loads

__version__ = "0.1.0"

__all__ = [
    "STABILITY_CONST",
    "fill_from_kwargs",
    "QuantizationOptions",
    "MinMaxQuantizationStats",
    "UniformQuantizationParameters",
    "UniformQuantizer",
    "QuantizedArray",
    "dumps",
    "dump",
    "loads",
    "load",
    "pack_codes",
    "unpack_codes",
    "packed_size",
]

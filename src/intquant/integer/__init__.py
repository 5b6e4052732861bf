"""Integer layers: exact int64 accumulators, requantization, and networks of them.

A float model (:class:`Linear`, :class:`Conv2d`, :class:`ReLU`, :class:`Flatten`) becomes an
:class:`IntegerNetwork` in one call: the input and every activation get an unsigned asymmetric
quantizer calibrated on the integer pipeline itself, the weights signed symmetric codes (per
output channel), the bias int32 codes at the accumulator's scale ``s_x * s_w``. Each layer then
computes its accumulators exactly in int64 (zero points folded, the product on raw codes in
float32/float64 BLAS only where every partial sum is an exact integer) and maps them to output
codes by a requantization mode (:class:`FloatRescale`, :class:`FixedPoint`, :class:`PowerOfTwo`,
:class:`DropLowBits`). Every layer proves its worst-case accumulator range (bias included);
``accumulator_bits=P`` raises the weight scales until every accumulator fits ``P`` bits.

Each layer's arithmetic is written down once, as two frozen plans (:class:`AccumulatorPlan`,
:class:`RequantPlan`) that numpy, ``intquant.torch`` and ``intquant.onnx`` all execute.

>>> import numpy
>>> from intquant.integer import Conv2d, Flatten, IntegerNetwork, Linear, ReLU, FixedPoint
>>> rng = numpy.random.default_rng(0)
>>> model = [Conv2d(rng.normal(size=(4, 1, 3, 3)), padding=1), ReLU(), Flatten(),
...          Linear(rng.normal(size=(3, 4 * 6 * 6)), rng.normal(size=3))]
>>> x = rng.normal(size=(32, 1, 6, 6))
>>> network = IntegerNetwork.from_float(model, x, bits=8, requantization=FixedPoint(),
...                                     accumulator_bits=20)
>>> network(x[:2]).shape, network(x[:2]).dtype
((2, 3), dtype('int64'))
>>> network.accumulator_report(x, limit_bits=20).fits
True
>>> import intquant
>>> codes = network.quantize_input(x)
>>> bool((intquant.loads(intquant.dumps(network)).run(codes) == network.run(codes)).all())
True
"""

from __future__ import annotations

from intquant.integer.accumulator import AccumulatorReport, LayerAccumulators
from intquant.integer.conv import IntegerConv2d
from intquant.integer.elements import IntegerFlatten, IntegerReLU
from intquant.integer.linear import IntegerLinear
from intquant.integer.model import Conv2d, Flatten, Linear, ReLU
from intquant.integer.network import IntegerNetwork
from intquant.integer.plan import AccumulatorPlan, RequantPlan
from intquant.integer.requantize import DropLowBits, FixedPoint, FloatRescale, PowerOfTwo, Requantization

__all__ = [
    "Linear",
    "Conv2d",
    "ReLU",
    "Flatten",
    "IntegerLinear",
    "IntegerConv2d",
    "IntegerReLU",
    "IntegerFlatten",
    "IntegerNetwork",
    "FloatRescale",
    "FixedPoint",
    "PowerOfTwo",
    "DropLowBits",
    "Requantization",
    "AccumulatorPlan",
    "RequantPlan",
    "LayerAccumulators",
    "AccumulatorReport",
]

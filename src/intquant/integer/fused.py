"""An integer layer's call in two compiled passes around the product (numba, optional).

The numpy executors (:func:`intquant.integer.product.accumulate`, then
:func:`intquant.integer.requantize.requantize`) make about eight passes over the data: the input
range check, the cast for the product, the product's cast back to int64, the folded constant,
and four or more for the requantization. With numba (``pip install "intquant[fast]"``) a layer
call makes two around the BLAS product instead:

1. one pass over the input codes casts them to the product's dtype and finds their range (the
   layer refuses codes outside its input range before anything else is computed);
2. after ``product = cast @ weights`` (float32/float64 BLAS, exact; see
   :mod:`intquant.integer.product`), one pass computes ``acc = int64(product) + constant[o]`` and
   the plan's requantization formula element by element, writing the int64 output codes in
   their final layout (NCHW for a convolution).

Each element goes through the same int64 and float64 operations, in the same order, as the
numpy executors, so the codes are identical (tested against them). Small calls keep the numpy
path until numba is loaded (``intquant._numba.dispatch.worthwhile``), and
``INTQUANT_PURE_NUMPY=1`` never uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy

from intquant._numba import dispatch
from intquant.integer.plan import ROUNDINGS, AccumulatorPlan, RequantPlan
from intquant.integer.product import product_operands, windows_in

__all__ = ["available", "layer_call"]


def available(size: int) -> bool:
    """Whether a call on ``size`` input codes takes the compiled passes."""
    return size > 0 and dispatch.worthwhile(size)


def layer_call(
    codes: numpy.ndarray,
    accumulator_plan: AccumulatorPlan,
    requant_plan: RequantPlan,
    check_range: Callable[[int, int], None],
) -> numpy.ndarray:
    """The int64 output codes of non-empty integer ``codes`` whose dtype and shape the layer
    has checked; ``check_range(min, max)`` raises for codes outside the layer's input range."""
    operands = product_operands(accumulator_plan)
    cast_codes, low, high = dispatch.cast_codes(codes, operands.dtype)
    check_range(low, high)
    count, size = accumulator_plan.out_channels, operands.weights.shape[0]
    if accumulator_plan.kind == "linear":
        lead = cast_codes.shape[:-1]
        rows = cast_codes.reshape(-1, size)
        output = numpy.empty((*lead, count), dtype=numpy.int64)
        target = output.reshape(rows.shape[0], count, 1)
    else:
        kernel = cast(tuple[int, int], tuple(accumulator_plan.weight_codes.shape[2:]))
        windows = windows_in(
            cast_codes,
            kernel,
            accumulator_plan.stride,
            accumulator_plan.padding,
            accumulator_plan.input_zero_point,
            operands.dtype,
        )
        batch, out_rows, out_columns, _ = windows.shape
        rows = windows.reshape(batch * out_rows * out_columns, size)
        output = numpy.empty((batch, count, out_rows, out_columns), dtype=numpy.int64)
        target = output.reshape(batch, count, out_rows * out_columns)
    product = numpy.ascontiguousarray(rows @ operands.weights)
    dispatch.requantize_product(
        product,
        operands.constant,
        requant_plan.multiplier,
        requant_plan.shift,
        requant_plan.formula == "integer",
        ROUNDINGS.index(requant_plan.rounding),
        requant_plan.output_zero_point,
        requant_plan.output_range,
        target,
    )
    return output

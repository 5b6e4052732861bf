"""Exact integer accumulators on float BLAS: the numpy executor of an ``AccumulatorPlan``.

For input codes ``q_x`` (zero point ``zp_x``), weight codes ``q_w`` (``zp_w[o]``), bias codes
``b[o]`` and ``K`` products per accumulator (``k`` over ``(C, kh, kw)`` for a convolution)::

    acc[n, o] = sum_k (q_x[n, k] - zp_x) * (q_w[o, k] - zp_w[o]) + b[o]
              = (q_x @ c_w.T)[n, o] + (b[o] - zp_x * (wsum[o] - K * zp_w[o]))

with the centered weights ``c_w = q_w - zp_w`` (``= q_w`` for symmetric weights, the usual
case): the product runs on the raw input codes, the input zero point is folded into one int64
constant per channel (``wsum[o] = sum_k q_w[o, k]`` is the plan's) and the weight zero point
into the (constant) weights, so no pass over the input or output is spent on zero points.

The product ``q_x @ c_w.T`` runs in float32 or float64 BLAS when exact there: each product and
each partial sum is an integer of magnitude at most ``K * max|q_x| * max|c_w|``, exact in
float32 below ``2**24`` and in float64 below ``2**53`` whatever the summation order or the use
of fused multiply-adds. The dtype is the plan's ``product_dtype`` (chosen on the raw codes by
:func:`choose_product_dtype`), widened when the centered weights' bound needs it; the int64
product (numpy's integer matmul, no BLAS) is exact in wrapping arithmetic whenever ``acc``
itself fits int64. The input codes are cast once (the convolution's windows are built from the
cast, padded codes), and the product is cast back to int64 once.
"""

from __future__ import annotations

import weakref
from typing import Any, Literal, cast

import numpy
from numpy.lib.stride_tricks import sliding_window_view

from intquant._core.checks import check_int
from intquant.errors import InvalidValueError
from intquant.integer.plan import AccumulatorPlan

__all__ = [
    "PRODUCT_DTYPES",
    "EXACT_FLOAT_LIMITS",
    "ProductOperands",
    "choose_product_dtype",
    "conv_windows",
    "windows_in",
    "product_operands",
    "accumulate",
]

#: The dtypes of the raw-code product, narrowest first.
PRODUCT_DTYPES: tuple[Literal["float32", "float64", "int64"], ...] = ("float32", "float64", "int64")

#: Integers of magnitude below these are exact in the float dtype (24 and 53 significand bits).
EXACT_FLOAT_LIMITS = {"float32": 2**24, "float64": 2**53}


def choose_product_dtype(
    reduction_size: int, max_abs_input: int, max_abs_weight: int
) -> Literal["float32", "float64", "int64"]:
    """The narrowest dtype in which a sum of ``reduction_size`` products of integers bounded by
    ``max_abs_input`` and ``max_abs_weight`` is exact: ``"float32"`` if
    ``K * a * w < 2**24``, ``"float64"`` if ``< 2**53``, else ``"int64"`` (Python ints: no
    overflow).

    >>> choose_product_dtype(64, 255, 127), choose_product_dtype(4096, 255, 127)
    ('float32', 'float64')
    """
    bound = (
        check_int("reduction_size", reduction_size, minimum=0)
        * check_int("max_abs_input", max_abs_input, minimum=0)
        * check_int("max_abs_weight", max_abs_weight, minimum=0)
    )
    for name in PRODUCT_DTYPES[:2]:
        if bound < EXACT_FLOAT_LIMITS[name]:
            return name
    return "int64"


def windows_in(
    codes: numpy.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    pad_value: int,
    dtype: Any,
) -> numpy.ndarray:
    """``(N, H_out, W_out, C*kh*kw)`` windows of ``codes`` padded with ``pad_value``, in
    ``dtype`` (one copy to pad and cast, one to gather the windows; see :func:`conv_windows`).
    Trusts its input: 4-D integer codes (or codes already cast to ``dtype``)."""
    batch, channels, height, width = codes.shape
    (rows, columns), (row_pad, column_pad) = kernel, padding
    padded_shape = (batch, channels, height + 2 * row_pad, width + 2 * column_pad)
    if padded_shape[2] < rows or padded_shape[3] < columns:
        raise InvalidValueError(
            f"The kernel {kernel} does not fit the input of shape {codes.shape} padded by {padding}: "
            "expected H + 2*ph >= kh and W + 2*pw >= kw."
        )
    if row_pad or column_pad:
        padded = numpy.full(padded_shape, pad_value, dtype=dtype)
        padded[:, :, row_pad : row_pad + height, column_pad : column_pad + width] = codes
    else:
        padded = codes.astype(dtype, copy=False)
    view = sliding_window_view(padded, kernel, axis=(2, 3))[:, :, :: stride[0], :: stride[1]]
    out_rows, out_columns = view.shape[2], view.shape[3]
    return view.transpose(0, 2, 3, 1, 4, 5).reshape(batch, out_rows, out_columns, channels * rows * columns)


def conv_windows(
    codes: numpy.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    pad_value: int,
) -> numpy.ndarray:
    """The windows of a 2-D convolution, one row of ``K = C*kh*kw`` codes per output position.

    ``codes`` ``(N, C, H, W)`` is padded with ``pad_value`` by ``padding = (ph, pw)`` on each
    side; the window at output ``(i, j)`` starts at row ``i * sh`` and column ``j * sw`` of the
    padded codes (``H_out = (H + 2*ph - kh) // sh + 1``, likewise ``W_out``), and is flattened
    in ``(C, kh, kw)`` C order, matching ``weight_codes.reshape(O, -1)``.

    Returns
    -------
    numpy.ndarray of int64, shape (N, H_out, W_out, C*kh*kw)
        A new array (numpy's ``sliding_window_view`` on the padded codes, gathered once).

    Raises
    ------
    InvalidValueError
        If ``codes`` is not 4-D, or the kernel is larger than the padded input.
    """
    array = numpy.asarray(codes)
    if array.ndim != 4:
        raise InvalidValueError(f"'codes' must be (N, C, H, W); got shape {array.shape}.")
    return windows_in(array, kernel, stride, padding, pad_value, numpy.int64)


def _max_abs(array: numpy.ndarray) -> int:
    return int(numpy.max(numpy.abs(array))) if array.size else 0


class ProductOperands:
    """What :func:`accumulate` computes once per plan: the centered weights transposed to
    ``(K, O)`` in the product's dtype, the per-channel constant
    ``b[o] - zp_x * (wsum[o] - K * zp_w[o])`` (int64) and that dtype."""

    __slots__ = ("constant", "dtype", "weights")

    def __init__(self, weights: numpy.ndarray, constant: numpy.ndarray, dtype: str) -> None:
        self.weights = weights
        self.constant = constant
        self.dtype = dtype


_OPERANDS: weakref.WeakKeyDictionary[AccumulatorPlan, ProductOperands] = weakref.WeakKeyDictionary()


def product_operands(plan: AccumulatorPlan) -> ProductOperands:
    """The :class:`ProductOperands` of ``plan``, computed on first use and kept while the plan
    lives (plans are immutable)."""
    operands = _OPERANDS.get(plan)
    if operands is None:
        count = plan.out_channels
        size = int(numpy.prod(plan.weight_codes.shape[1:]))
        weights = plan.weight_codes.reshape(count, size)
        weight_zero_point = plan.weight_zero_point.astype(numpy.int64)
        zero_point = plan.input_zero_point
        if numpy.any(weight_zero_point):
            weights = weights - weight_zero_point[:, None]
        constant = plan.bias_codes - zero_point * (plan.weight_sums - size * weight_zero_point)
        padded = plan.kind == "conv2d" and any(plan.padding)
        input_bound = max(
            abs(plan.input_range[0]), abs(plan.input_range[1]), abs(zero_point) if padded else 0
        )
        needed = choose_product_dtype(size, input_bound, _max_abs(weights))
        dtype = max(plan.product_dtype, needed, key=PRODUCT_DTYPES.index)
        transposed = numpy.ascontiguousarray(weights.T, dtype=dtype)  # (K, O), a small copy
        constant = numpy.ascontiguousarray(constant, dtype=numpy.int64)
        transposed.flags.writeable = False
        constant.flags.writeable = False
        operands = ProductOperands(transposed, constant, dtype)
        _OPERANDS[plan] = operands
    return operands


def accumulate(codes: numpy.ndarray, plan: AccumulatorPlan) -> numpy.ndarray:
    """The exact int64 accumulators of ``codes`` (see the module docstring).

    Parameters
    ----------
    codes : numpy.ndarray of integers
        Linear: ``(..., K)``; conv2d: ``(N, C, H, W)``. Trusted: the layer has checked the dtype,
        the shape and that every code lies in ``plan.input_range`` (not modified).
    plan : AccumulatorPlan

    Returns
    -------
    numpy.ndarray of int64
        Linear: ``(..., O)``; conv2d: ``(N, O, H_out, W_out)``, C-contiguous.
    """
    array = numpy.asarray(codes)
    operands = product_operands(plan)
    count, size = plan.out_channels, operands.weights.shape[0]
    dtype, constant = operands.dtype, operands.constant
    if plan.kind == "linear":
        rows = array.reshape(int(numpy.prod(array.shape[:-1])), size).astype(dtype, copy=False)
        product = (rows @ operands.weights).reshape((*array.shape[:-1], count))
        result = product.astype(numpy.int64, copy=False)
        result += constant
        return result
    kernel = cast(tuple[int, int], tuple(plan.weight_codes.shape[2:]))
    windows = windows_in(array, kernel, plan.stride, plan.padding, plan.input_zero_point, dtype)
    batch, out_rows, out_columns, _ = windows.shape
    product = (windows.reshape(batch * out_rows * out_columns, size) @ operands.weights).reshape(
        batch, out_rows, out_columns, count
    )
    result = product.transpose(0, 3, 1, 2).astype(numpy.int64, order="C")
    result += constant[:, None, None]
    return result

"""The integer plan of a layer: every integer and float a backend needs, computed once.

An integer layer (:class:`intquant.integer.IntegerLinear`, :class:`intquant.integer.IntegerConv2d`)
turns its quantizers, weights and bias into two frozen plans, and every backend (numpy here,
``intquant.torch`` on tensors, ``intquant.onnx`` in a graph) executes exactly these plans, the way
a seed quantizer's ``QuantPlan`` is executed by numpy, numba, torch, ONNX and Dask alike.

Accumulation (:class:`AccumulatorPlan`), for input codes ``q_x`` (zero point ``zp_x``), weight
codes ``q_w`` (zero point ``zp_w[o]`` per output channel ``o``) and bias codes ``b[o]``::

    acc[n, o] = sum_k (q_x[n, k] - zp_x) * (q_w[o, k] - zp_w[o]) + b[o]            # exact, int64
              = q_x @ q_w.T - zp_x * wsum[o] - zp_w[o] * xsum[n] + K * zp_x * zp_w[o] + b[o]

with ``wsum[o] = sum_k q_w[o, k]`` (precomputed) and ``xsum[n] = sum_k q_x[n, k]``: the product
runs on the raw codes. For a 2-D convolution ``k`` runs over ``(C, kh, kw)`` of each window and
the input is padded with ``zp_x`` (the code of 0.0), so padding adds nothing.

Requantization (:class:`RequantPlan`) maps ``acc`` to output codes with one of two formulas,
``o`` indexing the output channel (the last axis of a linear layer's output, axis 1 of a
convolution's)::

    integer: y = clip(round_shift(acc * m[o], s[o], rounding) + zp_y, lo, hi)       # int64 only
    float:   y = clip(rint(float64(round_shift(acc, s[o], "half_up")) * m[o]) + zp_y, lo, hi)

where ``round_shift(v, s, r)`` is ``v / 2**s`` rounded to an integer by rule ``r`` (for
``s <= 0`` it is the exact ``v * 2**-s``), ``rint`` rounds half to even and ``clip`` is to
``[lo, hi]`` (``lo = max(qmin, zp_y)`` after a fused ReLU). The requantization modes
(:mod:`intquant.integer.requantize`) fill these fields:

======================  =========  =======================  ===================  ==========
mode                    formula    ``m[o]``                 ``s[o]``             rounding
======================  =========  =======================  ===================  ==========
``FloatRescale()``      float      ``M[o]`` (float64)       0                    --
``FixedPoint()``        integer    int64 in [2**(B-1), 2**B) ``M ~ m * 2**-s``   half_even
``PowerOfTwo()``        integer    1                        ``round(-log2 M[o])`` half_even
``DropLowBits(k)``      float      ``M[o] * 2**k``          ``k``                half_up
``None`` (no output)    --         --                       --                   --
======================  =========  =======================  ===================  ==========

with ``M[o] = s_x * s_w[o] / s_y`` the real multiplier. A layer without an output quantizer
outputs ``acc`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy

__all__ = ["AccumulatorPlan", "RequantPlan", "ROUNDINGS", "FORMULAS"]

#: The rounding rules of ``round_shift``: ties to the even integer, away from zero, or up
#: (towards +inf; the rule of adding ``2**(s-1)`` before an arithmetic right shift).
ROUNDINGS = ("half_even", "half_away", "half_up")

#: The two requantization formulas a backend implements (see the module docstring).
FORMULAS = ("integer", "float")


@dataclass(frozen=True, eq=False)
class AccumulatorPlan:
    """How a layer computes its exact int64 accumulators from input codes.

    Attributes
    ----------
    kind : {"linear", "conv2d"}
        A linear layer (input ``(..., K)``, output ``(..., O)``) or a 2-D convolution (input
        ``(N, C, H, W)``, output ``(N, O, H_out, W_out)``; no groups, no dilation).
    weight_codes : numpy.ndarray of int64
        The raw weight codes ``q_w``: ``(O, K)`` for linear, ``(O, C, kh, kw)`` for conv2d.
    weight_zero_point : numpy.ndarray of int64, shape (O,)
        ``zp_w[o]``, one per output channel (a per-tensor zero point repeated).
    weight_sums : numpy.ndarray of int64, shape (O,)
        ``wsum[o] = sum_k q_w[o, k]``, precomputed for folding the input zero point.
    bias_codes : numpy.ndarray of int64, shape (O,)
        The bias quantized at the accumulator's scale ``s_x * s_w[o]``,
        ``b[o] = rint(bias[o] / (s_x * s_w[o]))``, checked to fit int32 (zeros without a bias).
    input_zero_point : int
        ``zp_x``, the input quantizer's zero point (per tensor).
    input_range : tuple of (int, int)
        The input codes the layer accepts, ``(lo, hi)`` inclusive: the input quantizer's code
        range, narrowed to ``lo = zp_x`` when a ReLU precedes the layer. The worst-case
        accumulator bounds are proven over this range; inputs outside it are refused.
    stride, padding : tuple of (int, int)
        The convolution's stride and zero padding (rows, columns); ``(1, 1)`` and ``(0, 0)``
        for a linear layer.
    accumulator_min, accumulator_max : numpy.ndarray of int64, shape (O,)
        The worst-case range of ``acc[..., o]`` over every input in ``input_range``, bias
        included (exact, computed with Python integers).
    product_dtype : {"float32", "float64", "int64"}
        Where the raw-code product ``q_x @ q_w.T`` is computed exactly: float32 if
        ``K * max|q_x| * max|q_w| < 2**24``, float64 if below ``2**53`` (every partial sum is an
        integer below the bound, so any summation order is exact), else int64.
    """

    kind: Literal["linear", "conv2d"]
    weight_codes: numpy.ndarray
    weight_zero_point: numpy.ndarray
    weight_sums: numpy.ndarray
    bias_codes: numpy.ndarray
    input_zero_point: int
    input_range: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    accumulator_min: numpy.ndarray
    accumulator_max: numpy.ndarray
    product_dtype: Literal["float32", "float64", "int64"]

    @property
    def out_channels(self) -> int:
        """``O``, the number of output channels."""
        return int(self.weight_codes.shape[0])

    @property
    def reduction_size(self) -> int:
        """``K``, the number of products summed into each accumulator."""
        return int(self.weight_codes[0].size) if self.weight_codes.shape[0] else 0


@dataclass(frozen=True, eq=False)
class RequantPlan:
    """How a layer maps its accumulators to output codes (see the module docstring).

    Attributes
    ----------
    mode : {"float", "fixed_point", "power_of_two", "drop_low_bits"}
        The requantization mode that filled this plan (for reports; backends follow ``formula``).
    formula : {"integer", "float"}
        ``integer``: ``y = clip(round_shift(acc * m, s, rounding) + zp_y, lo, hi)`` in int64;
        ``float``: ``y = clip(rint(float64(round_shift(acc, s, "half_up")) * m) + zp_y, lo, hi)``.
    multiplier : numpy.ndarray, shape (O,)
        ``m[o]``: int64 for the integer formula, float64 for the float formula.
    shift : numpy.ndarray of int64, shape (O,)
        ``s[o]``; ``s <= 0`` multiplies by ``2**-s`` exactly (integer formula only).
    rounding : {"half_even", "half_away", "half_up"}
        The rounding of ``round_shift`` in the integer formula (the float formula always drops
        bits with ``half_up`` and rounds the product half to even).
    output_zero_point : int
        ``zp_y``, the output quantizer's zero point.
    output_range : tuple of (int, int)
        ``(lo, hi)``: the output quantizer's code range, ``lo`` raised to ``zp_y`` by a fused ReLU.
    real_multiplier : numpy.ndarray of float64, shape (O,)
        ``M[o] = s_x * s_w[o] / s_y``, what the plan approximates (exactly, for ``float``).
    """

    mode: Literal["float", "fixed_point", "power_of_two", "drop_low_bits"]
    formula: Literal["integer", "float"]
    multiplier: numpy.ndarray
    shift: numpy.ndarray
    rounding: Literal["half_even", "half_away", "half_up"]
    output_zero_point: int
    output_range: tuple[int, int]
    real_multiplier: numpy.ndarray

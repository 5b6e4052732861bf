"""The constraint mode: weight scales that keep every accumulator within ``P`` bits by construction.

For a layer with symmetric weights (zero point 0), float weights ``w[o, k]``, float bias
``beta[o]``, input scale ``s_x`` and centered input codes in ``[lo, hi]``, a weight scale
``s`` for channel ``o`` gives the codes and bias codes (float64, ``rint`` half to even, exactly
as the layer computes them)::

    q[o, k] = clip(rint(w[o, k] / s), qmin, qmax)        b[o] = rint(beta[o] / (s_x * s))

and the exact worst-case accumulator range of
:func:`~intquant.integer.accumulator.worst_case_range`. :func:`fit_weight_scales` finds, per
channel, the smallest ``s >= weight_scale[o]`` whose range fits ``P`` signed bits: the channels
that already fit keep their scale; for the others, a bisection on ``log s`` runs over all of them
at once, between the original scale (does not fit) and a scale at which every code and the bias
code round to 0 (``4 * max(max_k |w[o, k]|, |beta[o]| / s_x)``: fits), each step checking the
candidate exactly in integers, until the two ends are within a relative ``1e-12``; the upper end
(which fits, checked exactly) is returned.

Larger scales never make a code larger (``|rint(a / s)|`` does not grow with ``s``), so when the
input range holds 0 (``lo <= 0 <= hi``, as a centered range containing the zero point does) the
weights' part of the range only shrinks and the result is the smallest fitting scale to that
precision; a bias can make the fitting scales a union of intervals, and the bisection then
returns the lower end of one of them (still fitting, checked).
"""

from __future__ import annotations

from typing import Any

import numpy

from intquant._core.checks import check_int, check_real
from intquant.errors import InvalidValueError
from intquant.integer.accumulator import check_pair, worst_case_bits

__all__ = ["fit_weight_scales"]

_RELATIVE_TOLERANCE = 1e-12
_MAX_STEPS = 200
_MAX_BIAS_CODE = 2**62  # beyond this, no accumulator of at most 64 bits fits


def _float_array(name: str, value: Any, ndim: int, size: int | None) -> numpy.ndarray:
    array = numpy.asarray(value)
    if array.ndim != ndim or array.dtype.kind not in "fiu" or (size is not None and array.shape[0] != size):
        shape = "(O, K)" if ndim == 2 else f"({size},)"
        raise InvalidValueError(
            f"'{name}' must be a real array of shape {shape}; got shape {array.shape}, dtype {array.dtype}."
        )
    array = array.astype(numpy.float64)
    if not numpy.all(numpy.isfinite(array)):
        bad = array.size - int(numpy.isfinite(array).sum())
        raise InvalidValueError(f"'{name}' must be finite; got {bad} non-finite value(s).")
    return array


def fit_weight_scales(
    weight: numpy.ndarray,
    bias: numpy.ndarray | None,
    weight_scale: numpy.ndarray,
    weight_code_range: tuple[int, int],
    input_scale: float,
    centered_input_range: tuple[int, int],
    target_bits: int,
) -> numpy.ndarray:
    """Per-channel weight scales, each the smallest ``>= weight_scale[o]`` (to a relative
    ``1e-12``) whose worst-case accumulator fits ``target_bits`` signed bits (see the module
    docstring).

    Parameters
    ----------
    weight : numpy.ndarray of float, shape (O, K)
        The float weights (a convolution's reshaped to ``(O, C*kh*kw)``).
    bias : numpy.ndarray of float, shape (O,), or None
    weight_scale : numpy.ndarray of float, shape (O,)
        The scales to start from (positive), e.g. the symmetric weight quantizer's.
    weight_code_range : tuple of (int, int)
        ``(qmin, qmax)`` of the weight codes, e.g. ``(-127, 127)``.
    input_scale : float
        ``s_x``, positive.
    centered_input_range : tuple of (int, int)
        ``(lo - zp_x, hi - zp_x)``.
    target_bits : int
        ``P``, at least 2.

    Returns
    -------
    numpy.ndarray of float64, shape (O,)
        A new array; the channels that already fit keep their scale exactly.

    Raises
    ------
    InvalidValueError
        If an argument is malformed, ``target_bits < 2``, or no scale fits some channel (codes
        that cannot be 0, or a bias whose zero code needs a scale beyond float64); the message
        names the channels.
    """
    weights = _float_array("weight", weight, 2, None)
    count = weights.shape[0]
    scales = _float_array("weight_scale", weight_scale, 1, count)
    if not numpy.all(scales > 0):
        raise InvalidValueError(f"'weight_scale' must be positive; got {scales.tolist()}.")
    bias_values = None if bias is None else _float_array("bias", bias, 1, count)
    code_min, code_max = check_pair("weight_code_range", weight_code_range)
    input_step = check_real("input_scale", input_scale, "a positive finite number")
    if input_step <= 0:
        raise InvalidValueError(f"'input_scale' must be a positive finite number; got {input_scale!r}.")
    input_range = check_pair("centered_input_range", centered_input_range)
    bits = check_int(
        "target_bits",
        target_bits,
        minimum=2,
        maximum=64,
        advice="An accumulator needs at least 2 signed bits to hold anything but 0 and -1.",
    )

    def fits(candidates: numpy.ndarray, rows: numpy.ndarray) -> numpy.ndarray:
        codes = numpy.clip(numpy.rint(weights[rows] / candidates[:, None]), code_min, code_max)
        if bias_values is None:
            bias_codes = numpy.zeros(rows.shape[0], dtype=numpy.int64)
            small = numpy.ones(rows.shape[0], dtype=bool)
        else:
            with numpy.errstate(over="ignore", divide="ignore"):  # inf: no fit, refused below
                rounded = numpy.rint(bias_values[rows] / (input_step * candidates))
            small = numpy.abs(rounded) < _MAX_BIAS_CODE
            bias_codes = numpy.where(small, rounded, 0).astype(numpy.int64)
        widths = worst_case_bits(codes.astype(numpy.int64), bias_codes, input_range)
        return small & (widths <= bits)

    everything = numpy.arange(count)
    todo = everything[~fits(scales, everything)]
    result = scales.copy()
    if not todo.size:
        return result
    low = scales[todo]
    with numpy.errstate(over="ignore"):
        reach = numpy.max(numpy.abs(weights[todo]), axis=1, initial=0.0)
        if bias_values is not None:
            reach = numpy.maximum(reach, numpy.abs(bias_values[todo]) / input_step)
        high = numpy.maximum(low, 4 * reach)
    finite = numpy.isfinite(high)
    good = numpy.zeros(todo.shape, dtype=bool)
    good[finite] = fits(high[finite], todo[finite])
    if not numpy.all(good):
        channels = todo[~good].tolist()
        raise InvalidValueError(
            f"No weight scale keeps the worst-case accumulator of channel(s) {channels} within "
            f"{bits} bits: with weight codes in {(code_min, code_max)}, bias and input range "
            f"{input_range}, even the scale that rounds every weight and bias to its smallest "
            "code does not fit (or is beyond float64). Allow more accumulator bits, or a weight "
            "code range that holds 0."
        )
    for _ in range(_MAX_STEPS):
        active = high > low * (1 + _RELATIVE_TOLERANCE)
        if not numpy.any(active):
            break
        middle = low[active] * numpy.sqrt(high[active] / low[active])  # geometric: bisects log s
        moved = (middle > low[active]) & (middle < high[active])
        if not numpy.any(moved):
            break
        indices = numpy.flatnonzero(active)[moved]
        candidates = middle[moved]
        ok = fits(candidates, todo[indices])
        high[indices[ok]] = candidates[ok]
        low[indices[~ok]] = candidates[~ok]
    result[todo] = high
    return result

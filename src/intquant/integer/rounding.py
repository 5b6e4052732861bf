"""``round_shift``: an int64 divided by a power of two, rounded to an integer, exactly.

For ``s >= 1``, with ``f = v >> s`` (the arithmetic shift: ``floor(v / 2**s)``), the remainder
``r = v & (2**s - 1) = v - f * 2**s`` in ``[0, 2**s)`` and ``h = 2**(s-1)`` (half a step)::

    half_up:    f + (r >= h)                            # ties towards +inf
    half_even:  f + (r > h - (f & 1))                   # ties to the even integer
    half_away:  f + (r > h - (v >= 0))                  # ties away from zero

(``half_up`` is computed as ``t - (t >> 1)`` with ``t = v >> (s - 1)``: ``ceil(t / 2)``, the
same integer in three passes.) For ``s <= 0`` the result is the exact ``v * 2**-s``
(``v << -s``). Every step is an int64 operation and none overflows for any int64 ``v`` and
``1 <= s <= 63``; the left shift is exact when the caller guarantees ``|v| * 2**-s < 2**63``.
"""

from __future__ import annotations

from typing import Any

import numpy

from intquant.errors import InvalidTypeError, InvalidValueError
from intquant.integer.plan import ROUNDINGS

__all__ = ["MAX_SHIFT", "round_shift"]

#: The largest ``|shift|`` :func:`round_shift` takes (an int64 has 63 bits of magnitude).
MAX_SHIFT = 63


def _check_shift(shift: Any) -> int | numpy.ndarray:
    """``shift`` as a Python int or an int64 array, in ``[-MAX_SHIFT, MAX_SHIFT]``."""
    if isinstance(shift, (bool, numpy.bool_)):
        raise InvalidTypeError(f"'shift' must be an int or an integer array; got {shift!r}.")
    array = numpy.asarray(shift)
    if array.dtype.kind not in "iu":
        raise InvalidTypeError(
            f"'shift' must be an int or an integer array; got {type(shift).__name__} of dtype {array.dtype}."
        )
    if array.size and (int(array.min()) < -MAX_SHIFT or int(array.max()) > MAX_SHIFT):
        raise InvalidValueError(
            f"'shift' must be in [{-MAX_SHIFT}, {MAX_SHIFT}]; got values in "
            f"[{int(array.min())}, {int(array.max())}]."
        )
    if array.ndim == 0:
        return int(array)
    return array.astype(numpy.int64)


def _right(values: numpy.ndarray, shift: int | numpy.ndarray, rounding: str) -> numpy.ndarray:
    """``values / 2**shift`` rounded, for ``shift >= 1`` (an int or an int64 array)."""
    if rounding == "half_up":
        tail = values >> (shift - 1)  # floor(v / 2**(s-1)); its last bit is the half bit
        result = tail >> 1
        numpy.subtract(tail, result, out=result)  # t - floor(t/2) = ceil(t/2): never overflows
        return result
    if isinstance(shift, int):
        half: int | numpy.ndarray = 1 << (shift - 1)
        mask: int | numpy.ndarray = (1 << shift) - 1
    else:
        half = numpy.left_shift(numpy.int64(1), shift - 1)
        mask = half - 1 + half  # 2**s - 1 without forming 2**63
    floor = values >> shift
    remainder = values & mask
    if rounding == "half_even":
        threshold = floor & 1  # of the broadcast shape, like floor
        numpy.subtract(half, threshold, out=threshold)
    else:  # half_away: a tie goes up for v >= 0, down (away from zero) for v < 0
        threshold = half - (values >= 0)
    floor += remainder > threshold
    return floor


def round_shift(values: Any, shift: int | numpy.ndarray, rounding: str) -> numpy.ndarray:
    """``values / 2**shift`` rounded to an int64 by ``rounding``; exact (no floats).

    Parameters
    ----------
    values : numpy.ndarray of integers
        The dividends (any integer dtype; computed in int64; not modified).
    shift : int or numpy.ndarray of integers
        ``s``, broadcast against ``values``, in ``[-63, 63]``. ``s <= 0`` gives the exact
        ``values * 2**-s``; the caller guarantees it does not overflow int64.
    rounding : {"half_even", "half_away", "half_up"}
        How a result exactly halfway between two integers is rounded: to the even one, away
        from zero, or up (towards +inf). Other results go to the nearest integer.

    Returns
    -------
    numpy.ndarray of int64
        A new array of the broadcast shape of ``values`` and ``shift``.

    Raises
    ------
    InvalidValueError
        If ``rounding`` is not one of the three, or a shift is outside ``[-63, 63]``.
    InvalidTypeError
        If ``values`` or ``shift`` is not of an integer dtype.

    Examples
    --------
    >>> import numpy
    >>> round_shift(numpy.array([5, 6, 7, -6, -5]), 2, "half_even")  # 1.25 1.5 1.75 -1.5 -1.25
    array([ 1,  2,  2, -2, -1])
    >>> round_shift(numpy.array([6, -6]), 2, "half_away"), round_shift(numpy.array([6, -6]), 2, "half_up")
    (array([ 2, -2]), array([ 2, -1]))
    >>> round_shift(numpy.array([3, -3]), numpy.array([-2, 0]), "half_even")
    array([12, -3])
    """
    if rounding not in ROUNDINGS:
        raise InvalidValueError(f"'rounding' must be one of {ROUNDINGS}; got {rounding!r}.")
    array = numpy.asarray(values)
    if array.dtype.kind not in "iu":
        raise InvalidTypeError(
            f"'values' must be an integer array; got dtype {array.dtype} of shape {array.shape}."
        )
    array = array.astype(numpy.int64, copy=False)
    checked = _check_shift(shift)
    if isinstance(checked, int):
        if checked <= 0:
            return numpy.left_shift(array, -checked)  # a new array even when the shift is 0
        return _right(array, checked, rounding)
    if checked.size and int(checked.min()) >= 1:
        return _right(array, checked, rounding)
    if not checked.size or int(checked.max()) <= 0:
        return numpy.left_shift(array, -checked)
    # Mixed signs: both results with the shifts clamped to their side, chosen per element (a
    # left shift that would overflow where the right one is chosen is discarded, never used).
    right = _right(array, numpy.maximum(checked, 1), rounding)
    left = numpy.left_shift(array, numpy.maximum(-checked, 0))
    return numpy.where(checked >= 1, right, left)

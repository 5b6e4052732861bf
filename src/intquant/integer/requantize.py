"""Requantization modes: how a layer maps its int64 accumulators to output codes.

A mode is a small frozen value; :func:`plan_requantization` turns it, with the layer's real
multipliers ``M[o] = s_x * s_w[o] / s_y`` and worst-case accumulator range, into a
:class:`~intquant.integer.plan.RequantPlan`, which :func:`requantize` (numpy) and the other
backends execute. The two formulas (``o`` the output channel, ``zp_y`` the output zero point,
``[lo, hi]`` the output codes)::

    integer: y = clip(round_shift(acc * m[o], s[o], rounding) + zp_y, lo, hi)
    float:   y = clip(rint(float64(round_shift(acc, s[o], "half_up")) * m[o]) + zp_y, lo, hi)

``acc * m`` is an int64 product (the plan proves ``max|acc| * m < 2**63``); ``round_shift`` is
exact integer arithmetic (:mod:`intquant.integer.rounding`); ``float64(acc)`` is exact (layers
refuse ``|acc| >= 2**53``); the float product is one IEEE float64 multiplication and ``rint``
rounds half to even. The modes:

``FloatRescale()``
    The float formula with ``m = M`` and ``s = 0``: ``rint(acc * M)``, the reference every other
    mode approximates.
``FixedPoint(multiplier_bits=B, rounding="half_even")``
    The integer formula: ``M = f * 2**e`` with ``f`` in ``[0.5, 1)`` (``frexp``),
    ``m = rint(f * 2**B)`` (half to even, exact; if it reaches ``2**B``: ``m = 2**(B-1)``,
    ``e += 1``), ``s = B - e``; so ``m`` has ``B`` bits and ``m * 2**-s`` is ``M`` to a relative
    ``2**-B``. Per channel, ``B`` is lowered (not below 8) until ``max|acc| * m < 2**63`` and
    ``s <= 62`` (a multiplier below ``2**(B-63)``); ``s`` must be ``>= 0`` (``M < 2**(B-1)``).
``PowerOfTwo(rounding="half_even")``
    The integer formula with ``m = 1`` and ``s = round(-log2 M)`` (to the nearest integer of the
    exact logarithm: ``M = f * 2**e`` gives ``s = -e + 1`` if ``f**2 < 1/2`` else ``-e``, decided
    on the exact rational ``f``); a negative ``s`` (``M > 1.41``) is a left shift, which must fit.
``DropLowBits(bits=k)`` / ``DropLowBits(target_bits=P)``
    The float formula with ``m = M * 2**k`` and ``s = k``: the accumulator's ``k`` low bits are
    dropped with rounding (what Concrete does before a table lookup, to feed it fewer bits), then
    rescaled. With ``target_bits=P``, ``k`` is the smallest (one per layer) for which every
    channel's rounded worst-case range fits ``P`` signed bits: about ``W - P`` for a worst case of
    ``W`` bits (rounding can save one bit, ``-17 / 8`` rounds to ``-2``, or cost one, ``1020 / 8``
    rounds up to ``128``).

Why these roundings
-------------------
``FixedPoint`` rounds ties half to even by default: the same tie rule as intquant's quantizers
and ``numpy.rint``, so a fixed-point layer differs from ``FloatRescale`` only through the
rounding of the multiplier to ``B`` bits (with ``B = 53`` and no overflow reduction they agree
wherever ``acc * M`` is exact). ``rounding="half_away"`` is offered for runtimes that round ties
away from zero as gemmlowp and TFLite do; note that TFLite rounds *twice* (a doubling high
multiply ``(acc * m + 2**30) >> 31``, then a rounding divide by ``2**(s - 31)``), whereas this
executor rounds the exact product ``acc * m / 2**s`` once, so a few ties can differ from TFLite.

``DropLowBits`` rounds half up, ``(acc + 2**(k-1)) >> k``: adding half a step and shifting right
(arithmetically) is what rounding hardware and TFHE's rounding of low bits do, and it needs no
look at the sign or the parity. It is our convention for this mode (computed without the
overflow of the addition, see :func:`~intquant.integer.rounding.round_shift`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, TypeAlias, cast

import numpy

from intquant._core.checks import check_int, is_integer
from intquant.errors import InvalidTypeError, InvalidValueError, SerializationError
from intquant.integer.plan import ROUNDINGS, RequantPlan
from intquant.integer.rounding import round_shift

__all__ = [
    "FloatRescale",
    "FixedPoint",
    "PowerOfTwo",
    "DropLowBits",
    "Requantization",
    "MODE_NAMES",
    "plan_requantization",
    "requantize",
    "lookup_table",
    "MAX_TABLE_ENTRIES",
    "describe",
    "mode_from_dict",
]

_Rounding = Literal["half_even", "half_away", "half_up"]
_INT64_LIMIT = 2**63
_MIN_MULTIPLIER_BITS = 8
_MAX_MULTIPLIER_BITS = 62
_MAX_RIGHT_SHIFT = 62
_MAX_DROPPED_BITS = 62


def _check_rounding(owner: str, rounding: Any) -> None:
    if not isinstance(rounding, str):
        raise InvalidTypeError(
            f"{owner}: 'rounding' must be one of {ROUNDINGS}; got {rounding!r} of type "
            f"{type(rounding).__name__}."
        )
    if rounding not in ROUNDINGS:
        raise InvalidValueError(f"{owner}: 'rounding' must be one of {ROUNDINGS}; got {rounding!r}.")


@dataclass(frozen=True)
class FloatRescale:
    """``y = clip(rint(float64(acc) * M[o]) + zp_y, lo, hi)``: the exact float rescale."""


@dataclass(frozen=True)
class FixedPoint:
    """``y = clip(round_shift(acc * m[o], s[o], rounding) + zp_y, lo, hi)``, all in int64, with
    ``m[o]`` a ``multiplier_bits``-bit integer and ``m * 2**-s ~ M`` (see the module docstring).

    Parameters
    ----------
    multiplier_bits : int in [8, 62]
        ``B``, the bits of ``m`` (31: gemmlowp's and TFLite's int32 multiplier). Lowered per
        channel, not below 8, when ``max|acc| * m`` would reach ``2**63`` or ``s`` exceed 62.
    rounding : {"half_even", "half_away", "half_up"}
        The rounding of the shift (half to even: the rule of ``numpy.rint``).
    """

    multiplier_bits: int = 31
    rounding: str = "half_even"

    def __post_init__(self) -> None:
        bits = check_int(
            "multiplier_bits",
            self.multiplier_bits,
            minimum=_MIN_MULTIPLIER_BITS,
            maximum=_MAX_MULTIPLIER_BITS,
            advice="(FixedPoint: the bits of the integer multiplier.)",
        )
        _check_rounding("FixedPoint", self.rounding)
        object.__setattr__(self, "multiplier_bits", bits)


@dataclass(frozen=True)
class PowerOfTwo:
    """``y = clip(round_shift(acc, s[o], rounding) + zp_y, lo, hi)`` with ``s = round(-log2 M)``:
    the multiplier rounded to the nearest power of two, a shift only.

    Parameters
    ----------
    rounding : {"half_even", "half_away", "half_up"}
        The rounding of the shift.
    """

    rounding: str = "half_even"

    def __post_init__(self) -> None:
        _check_rounding("PowerOfTwo", self.rounding)


@dataclass(frozen=True)
class DropLowBits:
    """``y = clip(rint(float64(round_shift(acc, k, "half_up")) * (M[o] * 2**k)) + zp_y, lo, hi)``:
    drop ``k`` low accumulator bits, rounding half up, then rescale in float64.

    Exactly one of the two is given.

    Parameters
    ----------
    bits : int in [0, 62], optional
        ``k`` itself.
    target_bits : int in [2, 64], optional
        ``P``: ``k`` is the smallest for which the layer's rounded worst-case accumulators fit
        ``P`` signed bits.
    """

    bits: int | None = None
    target_bits: int | None = None

    def __post_init__(self) -> None:
        if (self.bits is None) == (self.target_bits is None):
            raise InvalidValueError(
                "DropLowBits: give exactly one of 'bits' (the low bits to drop) and 'target_bits' "
                f"(the accumulator bits to keep); got bits={self.bits!r}, "
                f"target_bits={self.target_bits!r}."
            )
        if self.bits is not None:
            bits = check_int(
                "bits",
                self.bits,
                minimum=0,
                maximum=_MAX_DROPPED_BITS,
                advice="(DropLowBits: the bits to drop.)",
            )
            object.__setattr__(self, "bits", bits)
        else:
            target = check_int(
                "target_bits",
                self.target_bits,
                minimum=2,
                maximum=64,
                advice="(DropLowBits: the bits to keep.)",
            )
            object.__setattr__(self, "target_bits", target)


#: A requantization mode (the ``requantization=`` argument of the integer layers).
Requantization: TypeAlias = FloatRescale | FixedPoint | PowerOfTwo | DropLowBits

#: The name of each mode, as in :attr:`RequantPlan.mode` and the ``"mode"`` key of :func:`describe`.
MODE_NAMES: dict[type, str] = {
    FloatRescale: "float",
    FixedPoint: "fixed_point",
    PowerOfTwo: "power_of_two",
    DropLowBits: "drop_low_bits",
}


def _signed_bits(value: int) -> int:
    """The signed bits of one Python int (1 for 0 and -1)."""
    return (value if value >= 0 else ~value).bit_length() + 1


def _dropped_bits(target_bits: int, minimum: list[int], maximum: list[int]) -> int:
    """The smallest ``k`` such that ``round_shift(acc, k, "half_up")`` fits ``target_bits``
    signed bits for every channel's ``[minimum, maximum]`` (rounding is monotone, so the ends
    decide)."""
    widest = max(
        (max(_signed_bits(lo), _signed_bits(hi)) for lo, hi in zip(minimum, maximum, strict=True)), default=1
    )
    low, high = -(1 << (target_bits - 1)), (1 << (target_bits - 1)) - 1
    for dropped in range(_MAX_DROPPED_BITS + 1):
        half = (1 << dropped) >> 1  # round half up: floor((v + 2**(k-1)) / 2**k); k = 0: v
        if all(
            low <= (lo + half) >> dropped and (hi + half) >> dropped <= high
            for lo, hi in zip(minimum, maximum, strict=True)
        ):
            return dropped
    raise InvalidValueError(
        f"DropLowBits(target_bits={target_bits}): the worst-case accumulators ({widest} bits) do not "
        f"fit {target_bits} bits after dropping up to {_MAX_DROPPED_BITS} bits."
    )


def _fixed_point(multiplier: float, magnitude: int, bits: int, channel: int) -> tuple[int, int]:
    """``(m, s)`` of one channel: ``m`` of the most bits up to ``bits`` (not below 8) with
    ``magnitude * m < 2**63`` and ``s <= 62``; ``m * 2**-s ~ multiplier``."""
    fraction, exponent = math.frexp(multiplier)
    for width in range(bits, _MIN_MULTIPLIER_BITS - 1, -1):
        integer = round(math.ldexp(fraction, width))  # exact product, rounded half to even
        power = exponent
        if integer == 1 << width:
            integer, power = integer >> 1, power + 1
        shift = width - power
        if shift < 0:  # fewer bits only lower the shift further
            raise InvalidValueError(
                f"FixedPoint: channel {channel}'s multiplier {multiplier!r} needs a shift of {shift}; "
                f"expected a multiplier below 2**{width - 1} (a shift >= 0). Check the scales, or use "
                "FloatRescale()."
            )
        if magnitude * integer < _INT64_LIMIT and shift <= _MAX_RIGHT_SHIFT:
            return integer, shift
    if magnitude * integer >= _INT64_LIMIT:
        raise InvalidValueError(
            f"FixedPoint: channel {channel}'s worst-case accumulator magnitude {magnitude} times a "
            f"{_MIN_MULTIPLIER_BITS}-bit multiplier overflows int64; reduce the accumulator range "
            "(fewer bits or accumulator_bits=) or use FloatRescale()."
        )
    raise InvalidValueError(
        f"FixedPoint: channel {channel}'s multiplier {multiplier!r} needs a shift of {shift} even with "
        f"a {_MIN_MULTIPLIER_BITS}-bit multiplier; expected a shift in [0, {_MAX_RIGHT_SHIFT}] (a "
        f"multiplier of at least about 2**-{_MAX_RIGHT_SHIFT - _MIN_MULTIPLIER_BITS}). Check the "
        "scales, or use FloatRescale()."
    )


def _power_of_two(multiplier: float, magnitude: int, channel: int) -> int:
    """``s = round(-log2 multiplier)``, exactly; a left shift must keep ``magnitude`` in int64."""
    fraction, exponent = math.frexp(multiplier)
    shift = -exponent + (1 if Fraction(fraction) ** 2 < Fraction(1, 2) else 0)
    if abs(shift) > _MAX_RIGHT_SHIFT or (shift < 0 and magnitude << -shift >= _INT64_LIMIT):
        raise InvalidValueError(
            f"PowerOfTwo: channel {channel}'s multiplier {multiplier!r} gives a shift of {shift}; "
            f"expected a shift in [-{_MAX_RIGHT_SHIFT}, {_MAX_RIGHT_SHIFT}] and a left shift that "
            f"keeps the worst-case accumulator {magnitude} below 2**63. Check the scales, or use "
            "FloatRescale()."
        )
    return shift


def _check_vector(name: str, value: Any, kind: str, size: int | None) -> numpy.ndarray:
    array = numpy.asarray(value)
    if array.ndim != 1 or (size is not None and array.shape[0] != size) or array.dtype.kind not in kind:
        expected = "a 1-D " + ("float" if kind == "fiu" else "integer") + " array"
        if size is not None:
            expected += f" of shape ({size},)"
        raise InvalidValueError(f"'{name}' must be {expected}; got shape {array.shape}, dtype {array.dtype}.")
    return array


def plan_requantization(
    mode: Requantization,
    real_multiplier: numpy.ndarray,
    accumulator_min: numpy.ndarray,
    accumulator_max: numpy.ndarray,
    output_zero_point: int,
    output_range: tuple[int, int],
) -> RequantPlan:
    """The :class:`RequantPlan` of ``mode`` for one layer (see the module docstring).

    Parameters
    ----------
    mode : FloatRescale, FixedPoint, PowerOfTwo or DropLowBits
    real_multiplier : numpy.ndarray of float64, shape (O,)
        ``M[o] = s_x * s_w[o] / s_y``, finite and positive.
    accumulator_min, accumulator_max : numpy.ndarray of int64, shape (O,)
        The worst-case accumulator range of each channel.
    output_zero_point : int
        ``zp_y``.
    output_range : tuple of (int, int)
        ``(lo, hi)``, the output codes (``lo <= hi``).

    Raises
    ------
    InvalidTypeError
        If ``mode`` is not a mode.
    InvalidValueError
        If an argument is malformed, or the mode cannot represent a multiplier (a shift out of
        range, an int64 overflow; the message names the channel).
    """
    if not isinstance(mode, tuple(MODE_NAMES)):
        raise InvalidTypeError(
            "'mode' must be FloatRescale(), FixedPoint(...), PowerOfTwo(...) or DropLowBits(...); "
            f"got {mode!r} of type {type(mode).__name__}."
        )
    multiplier = _check_vector("real_multiplier", real_multiplier, "fiu", None).astype(numpy.float64)
    count = multiplier.shape[0]
    if not numpy.all(numpy.isfinite(multiplier) & (multiplier > 0)):
        raise InvalidValueError(f"'real_multiplier' must be finite and positive; got {multiplier.tolist()}.")
    minimum = _check_vector("accumulator_min", accumulator_min, "iu", count).astype(numpy.int64)
    maximum = _check_vector("accumulator_max", accumulator_max, "iu", count).astype(numpy.int64)
    if numpy.any(minimum > maximum):
        raise InvalidValueError(
            f"'accumulator_min' must be <= 'accumulator_max' channel by channel; got "
            f"{minimum.tolist()} and {maximum.tolist()}."
        )
    zero_point = check_int("output_zero_point", output_zero_point)
    if (
        not isinstance(output_range, tuple)
        or len(output_range) != 2
        or not all(is_integer(end) for end in output_range)
        or output_range[0] > output_range[1]
    ):
        raise InvalidValueError(
            f"'output_range' must be a tuple (lo, hi) of ints, lo <= hi; got {output_range!r}."
        )
    bounds = (int(output_range[0]), int(output_range[1]))
    name = MODE_NAMES[type(mode)]
    lows, highs = minimum.tolist(), maximum.tolist()
    magnitudes = [max(-lo, hi, 0) for lo, hi in zip(lows, highs, strict=True)]

    formula: Literal["integer", "float"]
    rounding: _Rounding = "half_up"
    if isinstance(mode, FloatRescale):
        formula, plan_multiplier, shift = "float", multiplier, numpy.zeros(count, dtype=numpy.int64)
    elif isinstance(mode, DropLowBits):
        dropped = (
            mode.bits if mode.bits is not None else _dropped_bits(cast(int, mode.target_bits), lows, highs)
        )
        plan_multiplier = numpy.ldexp(multiplier, dropped)
        if not numpy.all(numpy.isfinite(plan_multiplier)):
            raise InvalidValueError(
                f"DropLowBits: M * 2**{dropped} overflows float64; got M = {multiplier.tolist()}."
            )
        formula, shift = "float", numpy.full(count, dropped, dtype=numpy.int64)
    elif isinstance(mode, FixedPoint):
        pairs = [
            _fixed_point(float(value), magnitude, mode.multiplier_bits, channel)
            for channel, (value, magnitude) in enumerate(zip(multiplier.tolist(), magnitudes, strict=True))
        ]
        formula, rounding = "integer", cast(_Rounding, mode.rounding)
        plan_multiplier = numpy.array([m for m, _ in pairs], dtype=numpy.int64).reshape(count)
        shift = numpy.array([s for _, s in pairs], dtype=numpy.int64).reshape(count)
    else:
        shifts = [
            _power_of_two(float(value), magnitude, channel)
            for channel, (value, magnitude) in enumerate(zip(multiplier.tolist(), magnitudes, strict=True))
        ]
        formula, rounding = "integer", cast(_Rounding, mode.rounding)
        plan_multiplier = numpy.ones(count, dtype=numpy.int64)
        shift = numpy.array(shifts, dtype=numpy.int64).reshape(count)
    return RequantPlan(
        mode=cast(Literal["float", "fixed_point", "power_of_two", "drop_low_bits"], name),
        formula=formula,
        multiplier=plan_multiplier,
        shift=shift,
        rounding=rounding,
        output_zero_point=zero_point,
        output_range=bounds,
        real_multiplier=multiplier,
    )


def requantize(accumulators: numpy.ndarray, plan: RequantPlan, channel_axis: int) -> numpy.ndarray:
    """Output codes of ``accumulators`` by ``plan`` (the numpy executor of both formulas).

    The float formula runs as ``p = acc * m`` (float64, ``acc`` converted in the multiply's
    buffer), ``clip(p, lo - zp_y, hi - zp_y)`` in place, ``rint`` into an int64 array, ``+ zp_y``
    in place: clipping to integer bounds before ``rint`` gives the same integers as after it, and
    adding ``zp_y`` after rounding keeps a tie a tie. The integer formula clips
    ``round_shift(acc * m, s)`` to ``[lo - zp_y, hi - zp_y]`` before adding ``zp_y``, so nothing
    overflows.

    Parameters
    ----------
    accumulators : numpy.ndarray of int64
        Any shape with ``O`` channels along ``channel_axis`` (not modified).
    plan : RequantPlan
    channel_axis : int
        ``-1`` for a linear layer's ``(..., O)``, ``1`` for a convolution's ``(N, O, H, W)``.

    Returns
    -------
    numpy.ndarray of int64
        The output codes, the shape of ``accumulators``.
    """
    acc = numpy.asarray(accumulators)
    if acc.dtype.kind not in "iu":
        raise InvalidTypeError(
            f"'accumulators' must be an integer array; got dtype {acc.dtype} of shape {acc.shape}."
        )
    count = plan.multiplier.shape[0]
    if acc.ndim == 0 or not -acc.ndim <= channel_axis < acc.ndim or acc.shape[channel_axis] != count:
        raise InvalidValueError(
            f"'accumulators' must have {count} channels along axis {channel_axis}; got shape {acc.shape}."
        )
    acc = acc.astype(numpy.int64, copy=False)
    layout = [1] * acc.ndim
    layout[channel_axis] = count
    lo, hi = plan.output_range
    zero_point = plan.output_zero_point
    shift: int | numpy.ndarray = plan.shift.reshape(layout)
    if count and bool(numpy.all(plan.shift == plan.shift[0])):
        shift = int(plan.shift[0])  # one shift for the layer (DropLowBits, often FixedPoint)
    multiplier = plan.multiplier.reshape(layout)
    if plan.formula == "integer":
        ones = bool(numpy.all(plan.multiplier == 1))
        product = acc if ones else acc * multiplier  # m = 1 (PowerOfTwo): no pass
        codes = round_shift(product, shift, plan.rounding)
        numpy.clip(codes, lo - zero_point, hi - zero_point, out=codes)
    else:
        if not isinstance(shift, int) or shift != 0:
            acc = round_shift(acc, shift, "half_up")
        scaled = numpy.multiply(acc, multiplier, dtype=numpy.float64)
        numpy.clip(scaled, lo - zero_point, hi - zero_point, out=scaled)
        codes = numpy.empty(scaled.shape, dtype=numpy.int64)
        numpy.rint(scaled, out=codes, casting="unsafe")
    if zero_point:
        codes += zero_point
    return codes


#: The most entries per channel :func:`lookup_table` builds by default.
MAX_TABLE_ENTRIES = 2**20


def lookup_table(
    plan: RequantPlan,
    accumulator_min: numpy.ndarray,
    accumulator_max: numpy.ndarray,
    *,
    max_entries: int = MAX_TABLE_ENTRIES,
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """The float formula as a table lookup on the rounded accumulator (an FHE table lookup).

    With ``a = round_shift(acc, s[o], "half_up")`` (``acc`` itself for :class:`FloatRescale`,
    ``k`` bits dropped for :class:`DropLowBits`), the output code is a function of ``a`` alone,
    ``f_o(a) = clip(rint(float64(a) * m[o]) + zp_y, lo, hi)``: what Concrete evaluates as a
    table lookup after rounding the accumulator. This returns ``offset`` (``O``,) int64, the
    smallest rounded accumulator of each channel, and ``table`` (``O``, ``L``) int64 with
    ``table[o, a - offset[o]] = f_o(a)`` for every ``a`` a channel's worst-case range
    ``[accumulator_min[o], accumulator_max[o]]`` can round to (``L`` the widest channel's count;
    a narrower channel's row repeats its last code after its own range).

    Raises
    ------
    InvalidValueError
        For a plan of the integer formula (no table: it multiplies before rounding), ranges of
        the wrong shape or reversed, or more than ``max_entries`` entries in a channel (use
        ``DropLowBits(target_bits=P)`` for ``2**P`` entries or fewer).
    """
    if plan.formula != "float":
        raise InvalidValueError(
            f"a lookup table needs a requantization of the float formula (FloatRescale, "
            f"DropLowBits); this plan is {plan.mode!r}, whose integer formula rounds after "
            f"multiplying."
        )
    count = plan.multiplier.shape[0]
    low_acc = _check_vector("accumulator_min", accumulator_min, "iu", count).astype(numpy.int64)
    high_acc = _check_vector("accumulator_max", accumulator_max, "iu", count).astype(numpy.int64)
    if numpy.any(low_acc > high_acc):
        raise InvalidValueError("'accumulator_min' must not exceed 'accumulator_max' in any channel.")
    limit = check_int("max_entries", max_entries, minimum=1)
    low = round_shift(low_acc, plan.shift, "half_up")
    high = round_shift(high_acc, plan.shift, "half_up")
    widths = high - low + 1
    if count and int(widths.max()) > limit:
        channel = int(numpy.argmax(widths))
        raise InvalidValueError(
            f"channel {channel}'s rounded accumulators take {int(widths[channel])} values, more than "
            f"max_entries={limit}; drop more low bits (DropLowBits(target_bits=P) gives at most "
            f"2**P entries) or raise max_entries."
        )
    length = int(widths.max()) if count else 0
    steps = numpy.minimum(numpy.arange(length, dtype=numpy.int64)[None, :], (widths - 1)[:, None])
    rounded = low[:, None] + steps
    scaled = numpy.multiply(rounded, plan.multiplier[:, None], dtype=numpy.float64)
    zero_point = plan.output_zero_point
    numpy.clip(scaled, plan.output_range[0] - zero_point, plan.output_range[1] - zero_point, out=scaled)
    table = numpy.empty(scaled.shape, dtype=numpy.int64)
    numpy.rint(scaled, out=table, casting="unsafe")
    table += zero_point
    return low, table


_FIELDS: dict[str, tuple[type, tuple[str, ...]]] = {
    "float": (FloatRescale, ()),
    "fixed_point": (FixedPoint, ("multiplier_bits", "rounding")),
    "power_of_two": (PowerOfTwo, ("rounding",)),
    "drop_low_bits": (DropLowBits, ("bits", "target_bits")),
}


def describe(mode: Requantization) -> dict[str, Any]:
    """The JSON payload of a mode: ``{"mode": name, **fields}``, e.g.
    ``{"mode": "fixed_point", "multiplier_bits": 31, "rounding": "half_even"}``;
    :func:`mode_from_dict` reads it back.

    >>> describe(DropLowBits(target_bits=16))
    {'mode': 'drop_low_bits', 'bits': None, 'target_bits': 16}
    """
    if not isinstance(mode, tuple(MODE_NAMES)):
        raise InvalidTypeError(
            f"'mode' must be a requantization mode; got {mode!r} of type {type(mode).__name__}."
        )
    name = MODE_NAMES[type(mode)]
    return {"mode": name, **{field: getattr(mode, field) for field in _FIELDS[name][1]}}


def mode_from_dict(payload: Any) -> Requantization:
    """The mode :func:`describe` wrote, checked strictly: a dict with a known ``"mode"`` and
    exactly that mode's fields, of valid values.

    Raises
    ------
    SerializationError
        Naming the key or field at fault.
    """
    if not isinstance(payload, dict):
        raise SerializationError(
            f"A requantization mode must be a JSON object; got {type(payload).__name__}: {payload!r}."
        )
    name = payload.get("mode")
    if not isinstance(name, str) or name not in _FIELDS:
        raise SerializationError(f"Requantization: 'mode' must be one of {tuple(_FIELDS)}; got {name!r}.")
    klass, fields = _FIELDS[name]
    expected = {"mode", *fields}
    if set(payload) != expected:
        raise SerializationError(
            f"Requantization mode {name!r}: expected the keys {sorted(expected)}; "
            f"got {sorted(map(str, payload))}."
        )
    for field in fields:
        value = payload[field]
        if isinstance(value, bool) or not (value is None or isinstance(value, (int, str))):
            raise SerializationError(
                f"Requantization mode {name!r}: field '{field}' has {value!r} of type {type(value).__name__}."
            )
    try:
        return cast(Requantization, klass(**{field: payload[field] for field in fields}))
    except (InvalidValueError, InvalidTypeError) as error:
        raise SerializationError(f"Requantization mode {name!r}: {error}") from None

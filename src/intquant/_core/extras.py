"""Options beyond the seed, as one frozen record whose defaults are declared once.

They live on :class:`~intquant.QuantizationOptions` (and so on the quantizer) as keyword-only
arguments whose defaults keep the seed's behaviour. They are not annotated class members, so
``fill_from_kwargs`` and the seed's serialized text ignore them; ``dump_dict`` adds a key only
for an option that differs from its default.

* ``rounding``: ``"half_even"`` (the seed's ``rint``), ``"half_up"`` (``floor(x + 0.5)``, Concrete
  ML's round-like-PBS mode), ``"floor"``, ``"ceil"``, ``"stochastic"`` (``floor(x + u)`` with
  ``u ~ U[0, 1)``: unbiased, ``E[q] = x``).
* ``seed``: seed of stochastic rounding, whose noise is a function of (seed, element index)
  (:mod:`intquant._core.counter_noise`; None: a seed drawn from fresh entropy once per quantizer).
* ``axis``: one scale and zero point per index along this axis (per-channel).
* ``block_size``: one scale and zero point per block of this extent along each dimension
  (torchao's convention); the blocks must tile the array.
* ``zero_in_range``: widen the range to include 0 (``rmin = min(rmin, 0)``, ``rmax = max(rmax,
  0)``), so that 0 is exactly representable.
* ``power_of_two_scale``: round the scale up to a power of two, ``2**ceil(log2(scale))``, with the
  zero point recomputed for it.
* ``full_range``: the symmetric grid spread over all ``2**n`` levels (PyTorch's symmetric
  convention): ``scale = max(|rmax|, |rmin|) / ((2**n - 1) / 2)`` instead of the seed's
  ``max(|rmax|, |rmin|) / (2**(n-1) - 1)``, zero point 0, codes in ``[-2**(n-1), 2**(n-1) - 1]``
  (``max|x|`` maps to ``2**(n-1) - 1/2``, rounded to ``2**(n-1)`` and clipped to ``2**(n-1) - 1``;
  ``-max|x|`` to ``-2**(n-1)``). Only for signed symmetric, not narrow, quantization
  (:func:`check_full_range`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

import numpy

from intquant._core.checks import check_flag, check_int
from intquant._core.granularity import Granularity, granularity_of
from intquant.errors import InvalidOptionsError, InvalidTypeError, InvalidValueError

__all__ = [
    "EXTRA_OPTIONS",
    "ROUNDING_MODES",
    "ExtraOptionDefaults",
    "ExtraOptions",
    "check_extra_options",
    "check_full_range",
    "copy_extra_options",
    "extra_dump",
    "needs_intquant_tag",
    "statistics_need_intquant_tag",
]

ROUNDING_MODES = ("half_even", "half_up", "floor", "ceil", "stochastic")


@dataclass(frozen=True)
class ExtraOptions:
    """The extra options of an options object or quantizer, checked; the defaults are the seed's."""

    rounding: str = "half_even"
    seed: Optional[int] = None
    axis: Optional[int] = None
    block_size: Optional[tuple[int, ...]] = None
    zero_in_range: bool = False
    power_of_two_scale: bool = False
    full_range: bool = False

    @staticmethod
    def checked(**options: Any) -> ExtraOptions:
        """The record of ``options`` (any subset of the fields), validated and normalized
        (``block_size`` a tuple of ints, flags bools).

        Raises
        ------
        InvalidTypeError, InvalidValueError, InvalidOptionsError
            For an unknown name, a value of the wrong type or out of range, or both ``axis`` and
            ``block_size``.
        """
        unknown = sorted(set(options) - set(EXTRA_OPTIONS))
        if unknown:
            raise InvalidTypeError(
                f"unknown options {unknown}; the extra options are {', '.join(EXTRA_OPTIONS)}."
            )
        values = {**EXTRA_OPTIONS, **options}
        if values["rounding"] not in ROUNDING_MODES:
            raise InvalidValueError(
                f"'rounding' must be one of {', '.join(ROUNDING_MODES)}; got {values['rounding']!r}."
            )
        if values["seed"] is not None:
            check_int("seed", values["seed"], expected="an int or None")
        if values["axis"] is not None:
            check_int("axis", values["axis"], expected="an int or None")
        granularity = granularity_of(values["axis"], values["block_size"])
        return ExtraOptions(
            rounding=values["rounding"],
            seed=None if values["seed"] is None else int(values["seed"]),
            axis=granularity.options().get("axis"),
            block_size=granularity.options().get("block_size"),
            zero_in_range=check_flag("zero_in_range", values["zero_in_range"]),
            power_of_two_scale=check_flag("power_of_two_scale", values["power_of_two_scale"]),
            full_range=check_flag("full_range", values["full_range"]),
        )

    @staticmethod
    def of(obj: Any) -> ExtraOptions:
        """The extra options an object holds as attributes (defaults where it has none), checked."""
        return ExtraOptions.checked(
            **{name: getattr(obj, name, default) for name, default in EXTRA_OPTIONS.items()}
        )

    @property
    def granularity(self) -> Granularity:
        """:class:`~intquant._core.granularity.PerTensor`, ``PerAxis`` or ``PerBlock``."""
        return granularity_of(self.axis, self.block_size)

    def changed(self) -> dict[str, Any]:
        """The options that differ from their defaults, in declaration order."""
        return {name: value for name, value in self.items() if value != EXTRA_OPTIONS[name]}

    def items(self) -> list[tuple[str, Any]]:
        """``(name, value)`` of every option, in declaration order."""
        return [(field.name, getattr(self, field.name)) for field in dataclasses.fields(self)]


#: Each extra option and its default (the seed's behaviour), from :class:`ExtraOptions`.
EXTRA_OPTIONS: dict[str, Any] = {field.name: field.default for field in dataclasses.fields(ExtraOptions)}
_DEFAULTS = ExtraOptions()
#: The members a quantizer's ``quant``/``dequant`` read (an options object has none of them).
_PARAMETERS = ("scale", "zero_point", "offset")


class ExtraOptionDefaults:
    """Mixin giving a class the extra options as class-level defaults. They are not annotated, so
    ``fill_from_kwargs`` (which reads type hints) does not take them for seed members."""

    rounding = _DEFAULTS.rounding
    seed = _DEFAULTS.seed
    axis = _DEFAULTS.axis
    block_size = _DEFAULTS.block_size
    zero_in_range = _DEFAULTS.zero_in_range
    power_of_two_scale = _DEFAULTS.power_of_two_scale
    full_range = _DEFAULTS.full_range


def check_extra_options(**options: Any) -> dict[str, Any]:
    """Validate extra options (any subset); return them normalized (``block_size`` a tuple)."""
    if not options:  # the seed's usual case
        return {}
    record = ExtraOptions.checked(**options)
    return {name: getattr(record, name) for name in options}


def copy_extra_options(target: Any, source: Any) -> None:
    """Set each extra option on ``target`` from ``source`` (its default where ``source`` lacks it)."""
    for name, default in EXTRA_OPTIONS.items():
        setattr(target, name, getattr(source, name, default))


def extra_dump(obj: Any) -> dict[str, Any]:
    """The extra options of ``obj`` that differ from their defaults, in declaration order (as
    held, unchecked: equality and serialization never raise)."""
    dumped = {}
    for name, default in EXTRA_OPTIONS.items():
        value = getattr(obj, name, default)
        if isinstance(value, numpy.ndarray) or value != default:
            dumped[name] = value
    return dumped


def needs_intquant_tag(obj: Any) -> bool:
    """Whether ``obj`` (options or a quantizer) must be written under an intquant tag, which
    Concrete ML refuses, because Concrete ML would read it and compute something else:

    * a rounding other than half to even, per-axis or per-block parameters: its ``quant`` and
      ``dequant`` cannot honour them;
    * ``zero_in_range``, ``power_of_two_scale`` or ``full_range`` on an object whose parameters
      are still to be computed (options, a quantizer without scale, zero point or offset):
      Concrete ML would compute them without the option.

    A quantizer holding its parameters keeps the seed tag with these three options: its written
    parameters are all Concrete ML's ``quant``/``dequant`` read, so they give the same results
    (the option is an extra key Concrete ML ignores, and drops when it writes the quantizer
    again). ``tools/check_concrete_ml_interchange.py`` checks every case against Concrete ML
    1.7.0 and 1.9.0 (``docs/interchange.md``)."""
    if (
        getattr(obj, "rounding", "half_even") != "half_even"
        or getattr(obj, "axis", None) is not None
        or getattr(obj, "block_size", None) is not None
    ):
        return True
    if (
        getattr(obj, "zero_in_range", False)
        or getattr(obj, "power_of_two_scale", False)
        or getattr(obj, "full_range", False)
    ):
        return any(getattr(obj, name, None) is None for name in _PARAMETERS)
    return False


def statistics_need_intquant_tag(stats: Any) -> bool:
    """Whether statistics must be written under an intquant tag: they hold per-axis or per-block
    ranges (``rmin``/``rmax`` arrays of one dimension or more). Concrete ML would read them, then
    fail with a raw numpy error (the truth value of an array) when computing parameters."""
    ranges = (getattr(stats, "rmin", None), getattr(stats, "rmax", None))
    return any(isinstance(value, numpy.ndarray) and value.ndim > 0 for value in ranges)


def check_full_range(is_signed: bool, is_symmetric: bool, is_narrow: bool, full_range: bool) -> None:
    """Refuse ``full_range`` on a grid it does not apply to: it spreads a symmetric range over all
    ``2**n`` signed levels, so it needs signed symmetric codes, and contradicts ``is_narrow``
    (which drops the level ``-2**(n-1)`` that the full range uses).

    Raises
    ------
    InvalidOptionsError
        For ``full_range`` without ``is_signed`` and ``is_symmetric``, or with ``is_narrow``.
    """
    if not full_range:
        return
    if not (is_signed and is_symmetric):
        raise InvalidOptionsError(
            f"full_range=True applies to signed symmetric quantization only (is_signed=True, "
            f"is_symmetric=True); got is_signed={is_signed}, is_symmetric={is_symmetric}."
        )
    if is_narrow:
        raise InvalidOptionsError(
            "full_range=True uses every level of the signed grid, -2**(n_bits-1) included, which "
            "is_narrow=True excludes; set only one of them."
        )

"""Options beyond the seed: rounding mode, granularity, range adjustments, stochastic seed.

They live on :class:`~intquant.QuantizationOptions` (and so on the quantizer) as keyword-only
arguments whose defaults keep the seed's behaviour. They are not annotated class members, so
``fill_from_kwargs`` and the seed's serialized text ignore them; ``dump_dict`` adds a key only
for an option that differs from its default.

* ``rounding``: ``"half_even"`` (the seed's ``rint``), ``"half_up"`` (``floor(x + 0.5)``, Concrete
  ML's round-like-PBS mode), ``"floor"``, ``"ceil"``, ``"stochastic"`` (``floor(x + u)`` with
  ``u ~ U[0, 1)``: unbiased, ``E[q] = x``).
* ``seed``: seed of the stochastic rounding's random generator (None: fresh entropy).
* ``axis``: one scale and zero point per index along this axis (per-channel).
* ``block_size``: one scale and zero point per block of this extent along each dimension
  (torchao's convention); the blocks must tile the array.
* ``zero_in_range``: widen the range to include 0 (``rmin = min(rmin, 0)``, ``rmax = max(rmax,
  0)``), so that 0 is exactly representable.
* ``power_of_two_scale``: round the scale up to a power of two, ``2**ceil(log2(scale))``, with the
  zero point recomputed for it.
"""

from __future__ import annotations

from typing import Any

import numpy

from intquant.errors import InvalidOptionsError, InvalidTypeError, InvalidValueError

__all__ = ["EXTRA_OPTIONS", "ROUNDING_MODES", "check_extra_options", "copy_extra_options", "extra_dump"]

ROUNDING_MODES = ("half_even", "half_up", "floor", "ceil", "stochastic")

#: Each extra option and its default (the seed's behaviour).
EXTRA_OPTIONS: dict[str, Any] = {
    "rounding": "half_even",
    "seed": None,
    "axis": None,
    "block_size": None,
    "zero_in_range": False,
    "power_of_two_scale": False,
}


def check_extra_options(**options: Any) -> dict[str, Any]:
    """Validate extra options (any subset); return them normalized (``block_size`` a tuple)."""
    unknown = sorted(set(options) - set(EXTRA_OPTIONS))
    if unknown:
        raise InvalidTypeError(
            f"unknown options {unknown}; the extra options are {', '.join(EXTRA_OPTIONS)}."
        )
    checked = dict(options)
    if "rounding" in options and options["rounding"] not in ROUNDING_MODES:
        raise InvalidValueError(
            f"'rounding' must be one of {', '.join(ROUNDING_MODES)}; got {options['rounding']!r}."
        )
    if options.get("seed") is not None and not _is_int(options["seed"]):
        raise InvalidTypeError(f"'seed' must be an int or None; got {options['seed']!r}.")
    if options.get("axis") is not None and not _is_int(options["axis"]):
        raise InvalidTypeError(f"'axis' must be an int or None; got {options['axis']!r}.")
    if options.get("block_size") is not None:
        block = options["block_size"]
        if isinstance(block, (int, numpy.integer)) or not all(_is_int(size) for size in block):
            raise InvalidTypeError(
                f"'block_size' must be a tuple of ints, one extent per dimension; got {block!r}."
            )
        if not block or any(size < 1 for size in block):
            raise InvalidValueError(f"'block_size' extents must be at least 1; got {tuple(block)}.")
        checked["block_size"] = tuple(int(size) for size in block)
    if options.get("axis") is not None and options.get("block_size") is not None:
        raise InvalidOptionsError("give either 'axis' (per-channel) or 'block_size' (per-block), not both.")
    for flag in ("zero_in_range", "power_of_two_scale"):
        if flag in options and not isinstance(options[flag], (bool, numpy.bool_)):
            raise InvalidTypeError(f"'{flag}' must be True or False; got {options[flag]!r}.")
        if flag in options:
            checked[flag] = bool(options[flag])
    return checked


def copy_extra_options(target: Any, source: Any) -> None:
    """Set each extra option on ``target`` from ``source`` (its default where ``source`` lacks it)."""
    for name, default in EXTRA_OPTIONS.items():
        setattr(target, name, getattr(source, name, default))


def extra_dump(obj: Any) -> dict[str, Any]:
    """The extra options of ``obj`` that differ from their defaults, in declaration order."""
    dumped = {}
    for name, default in EXTRA_OPTIONS.items():
        value = getattr(obj, name, default)
        if value != default:
            dumped[name] = value
    return dumped


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, numpy.integer)) and not isinstance(value, (bool, numpy.bool_))

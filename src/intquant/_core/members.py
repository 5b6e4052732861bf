"""The members of the seed's parameter sets, and the helpers that move them between objects.

A class's *members* are its annotated attributes, in declaration order. The quantizer holds the
members of all three sets (options, statistics, parameters) side by side.
"""

from __future__ import annotations

import functools
import typing
from typing import Any

import numpy

from intquant._core.uniques import pending_state
from intquant.errors import InvalidTypeError, SerializationError

OPTION_MEMBERS = ("n_bits", "is_signed", "is_symmetric", "is_qat", "is_narrow", "is_precomputed_qat")
STATS_MEMBERS = ("rmax", "rmin", "uvalues")
PARAM_MEMBERS = ("scale", "zero_point", "offset")

_MISSING = object()


def fill_from_kwargs(obj: Any, klass: type, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """Fill a parameter set from keyword arguments.

    Every keyword naming a member of ``klass`` is set on ``obj`` (created as ``klass()`` when
    ``obj`` is None) and removed from the keywords. When an object results, all of its members
    must then be set (not None). Nothing is changed when this raises.

    Parameters
    ----------
    obj : klass instance or None
        The object to fill; None creates one if any member of ``klass`` is among the keywords.
    klass : type
        The parameter set class (``QuantizationOptions``, ``MinMaxQuantizationStats`` or
        ``UniformQuantizationParameters``).
    **kwargs
        Member names and values, possibly mixed with other keywords.

    Returns
    -------
    tuple
        ``(obj, remaining_kwargs)``.

    Raises
    ------
    TypeError
        If a member stays None (``Missing quantizer parameter <name>``), or ``klass`` cannot be
        created without arguments (``QuantizationOptions`` needs ``n_bits``).

    Examples
    --------
    >>> from intquant import UniformQuantizationParameters
    >>> params, rest = fill_from_kwargs(
    ...     None, UniformQuantizationParameters, scale=0.5, zero_point=3, offset=0, other=1)
    >>> params.scale, rest
    (0.5, {'other': 1})
    """
    members = class_members(klass)
    updates = {name: kwargs.pop(name) for name in members if name in kwargs}
    if updates and obj is None:
        try:
            obj = klass()
        except TypeError as error:
            raise InvalidTypeError(
                f"cannot create {klass.__name__} from keyword arguments alone ({error}); pass "
                f"a {klass.__name__} object instead."
            ) from error
    if obj is not None:
        for name in members:
            value = updates.get(name, getattr(obj, name, None))
            if value is None:
                raise InvalidTypeError(
                    f"Missing quantizer parameter {name}: {klass.__name__} needs all of "
                    f"{', '.join(members)} once any of them is given."
                )
        for name, value in updates.items():
            setattr(obj, name, value)
    return obj, kwargs


@functools.lru_cache(maxsize=64)
def class_members(klass: type) -> tuple[str, ...]:
    """The annotated instance attributes of ``klass``, in declaration order
    (``typing.get_type_hints``, without ``ClassVar`` ones)."""
    hints = typing.get_type_hints(klass)
    return tuple(name for name, hint in hints.items() if typing.get_origin(hint) is not typing.ClassVar)


def copy_members(target: Any, source: Any, names: tuple[str, ...]) -> None:
    """Set ``target.<name> = source.<name>`` for each name, all or nothing (arrays, and lists of
    arrays such as per-block ``uvalues``, copied: the two objects never share an array; ``uvalues``
    not computed yet stay pending, shared: see :mod:`intquant._core.uniques`)."""
    values = [pending_state(source, name) or _copied(getattr(source, name)) for name in names]
    for name, value in zip(names, values, strict=True):
        setattr(target, name, value)


def _copied(value: Any) -> Any:
    if isinstance(value, numpy.ndarray):
        return value.copy()
    if isinstance(value, list):
        return [_copied(item) for item in value]
    return value


def same_value(first: Any, second: Any) -> bool:
    """Equality of two member values; arrays compare as arrays, lists (per-block ``uvalues``)
    item by item."""
    if isinstance(first, numpy.ndarray) or isinstance(second, numpy.ndarray):
        return bool(numpy.array_equal(first, second))
    if isinstance(first, list) and isinstance(second, list):
        return len(first) == len(second) and all(map(same_value, first, second))
    return bool(first == second)


def same_members(first: Any, second: Any, names: tuple[str, ...]) -> bool:
    """Whether every named member is equal on both objects (a missing member counts as None)."""
    return all(same_value(getattr(first, name, None), getattr(second, name, None)) for name in names)


def has_members(obj: Any, names: tuple[str, ...]) -> bool:
    """Whether ``obj`` has every named attribute."""
    return all(getattr(obj, name, _MISSING) is not _MISSING for name in names)


def require_keys(
    metadata: Any, names: tuple[str, ...], owner: str, optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Check that serialized ``metadata`` is a dict holding the ``names`` expected, and no keys
    but those and the ``optional`` ones."""
    if not isinstance(metadata, dict):
        raise SerializationError(f"{owner}.load_dict expects a dict; got {type(metadata).__name__}.")
    missing = [name for name in names if name not in metadata]
    unknown = [name for name in metadata if name not in names and name not in optional]
    if missing or unknown:
        raise SerializationError(
            f"{owner}.load_dict expects the keys {', '.join(names)}; "
            f"missing: {missing or 'none'}, unknown: {unknown or 'none'}."
        )
    return metadata


def members_repr(obj: Any, names: tuple[str, ...]) -> str:
    """``ClassName(name=value, ...)`` for the named members (a missing one shows as None)."""
    shown = ", ".join(f"{name}={getattr(obj, name, None)!r}" for name in names)
    return f"{type(obj).__name__}({shown})"

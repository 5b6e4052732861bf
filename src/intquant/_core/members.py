"""The members of the seed's parameter sets, and the helpers that move them between objects.

A class's *members* are its annotated attributes, in declaration order, but for those a
subclass marks :class:`Absent` (Concrete ML 1.9's statistics have no ``uvalues``). The quantizer
holds the members of all three sets (options, statistics, parameters) side by side.
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
#: The statistics of Concrete ML 1.8 and later: the range only.
RANGE_MEMBERS = ("rmax", "rmin")
PARAM_MEMBERS = ("scale", "zero_point", "offset")

_MISSING = object()


class Absent:
    """An attribute a class does not have although a base class does (``uvalues`` and
    ``check_is_uniform_quantized`` on Concrete ML 1.9's classes): reading it raises
    ``AttributeError`` (so ``hasattr`` is False and ``getattr(obj, name, None)`` is None), and
    :func:`class_members` leaves it out. Setting it stores a plain attribute, as on any object."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.owner, self.name = owner.__name__, name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        raise AttributeError(f"{self.owner!r} object has no attribute {self.name!r}")


def fill_from_kwargs(obj: Any, klass: type, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """Fill a parameter set from keyword arguments (Concrete ML 1.7's rule).

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
    return fill_members(obj, klass, kwargs, accept_missing=None)


def fill_members(
    obj: Any, klass: type, kwargs: dict[str, Any], accept_missing: bool | None
) -> tuple[Any, dict[str, Any]]:
    """:func:`fill_from_kwargs` with Concrete ML 1.7's rule (``accept_missing`` None: every
    member set; the first missing one named), or Concrete ML 1.9's (``accept_missing`` False:
    every member set; True: every member set, or none; the missing and the given ones listed,
    ``Missing quantizer parameter rmin, but rmax were given``). ``kwargs`` is this call's own
    dict: the keywords used are removed from it. Nothing else is changed when this raises.
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
    if obj is None:
        return obj, kwargs
    values = {name: updates.get(name, getattr(obj, name, None)) for name in members}
    missing = [name for name in members if values[name] is None]
    if missing and not (accept_missing and len(missing) == len(members)):
        needs = f"{klass.__name__} needs all of {', '.join(members)}"
        if accept_missing is None:
            raise InvalidTypeError(
                f"Missing quantizer parameter {missing[0]}: {needs} once any of them is given."
            )
        given = [name for name in members if values[name] is not None]
        optional = ", or none of them" if accept_missing else ""
        raise InvalidTypeError(
            f"Missing quantizer parameter {','.join(missing)}, but {','.join(given)} were given; "
            f"{needs}{optional}."
        )
    for name, value in updates.items():
        setattr(obj, name, value)
    return obj, kwargs


@functools.lru_cache(maxsize=64)
def class_members(klass: type) -> tuple[str, ...]:
    """The annotated instance attributes of ``klass``, in declaration order
    (``typing.get_type_hints``, without ``ClassVar`` ones)."""
    hints = typing.get_type_hints(klass)
    return tuple(
        name
        for name, hint in hints.items()
        if typing.get_origin(hint) is not typing.ClassVar and not isinstance(_static(klass, name), Absent)
    )


def absent_members(klass: type) -> frozenset[str]:
    """The attributes ``klass`` marks :class:`Absent` (those a base class has and it has not)."""
    return _absent_members(klass)


@functools.lru_cache(maxsize=64)
def _absent_members(klass: type) -> frozenset[str]:
    names = {
        name for base in klass.__mro__ for name, value in vars(base).items() if isinstance(value, Absent)
    }
    return frozenset(name for name in names if isinstance(_static(klass, name), Absent))


def _static(klass: type, name: str) -> Any:
    """The class attribute ``name`` as the first class of the MRO defining it holds it
    (descriptors unresolved), or None."""
    for base in klass.__mro__:
        if name in base.__dict__:
            return base.__dict__[name]
    return None


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

"""The JSON codec: Concrete ML 1.7.0's text for the seed, versioned intquant tags for the rest.

``dumps`` writes ``json.dumps`` text (default separators, ASCII, keys in insertion order, floats
by ``repr``) of the value after this encoding, applied at every depth:

* numpy integer / float scalar -> ``{"type_name": "numpy_integer" | "numpy_float",
  "serialized_value": int(v) | float(v), "dtype": "<dtype>"}``
* ndarray -> ``{"type_name": "numpy_array", "serialized_value": v.tolist(), "dtype": "<dtype>"}``
* tuple / set -> ``{"type_name": "tuple" | "set", "serialized_value": [...]}`` (a set sorted)
* a registered class -> ``{"type_name": "<tag>", "serialized_value": v.dump_dict()}``, where
  the object chooses its tag (:meth:`JSONSerializable.serial_tag`): the seed classes write
  Concrete ML's class names; what Concrete ML would misread (rounding other than half to even,
  per-axis and per-block quantizers, calibration states) is written under an intquant tag,
  ``"intquant.<ClassName>"``, with a ``"format_version"`` key between ``type_name`` and
  ``serialized_value``, so that Concrete ML refuses it.

``loads`` reverses it, innermost first. It accepts only these tags, numeric dtypes and the
registered tags: nothing is imported from outside intquant, evaluated or unpickled. A number
tag must hold a value its dtype represents exactly (an integer in range; a float that does not
overflow to an infinity, NaN and infinities as written; an array of one shape whose elements
all qualify); each class's ``load_dict`` checks its fields (``docs/serialization.md``), and an
error names the class and the field.

Registration: a class passes ``tag=`` (its seed tag or intquant tag) and optionally
``legacy_tags=`` when subclassing :class:`JSONSerializable`; this module imports no class.
:data:`TAG_MODULES` says, for every tag, which intquant module defines its class, so that a tag
is known even before that module was imported.

Conventions: one tag may have a class per convention (``intquant.MinMaxQuantizationStats``
follows Concrete ML 1.7, ``intquant.compat.v1_9.MinMaxQuantizationStats`` Concrete ML 1.9; a
class says which in its ``convention`` attribute). :func:`loads` builds each object as the
class of the convention its text shows (a class's ``convention_of_text(payload)``: a statistics
or quantizer text without ``uvalues`` was written by Concrete ML 1.8 or later, a quantized
array follows its quantizer), else of Concrete ML 1.7; :func:`loads_as` builds every object as
one convention's class. :data:`CONVENTION_MODULES` names the module defining each later
convention's classes, imported on demand (as :data:`TAG_MODULES`, by name: this module imports no
class, and knows the conventions, :data:`intquant._core.plan.CONVENTIONS`, as strings).
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable
from typing import IO, Any, ClassVar

import numpy

from intquant.errors import IntquantError, InvalidTypeError, InvalidValueError, SerializationError

__all__ = [
    "CONVENTION_MODULES",
    "INTQUANT_PREFIX",
    "SEED_CONVENTION",
    "TAG_MODULES",
    "JSONSerializable",
    "dump",
    "dumps",
    "load",
    "loads",
    "loads_as",
    "registered_tags",
]

#: Tags of intquant's own formats start with this; Concrete ML knows none of them.
INTQUANT_PREFIX = "intquant."

#: Where the class of each tag is defined (its module registers it when imported).
TAG_MODULES: dict[str, str] = {
    "QuantizationOptions": "intquant.options",
    "MinMaxQuantizationStats": "intquant.statistics",
    "UniformQuantizationParameters": "intquant.parameters",
    "UniformQuantizer": "intquant.quantizer",
    "QuantizedArray": "intquant.quantized_array",
    "intquant.QuantizationOptions": "intquant.options",
    "intquant.MinMaxQuantizationStats": "intquant.statistics",
    "intquant.UniformQuantizer": "intquant.quantizer",
    "intquant.PercentileStats": "intquant.calibration.percentile",
    "intquant.MovingAverageMinMaxStats": "intquant.calibration.moving_average",
    "intquant.MSEStats": "intquant.calibration.mse",
    "intquant.EntropyStats": "intquant.calibration.entropy",
    "intquant.IntegerLinear": "intquant.integer.linear",
    "intquant.IntegerConv2d": "intquant.integer.conv",
    "intquant.IntegerReLU": "intquant.integer.elements",
    "intquant.IntegerFlatten": "intquant.integer.elements",
    "intquant.IntegerNetwork": "intquant.integer.network",
    # written by intquant 0.1 (before tags were versioned): read as format version 0
    "PercentileStats": "intquant.calibration.percentile",
    "MovingAverageMinMaxStats": "intquant.calibration.moving_average",
    "MSEStats": "intquant.calibration.mse",
    "EntropyStats": "intquant.calibration.entropy",
}

#: The seed classes' convention (``intquant._core.plan.CONCRETE_ML_1_7``).
SEED_CONVENTION = "concrete-ml-1.7"
#: Where the classes of each later convention are defined (registered when imported).
CONVENTION_MODULES: dict[str, str] = {"concrete-ml-1.9": "intquant.compat.v1_9"}

_NUMERIC_DTYPES = {
    name: numpy.dtype(name)
    for name in (
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64",
    )
}  # fmt: skip
_MAX_DEPTH = 64
_BUILTIN_TAGS = ("numpy_integer", "numpy_float", "numpy_array", "tuple", "set")


class _Entry:
    """A registered tag of one class: its ``load_dict``, for a versioned (intquant) tag the newest
    format version it reads (``load_dict(payload, version)``; else ``load_dict(payload)``), and
    the class's ``convention_of_text`` (None if it has none)."""

    __slots__ = ("convention_of_text", "format_version", "load_dict", "versioned")

    def __init__(
        self,
        load_dict: Callable[..., Any],
        versioned: bool,
        format_version: int,
        convention_of_text: Callable[[Any], str | None] | None,
    ) -> None:
        self.load_dict = load_dict
        self.versioned = versioned
        self.format_version = format_version
        self.convention_of_text = convention_of_text

    def load(self, payload: Any, version: int) -> Any:
        return self.load_dict(payload, version) if self.versioned else self.load_dict(payload)


#: tag -> convention (None for classes outside the conventions) -> entry.
_REGISTRY: dict[str, dict[str | None, _Entry]] = {}


def _register(tag: str, cls: type, versioned: bool, format_version: int) -> None:
    convention = getattr(cls, "convention", None)
    entry = _Entry(
        cls.load_dict,  # type: ignore[attr-defined]
        versioned,
        format_version,
        getattr(cls, "convention_of_text", None),
    )
    _REGISTRY.setdefault(tag, {})[convention] = entry


class JSONSerializable:
    """Base of the classes with a serialized form; gives them ``dumps()`` and ``dump(file)``.

    A subclass registers its tags as class keywords and provides ``dump_dict()`` and a static
    ``load_dict``:

    * ``tag="X"``: a seed tag, Concrete ML's class name (``load_dict(metadata)``);
    * ``versioned_tag="intquant.X"`` with ``format_version=N``: intquant's own tag, read by
      ``load_dict(metadata, version)`` for every version up to ``N`` (a subclass re-registering
      a tag without ``format_version`` reads its base's versions), written with the version
      :meth:`serial_format_version` gives (``N`` unless the class chooses by the object);
    * ``legacy_tags``: older unversioned tags still read, as format version 0.

    An object is written under its seed tag unless :meth:`serial_tag` says otherwise.
    """

    _seed_tag: ClassVar[str | None] = None
    _versioned_tag: ClassVar[str | None] = None
    #: The newest format version read under the versioned tag (and written, by default).
    format_version: ClassVar[int] = 0

    def __init_subclass__(
        cls,
        tag: str | None = None,
        versioned_tag: str | None = None,
        format_version: int | None = None,
        legacy_tags: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if tag is not None:
            cls._seed_tag = tag
            _register(tag, cls, False, 0)
        if versioned_tag is not None:
            if not versioned_tag.startswith(INTQUANT_PREFIX):
                raise ValueError(f"a versioned tag starts with {INTQUANT_PREFIX!r}; got {versioned_tag!r}")
            version = format_version if format_version is not None else max(cls.format_version, 1)
            cls._versioned_tag, cls.format_version = versioned_tag, version
            _register(versioned_tag, cls, True, version)
        for legacy in legacy_tags:
            _register(legacy, cls, True, 0)

    def serial_tag(self) -> str:
        """The tag this object is written under: the seed tag if the class has one, else the
        versioned tag. A class overrides this to choose by the object's state."""
        tag = self._seed_tag or self._versioned_tag
        if tag is None:  # pragma: no cover - a programming error in a subclass
            raise TypeError(f"{type(self).__name__} registered no serialization tag")
        return tag

    def serial_format_version(self) -> int:
        """The format version written with the versioned tag: the class's, unless the class
        chooses by the object's state (so that texts an older version wrote stay the same)."""
        return self.format_version

    def dump_dict(self) -> dict[str, Any]:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def dumps(self) -> str:
        """Serialize to a JSON string (see :func:`intquant.dumps`)."""
        return dumps(self)

    def dump(self, file: IO[str]) -> None:
        """Write the JSON string to an open text file (see :func:`intquant.dump`)."""
        dump(self, file)


def registered_tags() -> tuple[str, ...]:
    """The tags registered so far (every tag of :data:`TAG_MODULES` once intquant is imported)."""
    return tuple(_REGISTRY)


def dumps(obj: Any) -> str:
    """Serialize ``obj`` to JSON text; the seed's objects as Concrete ML 1.7.0 writes them.

    Examples
    --------
    >>> import numpy
    >>> dumps(numpy.float32(0.5))
    '{"type_name": "numpy_float", "serialized_value": 0.5, "dtype": "float32"}'
    """
    return json.dumps(_encode(obj))


def dump(obj: Any, file: IO[str]) -> None:
    """Write ``dumps(obj)`` to an open text file."""
    file.write(dumps(obj))


def loads(text: str | bytes | bytearray) -> Any:
    """Rebuild an object from text written by :func:`dumps` (or by Concrete ML 1.7.0 to 1.9.0).

    Each object of the seed's classes follows the convention its text shows: statistics, a
    quantizer (or a quantized array holding one) written without ``uvalues`` come from Concrete
    ML 1.8 or later and load as :mod:`intquant.compat.v1_9` objects; every other text (options
    and parameters read the same in both) loads as an object of the seed's classes
    (Concrete ML 1.7). :func:`loads_as` builds every object as one convention's class.

    Raises
    ------
    SerializationError
        (a ``ValueError``) for text that is not valid JSON, is nested too deeply, or holds an
        unknown ``type_name``, a format newer than this intquant reads, a non-numeric dtype, a
        missing or unexpected key, a number its dtype cannot represent (``300`` as ``uint8``,
        ``1.7`` in an ``int64`` array, ``1e300`` as ``float32``), a ragged array, or a field of
        a class that would give wrong codes or a raw error later (a bool, string or dict as a
        number, an offset out of range, ...: see ``docs/serialization.md``). The message names
        the class and field.

    Examples
    --------
    >>> value = loads('{"type_name": "numpy_integer", "serialized_value": 3, "dtype": "int64"}')
    >>> type(value).__name__, int(value)
    ('int64', 3)
    """
    return _loaded(text, None)


def loads_as(text: str | bytes | bytearray, convention: str) -> Any:
    """:func:`loads`, every object of the seed's classes built as the class of ``convention``
    (:data:`SEED_CONVENTION` or a key of :data:`CONVENTION_MODULES`) whatever its text shows. Texts of other
    conventions load as that convention's objects would read them: Concrete ML 1.9 ignores the
    ``uvalues`` of a 1.7 text (after checking them here), and 1.7 reads a 1.9 quantizer text
    with ``uvalues`` None.

    Raises
    ------
    InvalidValueError
        For an unknown ``convention``.
    SerializationError
        As :func:`loads` does.
    """
    known = (SEED_CONVENTION, *CONVENTION_MODULES)
    if convention not in known:
        raise InvalidValueError(f"unknown convention {convention!r}; intquant follows {', '.join(known)}.")
    return _loaded(text, convention)


def _loaded(text: Any, convention: str | None) -> Any:
    if not isinstance(text, (str, bytes, bytearray)):
        raise InvalidTypeError(f"loads expects JSON text (str or bytes); got {type(text).__name__}.")
    try:
        raw = json.loads(text)
    except RecursionError as error:
        raise SerializationError("the JSON text is nested too deeply to be a quantizer") from error
    except ValueError as error:
        raise SerializationError(f"not valid JSON text: {error}") from error
    return _decode(raw, 0, convention)


def load(file: IO[str]) -> Any:
    """Read an object from an open text file written by :func:`dump`."""
    return loads(file.read())


def _encode(value: Any) -> Any:
    # numpy.float64 subclasses float, so numpy types must be recognised before Python ones.
    if isinstance(value, numpy.ndarray):
        if value.dtype.name not in _NUMERIC_DTYPES:
            raise InvalidTypeError(
                f"cannot serialize an array of dtype {value.dtype}; only bool, integer and float "
                f"arrays are supported."
            )
        return {"type_name": "numpy_array", "serialized_value": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, numpy.integer):
        return {"type_name": "numpy_integer", "serialized_value": int(value), "dtype": str(value.dtype)}
    if isinstance(value, numpy.floating):
        return {"type_name": "numpy_float", "serialized_value": float(value), "dtype": str(value.dtype)}
    if isinstance(value, tuple):
        return {"type_name": "tuple", "serialized_value": [_encode(item) for item in value]}
    if isinstance(value, (set, frozenset)):
        return {"type_name": "set", "serialized_value": [_encode(item) for item in sorted(value)]}
    if isinstance(value, JSONSerializable):
        tag = value.serial_tag()
        payload = _encode(value.dump_dict())
        if tag.startswith(INTQUANT_PREFIX):
            return {
                "type_name": tag,
                "format_version": value.serial_format_version(),
                "serialized_value": payload,
            }
        return {"type_name": tag, "serialized_value": payload}
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise InvalidTypeError(f"cannot serialize a value of type {type(value).__name__}: {value!r}")


def _entries(type_name: Any) -> dict[str | None, _Entry]:
    """The registered entries of a tag (by convention), importing the intquant module that
    defines it if needed."""
    if not isinstance(type_name, str):
        raise SerializationError(f"a type_name must be a string; got {type_name!r}.")
    entries = _REGISTRY.get(type_name)
    if entries is None and type_name in TAG_MODULES:
        importlib.import_module(TAG_MODULES[type_name])  # an intquant module, never another
        entries = _REGISTRY.get(type_name)
    if entries is None:
        known = ", ".join((*_BUILTIN_TAGS, *sorted(TAG_MODULES)))
        raise SerializationError(
            f"unknown type_name {type_name!r}; intquant reads only {known}. Text of another "
            f"library (or of a newer intquant) cannot be read here."
        )
    return entries


def _base_entry(entries: dict[str | None, _Entry]) -> _Entry:
    """The seed's class of a tag (Concrete ML 1.7), or the one class outside the conventions."""
    return entries.get(SEED_CONVENTION) or entries.get(None) or next(iter(entries.values()))


def _convention_entry(
    type_name: str, entries: dict[str | None, _Entry], base: _Entry, payload: Any, convention: str | None
) -> _Entry:
    """The entry building this payload: of ``convention``, or (None) of the convention the
    payload shows, else the base; the base when the tag has no class of that convention."""
    chosen = convention
    if chosen is None and base.convention_of_text is not None:
        chosen = base.convention_of_text(payload)
    if chosen is None or chosen == SEED_CONVENTION:
        return base
    if chosen not in entries and chosen in CONVENTION_MODULES:
        importlib.import_module(CONVENTION_MODULES[chosen])  # an intquant module, never another
        entries = _REGISTRY.get(type_name, entries)
    return entries.get(chosen, base)


def _decode(raw: Any, depth: int, convention: str | None) -> Any:
    if depth > _MAX_DEPTH:
        raise SerializationError(f"the JSON text is nested deeper than {_MAX_DEPTH} levels")
    if isinstance(raw, list):
        return [_decode(item, depth + 1, convention) for item in raw]
    if not isinstance(raw, dict):
        return raw
    if "type_name" not in raw:
        return {key: _decode(item, depth + 1, convention) for key, item in raw.items()}
    type_name = raw["type_name"]
    if type_name in ("numpy_integer", "numpy_float", "numpy_array"):
        return _decode_numpy(type_name, _tag_fields(raw, ("serialized_value", "dtype")))
    if type_name in ("tuple", "set"):
        payload = _tag_fields(raw, ("serialized_value",))["serialized_value"]
        if not isinstance(payload, list):
            raise SerializationError(f"a '{type_name}' tag needs a list; got {payload!r}")
        items = [_decode(item, depth + 1, convention) for item in payload]
        try:
            return tuple(items) if type_name == "tuple" else set(items)
        except TypeError as error:
            raise SerializationError(f"cannot rebuild a set: {error}") from error
    entries = _entries(type_name)
    entry = _base_entry(entries)
    version = 0
    if entry.versioned and type_name.startswith(INTQUANT_PREFIX):
        version = _tag_fields(raw, ("format_version", "serialized_value"))["format_version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise SerializationError(
                f"a {type_name!r} tag needs a format_version that is a positive integer; got {version!r}."
            )
        if version > entry.format_version:
            raise SerializationError(
                f"{type_name} format version {version} was written by a newer intquant; this one "
                f"reads versions up to {entry.format_version}. Upgrade intquant to read it."
            )
    payload = _tag_fields(raw, ("format_version", "serialized_value") if version else ("serialized_value",))
    decoded = _decode_fields(type_name, payload["serialized_value"], depth + 1, convention)
    entry = _convention_entry(type_name, entries, entry, decoded, convention)
    try:
        return entry.load(decoded, version)
    except SerializationError:
        raise
    except (IntquantError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise SerializationError(f"invalid serialized {type_name}: {error}") from error


def _decode_fields(type_name: str, payload: Any, depth: int, convention: str | None) -> Any:
    """The decoded payload of a registered class; an error in a field names the class and field
    (``UniformQuantizer field 'offset': ...``)."""
    if not isinstance(payload, dict) or "type_name" in payload or depth > _MAX_DEPTH:
        return _decode(payload, depth, convention)
    decoded = {}
    for key, item in payload.items():
        try:
            decoded[key] = _decode(item, depth + 1, convention)
        except SerializationError as error:
            raise SerializationError(f"{type_name} field {key!r}: {error}") from error
    return decoded


def _tag_fields(raw: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    expected = ("type_name", *names)
    if set(raw) != set(expected):
        raise SerializationError(
            f"a {raw['type_name']!r} tag needs exactly the keys {', '.join(expected)}; got "
            f"{', '.join(map(str, raw))}."
        )
    return raw


def _decode_numpy(type_name: str, raw: dict[str, Any]) -> Any:
    """A numpy scalar or array holding exactly the value written: what the dtype cannot represent
    is refused (Concrete ML's ``numpy.int64(v).astype(dtype)`` would wrap or truncate it)."""
    dtype_name, value = raw["dtype"], raw["serialized_value"]
    dtype = _NUMERIC_DTYPES.get(dtype_name) if isinstance(dtype_name, str) else None
    if dtype is None:
        raise SerializationError(
            f"dtype {dtype_name!r} is not supported; use one of {', '.join(_NUMERIC_DTYPES)}."
        )
    if type_name == "numpy_array":
        return _decode_array(value, dtype)
    if dtype.kind == "b":
        raise SerializationError(
            f"a {type_name} needs an integer or float dtype; got {dtype} (a bool is written as "
            f"JSON true/false)."
        )
    if type_name == "numpy_integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise SerializationError(f"a numpy_integer needs an integer; got {value!r}")
        return _exact_scalar(type_name, value, dtype)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SerializationError(f"a numpy_float needs a number; got {value!r}")
    if dtype.kind in "iu":
        if isinstance(value, float) and not _is_integral(value):
            raise SerializationError(f"a numpy_float of dtype {dtype} needs an integral value; got {value!r}")
        return _exact_scalar(type_name, int(value), dtype)
    try:
        number = float(value)
    except OverflowError:
        raise SerializationError(
            f"a numpy_float of dtype {dtype} needs a value within {_range_text(dtype)}; got {value}"
        ) from None
    with numpy.errstate(over="ignore"):
        converted = numpy.array(number, dtype=dtype)[()]
    if math.isfinite(number) and not numpy.isfinite(converted):
        raise SerializationError(
            f"a numpy_float of dtype {dtype} needs a value within {_range_text(dtype)}; got "
            f"{number!r}, which would become {float(converted)!r}"
        )
    return converted


def _range_text(dtype: numpy.dtype[Any]) -> str:
    info = numpy.iinfo(dtype) if dtype.kind in "iu" else numpy.finfo(dtype)
    return f"[{info.min}, {info.max}]"


def _exact_scalar(type_name: str, value: int, dtype: numpy.dtype[Any]) -> Any:
    """``value`` as a numpy scalar of ``dtype`` (an integer dtype, or a float dtype holding it
    exactly)."""
    if dtype.kind in "iu":
        info = numpy.iinfo(dtype)
        if not info.min <= value <= info.max:
            raise SerializationError(
                f"a {type_name} of dtype {dtype} needs a value within {_range_text(dtype)}; got {value}"
            )
        return numpy.array(value, dtype=dtype)[()]
    try:
        with numpy.errstate(over="ignore"):
            converted = numpy.array(float(value), dtype=dtype)[()]
        exact = bool(numpy.isfinite(converted)) and int(converted) == value
    except OverflowError:
        exact = False
    if not exact:
        raise SerializationError(
            f"a {type_name} of dtype {dtype} needs a value the dtype holds exactly; got {value}"
        )
    return converted


def _decode_array(value: Any, dtype: numpy.dtype[Any]) -> numpy.ndarray:
    """A ``numpy_array``: a number or rectangular nested lists of numbers, each of which ``dtype``
    represents (integers in range, no fraction for an integer dtype; no finite value overflowing
    a float dtype; ``true``/``false`` for a bool array)."""
    try:
        array = numpy.asarray(value)
    except (ValueError, OverflowError, TypeError) as error:
        raise SerializationError(
            f"invalid numpy_array value: it must be a number or nested lists of numbers whose rows "
            f"have one length (not ragged); numpy says: {error}"
        ) from error
    kind = array.dtype.kind
    if kind == "f" and dtype.kind in "iu" and array.ndim:
        # Check the numbers as written: numpy makes floats of integers mixing int64's negative
        # and uint64's large values, which would round them.
        array = numpy.array(value, dtype=object)
        kind = "O"
    if kind == "O":  # integers beyond uint64, or non-numbers
        strange = [
            item for item in array.flat if isinstance(item, bool) or not isinstance(item, (int, float))
        ]
        if strange:
            raise SerializationError(f"a numpy_array needs nested lists of numbers; got {strange[0]!r}")
    elif kind not in "biuf":
        raise SerializationError(
            f"a numpy_array needs nested lists of numbers; got elements of dtype {array.dtype}"
        )
    if array.size == 0:
        return array.astype(dtype)
    if (dtype.kind == "b") != (kind == "b"):
        expected = "true/false elements" if dtype.kind == "b" else "numbers, not true/false"
        raise SerializationError(
            f"a numpy_array of dtype {dtype} needs {expected}; got {array.dtype} elements"
        )
    if dtype.kind in "iu":
        return _integer_array(array, dtype)
    if dtype.kind == "f":
        return _float_array(array, dtype)
    return array.astype(dtype)


def _integer_array(array: numpy.ndarray, dtype: numpy.dtype[Any]) -> numpy.ndarray:
    if array.dtype.kind == "O":  # Python ints and floats, compared exactly
        items = list(array.flat)
        fractions = [item for item in items if isinstance(item, float) and not _is_integral(item)]
        if fractions:
            raise SerializationError(f"a numpy_array of dtype {dtype} needs integers; got {fractions[0]!r}")
        low, high = min(int(item) for item in items), max(int(item) for item in items)
    else:
        if array.dtype.kind == "f":
            bad = ~numpy.isfinite(array) | (array != numpy.trunc(array))
            if bad.any():
                raise SerializationError(
                    f"a numpy_array of dtype {dtype} needs integers; got {float(array[bad].flat[0])!r}"
                )
        low, high = int(array.min()), int(array.max())
    info = numpy.iinfo(dtype)
    if low < info.min or high > info.max:
        raise SerializationError(
            f"a numpy_array of dtype {dtype} needs values within {_range_text(dtype)}; got values "
            f"from {low} to {high}"
        )
    return array.astype(dtype)


def _is_integral(number: float) -> bool:
    return math.isfinite(number) and number.is_integer()


def _float_array(array: numpy.ndarray, dtype: numpy.dtype[Any]) -> numpy.ndarray:
    source = array
    if array.dtype.kind == "O":
        try:
            source = numpy.array([float(item) for item in array.flat]).reshape(array.shape)
        except OverflowError:
            raise SerializationError(
                f"a numpy_array of dtype {dtype} needs values within {_range_text(dtype)}; got an "
                f"integer beyond float64"
            ) from None
    with numpy.errstate(over="ignore"):
        converted = source.astype(dtype)
    overflow = numpy.isinf(converted) & numpy.isfinite(source)
    if overflow.any():
        raise SerializationError(
            f"a numpy_array of dtype {dtype} needs values within {_range_text(dtype)}; got "
            f"{source[overflow].flat[0].item()!r}"
        )
    return converted

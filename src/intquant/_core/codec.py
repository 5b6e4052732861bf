"""JSON serialization, text-identical with Concrete ML 1.7.0.

``dumps`` writes ``json.dumps`` text (default separators, ASCII, keys in insertion order, floats
by ``repr``) of the value after this encoding, applied at every depth:

* numpy integer / float scalar -> ``{"type_name": "numpy_integer" | "numpy_float",
  "serialized_value": int(v) | float(v), "dtype": "<dtype>"}``
* ndarray -> ``{"type_name": "numpy_array", "serialized_value": v.tolist(), "dtype": "<dtype>"}``
* tuple / set -> ``{"type_name": "tuple" | "set", "serialized_value": [...]}`` (a set sorted)
* the seed's five classes (and the calibration methods of ``intquant.calibration``) ->
  ``{"type_name": "<ClassName>", "serialized_value": v.dump_dict()}``

``loads`` reverses it, innermost first. It accepts only these tags, numeric dtypes and the five
class names: nothing is imported, evaluated or unpickled.
"""

from __future__ import annotations

import json
from typing import IO, Any

import numpy

from intquant.errors import IntquantError, InvalidTypeError, SerializationError

__all__ = ["JSONSerializable", "dump", "dumps", "load", "loads"]

_NUMERIC_DTYPES = {
    name: numpy.dtype(name)
    for name in (
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64",
    )
}  # fmt: skip
_MAX_DEPTH = 64


class JSONSerializable:
    """Gives a class ``dumps()`` and ``dump(file)``; the class provides ``dump_dict()``."""

    def dump_dict(self) -> dict[str, Any]:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def dumps(self) -> str:
        """Serialize to a JSON string (see :func:`intquant.dumps`)."""
        return dumps(self)

    def dump(self, file: IO[str]) -> None:
        """Write the JSON string to an open text file (see :func:`intquant.dump`)."""
        dump(self, file)


def dumps(obj: Any) -> str:
    """Serialize ``obj`` to JSON text that Concrete ML 1.7.0 also reads.

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
    """Rebuild an object from text written by :func:`dumps` (or by Concrete ML 1.7.0).

    Raises
    ------
    SerializationError
        (a ``ValueError``) for text that is not valid JSON, is nested too deeply, or holds an
        unknown ``type_name``, a non-numeric dtype, a missing or unexpected key.

    Examples
    --------
    >>> value = loads('{"type_name": "numpy_integer", "serialized_value": 3, "dtype": "int64"}')
    >>> type(value).__name__, int(value)
    ('int64', 3)
    """
    if not isinstance(text, (str, bytes, bytearray)):
        raise InvalidTypeError(f"loads expects JSON text (str or bytes); got {type(text).__name__}.")
    try:
        raw = json.loads(text)
    except RecursionError as error:
        raise SerializationError("the JSON text is nested too deeply to be a quantizer") from error
    except ValueError as error:
        raise SerializationError(f"not valid JSON text: {error}") from error
    return _decode(raw, 0)


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
    for name, klass in _classes().items():
        if isinstance(value, klass):
            return {"type_name": name, "serialized_value": _encode(value.dump_dict())}
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise InvalidTypeError(f"cannot serialize a value of type {type(value).__name__}: {value!r}")


def _classes() -> dict[str, Any]:
    """The classes that serialize by name: the seed's five, then the calibration methods
    (imported here to avoid an import cycle)."""
    from intquant.calibration import EntropyStats, MovingAverageMinMaxStats, MSEStats, PercentileStats
    from intquant.options import QuantizationOptions
    from intquant.parameters import UniformQuantizationParameters
    from intquant.quantized_array import QuantizedArray
    from intquant.quantizer import UniformQuantizer
    from intquant.statistics import MinMaxQuantizationStats

    return {
        "QuantizationOptions": QuantizationOptions,
        "MinMaxQuantizationStats": MinMaxQuantizationStats,
        "UniformQuantizationParameters": UniformQuantizationParameters,
        "UniformQuantizer": UniformQuantizer,
        "QuantizedArray": QuantizedArray,
        "PercentileStats": PercentileStats,
        "MovingAverageMinMaxStats": MovingAverageMinMaxStats,
        "MSEStats": MSEStats,
        "EntropyStats": EntropyStats,
    }


def _decode(raw: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise SerializationError(f"the JSON text is nested deeper than {_MAX_DEPTH} levels")
    if isinstance(raw, list):
        return [_decode(item, depth + 1) for item in raw]
    if not isinstance(raw, dict):
        return raw
    if "type_name" not in raw:
        return {key: _decode(item, depth + 1) for key, item in raw.items()}
    type_name = raw["type_name"]
    if type_name in ("numpy_integer", "numpy_float", "numpy_array"):
        return _decode_numpy(type_name, _tag_fields(raw, ("serialized_value", "dtype")))
    payload = _tag_fields(raw, ("serialized_value",))["serialized_value"]
    if type_name in ("tuple", "set"):
        if not isinstance(payload, list):
            raise SerializationError(f"a '{type_name}' tag needs a list; got {payload!r}")
        items = [_decode(item, depth + 1) for item in payload]
        try:
            return tuple(items) if type_name == "tuple" else set(items)
        except TypeError as error:
            raise SerializationError(f"cannot rebuild a set: {error}") from error
    klass = _classes().get(type_name) if isinstance(type_name, str) else None
    if klass is None:
        raise SerializationError(
            f"unknown type_name {type_name!r}; intquant reads only numpy_integer, numpy_float, "
            f"numpy_array, tuple, set and {', '.join(_classes())}."
        )
    decoded = _decode(payload, depth + 1)
    try:
        return klass.load_dict(decoded)
    except SerializationError:
        raise
    except (IntquantError, KeyError, TypeError, ValueError, AttributeError) as error:
        raise SerializationError(f"invalid serialized {type_name}: {error}") from error


def _tag_fields(raw: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    expected = ("type_name", *names)
    if set(raw) != set(expected):
        raise SerializationError(
            f"a {raw['type_name']!r} tag needs exactly the keys {', '.join(expected)}; got "
            f"{', '.join(map(str, raw))}."
        )
    return raw


def _decode_numpy(type_name: str, raw: dict[str, Any]) -> Any:
    dtype_name, value = raw["dtype"], raw["serialized_value"]
    dtype = _NUMERIC_DTYPES.get(dtype_name) if isinstance(dtype_name, str) else None
    if dtype is None:
        raise SerializationError(
            f"dtype {dtype_name!r} is not supported; use one of {', '.join(_NUMERIC_DTYPES)}."
        )
    try:
        if type_name == "numpy_integer":
            if isinstance(value, bool) or not isinstance(value, int):
                raise SerializationError(f"a numpy_integer needs an integer; got {value!r}")
            return numpy.int64(value).astype(dtype)
        if type_name == "numpy_float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SerializationError(f"a numpy_float needs a number; got {value!r}")
            return numpy.float64(value).astype(dtype)
        array = numpy.asarray(value)
        if array.dtype.kind not in "biuf":
            raise SerializationError(
                f"a numpy_array needs nested lists of numbers; got elements of dtype {array.dtype}"
            )
        return array.astype(dtype)
    except (OverflowError, ValueError) as error:
        if isinstance(error, SerializationError):
            raise
        raise SerializationError(f"invalid {type_name} value: {error}") from error

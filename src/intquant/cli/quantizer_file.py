"""Quantizer files: one quantizer, or one per array of a checkpoint.

A file of one quantizer is exactly ``intquant.dumps(quantizer)`` (Concrete ML 1.7 reads it when
it is per tensor and rounds half to even). A checkpoint's file is a JSON object mapping each
array's name to its quantizer, written as that same text::

    {"w1": {"type_name": "UniformQuantizer", "serialized_value": {...}},
     "b1": {"type_name": "UniformQuantizer", "serialized_value": {...}}}

which ``intquant.loads`` also reads (a dict of quantizers). Reading goes through intquant's codec
entry by entry, so nothing but its tags is ever decoded and an error names the array. The float
dtype of the calibration data is the dtype of each quantizer's ``rmin``/``rmax`` (see
:func:`restored_dtype`).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any, Union

import numpy

from intquant._core.codec import dumps, loads
from intquant.errors import InvalidValueError, SerializationError
from intquant.quantized_array import QuantizedArray
from intquant.quantizer import UniformQuantizer

__all__ = ["TAG_KEY", "Quantizers", "check_names", "dumps_quantizers", "read_quantizers", "restored_dtype"]

#: What a quantizer file holds: one quantizer, or one per array name.
Quantizers = Union[UniformQuantizer, dict[str, UniformQuantizer]]

#: The key that marks a serialized object: no array of a checkpoint's file may be named so.
TAG_KEY = "type_name"


def check_names(names: Collection[str]) -> None:
    """Refuse array names that a quantizers file cannot hold (:data:`TAG_KEY`)."""
    if TAG_KEY in names:
        raise InvalidValueError(
            f"an array named {TAG_KEY!r} cannot have its quantizer in a quantizers file (the name "
            f"marks a serialized object there); leave it out with --exclude {TAG_KEY}"
        )


def dumps_quantizers(quantizers: Quantizers) -> str:
    """The text of a quantizer file (see the module docstring)."""
    if isinstance(quantizers, dict):
        check_names(quantizers)
    return dumps(quantizers)


def read_quantizers(path: Path) -> Quantizers:
    """The quantizer, or the quantizers by array name, that the file ``path`` holds.

    A ``QuantizedArray`` stands for its quantizer.

    Raises
    ------
    InvalidValueError
        For a missing file, text that is not JSON, an entry that is not a quantizer, or anything
        intquant's codec refuses (the message names the array).
    """
    if not path.is_file():
        raise InvalidValueError(f"no such quantizer file: {path}")
    data = path.read_bytes()
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise InvalidValueError(f"{path}: not valid JSON text: {error}") from error
    if isinstance(raw, dict) and TAG_KEY in raw:
        try:
            return _quantizer(loads(data))
        except (InvalidValueError, SerializationError) as error:
            raise InvalidValueError(f"{path}: {error}") from error
    if not isinstance(raw, dict) or not raw:
        what = "an empty object" if raw == {} else f"a JSON {type(raw).__name__}"
        raise InvalidValueError(f"{path} holds {what}, not a quantizer nor quantizers by array name")
    quantizers = {}
    for name, entry in raw.items():
        where = f"{path}: the quantizer of {name!r}"
        if not isinstance(entry, dict) or TAG_KEY not in entry:
            raise InvalidValueError(f"{where} is not a serialized quantizer")
        try:
            quantizers[name] = _quantizer(loads(json.dumps(entry)))
        except (InvalidValueError, SerializationError) as error:
            raise InvalidValueError(f"{where}: {error}") from error
    return quantizers


def _quantizer(loaded: Any) -> UniformQuantizer:
    if isinstance(loaded, QuantizedArray):
        loaded = loaded.quantizer
    if not isinstance(loaded, UniformQuantizer):
        raise InvalidValueError(f"it holds a {type(loaded).__name__}, not a quantizer")
    return loaded


def recorded_dtype(quantizer: UniformQuantizer) -> numpy.dtype[Any] | None:
    """The float dtype of ``quantizer``'s ``rmin``/``rmax``, or None when it is not a float."""
    rmin = getattr(quantizer, "rmin", None)
    if rmin is None:
        return None
    dtype = numpy.asarray(rmin).dtype
    return dtype if dtype.kind == "f" else None


def restored_dtype(quantizer: UniformQuantizer) -> numpy.dtype[Any]:
    """The dtype restored values get by default: the float dtype the quantizer was calibrated on,
    which ``intquant calibrate`` records as the dtype of ``rmin``/``rmax`` (min/max statistics
    are in the data's dtype; a calibration method's range is written in it); float64 when the
    range is not a float (integer data) or absent."""
    return recorded_dtype(quantizer) or numpy.dtype(numpy.float64)

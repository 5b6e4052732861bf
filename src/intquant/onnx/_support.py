"""Checks at the boundary of :mod:`intquant.onnx`, and its optional imports.

``onnx`` and ``onnxruntime`` are imported only when a function needs them, so that
``import intquant.onnx`` imports neither; a missing one raises
:class:`~intquant.errors.MissingDependencyError` with the command that installs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import numpy

from intquant._core.checks import check_int, is_integer
from intquant.errors import InvalidTypeError, InvalidValueError, MissingDependencyError

__all__ = [
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "QDQ_OPSET",
    "check_dims",
    "check_names",
    "check_opset",
    "import_onnx",
    "import_onnxruntime",
]

#: The opset models use by default: the first with int16/uint16 (and int4/uint4) QuantizeLinear.
DEFAULT_OPSET = 21
#: The oldest opset accepted: per-axis QuantizeLinear / DequantizeLinear arrived in opset 13.
MIN_OPSET = 13
#: The opset that added QuantizeLinear's 16-bit and 4-bit integer types.
QDQ_OPSET = 21

_INSTALL_HINT = 'install it with pip install "intquant[onnx]"'


def import_onnx() -> Any:
    """The ``onnx`` module, or MissingDependencyError."""
    return _import("onnx", "builds and reads models with")


def import_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or MissingDependencyError."""
    return _import("onnxruntime", "runs models (to collect calibration data) with")


def _import(name: str, what: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise MissingDependencyError(
            f"intquant.onnx {what} the {name} package, which could not be imported ({error}); "
            f"{_INSTALL_HINT}."
        ) from error


def check_opset(opset: Any) -> int:
    """``opset`` as an int of at least :data:`MIN_OPSET`."""
    if not is_integer(opset):
        raise InvalidTypeError(f"'opset' must be an int such as {DEFAULT_OPSET}; got {opset!r}.")
    expected = f"at least {MIN_OPSET} (per-axis QuantizeLinear)"
    return check_int(
        "opset", opset, minimum=MIN_OPSET, expected=expected, advice=f"Use opset={DEFAULT_OPSET}."
    )


def check_names(input_name: Any, output_name: Any) -> tuple[str, str]:
    """The names of a model's input and output: non-empty strings, different from each other."""
    for keyword, name in (("input_name", input_name), ("output_name", output_name)):
        if not isinstance(name, str):
            raise InvalidTypeError(f"'{keyword}' must be a str such as 'x'; got {name!r}.")
        if not name:
            raise InvalidValueError(f"'{keyword}' must be a non-empty name; got ''.")
    if input_name == output_name:
        raise InvalidValueError(
            f"'input_name' and 'output_name' must differ (an ONNX value has one producer); both "
            f"are {input_name!r}."
        )
    return input_name, output_name


def check_dims(shape: Any) -> list[int | str | None]:
    """``shape`` as a list of sizes, names and None, refusing anything else."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, numpy.ndarray)):
        raise InvalidTypeError(f"'shape' must be a sequence of ints, strs or None; got {shape!r}.")
    dims: list[int | str | None] = []
    for dim in shape:
        if is_integer(dim) and dim >= 0:
            dims.append(int(dim))
        elif (isinstance(dim, str) and dim) or dim is None:
            dims.append(dim)
        else:
            raise InvalidValueError(
                f"each dimension of 'shape' must be a size >= 0, a non-empty name or None; got "
                f"{dim!r} in {tuple(shape)}."
            )
    return dims

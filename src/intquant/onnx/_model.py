"""Reading an existing ONNX model: its tensors, their element types, producers and consumers.

Used by :mod:`intquant.onnx.calibrate` and :mod:`intquant.onnx.insert`, which take a model
given as a ``ModelProto`` or a path, and tensor names a user chose (checked here: known, of the
expected kind, float32).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from intquant.errors import InvalidDtypeError, InvalidTypeError, InvalidValueError

__all__ = ["ModelTensors", "check_tensor_names", "load_model", "subgraph_inputs"]

_DEFAULT_DOMAINS = ("", "ai.onnx")


def load_model(onnx: Any, model: Any) -> Any:
    """A copy of ``model`` (a ``ModelProto``), or the model a path names; the caller's model is
    never changed."""
    if isinstance(model, onnx.ModelProto):
        copied = onnx.ModelProto()
        copied.CopyFrom(model)
        return copied
    if isinstance(model, (str, os.PathLike)):
        return onnx.load(os.fspath(model))
    raise InvalidTypeError(
        f"'model' must be an onnx.ModelProto or the path of a .onnx file; got {type(model).__name__}."
    )


def subgraph_inputs(nodes: Iterable[Any]) -> set[str]:
    """The names nodes of subgraphs (If, Loop, Scan bodies, at any depth) read."""
    names: set[str] = set()
    for node in nodes:
        for attribute in node.attribute:
            graphs = [*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs]
            for graph in graphs:
                for inner in graph.node:
                    names.update(inner.input)
                names |= subgraph_inputs(graph.node)
    return names


@dataclass(frozen=True)
class ModelTensors:
    """The top-level tensors of a model.

    ``inputs`` are the graph inputs that no initializer feeds (what a run needs), in order;
    ``initializers`` the constant tensors by name; ``produced`` the node outputs;
    ``element_types`` the ONNX element type name (``"FLOAT"``, ``"INT64"``, ...) of every tensor
    whose type is known (declared, or from ONNX shape inference); ``consumers`` the ``(node,
    input index)`` pairs reading each name; ``opset`` the default domain's opset; ``all_names``
    every name the model uses (values, subgraphs' inputs, node names).
    """

    inputs: tuple[str, ...]
    initializers: dict[str, Any]
    produced: frozenset[str]
    element_types: dict[str, str]
    consumers: dict[str, list[tuple[Any, int]]]
    opset: int
    all_names: frozenset[str]

    @staticmethod
    def of(onnx: Any, model: Any) -> ModelTensors:
        graph = model.graph
        opsets = [entry.version for entry in model.opset_import if entry.domain in _DEFAULT_DOMAINS]
        if not opsets:
            raise InvalidValueError(
                "the model imports no opset of the default ONNX domain; QuantizeLinear and "
                "DequantizeLinear belong to it."
            )
        initializers = {tensor.name: tensor for tensor in graph.initializer}
        type_name = onnx.TensorProto.DataType.Name
        element_types = {name: type_name(tensor.data_type) for name, tensor in initializers.items()}
        try:
            inferred = onnx.shape_inference.infer_shapes(model).graph
        except Exception:  # inference is best effort (custom operators, ...)
            inferred = graph
        for value in (*inferred.value_info, *graph.input, *graph.output):
            if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
                element_types.setdefault(value.name, type_name(value.type.tensor_type.elem_type))
        consumers: dict[str, list[tuple[Any, int]]] = {}
        for node in graph.node:
            for index, name in enumerate(node.input):
                if name:
                    consumers.setdefault(name, []).append((node, index))
        produced = frozenset(name for node in graph.node for name in node.output if name)
        names = set(initializers) | produced | {value.name for value in graph.input}
        names |= {value.name for value in (*graph.output, *graph.value_info)}
        names |= {name for node in graph.node for name in node.input} | subgraph_inputs(graph.node)
        names |= {node.name for node in graph.node if node.name}
        return ModelTensors(
            tuple(value.name for value in graph.input if value.name not in initializers),
            initializers,
            produced,
            element_types,
            consumers,
            max(opsets),
            frozenset(names),
        )

    def is_activation(self, name: str) -> bool:
        """Whether ``name`` is a value computed when the model runs (an input or a node output)."""
        return name not in self.initializers and (name in self.inputs or name in self.produced)

    def known(self) -> Iterator[str]:
        """Every quantizable candidate's name: inputs, node outputs, initializers."""
        yield from self.inputs
        yield from sorted(self.produced)
        yield from self.initializers


def check_tensor_names(tensors: ModelTensors, names: Any, kind: str) -> list[str]:
    """``names`` (a sequence of str) checked against the model: each known, of ``kind``
    (``"activation"``: computed when the model runs; ``"weight"``: an initializer) and float32.

    Raises
    ------
    InvalidTypeError
        If ``names`` is a str or not a sequence of str.
    InvalidValueError
        For an unknown name, a name of the other kind, or a name listed twice.
    InvalidDtypeError
        For a tensor that is not float32 (or whose type is unknown).
    """
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise InvalidTypeError(f"the {kind} names must be a list of str; got {names!r}.")
    listed = list(names)
    for name in listed:
        if not isinstance(name, str):
            raise InvalidTypeError(f"the {kind} names must be str; got {name!r} in {listed!r}.")
    repeated = sorted({name for name in listed if listed.count(name) > 1})
    if repeated:
        raise InvalidValueError(f"{kind} {repeated[0]!r} is listed twice; list each tensor once.")
    for name in listed:
        check_tensor(tensors, name, kind)
    return listed


def check_tensor(tensors: ModelTensors, name: str, kind: str) -> None:
    """One name of :func:`check_tensor_names`."""
    if name in tensors.initializers:
        if kind == "activation":
            raise InvalidValueError(
                f"{name!r} is an initializer (a weight, a constant of the model); list it under "
                f"weights, which are quantized once, not at run time."
            )
    elif tensors.is_activation(name):
        if kind == "weight":
            raise InvalidValueError(
                f"{name!r} is computed when the model runs (an input or a node's output), not an "
                f"initializer; list it under activations."
            )
    else:
        candidates = ", ".join(repr(known) for known in list(tensors.known())[:12])
        raise InvalidValueError(
            f"the model has no tensor named {name!r} (at its top level); its tensors include {candidates}."
        )
    element_type = tensors.element_types.get(name)
    if element_type != "FLOAT":
        got = (
            "of unknown type (shape inference could not type it)"
            if element_type is None
            else (f"of ONNX element type {element_type}")
        )
        raise InvalidDtypeError(
            f"tensor {name!r} is {got}; only float32 tensors are quantized here (DequantizeLinear "
            f"gives float32 with a float32 scale)."
        )

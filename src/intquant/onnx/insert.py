"""Insert quantizers into an existing ONNX model: QuantizeLinear/DequantizeLinear pairs (QDQ format).

:func:`insert_qdq` takes a float model and intquant quantizers by tensor name (from
:func:`~intquant.onnx.calibrate_tensors`, or any others) and returns the QDQ model ONNX Runtime's
``quantize_static`` would: what runtimes fuse into integer kernels, and what computes, in float,
the quantized model.

* An **activation** ``a`` (a graph input or a node's output) gets
  ``DequantizeLinear(QuantizeLinear(a, s, z), s, z)`` and every node that read ``a`` reads the
  result: ``clip(round(a / s) + z, low, high) - z) * s`` in float32, the codes in the integer
  type whose range is exactly the quantizer's ``[low, high]``.
* A **weight** ``w`` (an initializer) is replaced by its codes, computed by intquant
  (``quantizer.quant(w)``, bit for bit), stored in the narrowest integer type holding them, and
  one ``DequantizeLinear`` (with ``axis`` for per-channel quantizers).

Scales are stored as float32, each of intquant's float64 scales rounded to the nearest float32;
zero points in the codes' type. QuantizeLinear rounds ``a / s`` half to even and then adds the
zero point, where intquant rounds ``a / s + z``: with a non-zero zero point an activation code
can differ by one at rare half-way points (see docs/onnx.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy

from intquant.errors import InvalidTypeError, InvalidValueError
from intquant.onnx._model import ModelTensors, check_tensor, load_model, subgraph_inputs
from intquant.onnx._parameters import QDQ_TYPES, OnnxParameters, QdqType, narrowest_type
from intquant.onnx._support import MIN_OPSET, QDQ_OPSET, import_onnx

if TYPE_CHECKING:
    import onnx

__all__ = ["insert_qdq"]

_CONVERT_ADVICE = "Convert the model first: onnx.version_converter.convert_version(model, {opset})."


def insert_qdq(model: onnx.ModelProto | str, quantizers: Mapping[str, Any]) -> onnx.ModelProto:
    """A copy of ``model`` with each named tensor quantized by its quantizer (QDQ format).

    Parameters
    ----------
    model : onnx.ModelProto or path
        A float model (not changed). Its default-domain opset must be at least 13 (per-channel
        DequantizeLinear), 21 for 4-bit or 16-bit codes.
    quantizers : mapping of str to UniformQuantizer
        A quantizer for each tensor: activations (graph inputs, node outputs) get a
        QuantizeLinear/DequantizeLinear pair; initializers are replaced by their codes and a
        DequantizeLinear.

    Returns
    -------
    onnx.ModelProto
        The quantized model; each quantized tensor ``t`` gives the values ``t_quantized``
        (codes), ``t_scale``, ``t_zero_point`` and ``t_dequantized`` (made unique if taken).
        Graph outputs stay float; nodes inside subgraphs (If, Loop, Scan bodies) keep reading
        the float tensors.

    Raises
    ------
    MissingDependencyError
        If ``onnx`` is not installed.
    InvalidValueError
        For an unknown tensor name; an opset too old; an activation quantizer whose codes do
        not fill one QuantizeLinear type (8 bits, or 4 and 16 from opset 21, without
        ``is_narrow``), whose zero point lies outside it, that does not clip, rounds other than
        half to even or is per block; a weight quantizer whose codes fit no type of the opset
        (at most 8 bits, 16 from opset 21), that does not clip or is per block; a scale float32
        cannot hold.
    InvalidDtypeError
        For a tensor that is not float32.
    InvalidTypeError
        For a quantizer that is not a UniformQuantizer, or ``quantizers`` not a mapping.
    """
    onnx_module = import_onnx()
    result = load_model(onnx_module, model)
    tensors = ModelTensors.of(onnx_module, result)
    if not isinstance(quantizers, Mapping):
        raise InvalidTypeError(
            f"'quantizers' must map tensor names to quantizers (as calibrate_tensors returns); got "
            f"{type(quantizers).__name__}."
        )
    if tensors.opset < MIN_OPSET:
        raise InvalidValueError(
            f"QuantizeLinear/DequantizeLinear per channel need opset {MIN_OPSET} or newer; the model "
            f"imports opset {tensors.opset}. {_CONVERT_ADVICE.format(opset=MIN_OPSET)}"
        )
    was_valid = _passes_checker(onnx_module, result)
    names = _Names(tensors.all_names)
    planned = []
    for name, quantizer in quantizers.items():
        if not isinstance(name, str):
            raise InvalidTypeError(f"the keys of 'quantizers' must be tensor names (str); got {name!r}.")
        weight = name in tensors.initializers
        check_tensor(tensors, name, "weight" if weight else "activation")
        parameters, kind = _parameters(quantizer, name, weight, tensors.opset)
        codes = None
        if weight:  # intquant's codes (raises for a quantizer that does not fit the weight's shape)
            values = onnx_module.numpy_helper.to_array(tensors.initializers[name])
            codes = numpy.asarray(quantizer.quant(values)).astype(_numpy_type(onnx_module, kind))
        planned.append((name, parameters, kind, codes))
    # everything is checked: now build (on our copy of the model)
    graph = result.graph
    replaced: dict[str, str] = {}
    first: list[Any] = []  # nodes to run before all others: weights' and inputs' QDQ
    after: dict[str, list[Any]] = {}  # a produced activation's QDQ nodes, after its producer
    for name, parameters, kind, codes in planned:
        scale, zero_point = _scale_and_zero_point(onnx_module, graph, names, name, parameters, kind)
        attributes = {} if parameters.axis is None else {"axis": parameters.axis}
        dequantized = names.new(f"{name}_dequantized")
        if codes is not None:
            stored = names.new(f"{name}_quantized")
            graph.initializer.append(onnx_module.numpy_helper.from_array(codes, stored))
            first.append(
                onnx_module.helper.make_node(
                    "DequantizeLinear",
                    [stored, scale, zero_point],
                    [dequantized],
                    name=names.new(f"{name}_DequantizeLinear"),
                    **attributes,
                )
            )
        else:
            quantized = names.new(f"{name}_quantized")
            nodes = [
                onnx_module.helper.make_node(
                    "QuantizeLinear",
                    [name, scale, zero_point],
                    [quantized],
                    name=names.new(f"{name}_QuantizeLinear"),
                    **attributes,
                ),
                onnx_module.helper.make_node(
                    "DequantizeLinear",
                    [quantized, scale, zero_point],
                    [dequantized],
                    name=names.new(f"{name}_DequantizeLinear"),
                    **attributes,
                ),
            ]
            if name in tensors.inputs:
                first.extend(nodes)
            else:
                after.setdefault(name, []).extend(nodes)
        replaced[name] = dequantized
    original = list(graph.node)
    for node in original:
        for index, name in enumerate(node.input):
            if name in replaced:
                node.input[index] = replaced[name]
    ordered = list(first)
    for node in original:
        ordered.append(node)
        for output in node.output:
            ordered.extend(after.get(output, []))
    del graph.node[:]
    graph.node.extend(ordered)
    _drop_replaced_weights(graph, [name for name, _, _, codes in planned if codes is not None])
    result.ir_version = max(
        result.ir_version,
        onnx_module.helper.find_min_ir_version_for(
            [entry for entry in result.opset_import if entry.domain in ("", "ai.onnx")]
        ),
    )
    if was_valid:
        onnx_module.checker.check_model(result)
    return result


class _Names:
    """Unique new names: ``stem``, else ``stem_2``, ``stem_3``, ... (never one the model uses)."""

    def __init__(self, taken: frozenset[str]) -> None:
        self.taken = set(taken)

    def new(self, stem: str) -> str:
        name, count = stem, 1
        while name in self.taken:
            count += 1
            name = f"{stem}_{count}"
        self.taken.add(name)
        return name


def _parameters(quantizer: Any, name: str, weight: bool, opset: int) -> tuple[OnnxParameters, QdqType]:
    """The quantizer's parameters and the codes' type, refusing what QDQ cannot hold."""
    from intquant.quantizer import UniformQuantizer  # the quantizer imports much; only here

    what = f"{'weight' if weight else 'activation'} {name!r}"
    if not isinstance(quantizer, UniformQuantizer):
        raise InvalidTypeError(
            f"the quantizer of {what} must be a UniformQuantizer (e.g. from calibrate_tensors); got "
            f"{type(quantizer).__name__}."
        )
    settings = quantizer.settings()  # raises for missing parameters
    if settings.unclipped is not None:
        raise InvalidValueError(
            f"the quantizer of {what} does not clip its codes ({settings.unclipped}), so no integer "
            f"type holds them; use options without no_clipping or QAT."
        )
    if quantizer.block_size is not None:
        raise InvalidValueError(
            f"the quantizer of {what} is per block (block_size={tuple(quantizer.block_size)}); QDQ "
            f"insertion takes per-tensor and per-axis quantizers."
        )
    if not weight and quantizer.rounding != "half_even":
        raise InvalidValueError(
            f"the quantizer of {what} rounds {quantizer.rounding!r}, but QuantizeLinear rounds half "
            f"to even; use rounding='half_even' for activations (weights are quantized by intquant "
            f"and may round any way)."
        )
    parameters = OnnxParameters.of(quantizer, exact=False, dequantize=weight)
    parameters.float32_scales(advice=f"the scale of {what} is out of float32's range")
    low, high = parameters.integer_range()
    if weight:
        kind = narrowest_type(low, high, [kind for kind in QDQ_TYPES if kind.opset <= opset])
        if kind is None:
            kind = narrowest_type(low, high, QDQ_TYPES)  # one of a newer opset (refused below)
        if kind is None:
            raise InvalidValueError(
                f"the codes of {what} lie in [{low}, {high}] (with the zero points), which no "
                f"DequantizeLinear integer type holds (at most 16 bits); use fewer bits."
            )
    else:
        bounds = set(parameters.bounds or ())
        kind = next((kind for kind in QDQ_TYPES if bounds == {(kind.low, kind.high)}), None)
        if kind is None:
            shown = ", ".join(f"[{a}, {b}]" for a, b in sorted(bounds))
            raise InvalidValueError(
                f"the codes of {what} lie in {shown} ({settings.n_bits} bits"
                f"{', narrow' if quantizer.is_narrow else ''}), but QuantizeLinear saturates to a "
                f"whole integer type: uint8 [0, 255] or int8 [-128, 127], from opset {QDQ_OPSET} "
                f"also 4 and 16 bits. Use 8 (or 4 or 16) bits without is_narrow."
            )
        outside = [int(zp) for zp in parameters.zero_points if not kind.low <= int(zp) <= kind.high]
        if outside:
            raise InvalidValueError(
                f"the zero point {outside[0]} of {what} lies outside {kind.name.lower()} [{kind.low}, "
                f"{kind.high}] (the range does not hold 0); calibrate with "
                f"QuantizationOptions(..., zero_in_range=True)."
            )
    if kind.opset > opset:
        raise InvalidValueError(
            f"the codes of {what} need {kind.name.lower()} ({kind.bits}-bit codes), which "
            f"QuantizeLinear/DequantizeLinear have from opset {kind.opset}; the model imports opset "
            f"{opset}. {_CONVERT_ADVICE.format(opset=kind.opset)}"
        )
    return parameters, kind


def _scale_and_zero_point(
    onnx_module: Any, graph: Any, names: _Names, name: str, parameters: OnnxParameters, kind: QdqType
) -> tuple[str, str]:
    """Initializers of the float32 scale(s) and the zero point(s) of ``kind`` (1-D per axis)."""
    scales = parameters.float32_scales()
    zero_points = numpy.array([int(zp) for zp in parameters.zero_points], dtype=numpy.int64)
    zero_points_typed = zero_points.astype(_numpy_type(onnx_module, kind))
    per_axis = parameters.axis is not None
    scale, zero_point = names.new(f"{name}_scale"), names.new(f"{name}_zero_point")
    graph.initializer.append(onnx_module.numpy_helper.from_array(scales if per_axis else scales[0], scale))
    graph.initializer.append(
        onnx_module.numpy_helper.from_array(
            zero_points_typed if per_axis else zero_points_typed[0], zero_point
        )
    )
    return scale, zero_point


def _numpy_type(onnx_module: Any, kind: QdqType) -> Any:
    """The numpy dtype ``onnx`` stores ``kind`` from (ml_dtypes' int4/uint4 for 4 bits)."""
    return onnx_module.helper.tensor_dtype_to_np_dtype(getattr(onnx_module.TensorProto, kind.name))


def _drop_replaced_weights(graph: Any, weights: list[str]) -> None:
    """Remove the float initializers no node reads any more (and their graph inputs)."""
    still_read = {name for node in graph.node for name in node.input} | subgraph_inputs(graph.node)
    still_read |= {value.name for value in graph.output}
    unused = {name for name in weights if name not in still_read}
    kept = [tensor for tensor in graph.initializer if tensor.name not in unused]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    for field in (graph.input, graph.value_info):
        remaining = [value for value in field if value.name not in unused]
        del field[:]
        field.extend(remaining)


def _passes_checker(onnx_module: Any, model: Any) -> bool:
    """Whether ``onnx.checker`` accepts the model as given (then it must accept the result)."""
    try:
        onnx_module.checker.check_model(model)
    except onnx_module.checker.ValidationError:
        return False
    return True

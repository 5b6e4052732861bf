"""Calibrate the tensors of an ONNX model with intquant's methods: one quantizer per tensor.

:func:`calibrate_tensors` runs the float model in onnxruntime on calibration batches (the
chosen activations added as extra outputs), folds each batch into one calibration object per
activation (collect, then compute: :class:`~intquant.MinMaxQuantizationStats` or a method of
:mod:`intquant.calibration`), and quantizes weights from their values, per output channel.
:func:`~intquant.onnx.insert_qdq` then puts the quantizers into the model;
:func:`quantizable_tensors` says which tensors are chosen by default.

Weight channel axes (the axis of the output channels, one scale each):

===================  ===================================  ==========================
node                 weight                               axis
===================  ===================================  ==========================
MatMul(A, W)         W of shape (..., K, N)               last (N)
Gemm(A, W)           W (K, N); ``transB=1``: (N, K)       1; ``transB=1``: 0
Conv(X, W)           W (M, C/group, k1, ...)              0 (M)
ConvTranspose(X, W)  W (C, M/group, k1, ...)              1
anything else                                             per tensor
===================  ===================================  ==========================
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy

from intquant._core.calibrator import Calibrator
from intquant._core.checks import check_flag
from intquant.calibration import EntropyStats, MovingAverageMinMaxStats, MSEStats, PercentileStats
from intquant.errors import InvalidDtypeError, InvalidTypeError, InvalidValueError
from intquant.onnx._model import ModelTensors, check_tensor_names, load_model
from intquant.onnx._support import import_onnx, import_onnxruntime
from intquant.options import QuantizationOptions
from intquant.quantized_array import QuantizedArray
from intquant.quantizer import UniformQuantizer
from intquant.statistics import MinMaxQuantizationStats

if TYPE_CHECKING:
    import onnx

__all__ = ["METHODS", "calibrate_tensors", "quantizable_tensors"]

#: The calibration methods :func:`calibrate_tensors` takes by name, and the class of each (made
#: with its defaults).
METHODS: Mapping[str, type] = MappingProxyType(
    {
        "minmax": MinMaxQuantizationStats,
        "percentile": PercentileStats,
        "mse": MSEStats,
        "entropy": EntropyStats,
        "moving_average": MovingAverageMinMaxStats,
    }
)

#: Nodes whose inputs quantizable_tensors picks; input 1 is the weight.
_LINEAR_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose")


def quantizable_tensors(model: onnx.ModelProto | str) -> tuple[list[str], list[str]]:
    """The float32 inputs of the model's MatMul, Gemm, Conv and ConvTranspose nodes (biases
    excluded): ``(activations, weights)``, each in the order of the nodes.

    Activations are values computed when the model runs (graph inputs, node outputs), weights
    its initializers. These are what :func:`calibrate_tensors` quantizes by default.

    Raises
    ------
    MissingDependencyError
        If ``onnx`` is not installed.
    InvalidTypeError
        If ``model`` is neither a ``ModelProto`` nor a path.

    Examples
    --------
    >>> import numpy
    >>> from onnx import TensorProto, helper, numpy_helper
    >>> weight = numpy_helper.from_array(numpy.ones((4, 3), numpy.float32), "w")
    >>> graph = helper.make_graph(
    ...     [helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
    ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
    ...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], [weight])
    >>> quantizable_tensors(helper.make_model(graph))
    (['x'], ['w'])
    """
    onnx_module = import_onnx()
    loaded = load_model(onnx_module, model)
    return _quantizable(loaded, ModelTensors.of(onnx_module, loaded))


def _quantizable(model: Any, tensors: ModelTensors) -> tuple[list[str], list[str]]:
    activations: dict[str, None] = {}
    weights: dict[str, None] = {}
    for node in model.graph.node:
        if node.op_type not in _LINEAR_OPS:
            continue
        for name in node.input[:2]:
            if tensors.element_types.get(name) != "FLOAT":
                continue
            if name in tensors.initializers:
                weights[name] = None
            elif tensors.is_activation(name):
                activations[name] = None
    return list(activations), list(weights)


def calibrate_tensors(
    model: onnx.ModelProto | str,
    calibration_data: Any,
    *,
    activations: Sequence[str] | None = None,
    weights: Sequence[str] | None = None,
    method: str | Calibrator = "minmax",
    activation_options: QuantizationOptions | None = None,
    weight_options: QuantizationOptions | None = None,
    per_channel: bool = True,
) -> dict[str, UniformQuantizer]:
    """Quantizers for a model's activations (calibrated on data) and weights (from their values).

    Activations: the float model runs in onnxruntime on each batch of ``calibration_data``,
    with the activations as extra outputs; each activation's values are folded into its own
    calibration object (``update``, batch after batch), whose range gives the quantizer's
    parameters for ``activation_options``. Weights: a min/max quantizer of the initializer's
    values for ``weight_options``, per output channel (the axis in the module docstring) when
    ``per_channel``. The quantizers are ordinary intquant quantizers: ``quant`` gives their
    codes, ``dumps`` their JSON.

    Parameters
    ----------
    model : onnx.ModelProto or path
        A float model (not changed).
    calibration_data : mapping, array, or iterable of them
        Batches of inputs: a mapping from each input's name to its values (all the inputs the
        model needs), or, for a model with one input, its values; or an iterable of such
        batches, as ONNX Runtime's calibration data readers give. Values must have the
        input's dtype.
    activations, weights : sequence of str, optional
        The tensors to quantize; by default those of :func:`quantizable_tensors`. ``[]`` for
        none.
    method : str or calibration object
        How activation ranges are computed: ``"minmax"`` (default, the exact range of all
        batches), ``"percentile"``, ``"mse"``, ``"entropy"``, ``"moving_average"`` (the
        :mod:`intquant.calibration` methods with their defaults), or an object such as
        ``PercentileStats(99.9)`` that has seen no data: each activation gets a copy.
    activation_options : QuantizationOptions, optional
        Default ``QuantizationOptions(8, zero_in_range=True)``: 8-bit unsigned codes (uint8),
        asymmetric, the range widened to hold 0 as ONNX Runtime does.
    weight_options : QuantizationOptions, optional
        Default ``QuantizationOptions(8, is_signed=True, is_symmetric=True)`` (int8, zero point 0).
    per_channel : bool
        Per-channel weights (default) or one scale per weight.

    Returns
    -------
    dict of str to UniformQuantizer
        The activations' quantizers, then the weights', by tensor name.

    Raises
    ------
    MissingDependencyError
        If ``onnx`` or ``onnxruntime`` is not installed.
    InvalidValueError
        For an unknown tensor name, an activation listed as a weight or the reverse, a name
        listed twice, a weight whose consumers need different channel axes, options with
        ``axis`` or ``block_size`` (the granularity is chosen here), no batches, a batch
        missing an input or naming an unknown one.
    InvalidDtypeError
        For a tensor that is not float32, or a batch whose values have another dtype than the
        input.
    InvalidTypeError
        For arguments of the wrong type, or an unknown method name.
    """
    onnx_module = import_onnx()
    loaded = load_model(onnx_module, model)
    tensors = ModelTensors.of(onnx_module, loaded)
    per_channel = check_flag("per_channel", per_channel)
    if activations is None or weights is None:
        default_activations, default_weights = _quantizable(loaded, tensors)
        activations = default_activations if activations is None else activations
        weights = default_weights if weights is None else weights
    activation_names = check_tensor_names(tensors, activations, "activation")
    weight_names = check_tensor_names(tensors, weights, "weight")
    template = _method(method)
    activation_defaults = QuantizationOptions(8, zero_in_range=True)
    activation_options = _options(activation_options, "activation_options", activation_defaults)
    weight_defaults = QuantizationOptions(8, is_signed=True, is_symmetric=True)
    weight_options = _options(weight_options, "weight_options", weight_defaults)
    axes = {name: _weight_axis(tensors, name) if per_channel else None for name in weight_names}
    collected = _collect(onnx_module, loaded, tensors, activation_names, calibration_data, template)
    quantizers: dict[str, UniformQuantizer] = {}
    for name in activation_names:
        options = copy.deepcopy(activation_options)
        quantizer = UniformQuantizer(options, collected[name])
        quantizer.compute_quantization_parameters(options, collected[name])
        quantizers[name] = quantizer
    for name in weight_names:
        values = onnx_module.numpy_helper.to_array(tensors.initializers[name])
        extra: dict[str, Any] = {} if axes[name] is None else {"axis": axes[name]}
        weight = QuantizedArray(weight_options.n_bits, values, options=weight_options, **extra)
        quantizers[name] = weight.quantizer
    return quantizers


def _method(method: Any) -> Any:
    """A calibration object with no data, to copy for each activation."""
    if isinstance(method, str):
        if method not in METHODS:
            raise InvalidTypeError(
                f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}, or pass "
                f"a calibration object such as intquant.calibration.PercentileStats(99.9)."
            )
        return METHODS[method]()
    if isinstance(method, (MinMaxQuantizationStats, Calibrator)):
        if not method.is_empty():
            raise InvalidValueError(
                f"the calibration object given as 'method' ({type(method).__name__}) has already "
                f"seen data; pass a new one: each activation gets a copy of it, then its own data."
            )
        return method
    raise InvalidTypeError(
        f"'method' must be one of {', '.join(METHODS)} or a calibration object (intquant.calibration); "
        f"got {type(method).__name__}."
    )


def _options(options: Any, keyword: str, default: QuantizationOptions) -> QuantizationOptions:
    if options is None:
        return default
    if not isinstance(options, QuantizationOptions):
        raise InvalidTypeError(
            f"'{keyword}' must be a QuantizationOptions, e.g. QuantizationOptions(8); got "
            f"{type(options).__name__}."
        )
    if options.axis is not None or options.block_size is not None:
        raise InvalidValueError(
            f"'{keyword}' sets axis={options.axis} block_size={options.block_size}; the granularity "
            f"is chosen here (activations per tensor, weights per channel with per_channel=True). "
            f"Pass options without them."
        )
    return options


def _weight_axis(tensors: ModelTensors, name: str) -> int | None:
    """The output-channel axis of a weight (see the module docstring) for the nodes reading it
    that have one (others, such as Gather, take any); None: per tensor."""
    rank = len(tensors.initializers[name].dims)
    axes: dict[int, str] = {}
    for node, index in tensors.consumers.get(name, []):
        axis: int | None = None
        if index == 1 and node.op_type == "MatMul" and rank >= 2:
            axis = rank - 1
        elif index == 1 and node.op_type == "Gemm":
            transposed = any(item.name == "transB" and item.i for item in node.attribute)
            axis = 0 if transposed else 1
        elif index == 1 and node.op_type == "Conv":
            axis = 0
        elif index == 1 and node.op_type == "ConvTranspose":
            axis = 1
        if axis is not None:
            axes.setdefault(axis, f"{node.op_type} {node.name or '(unnamed)'}")
    if len(axes) > 1:
        shown = ", ".join(f"{axis} for {where}" for axis, where in axes.items())
        raise InvalidValueError(
            f"weight {name!r} feeds nodes that need different channel axes ({shown}); quantize "
            f"it per tensor with per_channel=False, or leave it out of weights."
        )
    return next(iter(axes), None)


# -- running the float model


def _collect(
    onnx_module: Any,
    model: Any,
    tensors: ModelTensors,
    names: list[str],
    calibration_data: Any,
    template: Any,
) -> dict[str, Any]:
    """Each activation's calibration object, after every batch of ``calibration_data``."""
    collected = {name: copy.deepcopy(template) for name in names}
    if not names:
        return collected
    computed = [name for name in names if name not in tensors.inputs]
    session = None
    if computed:
        runtime = import_onnxruntime()
        outputs = {value.name for value in model.graph.output}
        for name in computed:
            if name not in outputs:
                element = getattr(onnx_module.TensorProto, tensors.element_types[name])
                model.graph.output.append(onnx_module.helper.make_tensor_value_info(name, element, None))
        options = runtime.SessionOptions()
        options.log_severity_level = 3  # errors only
        session = runtime.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
    count = 0
    for index, batch in enumerate(_batches(calibration_data, tensors)):
        values = dict(zip(computed, session.run(computed, batch), strict=True)) if session is not None else {}
        for name in names:
            collected[name].update(batch[name] if name in batch else values[name])
        count = index + 1
    if count == 0:
        raise InvalidValueError("'calibration_data' holds no batches; give at least one batch of inputs.")
    return collected


def _batches(calibration_data: Any, tensors: ModelTensors) -> Iterator[dict[str, numpy.ndarray]]:
    """The batches of ``calibration_data``, each checked against the model's inputs."""
    if isinstance(calibration_data, (Mapping, numpy.ndarray)):
        items: Iterable[Any] = [calibration_data]
    elif isinstance(calibration_data, Iterable) and not isinstance(calibration_data, (str, bytes)):
        items = calibration_data
    else:
        raise InvalidTypeError(
            f"'calibration_data' must be a mapping from input names to arrays, an array (a model "
            f"with one input), or an iterable of them; got {type(calibration_data).__name__}."
        )
    for index, item in enumerate(items):
        yield _batch(item, index, tensors)


def _batch(item: Any, index: int, tensors: ModelTensors) -> dict[str, numpy.ndarray]:
    inputs = tensors.inputs
    if not isinstance(item, Mapping):
        if len(inputs) != 1:
            raise InvalidTypeError(
                f"batch {index} is a {type(item).__name__}; the model has {len(inputs)} inputs "
                f"({', '.join(inputs)}), so each batch must be a mapping from their names to arrays."
            )
        item = {inputs[0]: item}
    missing = [name for name in inputs if name not in item]
    unknown = [name for name in item if name not in inputs]
    if missing or unknown:
        raise InvalidValueError(
            f"batch {index} must give exactly the model's inputs {list(inputs)}; "
            f"{'missing ' + repr(missing) if missing else ''}{'; ' if missing and unknown else ''}"
            f"{'unknown ' + repr(unknown) if unknown else ''}."
        )
    batch: dict[str, numpy.ndarray] = {}
    for name in inputs:
        values = numpy.asarray(item[name])
        expected = tensors.element_types.get(name)
        if expected is not None and _onnx_type_name(values.dtype) != expected:
            raise InvalidDtypeError(
                f"batch {index}: input {name!r} takes ONNX {expected} values; got {values.dtype} with "
                f"shape {values.shape}. Convert them, e.g. with .astype(numpy.float32)."
            )
        batch[name] = values
    return batch


def _onnx_type_name(dtype: numpy.dtype[Any]) -> str:
    """The ONNX element type name of a numpy dtype (``float32`` -> ``"FLOAT"``)."""
    names = {"float32": "FLOAT", "float64": "DOUBLE", "float16": "FLOAT16", "bool": "BOOL"}
    return names.get(dtype.name, dtype.name.upper())

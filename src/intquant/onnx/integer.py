"""Export integer layers and networks (:mod:`intquant.integer`) to ONNX, bit for bit.

:func:`integer_network_to_onnx` turns an :class:`~intquant.integer.IntegerNetwork` (and
:func:`integer_layer_to_onnx` one :class:`~intquant.integer.IntegerLinear` or
:class:`~intquant.integer.IntegerConv2d`) into a model whose output codes, run by onnxruntime,
are the int64 codes ``network.run(codes)`` returns (``network(x)`` with ``inputs="float"``). The
graph executes each layer's two plans (:mod:`intquant.integer.plan`):

Accumulation, ``acc = sum_k (q_x - zp_x) * (q_w - zp_w[o]) + b[o]`` (exact, int64), by one of
two routes chosen per layer:

* **integer** (``MatMulInteger`` / ``ConvInteger``), when the layer's input codes and zero
  point fit uint8 (or int8) and the weights fit the *same* type after a constant shift ``t``
  (stored codes ``q_w + t`` with zero point ``zp_w + t``, which leaves ``q_w - zp_w``
  unchanged), and ``K * max|x| * max|w|`` (raw and centered) is below ``2**31``: the int32
  result is then exact. Both operands have the same signedness because onnxruntime's
  uint8 x int8 kernel on AVX2 (``vpmaddubsw``) saturates pairs of products at int16
  (measured: wrong sums with onnxruntime 1.32). ``MatMulInteger`` takes one weight zero point
  per output column; onnxruntime's ``ConvInteger`` only a per-tensor one, so different
  per-channel zero points ``z[o]`` are folded: ``ConvInteger(x, w, zp_x, c) - (z[o] - c) *
  ConvInteger(x, ones, zp_x, 0)`` (the second convolution sums each window of ``q_x - zp_x``).
  ``ConvInteger`` pads with the input zero point (checked in onnxruntime), which is the plan's
  padding. The int32 result is cast to int64 and the bias codes added.
* **float**, otherwise (codes wider than 8 bits, or a bound beyond int32): the codes are
  centered first in int64 (``q_x - zp_x``), cast to float and multiplied by the centered
  weights ``q_w - zp_w``; every partial sum is an integer of magnitude at most ``max|q_x - zp_x|
  * sum_k |q_w[o, k] - zp_w[o]|``, so the product is exact in float32 below ``2**24`` and in
  float64 below ``2**53`` (int64 ``MatMul`` beyond). Centering makes ``Conv``'s zero padding the
  plan's padding by ``zp_x`` and needs no correction terms. onnxruntime has no float64 ``Conv``:
  a convolution beyond float32 extracts its windows with a float32 ``Conv`` of one-hot kernels
  (each output is one input code times 1, exact) and multiplies them by the weights with a
  float64 (or int64) ``MatMul``.

Weights whose stored codes fit 4 bits are stored as ONNX ``UINT4``/``INT4`` initializers (two
codes a byte, the first in the low nibble) and cast to the 8-bit type (or the float type) in the
graph, onnxruntime running ``Cast`` from 4-bit types (opset 21).

Requantization, channel ``o`` on the last axis (linear) or axis 1 (conv, initializers of shape
``(O, 1, 1)``), all in int64 but for the float formula's product::

    integer: y = clip(round_shift(acc * m, s, rounding) + zp_y, lo, hi)
    float:   y = clip(Round(float64(round_shift(acc, s, "half_up")) * m), lo - zp_y, hi - zp_y) + zp_y

ONNX's ``BitShift`` is unsigned only, so ``round_shift(v, s)`` (``s > 0``) is built from exact
int64 operators: ``r = Mod(v, 2**s)`` with ``fmod=0`` (floor modulo, ``0 <= r < 2**s``), ``q =
Div(v - r, 2**s)`` (an exact division of a multiple: the floor quotient), and ``q + 1`` where the
dropped part rounds up: ``r >= 2**(s-1)`` (half up), ``r > 2**(s-1) or (r == 2**(s-1) and q odd)``
(half to even, ``q`` odd by ``Mod(q, 2)``), ``r > 2**(s-1) or (r == 2**(s-1) and q >= 0)`` (half
away from zero: at a tie ``v >= 0`` exactly when ``q >= 0``). Per-channel shifts broadcast;
``s <= 0`` multiplies by ``2**-s`` (its channels divide by 1 and never round). ``Round`` is half
to even like ``numpy.rint``; clipping before the final ``Cast`` equals clipping after it. A
fused ReLU is in the output range; :class:`~intquant.integer.IntegerReLU` is ``Max(q, zp)`` and
:class:`~intquant.integer.IntegerFlatten` ``Flatten(axis=1)``.

The graph trusts its input codes: codes outside the first layer's ``input_range`` (which the
layer refuses) give unspecified results. See docs/onnx.md, "Integer networks".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy

from intquant._core.checks import check_flag
from intquant.errors import InvalidTypeError, InvalidValueError
from intquant.onnx._support import DEFAULT_OPSET, check_dims, check_names, check_opset, import_onnx
from intquant.onnx.export import quantizer_to_onnx
from intquant.packing import pack_codes

if TYPE_CHECKING:
    import onnx

    from intquant.integer import IntegerConv2d, IntegerLinear, IntegerNetwork

__all__ = ["ACCUMULATIONS", "INPUTS", "integer_layer_to_onnx", "integer_network_to_onnx"]

#: How the accumulators may be computed: ``"auto"`` (integer operators where exact, else float),
#: ``"integer"`` (MatMulInteger/ConvInteger, refusing a layer that cannot use them), ``"float"``.
ACCUMULATIONS = ("auto", "integer", "float")
#: What the model reads: the input ``"codes"`` (int64), or ``"float"`` values it quantizes first.
INPUTS = ("codes", "float")

_INT32_LIMIT = 2**31 - 1
_FLOAT64 = numpy.dtype(numpy.float64)
_MAX_SHIFT = 62  # 2**62 is the largest power of two in int64
_FLOAT_LIMITS = (("float32", 2**24), ("float64", 2**53))
_INT4_OPSET = 21
_FLOAT_INPUTS = tuple(numpy.dtype(name) for name in ("float16", "float32", "float64"))
# The 8-bit operand types of MatMulInteger/ConvInteger and the 4-bit type of each signedness.
_CODE_TYPES = (
    ("UINT8", 0, 255, ("UINT4", 0, 15)),
    ("INT8", -128, 127, ("INT4", -8, 7)),
)


def integer_network_to_onnx(
    network: IntegerNetwork,
    *,
    inputs: str = "codes",
    input_dtype: Any = numpy.float32,
    shape: Sequence[int | str | None] | None = None,
    accumulation: str = "auto",
    int4_weights: bool = True,
    opset: int | None = None,
    input_name: str = "x",
    output_name: str = "y",
) -> onnx.ModelProto:
    """An ONNX model computing an integer network's output codes, bit for bit.

    Input ``x``: the input codes, int64 of shape ``(batch, K)`` (a first linear layer) or
    ``(batch, C, H, W)`` (a first convolution, or a flatten before the first layer; ``H``, ``W``
    free), the batch dynamic. With ``inputs="float"``: values of ``input_dtype``, cast to float64
    (exact) and quantized by the exact graph of :func:`~intquant.onnx.quantizer_to_onnx`
    (``exact=True``) for the network's input quantizer, as :meth:`IntegerNetwork.quantize_input
    <intquant.integer.IntegerNetwork.quantize_input>` does. Output ``y``: int64 codes,
    ``network.run(x)`` (``network(x)`` for float inputs); accumulators when the last layer has no
    output quantizer. The operators of each layer are in the module docstring; the model's
    ``doc_string`` names each layer's route.

    Parameters
    ----------
    network : IntegerNetwork
    inputs : {"codes", "float"}
    input_dtype : dtype-like
        The dtype of the float input: float16, float32 (default) or float64 (``inputs="float"``
        only).
    shape : sequence of int, str or None, optional
        The input's dimensions, each a size, a name (a size that may vary) or None. Default:
        ``("batch", K)`` for a first linear layer, ``("batch", C, "height", "width")`` for a
        first convolution, ``("batch", None, None, None)`` for a flatten before the first layer.
        A linear layer takes any leading dimensions ``(..., K)``, a convolution rank 4.
    accumulation : {"auto", "integer", "float"}
        ``"auto"``: MatMulInteger/ConvInteger where they are exact, the float route elsewhere;
        ``"integer"``: refuse a layer that cannot use them; ``"float"``: the float route everywhere.
    int4_weights : bool
        Store weights whose stored codes fit 4 bits as INT4/UINT4 initializers (opset 21 or
        newer; below, 8-bit ones). False: 8-bit (or float) initializers always.
    opset : int, optional
        The ONNX opset, at least 13; default 21.
    input_name, output_name : str
        The model's input and output names, non-empty and different.

    Returns
    -------
    onnx.ModelProto
        Checked with ``onnx.checker``.

    Raises
    ------
    MissingDependencyError
        If ``onnx`` is not installed.
    InvalidTypeError
        For a network that is not an IntegerNetwork, an option of the wrong type.
    InvalidValueError
        For an unknown option value; a layer ``accumulation="integer"`` cannot run (the message
        says why); a product no route computes exactly, or a requantization shift beyond 62
        (the message names the element).

    Examples
    --------
    >>> import numpy
    >>> from intquant.integer import IntegerNetwork, Linear, ReLU
    >>> rng = numpy.random.default_rng(0)
    >>> x = rng.normal(size=(20, 3))
    >>> model = [Linear(rng.normal(size=(4, 3))), ReLU(), Linear(rng.normal(size=(2, 4)))]
    >>> network = IntegerNetwork.from_float(model, x)
    >>> exported = integer_network_to_onnx(network)
    >>> sorted({node.op_type for node in exported.graph.node} & {"MatMulInteger", "Round", "Clip", "Max"})
    ['Clip', 'MatMulInteger', 'Max', 'Round']
    """
    from intquant.integer import IntegerNetwork  # the integer layers import much; only here

    if not isinstance(network, IntegerNetwork):
        raise InvalidTypeError(
            f"expected an intquant.integer.IntegerNetwork; got {type(network).__name__}. Use "
            f"integer_layer_to_onnx for a single layer."
        )
    options = _Options.of(inputs, input_dtype, accumulation, int4_weights, opset, input_name, output_name)
    return _export(network.input_quantizer, list(network.elements), options, shape)


def integer_layer_to_onnx(
    layer: IntegerLinear | IntegerConv2d,
    *,
    inputs: str = "codes",
    input_dtype: Any = numpy.float32,
    shape: Sequence[int | str | None] | None = None,
    accumulation: str = "auto",
    int4_weights: bool = True,
    opset: int | None = None,
    input_name: str = "x",
    output_name: str = "y",
) -> onnx.ModelProto:
    """An ONNX model computing one integer layer, ``layer(codes)``, bit for bit: its output codes,
    or its accumulators (int64) when it has no output quantizer.

    The input is int64 codes of shape ``(batch, K)`` (IntegerLinear; ``shape=`` declares other
    leading dimensions) or ``(batch, C, H, W)`` (IntegerConv2d); with ``inputs="float"``,
    values cast to float64 and quantized by the layer's input quantizer first
    (``layer(input_quantizer.quant(float64(x)))``). The options are those of
    :func:`integer_network_to_onnx`.

    Raises
    ------
    InvalidTypeError
        For a layer that is not an IntegerLinear or IntegerConv2d; the other errors of
        :func:`integer_network_to_onnx`.
    """
    from intquant.integer import IntegerConv2d, IntegerLinear

    if not isinstance(layer, (IntegerLinear, IntegerConv2d)):
        raise InvalidTypeError(
            f"expected an intquant.integer.IntegerLinear or IntegerConv2d; got {type(layer).__name__}. "
            f"Use integer_network_to_onnx for a network."
        )
    options = _Options.of(inputs, input_dtype, accumulation, int4_weights, opset, input_name, output_name)
    return _export(layer.input_quantizer, [layer], options, shape)


# -- options


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise InvalidTypeError(
            f"'{name}' must be one of {choices}; got {value!r} of type {type(value).__name__}."
        )
    if value not in choices:
        raise InvalidValueError(f"'{name}' must be one of {choices}; got {value!r}.")
    return value


@dataclass(frozen=True)
class _Options:
    """The keyword options of the two exports, checked; ``int4``: 4-bit initializers allowed
    (asked for, and the opset has them)."""

    inputs: str
    input_dtype: numpy.dtype[Any]
    accumulation: str
    int4: bool
    opset: int
    names: tuple[str, str]

    @staticmethod
    def of(
        inputs: Any,
        input_dtype: Any,
        accumulation: Any,
        int4_weights: Any,
        opset: Any,
        input_name: Any,
        output_name: Any,
    ) -> _Options:
        try:
            dtype = numpy.dtype(input_dtype)
        except TypeError as error:
            raise InvalidTypeError(
                f"'input_dtype' must be a float dtype; got {input_dtype!r} ({error})."
            ) from error
        if dtype not in _FLOAT_INPUTS:
            raise InvalidTypeError(
                f"'input_dtype' must be float16, float32 or float64 (the float values a model with "
                f"inputs='float' quantizes); got {dtype}."
            )
        chosen_opset = DEFAULT_OPSET if opset is None else check_opset(opset)
        return _Options(
            _choice("inputs", inputs, INPUTS),
            dtype,
            _choice("accumulation", accumulation, ACCUMULATIONS),
            check_flag("int4_weights", int4_weights) and chosen_opset >= _INT4_OPSET,
            chosen_opset,
            check_names(input_name, output_name),
        )


# -- routes: how each layer's accumulators are computed


@dataclass(frozen=True)
class _IntegerRoute:
    """MatMulInteger/ConvInteger: ``weights`` are the stored codes ``q_w + shift`` (of
    ``storage``, cast to ``code_type`` in the graph), ``zero_points`` the weight zero points
    ``zp_w + shift`` per channel; a convolution gives ConvInteger ``conv_zero_point`` and
    subtracts ``(zero_points - conv_zero_point) * window sums`` where they differ."""

    code_type: str
    weights: numpy.ndarray
    storage: str
    zero_points: numpy.ndarray
    conv_zero_point: int

    def describe(self, kind: str) -> str:
        operator = "MatMulInteger" if kind == "linear" else "ConvInteger"
        code = self.code_type.lower()
        notes = [f"{self.storage} weights"] if self.storage != self.code_type else []
        if kind == "conv2d" and numpy.any(self.zero_points != self.conv_zero_point):
            notes.append("window sums for the per-channel zero points")
        return f"{operator} {code} x {code}" + (f" ({', '.join(notes)})" if notes else "")


@dataclass(frozen=True)
class _FloatRoute:
    """The centered product in ``dtype`` (float32, float64 or int64) on the centered weights
    ``weights`` (stored as INT4 when ``int4``); ``windows``: a convolution beyond float32 through
    its extracted windows and a MatMul."""

    dtype: str
    weights: numpy.ndarray
    int4: bool
    windows: bool

    def describe(self, kind: str) -> str:
        if kind == "linear":
            how = f"{self.dtype} MatMul"
        elif self.windows:
            how = f"float32 Conv windows, {self.dtype} MatMul"
        else:
            how = "float32 Conv"
        return f"{how} on centered codes" + (" (INT4 weights)" if self.int4 else "")


def _route(plan: Any, accumulation: str, int4: bool, where: str) -> _IntegerRoute | _FloatRoute:
    """The route of a layer's :class:`~intquant.integer.plan.AccumulatorPlan`."""
    if accumulation != "float":
        route, reason = _integer_route(plan, int4)
        if route is not None:
            return route
        if accumulation == "integer":
            raise InvalidValueError(
                f"{where} cannot use MatMulInteger/ConvInteger exactly: {reason}. Use "
                f"accumulation='auto' (the exact float route for such layers) or 'float'."
            )
    return _float_route(plan, int4, where)


def _fit_shift(
    storages: Sequence[tuple[str, int, int]],
    low: numpy.ndarray,
    high: numpy.ndarray,
    zero_points: tuple[numpy.ndarray, numpy.ndarray],
    code: tuple[int, int],
) -> tuple[str, numpy.ndarray] | None:
    """The first storage type (name, range) holding ``[low + t, high + t]`` per channel, with the
    zero points (between ``zero_points[0]`` and ``[1]``) plus ``t`` inside ``code``, and the
    shifts ``t`` closest to 0; None if no storage fits."""
    for storage, s_low, s_high in storages:
        smallest = numpy.maximum(s_low - low, code[0] - zero_points[0])
        largest = numpy.minimum(s_high - high, code[1] - zero_points[1])
        if numpy.all(smallest <= largest):
            return storage, numpy.clip(0, smallest, largest).astype(numpy.int64)
    return None


def _integer_route(plan: Any, int4: bool) -> tuple[_IntegerRoute | None, str]:
    """The integer route, or None and why not."""
    lo, hi = (int(value) for value in plan.input_range)
    zp_x = int(plan.input_zero_point)
    code = next(
        (
            (name, low, high, four)
            for name, low, high, four in _CODE_TYPES
            if low <= min(lo, zp_x) and max(hi, zp_x) <= high
        ),
        None,
    )
    if code is None:
        return None, (f"its input codes [{lo}, {hi}] with zero point {zp_x} fit neither uint8 nor int8")
    name, low, high, (four_name, four_low, four_high) = code
    weights = plan.weight_codes.reshape(plan.out_channels, -1)
    zp_w = plan.weight_zero_point.astype(numpy.int64)
    conv = plan.kind == "conv2d"
    w_low, w_high = weights.min(axis=1), weights.max(axis=1)
    if conv:  # one shift for every channel: a single zero point stays single
        w_low, w_high = numpy.full_like(w_low, w_low.min()), numpy.full_like(w_high, w_high.max())
        zero_extremes = (numpy.full_like(zp_w, zp_w.min()), numpy.full_like(zp_w, zp_w.max()))
    else:
        zero_extremes = (zp_w, zp_w)
    storages = ([(four_name, four_low, four_high)] if int4 else []) + [(name, low, high)]
    fitted = _fit_shift(storages, w_low, w_high, zero_extremes, (low, high))
    if fitted is None:
        return None, (
            f"its weight codes [{int(weights.min())}, {int(weights.max())}] with zero points "
            f"[{int(zp_w.min())}, {int(zp_w.max())}] fit no shift into {name.lower()}"
        )
    storage, shift = fitted
    stored = weights + shift[:, None]
    zero_points = zp_w + shift
    conv_zero_point = int(zero_points[0])
    x_abs = max(abs(lo), abs(hi), abs(zp_x), abs(lo - zp_x), abs(hi - zp_x))
    w_abs = max(
        int(numpy.abs(stored).max()),
        int(numpy.abs(stored - zero_points[:, None]).max()),
        int(numpy.abs(stored - conv_zero_point).max()),
    )
    bound = plan.reduction_size * x_abs * w_abs
    if bound > _INT32_LIMIT:
        return None, (
            f"its products can reach {plan.reduction_size} * {x_abs} * {w_abs} = {bound}, beyond "
            f"int32, MatMulInteger's and ConvInteger's output"
        )
    return (
        _IntegerRoute(name, stored.reshape(plan.weight_codes.shape), storage, zero_points, conv_zero_point),
        "",
    )


def _float_route(plan: Any, int4: bool, where: str) -> _FloatRoute:
    """The float route: the dtype the centered product is exact in."""
    lo, hi = (int(value) for value in plan.input_range)
    zp_x = int(plan.input_zero_point)
    centered = plan.weight_codes.astype(numpy.int64) - plan.weight_zero_point.astype(numpy.int64).reshape(
        (-1,) + (1,) * (plan.weight_codes.ndim - 1)
    )
    x_abs = max(abs(lo - zp_x), abs(hi - zp_x))
    # sum_k |q_w - zp_w| < 2**62: the layer refuses K * max|q_w| * ... beyond it
    l1 = int(numpy.abs(centered.reshape(plan.out_channels, -1)).sum(axis=1).max())
    bound = x_abs * l1  # every partial sum of every output is an integer within it (Python int)
    dtype = next((name for name, limit in _FLOAT_LIMITS if bound < limit), "int64")
    windows = plan.kind == "conv2d" and dtype != "float32"
    if windows and x_abs >= 2**24:
        raise InvalidValueError(
            f"{where}: its centered input codes reach {x_abs}, which float32 (onnxruntime's only "
            f"exact Conv type here) cannot hold; use at most 24-bit input codes."
        )
    fits_int4 = int(centered.min()) >= -8 and int(centered.max()) <= 7
    return _FloatRoute(dtype, centered, int4 and fits_int4, windows)


# -- the graph


class _Builder:
    """Nodes and initializers of one model, each value named once (names of a merged graph
    reserved first)."""

    def __init__(self, onnx_module: Any, reserved: Sequence[str]) -> None:
        self.onnx = onnx_module
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.names: set[str] = set(reserved)

    def name(self, stem: str) -> str:
        name, count = stem, 1
        while name in self.names:
            count += 1
            name = f"{stem}_{count}"
        self.names.add(name)
        return name

    def constant(self, stem: str, value: Any, dtype: Any) -> str:
        name = self.name(stem)
        self.initializers.append(self.onnx.numpy_helper.from_array(numpy.asarray(value, dtype=dtype), name))
        return name

    def packed(self, stem: str, codes: numpy.ndarray, kind: str) -> str:
        """``codes`` as a 4-bit initializer (``INT4``/``UINT4``), two codes a byte."""
        name = self.name(stem)
        packed = pack_codes(codes, 4, signed=kind == "INT4")
        data_type = getattr(self.onnx.TensorProto, kind)
        self.initializers.append(
            self.onnx.helper.make_tensor(name, data_type, codes.shape, packed.tobytes(), raw=True)
        )
        return name

    def node(self, op_type: str, inputs: Sequence[str], stem: str, **attributes: Any) -> str:
        output = self.name(stem)
        self.nodes.append(
            self.onnx.helper.make_node(op_type, list(inputs), [output], name=output, **attributes)
        )
        return output

    def cast(self, value: str, kind: str, stem: str) -> str:
        return self.node("Cast", [value], stem, to=getattr(self.onnx.TensorProto, kind))


_ONNX_TYPES = {"float32": "FLOAT", "float64": "DOUBLE", "int64": "INT64"}


def _weights(graph: _Builder, stem: str, codes: numpy.ndarray, storage: str, target: str) -> str:
    """The weights as a ``target`` tensor: a 4-bit initializer and a Cast, or an initializer of
    ``target`` itself."""
    if storage in ("INT4", "UINT4"):
        return graph.cast(graph.packed(f"{stem}_int4", codes, storage), target, stem)
    dtype = {"UINT8": numpy.uint8, "INT8": numpy.int8, "FLOAT": numpy.float32, "DOUBLE": numpy.float64}.get(
        target, numpy.int64
    )
    return graph.constant(stem, codes, dtype)


def _channel_shape(kind: str, out_channels: int) -> tuple[int, ...]:
    """How per-channel values broadcast: the last axis (linear) or axis 1 (conv2d)."""
    return (out_channels,) if kind == "linear" else (out_channels, 1, 1)


def _conv_attributes(plan: Any) -> dict[str, Any]:
    (ph, pw), (sh, sw) = plan.padding, plan.stride
    return {
        "kernel_shape": list(plan.weight_codes.shape[2:]),
        "strides": [int(sh), int(sw)],
        "pads": [int(ph), int(pw), int(ph), int(pw)],
    }


def _accumulate(
    graph: _Builder, codes: str, plan: Any, route: _IntegerRoute | _FloatRoute, prefix: str
) -> str:
    """The accumulators (int64) of ``codes`` (int64) by ``route``."""
    shape = _channel_shape(plan.kind, plan.out_channels)
    if isinstance(route, _IntegerRoute):
        product = _integer_product(graph, codes, plan, route, prefix)
    else:
        product = _float_product(graph, codes, plan, route, prefix)
    bias = plan.bias_codes.astype(numpy.int64)
    if not numpy.any(bias):
        return product
    return graph.node(
        "Add",
        [product, graph.constant(f"{prefix}_bias_codes", bias.reshape(shape), numpy.int64)],
        f"{prefix}_accumulators",
    )


def _integer_product(graph: _Builder, codes: str, plan: Any, route: _IntegerRoute, prefix: str) -> str:
    """MatMulInteger/ConvInteger on the codes cast to the 8-bit type, cast to int64."""
    kind = route.code_type
    small = numpy.uint8 if kind == "UINT8" else numpy.int8
    narrow = graph.cast(codes, kind, f"{prefix}_input_{kind.lower()}")
    x_zero = graph.constant(f"{prefix}_input_zero_point", plan.input_zero_point, small)
    if plan.kind == "linear":
        weights = _weights(graph, f"{prefix}_weight_codes", route.weights.T, route.storage, kind)
        zero_points = graph.constant(f"{prefix}_weight_zero_points", route.zero_points, small)
        product = graph.node("MatMulInteger", [narrow, weights, x_zero, zero_points], f"{prefix}_matmul")
        return graph.cast(product, "INT64", f"{prefix}_products")
    attributes = _conv_attributes(plan)
    weights = _weights(graph, f"{prefix}_weight_codes", route.weights, route.storage, kind)
    w_zero = graph.constant(f"{prefix}_weight_zero_point", route.conv_zero_point, small)
    product = graph.cast(
        graph.node("ConvInteger", [narrow, weights, x_zero, w_zero], f"{prefix}_conv", **attributes),
        "INT64",
        f"{prefix}_products",
    )
    differences = route.zero_points - route.conv_zero_point
    if not numpy.any(differences):
        return product
    ones = graph.constant(f"{prefix}_window_ones", numpy.ones((1, *plan.weight_codes.shape[1:])), small)
    sums = graph.cast(
        graph.node("ConvInteger", [narrow, ones, x_zero], f"{prefix}_window_sums", **attributes),
        "INT64",
        f"{prefix}_window_sums_int64",
    )
    difference = graph.constant(
        f"{prefix}_zero_point_differences", differences.reshape(-1, 1, 1), numpy.int64
    )
    correction = graph.node("Mul", [sums, difference], f"{prefix}_correction")
    return graph.node("Sub", [product, correction], f"{prefix}_products_folded")


def _float_product(graph: _Builder, codes: str, plan: Any, route: _FloatRoute, prefix: str) -> str:
    """The centered product, exact in ``route.dtype``, as int64."""
    target = _ONNX_TYPES[route.dtype]

    def as_int64(value: str) -> str:
        return value if target == "INT64" else graph.cast(value, "INT64", f"{prefix}_products")

    x_zero = graph.constant(f"{prefix}_input_zero_point", plan.input_zero_point, numpy.int64)
    centered = graph.node("Sub", [codes, x_zero], f"{prefix}_centered")
    if plan.kind == "linear":
        values = (
            centered
            if target == "INT64"
            else graph.cast(centered, target, f"{prefix}_centered_{route.dtype}")
        )
        storage = "INT4" if route.int4 else target
        weights = _weights(graph, f"{prefix}_weights", route.weights.T, storage, target)
        return as_int64(graph.node("MatMul", [values, weights], f"{prefix}_matmul"))
    values = graph.cast(centered, "FLOAT", f"{prefix}_centered_float32")
    attributes = _conv_attributes(plan)
    if not route.windows:
        weights = _weights(
            graph, f"{prefix}_weights", route.weights, "INT4" if route.int4 else "FLOAT", "FLOAT"
        )
        return graph.cast(
            graph.node("Conv", [values, weights], f"{prefix}_conv", **attributes),
            "INT64",
            f"{prefix}_products",
        )
    # windows: (N, K, Ho, Wo) by one-hot kernels (each output one input code, exact in float32)
    size = plan.reduction_size
    one_hot = numpy.eye(size, dtype=numpy.float32).reshape(size, *plan.weight_codes.shape[1:])
    windows = graph.node(
        "Conv",
        [values, graph.constant(f"{prefix}_one_hot", one_hot, numpy.float32)],
        f"{prefix}_windows",
        **attributes,
    )
    flat = graph.node(
        "Reshape",
        [windows, graph.constant(f"{prefix}_flat_shape", [0, size, -1], numpy.int64)],
        f"{prefix}_windows_flat",
    )
    flat = graph.cast(flat, target, f"{prefix}_windows_{route.dtype}")
    weights = _weights(
        graph,
        f"{prefix}_weights",
        route.weights.reshape(plan.out_channels, size),
        "INT4" if route.int4 else target,
        target,
    )
    product = graph.node("MatMul", [weights, flat], f"{prefix}_matmul")  # (N, O, Ho*Wo)
    spatial = graph.node(
        "Slice",
        [
            graph.node("Shape", [windows], f"{prefix}_windows_shape"),
            graph.constant(f"{prefix}_two", [2], numpy.int64),
            graph.constant(f"{prefix}_four", [4], numpy.int64),
        ],
        f"{prefix}_output_size",
    )
    head = graph.constant(f"{prefix}_output_head", [0, plan.out_channels], numpy.int64)
    shape = graph.node("Concat", [head, spatial], f"{prefix}_output_shape", axis=0)
    return as_int64(graph.node("Reshape", [product, shape], f"{prefix}_product"))


def _per_channel(
    graph: _Builder, stem: str, values: numpy.ndarray, shape: tuple[int, ...], dtype: Any
) -> str:
    """A per-channel constant of ``shape`` (``(O,)`` or ``(O, 1, 1)``), or a scalar when every
    channel has the same value."""
    if bool(numpy.all(values == values[0])):
        return graph.constant(stem, values[0], dtype)
    return graph.constant(stem, values.reshape(shape), dtype)


def _round_shift(
    graph: _Builder, value: str, shift: numpy.ndarray, rounding: str, shape: tuple[int, ...], prefix: str
) -> str:
    """``value / 2**shift`` rounded by ``rounding`` (int64; see the module docstring), per-channel
    ``shift`` broadcast with ``shape``; ``shift <= 0`` multiplies by ``2**-shift``."""
    shift = shift.astype(numpy.int64)

    def per_channel(stem: str, values: numpy.ndarray) -> str:
        return _per_channel(graph, stem, values, shape, numpy.int64)

    if numpy.any(shift < 0):
        factors = numpy.array([1 << int(max(-s, 0)) for s in shift], dtype=numpy.int64)
        value = graph.node(
            "Mul", [value, per_channel(f"{prefix}_left_shift", factors)], f"{prefix}_shifted_left"
        )
    if not numpy.any(shift > 0):
        return value
    divisors = numpy.array([1 << int(max(s, 0)) for s in shift], dtype=numpy.int64)
    halves = numpy.array([1 << int(s - 1) if s > 0 else 1 for s in shift], dtype=numpy.int64)
    divisor = per_channel(f"{prefix}_divisor", divisors)
    half = per_channel(f"{prefix}_half", halves)
    remainder = graph.node("Mod", [value, divisor], f"{prefix}_remainder", fmod=0)  # floor modulo
    quotient = graph.node(
        "Div", [graph.node("Sub", [value, remainder], f"{prefix}_multiple"), divisor], f"{prefix}_quotient"
    )
    if rounding == "half_up":
        up = graph.node("GreaterOrEqual", [remainder, half], f"{prefix}_round_up")
    else:
        above = graph.node("Greater", [remainder, half], f"{prefix}_above_half")
        tie = graph.node("Equal", [remainder, half], f"{prefix}_tie")
        if rounding == "half_even":
            two = graph.constant(f"{prefix}_two", 2, numpy.int64)
            parity = graph.node("Mod", [quotient, two], f"{prefix}_parity", fmod=0)
            breaks = graph.node(
                "Equal", [parity, graph.constant(f"{prefix}_one", 1, numpy.int64)], f"{prefix}_odd"
            )
        else:  # half_away: at a tie the value is >= 0 exactly when the floor quotient is
            breaks = graph.node(
                "GreaterOrEqual",
                [quotient, graph.constant(f"{prefix}_zero", 0, numpy.int64)],
                f"{prefix}_non_negative",
            )
        up = graph.node(
            "Or", [above, graph.node("And", [tie, breaks], f"{prefix}_tie_up")], f"{prefix}_round_up"
        )
    increment = graph.cast(up, "INT64", f"{prefix}_increment")
    return graph.node("Add", [quotient, increment], f"{prefix}_rounded")


def _requantize(graph: _Builder, acc: str, plan: Any, kind: str, prefix: str) -> str:
    """The output codes of accumulators ``acc`` by a :class:`~intquant.integer.plan.RequantPlan`:
    the rounded values clipped to ``[lo - zp_y, hi - zp_y]``, then ``+ zp_y`` (nothing overflows;
    the same integers as clipping after adding ``zp_y``)."""
    out_channels = int(plan.shift.shape[0])
    shape = _channel_shape(kind, out_channels)
    zero_point = int(plan.output_zero_point)
    low, high = (int(value) - zero_point for value in plan.output_range)

    def per_channel(stem: str, values: numpy.ndarray, dtype: Any) -> str:
        return _per_channel(graph, stem, values, shape, dtype)

    if plan.formula == "integer":
        multiplier = plan.multiplier.astype(numpy.int64)
        value = acc
        if numpy.any(multiplier != 1):
            factor = per_channel(f"{prefix}_multiplier", multiplier, numpy.int64)
            value = graph.node("Mul", [value, factor], f"{prefix}_scaled")
        value = _round_shift(graph, value, plan.shift, plan.rounding, shape, prefix)
        bounds = [
            graph.constant(f"{prefix}_low", low, numpy.int64),
            graph.constant(f"{prefix}_high", high, numpy.int64),
        ]
        clipped = graph.node("Clip", [value, *bounds], f"{prefix}_clipped")
    else:
        value = graph.cast(
            _round_shift(graph, acc, plan.shift, "half_up", shape, prefix), "DOUBLE", f"{prefix}_float64"
        )
        factor = per_channel(f"{prefix}_multiplier", plan.multiplier.astype(numpy.float64), numpy.float64)
        rounded = graph.node(
            "Round", [graph.node("Mul", [value, factor], f"{prefix}_scaled")], f"{prefix}_rounded"
        )
        bounds = [
            graph.constant(f"{prefix}_low", low, numpy.float64),
            graph.constant(f"{prefix}_high", high, numpy.float64),
        ]
        clipped = graph.cast(
            graph.node("Clip", [rounded, *bounds], f"{prefix}_clipped"), "INT64", f"{prefix}_clipped_int64"
        )
    if not zero_point:
        return clipped
    output_zero_point = graph.constant(f"{prefix}_output_zero_point", zero_point, numpy.int64)
    return graph.node("Add", [clipped, output_zero_point], f"{prefix}_output_codes")


# -- the export


def _declared_dims(elements: Sequence[Any], shape: Any) -> list[int | str | None]:
    """The input's declared dimensions: ``shape`` checked against the first layer, or its default
    (see :func:`integer_network_to_onnx`)."""
    from intquant.integer import IntegerFlatten

    flattened = any(isinstance(element, IntegerFlatten) for element in elements[: _first_layer(elements)])
    plan = elements[_first_layer(elements)].accumulator_plan
    conv = plan.kind == "conv2d"
    if shape is None:
        if flattened:
            return ["batch", None, None, None]
        return (
            ["batch", int(plan.weight_codes.shape[1]), "height", "width"]
            if conv
            else ["batch", plan.reduction_size]
        )
    dims = check_dims(shape)

    def free_or(dim: int | str | None, size: int) -> bool:
        return not isinstance(dim, int) or dim == size

    if flattened:
        fits = len(dims) >= 1
        expected = "at least one dimension (the batch) before the flatten"
    elif conv:
        channels = int(plan.weight_codes.shape[1])
        fits = len(dims) == 4 and free_or(dims[1], channels)
        expected = f"(N, {channels}, H, W) for the first convolution"
    else:
        fits = len(dims) >= 1 and free_or(dims[-1], plan.reduction_size)
        expected = f"(..., {plan.reduction_size}) for the first linear layer"
    if not fits:
        raise InvalidValueError(
            f"'shape' {tuple(shape)} does not fit the network: the input needs {expected}."
        )
    return dims


def _first_layer(elements: Sequence[Any]) -> int:
    """The index of the first element with an accumulator plan (networks always have one)."""
    return next(index for index, element in enumerate(elements) if hasattr(element, "accumulator_plan"))


def _export(input_quantizer: Any, elements: list[Any], options: _Options, shape: Any) -> Any:
    """The model of ``elements`` (the codes of ``input_quantizer`` in)."""
    from intquant.integer import IntegerConv2d, IntegerFlatten, IntegerLinear, IntegerReLU

    onnx_module = import_onnx()
    helper = onnx_module.helper
    input_name, output_name = options.names
    dims = _declared_dims(elements, shape)
    graph = _Builder(onnx_module, options.names)
    value = input_name
    if options.inputs == "float":  # as IntegerNetwork.quantize_input: float64 values (exact), then quant
        widened = input_name if options.input_dtype == _FLOAT64 else graph.name("input_float64")
        value = graph.name("input_codes")
        quantizer = quantizer_to_onnx(
            input_quantizer,
            exact=True,
            input_dtype=_FLOAT64,
            shape=dims,
            opset=options.opset,
            input_name=widened,
            output_name=value,
        ).graph
        if widened != input_name:
            graph.nodes.append(
                helper.make_node(
                    "Cast", [input_name], [widened], name=widened, to=onnx_module.TensorProto.DOUBLE
                )
            )
        graph.nodes.extend(quantizer.node)
        graph.initializers.extend(quantizer.initializer)
        graph.names.update(name for node in quantizer.node for name in (*node.input, *node.output))
        graph.names.update(tensor.name for tensor in quantizer.initializer)
    out_dims: list[int | str | None] = list(dims)
    described: list[str] = []
    for index, element in enumerate(elements):
        prefix = f"e{index}"
        if isinstance(element, (IntegerLinear, IntegerConv2d)):
            plan = element.accumulator_plan
            where = f"element {index} ({type(element).__name__})"
            route = _route(plan, options.accumulation, options.int4, where)
            value = _accumulate(graph, value, plan, route, prefix)
            requant = element.requant_plan
            if requant is not None:
                largest = int(numpy.abs(requant.shift).max(initial=0))
                if largest > _MAX_SHIFT:
                    raise InvalidValueError(
                        f"{where}: a requantization shift of {largest} bits needs the divisor "
                        f"2**{largest}, beyond int64; the export takes shifts up to {_MAX_SHIFT}."
                    )
                value = _requantize(graph, value, requant, plan.kind, prefix)
            mode = (
                "outputs accumulators"
                if requant is None
                else f"requantization {requant.mode} ({requant.formula} formula)"
            )
            described.append(f"{index}: {type(element).__name__}, {route.describe(plan.kind)}, {mode}")
            if plan.kind == "conv2d":
                out_dims = [out_dims[0], plan.out_channels, None, None]
            else:
                out_dims = [*out_dims[:-1], plan.out_channels]
        elif isinstance(element, IntegerReLU):
            zero = graph.constant(f"{prefix}_zero_point", int(element.zero_point), numpy.int64)
            value = graph.node("Max", [value, zero], f"{prefix}_relu")
            described.append(f"{index}: IntegerReLU, Max")
        elif isinstance(element, IntegerFlatten):
            value = graph.node("Flatten", [value], f"{prefix}_flatten", axis=1)
            described.append(f"{index}: IntegerFlatten, Flatten")
            out_dims = [out_dims[0], None]
        else:
            raise InvalidTypeError(
                f"element {index} is a {type(element).__name__}; the export knows IntegerLinear, "
                f"IntegerConv2d, IntegerReLU and IntegerFlatten."
            )
    if graph.nodes and graph.nodes[-1].output[0] == value:  # the last node computes the output
        graph.nodes[-1].output[0] = output_name
        graph.nodes[-1].name = output_name
    else:
        graph.nodes.append(helper.make_node("Identity", [value], [output_name], name=output_name))
    source_type = (
        helper.np_dtype_to_tensor_dtype(options.input_dtype)
        if options.inputs == "float"
        else onnx_module.TensorProto.INT64
    )
    what = "intquant integer network"
    model_graph = helper.make_graph(
        graph.nodes,
        what,
        [helper.make_tensor_value_info(input_name, source_type, dims)],
        [helper.make_tensor_value_info(output_name, onnx_module.TensorProto.INT64, out_dims)],
        initializer=graph.initializers,
    )
    opsets = [helper.make_opsetid("", options.opset)]
    model = helper.make_model(
        model_graph,
        opset_imports=opsets,
        producer_name="intquant",
        doc_string=f"{what} ({options.inputs} in, int64 out); elements: " + "; ".join(described),
    )
    model.ir_version = helper.find_min_ir_version_for(opsets)
    onnx_module.checker.check_model(model)
    return model

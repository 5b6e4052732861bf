"""Export a quantizer to ONNX: a graph that quantizes (or dequantizes) as the quantizer does.

:func:`quantizer_to_onnx` and :func:`dequantizer_to_onnx` build models with one input (``x``
unless ``input_name=`` says otherwise) and one output (``y``, or ``output_name=``);
:func:`code_dtype` gives the codes' dtype. ``quantize_model`` and ``dequantize_model`` are the
same functions under their older names. Two exports:

* standard (``exact=False``; QuantizeLinear/DequantizeLinear, per-tensor and per-axis):
  ``y = clip(round(float32(x) / float32(scale)) + zero_point, low, high)`` in an 8- or 16-bit
  integer type, and ``y = float32(q - zero_point) * float32(scale)``;
* exact (``exact=True``; elementary operators, also per-block):
  ``y = int64(clip(round(x / scale + zero_point), low, high))`` in numpy 1.24's dtypes, and
  ``y = (float64(q) - float64(zero_point)) * float64(scale)``: intquant's codes and values.

With a non-zero zero point the standard export can differ from intquant by one at half-way
points (ONNX rounds ``x / scale`` and adds the zero point as an integer); every code agreed in
the exact export. A per-tensor model takes inputs of any rank by default; see docs/onnx.md for
shapes, names, the measurements and the caveats (NaN, overflow).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy

from intquant._core.checks import check_flag
from intquant._core.plan import DequantPlan, QuantPlan, QuantStep
from intquant.errors import InvalidTypeError, InvalidValueError, MissingDependencyError
from intquant.onnx._parameters import OnnxParameters
from intquant.onnx._support import DEFAULT_OPSET, MIN_OPSET, check_names, check_opset, import_onnx

if TYPE_CHECKING:
    import onnx

__all__ = [
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "MissingDependencyError",
    "code_dtype",
    "quantizer_to_onnx",
    "dequantizer_to_onnx",
    "quantize_model",
    "dequantize_model",
]

_INPUT_DTYPES = tuple(
    numpy.dtype(name)
    for name in (
        "float16",
        "float32",
        "float64",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
    )
)
_CODES_DTYPES = tuple(dtype for dtype in _INPUT_DTYPES if dtype.kind in "iu")
# Integer types onnxruntime clips (Clip, Max, Min) directly; int16/uint16 go through int32.
_CLIPPABLE = tuple(numpy.dtype(name) for name in ("int8", "uint8", "int32", "uint32", "int64", "uint64"))
_FLOAT16 = numpy.dtype(numpy.float16)
_FLOAT32 = numpy.dtype(numpy.float32)
_FLOAT64 = numpy.dtype(numpy.float64)
_INT32 = numpy.dtype(numpy.int32)
_INT64 = numpy.dtype(numpy.int64)
_ROUNDING_OPS = {"half_even": "Round", "floor": "Floor", "ceil": "Ceil"}


def code_dtype(quantizer: Any, *, exact: bool = False, opset: int = DEFAULT_OPSET) -> numpy.dtype[Any]:
    """The dtype of the codes :func:`quantizer_to_onnx` outputs (and :func:`dequantizer_to_onnx`
    reads by default).

    int64 for the exact export. For the standard export, the narrowest of int8, uint8, int16,
    uint16 (opset 21 or newer for the 16-bit types) that holds the clipping range
    ``[-offset (+1 if narrow), 2**n_bits - 1 - offset]`` and every zero point; unsigned when
    none of them is negative. Needs no ``onnx``.

    Raises
    ------
    InvalidValueError, InvalidTypeError, MissingParameterError
        If the quantizer cannot be exported this way (see :func:`quantizer_to_onnx`).

    Examples
    --------
    >>> import numpy
    >>> from intquant import QuantizedArray
    >>> values = numpy.linspace(-1.0, 1.0, 11)
    >>> code_dtype(QuantizedArray(8, values).quantizer)
    dtype('uint8')
    >>> code_dtype(QuantizedArray(4, values, is_signed=True).quantizer)
    dtype('int8')
    >>> code_dtype(QuantizedArray(12, values).quantizer)
    dtype('uint16')
    >>> code_dtype(QuantizedArray(12, values).quantizer, exact=True)
    dtype('int64')
    """
    opset = check_opset(opset)
    parameters = OnnxParameters.of(quantizer, exact=check_flag("exact", exact), dequantize=True)
    return _INT64 if exact else parameters.standard_type(opset)


def quantizer_to_onnx(
    quantizer: Any,
    *,
    exact: bool = False,
    input_dtype: Any = numpy.float32,
    shape: Sequence[int | str | None] | None = None,
    opset: int = DEFAULT_OPSET,
    input_name: str = "x",
    output_name: str = "y",
) -> onnx.ModelProto:
    """An ONNX model computing ``quantizer.quant(x)``: input ``x``, output the codes ``y``.

    Standard export (``exact=False``)::

        y = Clip(QuantizeLinear(float32(x), float32(scale), zero_point, axis), low, high)
          = clip(round(float32(x) / float32(scale)) + zero_point, low, high)

    in the integer type :func:`code_dtype` gives, the Clip only where ``[low, high]`` is narrower
    than that type. It can differ from intquant by one at rare half-way points (see the module
    docstring). Exact export (``exact=True``)::

        y = int64(clip(round(x / scale + zero_point), low, high))

    with the division in the dtype numpy 1.24 divides ``input_dtype`` arrays in, the addition in
    the dtype it adds the zero point in, and the rounding mode of the quantizer: the same int64
    codes as intquant. Rounding is half to even in both.

    Input shape (``shape=None``): a per-tensor model takes ``x`` of **any rank**, its input and
    output declared without a shape (ONNX's "any shape"; onnxruntime runs it, but
    ``onnx.checker.check_model`` asks for a declared shape: give ``shape=`` for that). Where
    numpy 1.24 computes a 0-d value in other dtypes than an array (a float32 value divided by a
    float64 scale: in float64), the exact model holds both computations and an ``If`` on the
    input's rank picks one, so 0-d input gives intquant's codes too; ``shape=()`` builds the 0-d
    computation alone. A per-axis model takes the parameters' rank, any size except ``C`` along
    ``axis``; a per-block model the calibration data's shape, which is the only one it can take.
    Per-tensor parameters held as one-element arrays of ``k`` dimensions give a model of rank
    ``k`` (numpy broadcasts lower ranks up to ``k``).

    Parameters
    ----------
    quantizer : UniformQuantizer
        A quantizer with ``scale``, ``zero_point``, ``offset`` and (to clip) ``n_bits``.
    exact : bool
        Build the exact export instead of the standard one.
    input_dtype : dtype-like
        The dtype of ``x``: float16, float32 (default), float64, or an integer dtype.
    shape : sequence of int, str or None, optional
        The shape of ``x``: per dimension a size, a name for a size that may vary, or None (a
        size that may vary, unnamed). Default: see above.
    opset : int
        The ONNX opset, at least 13 (21 for 16-bit codes in the standard export).
    input_name, output_name : str
        The names of the model's input (default ``"x"``) and output (default ``"y"``), what
        ``onnxruntime.InferenceSession.run`` takes and returns: non-empty and different.

    Returns
    -------
    onnx.ModelProto

    Raises
    ------
    MissingDependencyError
        If ``onnx`` is not installed.
    MissingParameterError
        If the quantizer has no scale, zero point or offset yet, or no ``n_bits`` to clip.
    InvalidValueError
        For a zero or non-finite scale; stochastic rounding; in the standard export, a quantizer
        without clipping, per-block parameters, rounding other than half to even, a scale that
        float32 cannot hold, or codes no 16-bit type holds; a shape that does not fit the
        parameters; an opset out of range; empty or equal names.
    InvalidTypeError
        For an unsupported ``input_dtype``, a quantizer that is not one, names that are not str.

    Examples
    --------
    >>> import numpy
    >>> from intquant import QuantizedArray
    >>> quantizer = QuantizedArray(4, numpy.array([-1.0, 0.0, 2.0]), is_signed=True).quantizer
    >>> model = quantizer_to_onnx(quantizer)
    >>> [node.op_type for node in model.graph.node]
    ['QuantizeLinear', 'Clip']
    >>> model = quantizer_to_onnx(quantizer, exact=True, shape=["n"])
    >>> [node.op_type for node in model.graph.node]
    ['Div', 'Add', 'Round', 'Clip', 'Cast']
    >>> [value.name for value in quantizer_to_onnx(quantizer, input_name="weights").graph.input]
    ['weights']
    """
    parameters = OnnxParameters.of(quantizer, exact=check_flag("exact", exact))
    dtype = _check_input_dtype(input_dtype)
    opset = check_opset(opset)
    input_name, output_name = check_names(input_name, output_name)
    dims = parameters.input_dims(shape)
    if not exact:
        codes = parameters.standard_type(opset)
        graph = _Graph(import_onnx(), input_name, output_name)
        graph.standard_quantize(parameters, codes, dtype)
        return graph.model("quantize (QuantizeLinear)", dtype, dims, codes, opset)
    array_plan = _exact_plan(quantizer.quant_plan, parameters, dtype, dims)
    graph = _Graph(import_onnx(), input_name, output_name)
    if dims is None:  # any rank: 0-d values follow numpy's scalar rules
        scalar_plan = quantizer.quant_plan(dtype, ())
        graph.by_rank(
            lambda: graph.exact_quantize(parameters, scalar_plan, dtype),
            lambda: graph.exact_quantize(parameters, array_plan, dtype),
            _same_arithmetic(scalar_plan, array_plan),
            _INT64,
        )
    else:
        graph.exact_quantize(parameters, array_plan, dtype)
    return graph.model("quantize (exact)", dtype, dims, _INT64, opset)


def dequantizer_to_onnx(
    quantizer: Any,
    *,
    exact: bool = False,
    codes_dtype: Any = None,
    shape: Sequence[int | str | None] | None = None,
    opset: int = DEFAULT_OPSET,
    input_name: str = "x",
    output_name: str = "y",
) -> onnx.ModelProto:
    """An ONNX model computing ``quantizer.dequant(q)``: input the codes ``x``, output ``y``.

    Standard export (``exact=False``)::

        y = DequantizeLinear(x, float32(scale), zero_point, axis) = float32(x - zero_point) * float32(scale)

    in float32, so within a few float32 rounding errors of intquant's float64 values. Its input
    has the type :func:`code_dtype` gives (what :func:`quantizer_to_onnx` outputs) unless
    ``codes_dtype`` names another integer dtype, such as int64 for the codes
    ``quantizer.quant`` returns: the model then casts them to that type first, which is exact
    for every code in its range (so for every code ``quant`` returns, which lie in ``[low,
    high]``); a code beyond it is first clipped to it (QuantizeLinear's saturation).

    Exact export (``exact=True``): int64 codes (or ``codes_dtype``), and::

        y = (float64(x) - float64(zero_point)) * float64(scale)

    in float64: the same values as intquant, bit for bit.

    Parameters
    ----------
    quantizer : UniformQuantizer
    exact : bool
    codes_dtype : dtype-like, optional
        The dtype of ``x``: an integer dtype (int8 to int64, uint8 to uint64). Default: the
        :func:`code_dtype` of the export.
    shape : sequence of int, str or None, optional
        The shape of the codes; as in :func:`quantizer_to_onnx` (any rank per tensor by default).
    opset : int
    input_name, output_name : str
        As in :func:`quantizer_to_onnx`.

    Returns
    -------
    onnx.ModelProto

    Raises
    ------
    MissingDependencyError, MissingParameterError, InvalidValueError, InvalidTypeError
        As :func:`quantizer_to_onnx`; InvalidTypeError also for a ``codes_dtype`` that is not an
        integer dtype.

    Examples
    --------
    >>> import numpy
    >>> from intquant import QuantizedArray
    >>> quantizer = QuantizedArray(8, numpy.array([-1.0, 0.0, 2.0])).quantizer
    >>> [node.op_type for node in dequantizer_to_onnx(quantizer).graph.node]
    ['DequantizeLinear']
    >>> model = dequantizer_to_onnx(quantizer, codes_dtype=numpy.int64)  # quantizer.quant's codes
    >>> [node.op_type for node in model.graph.node]
    ['Clip', 'Cast', 'DequantizeLinear']
    >>> [node.op_type for node in dequantizer_to_onnx(quantizer, exact=True).graph.node]
    ['Cast', 'Sub', 'Mul']
    """
    parameters = OnnxParameters.of(quantizer, exact=check_flag("exact", exact), dequantize=True)
    given = None if codes_dtype is None else _check_codes_dtype(codes_dtype)
    opset = check_opset(opset)
    input_name, output_name = check_names(input_name, output_name)
    dims = parameters.input_dims(shape)
    if not exact:
        codes = parameters.standard_type(opset)
        source = codes if given is None else given
        graph = _Graph(import_onnx(), input_name, output_name)
        graph.standard_dequantize(parameters, codes, source)
        return graph.model("dequantize (DequantizeLinear)", source, dims, _FLOAT32, opset)
    source = _INT64 if given is None else given
    array_plan = _exact_plan(quantizer.dequant_plan, parameters, source, dims)
    graph = _Graph(import_onnx(), input_name, output_name)
    if dims is None:
        scalar_plan = quantizer.dequant_plan(source, ())
        graph.by_rank(
            lambda: graph.exact_dequantize(scalar_plan),
            lambda: graph.exact_dequantize(array_plan),
            _same_arithmetic(scalar_plan, array_plan),
            _FLOAT64,
        )
    else:
        graph.exact_dequantize(array_plan)
    return graph.model("dequantize (exact)", source, dims, _FLOAT64, opset)


#: The older names of :func:`quantizer_to_onnx` and :func:`dequantizer_to_onnx` (the same
#: functions; kept, not deprecated).
quantize_model = quantizer_to_onnx
dequantize_model = dequantizer_to_onnx


# -- checks at the boundary


def _check_input_dtype(input_dtype: Any) -> numpy.dtype[Any]:
    try:
        dtype = numpy.dtype(input_dtype)
    except TypeError as error:
        raise InvalidTypeError(
            f"'input_dtype' must be a numpy dtype; got {input_dtype!r} ({error})."
        ) from error
    if dtype not in _INPUT_DTYPES:
        raise InvalidTypeError(
            f"'input_dtype' must be one of {', '.join(str(item) for item in _INPUT_DTYPES)}; got {dtype}."
        )
    return dtype


def _check_codes_dtype(codes_dtype: Any) -> numpy.dtype[Any]:
    try:
        dtype = numpy.dtype(codes_dtype)
    except TypeError as error:
        raise InvalidTypeError(
            f"'codes_dtype' must be a numpy integer dtype; got {codes_dtype!r} ({error})."
        ) from error
    if dtype not in _CODES_DTYPES:
        raise InvalidTypeError(
            f"'codes_dtype' must be one of {', '.join(str(item) for item in _CODES_DTYPES)} (integer "
            f"codes, e.g. numpy.int64 for the codes quantizer.quant returns); got {dtype}."
        )
    return dtype


def _exact_plan(
    make_plan: Callable[..., Any],
    parameters: OnnxParameters,
    dtype: numpy.dtype[Any],
    dims: list[int | str | None] | None,
) -> Any:
    """The plan of inputs of ``dims``' rank (at least 1 for any rank), refusing a plan a graph
    cannot reproduce."""
    rank = max(1, parameters.min_rank) if dims is None else len(dims)
    plan = make_plan(dtype, parameters.plan_shape(rank))
    if plan.generic:
        raise InvalidValueError(
            f"the exact export cannot reproduce this quantizer on input of rank {rank}: its "
            f"array parameters have more dimensions (numpy would broadcast the codes to another "
            f"shape), or the input is 0-d (numpy 1.24 promotes a 0-d value against arrays by the "
            f"value itself, which a graph cannot know in advance). Export with a shape of higher "
            f"rank, or use scalar parameters."
        )
    return plan


def _same_arithmetic(first: QuantPlan | DequantPlan, second: QuantPlan | DequantPlan) -> bool:
    """Whether two per-tensor plans compute in the same dtypes with the same parameters."""
    return first.generic == second.generic and _arithmetic(first) == _arithmetic(second)


def _arithmetic(plan: QuantPlan | DequantPlan) -> list[Any]:
    """What a per-tensor plan computes: per step its dtypes and parameters (dtype and bytes),
    then the rounding and bounds of a quantization plan."""
    described: list[Any] = []
    for step in plan.steps:
        if isinstance(step, QuantStep):
            dtypes = (step.division, step.addition)
        else:
            dtypes = (step.subtraction, step.multiplication)
        parameters = [numpy.asarray(value) for value in (step.scale, step.zero_point)]
        described.append((*dtypes, *((value.dtype.str, value.tobytes()) for value in parameters)))
    if isinstance(plan, QuantPlan):
        described.append((plan.rounding, repr(plan.bounds)))
    return described


def _computed_in(dtype: numpy.dtype[Any]) -> numpy.dtype[Any]:
    """The dtype a graph computes a ``dtype`` step in: float32 for float16 (see ``_Graph.step``)."""
    return _FLOAT32 if dtype == _FLOAT16 else dtype


def _exactly_holds(dtype: numpy.dtype[Any], values: Any) -> bool:
    """Whether ``dtype`` holds every integer of ``values`` exactly."""
    with numpy.errstate(over="ignore", invalid="ignore"):
        wide = numpy.asarray(values, dtype=numpy.float64)
        return bool(numpy.all(wide.astype(dtype).astype(numpy.float64) == wide))


class _Graph:
    """Nodes and constants of one model, named uniquely as they are added; ``source`` is the
    model's input and the last node added computes its output."""

    def __init__(self, onnx_module: Any, source: str, target: str) -> None:
        self.onnx = onnx_module
        self.source = source
        self.target = target
        self.nodes: list[Any] = []
        self.constants: list[Any] = []
        self.names: set[str] = {source, target}

    def _name(self, stem: str) -> str:
        name, count = stem, 1
        while name in self.names:
            count += 1
            name = f"{stem}_{count}"
        self.names.add(name)
        return name

    def constant(self, stem: str, value: Any, dtype: Any = None) -> str:
        array = numpy.asarray(value, dtype=dtype)
        name = self._name(stem)
        self.constants.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op_type: str, inputs: Sequence[str], stem: str | None = None, **attributes: Any) -> str:
        output = self._name(stem or op_type.lower())
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [output], **attributes))
        return output

    def step(self, op_type: str, inputs: Sequence[str], dtype: numpy.dtype[Any]) -> str:
        """``op_type`` of ``inputs`` as numpy computes it in ``dtype``: float16 steps run in
        float32 and are rounded to float16 by a Cast (onnxruntime runs float16 Div and Add in
        float32 and drops the float16 rounding between consecutive nodes)."""
        output = self.node(op_type, inputs)
        if dtype == _FLOAT16:
            output = self.cast(self.cast(output, _FLOAT16), _FLOAT32)
        return output

    def cast(self, value: str, dtype: numpy.dtype[Any]) -> str:
        return self.node("Cast", [value], to=self._type(dtype))

    def _type(self, dtype: numpy.dtype[Any]) -> int:
        return int(self.onnx.helper.np_dtype_to_tensor_dtype(dtype))

    def clip(
        self, value: str, dtype: numpy.dtype[Any], bounds: tuple[tuple[int, int], ...], shape: tuple[int, ...]
    ) -> str:
        """``value`` (of ``dtype``) clipped to each block's bounds: Clip if all blocks share them,
        else Max then Min with the bounds broadcast like the parameters."""
        lows, highs = zip(*bounds, strict=True)
        if len(set(bounds)) == 1:
            low = self.constant("low", lows[0], dtype)
            high = self.constant("high", highs[0], dtype)
            return self.node("Clip", [value, low, high])
        low = self.constant("low", numpy.reshape(lows, shape), dtype)
        high = self.constant("high", numpy.reshape(highs, shape), dtype)
        return self.node("Min", [self.node("Max", [value, low]), high])

    def by_rank(
        self,
        scalar: Callable[[], str],
        array: Callable[[], str],
        same: bool,
        result: numpy.dtype[Any],
    ) -> str:
        """The nodes ``array`` adds when both computations are the same, else
        ``If(Size(Shape(x)) == 0, <scalar's nodes>, <array's nodes>)``: the computation of the
        input's rank, decided when the model runs."""
        if same:
            return array()
        rank = self.node("Size", [self.node("Shape", [self.source])], stem="rank")
        is_scalar = self.node("Equal", [rank, self.constant("zero", 0, numpy.int64)], stem="is_scalar")
        branches = [self._branch(build, result, name) for build, name in ((scalar, "0-d"), (array, "arrays"))]
        return self.node("If", [is_scalar], then_branch=branches[0], else_branch=branches[1])

    def _branch(self, build: Callable[[], str], result: numpy.dtype[Any], name: str) -> Any:
        """A subgraph of the nodes ``build`` adds (reading the outer scope), returning its value."""
        outer, self.nodes = self.nodes, []
        try:
            value = build()
            helper = self.onnx.helper
            output = helper.make_tensor_value_info(value, self._type(result), None)
            return helper.make_graph(self.nodes, f"intquant {name}", [], [output])
        finally:
            self.nodes = outer

    # -- the four graphs

    def standard_quantize(
        self, parameters: OnnxParameters, codes: numpy.dtype[Any], dtype: numpy.dtype[Any]
    ) -> str:
        assert parameters.bounds is not None
        value = self.source if dtype == _FLOAT32 else self.cast(self.source, _FLOAT32)
        value = self.node(
            "QuantizeLinear", [value, *self._qdq_parameters(parameters, codes)], **self._axis(parameters)
        )
        info = numpy.iinfo(codes)
        if all(low == info.min and high == info.max for low, high in parameters.bounds):
            return value
        if codes in _CLIPPABLE:
            return self.clip(value, codes, parameters.bounds, parameters.parameter_shape)
        clipped = self.clip(self.cast(value, _INT32), _INT32, parameters.bounds, parameters.parameter_shape)
        return self.cast(clipped, codes)

    def standard_dequantize(
        self, parameters: OnnxParameters, codes: numpy.dtype[Any], source: numpy.dtype[Any]
    ) -> str:
        """DequantizeLinear of ``codes``; codes of another ``source`` dtype are first saturated
        to the range of ``codes`` (where ``source`` can exceed it) and cast to it."""
        value = self.source
        if source != codes:
            target, wide = numpy.iinfo(codes), numpy.iinfo(source)
            if wide.min < target.min or wide.max > target.max:
                clipped_in = source if source in _CLIPPABLE else _INT32
                if clipped_in != source:
                    value = self.cast(value, clipped_in)
                value = self.clip(
                    value, clipped_in, ((max(target.min, wide.min), min(target.max, wide.max)),), ()
                )
            value = self.cast(value, codes)
        return self.node(
            "DequantizeLinear", [value, *self._qdq_parameters(parameters, codes)], **self._axis(parameters)
        )

    def _qdq_parameters(self, parameters: OnnxParameters, codes: numpy.dtype[Any]) -> tuple[str, str]:
        """The scale (float32) and zero point (``codes``) constants: scalars per tensor, 1-D per axis."""
        per_axis = parameters.axis is not None
        scales = parameters.float32_scales()
        zero_points = numpy.array([int(zp) for zp in parameters.zero_points], dtype=codes)
        return (
            self.constant("scale", scales if per_axis else scales[0]),
            self.constant("zero_point", zero_points if per_axis else zero_points[0]),
        )

    @staticmethod
    def _axis(parameters: OnnxParameters) -> dict[str, Any]:
        return {} if parameters.axis is None else {"axis": parameters.axis}

    def exact_quantize(self, parameters: OnnxParameters, plan: QuantPlan, dtype: numpy.dtype[Any]) -> str:
        """The plan's steps as nodes: per step ``Round(Cast<A>(Div(Cast<D>(x), scale)) + zero_point)``
        (float16 steps run in float32 and are rounded to float16 in between), the steps' codes
        merged per block with ``Where``, then clipped and cast to int64."""
        view = None if plan.layout is None else plan.layout.view
        source = self._reshaped(self.source, view)
        inputs: dict[numpy.dtype[Any], str] = {dtype: source}
        branches: list[str] = []
        for step in plan.steps:
            wide_division, wide_addition = _computed_in(step.division), _computed_in(step.addition)
            if wide_division not in inputs:
                inputs[wide_division] = self.cast(source, wide_division)
            scale = self.constant("scale", step.scale, wide_division)
            quotient = self.step("Div", [inputs[wide_division], scale], step.division)
            if wide_addition != wide_division:
                quotient = self.cast(quotient, wide_addition)
            zero_point = self.constant("zero_point", step.zero_point, wide_addition)
            shifted = self.step("Add", [quotient, zero_point], step.addition)
            if plan.rounding == "half_up":
                half = self.constant("half", 0.5, wide_addition)
                rounded = self.node("Floor", [self.step("Add", [shifted, half], step.addition)])
            else:
                rounded = self.node(_ROUNDING_OPS[plan.rounding], [shifted])
            branches.append(rounded)
        if len(plan.steps) == 1:
            codes, codes_dtype = branches[0], _computed_in(plan.steps[0].addition)
        else:  # per block, the branch of its dtypes; rounded codes are exact in float64
            widened = [
                branch if _computed_in(step.addition) == _FLOAT64 else self.cast(branch, _FLOAT64)
                for step, branch in zip(plan.steps, branches, strict=True)
            ]
            codes, codes_dtype = widened[0], _FLOAT64
            for step, branch in zip(plan.steps[1:], widened[1:], strict=True):
                codes = self.node("Where", [self.constant("mask", step.blocks), branch, codes])
        if plan.bounds is not None:
            # intquant clips in the codes' dtype when it holds the bounds exactly, else in float64;
            # any dtype holding the codes and the bounds exactly gives the same result
            low, high = plan.bounds
            if not _exactly_holds(codes_dtype, low) or not _exactly_holds(codes_dtype, high):
                codes, codes_dtype = self.cast(codes, _FLOAT64), _FLOAT64
            codes = (
                self.node(
                    "Min",
                    [
                        self.node("Max", [codes, self.constant("low", low, codes_dtype)]),
                        self.constant("high", high, codes_dtype),
                    ],
                )
                if numpy.ndim(low)
                else self.node(
                    "Clip",
                    [codes, self.constant("low", low, codes_dtype), self.constant("high", high, codes_dtype)],
                )
            )
        return self._reshaped(self.cast(codes, _INT64), None if view is None else parameters.static_shape)

    def exact_dequantize(self, plan: DequantPlan) -> str:
        """``Mul(Sub(Cast<float64>(x), zero_point), scale)``: the plan's single float64 step (integer
        codes), with the per-block view's reshapes around it."""
        (step,) = plan.steps
        if step.subtraction != _FLOAT64 or step.multiplication != _FLOAT64:  # integer codes: never
            raise InvalidValueError(
                f"the exact export computes in float64; these codes dequantize in "
                f"{step.subtraction}/{step.multiplication}."
            )
        view = None if plan.layout is None else plan.layout.view
        codes = self.cast(self._reshaped(self.source, view), _FLOAT64)
        centered = self.node("Sub", [codes, self.constant("zero_point", step.zero_point, _FLOAT64)])
        values = self.node("Mul", [centered, self.constant("scale", step.scale, _FLOAT64)])
        return self._reshaped(values, None if view is None or plan.layout is None else plan.layout.shape)

    def _reshaped(self, value: str, shape: tuple[int, ...] | None) -> str:
        """``value`` reshaped to ``shape`` (unchanged when None)."""
        if shape is None:
            return value
        return self.node("Reshape", [value, self.constant("shape", shape, numpy.int64)])

    def model(
        self,
        what: str,
        input_dtype: numpy.dtype[Any],
        dims: list[int | str | None] | None,
        output_dtype: numpy.dtype[Any],
        opset: int,
    ) -> Any:
        """The model: the source in, the last node's output renamed to the target, checked (with
        a stand-in rank where ``dims`` is None: the checker wants declared shapes)."""
        helper = self.onnx.helper
        self.nodes[-1].output[0] = self.target  # the last node computes the output
        shown = "any rank (no declared shape)" if dims is None else ""
        graph = helper.make_graph(
            self.nodes,
            f"intquant {what}",
            [helper.make_tensor_value_info(self.source, self._type(input_dtype), dims, shown)],
            [helper.make_tensor_value_info(self.target, self._type(output_dtype), dims, shown)],
            initializer=self.constants,
        )
        opsets = [helper.make_opsetid("", opset)]
        model = helper.make_model(
            graph,
            opset_imports=opsets,
            producer_name="intquant",
            doc_string=f"intquant {what}; see the intquant.onnx module for the formulas.",
        )
        model.ir_version = helper.find_min_ir_version_for(opsets)
        checked = model
        if dims is None:
            checked = self.onnx.ModelProto()
            checked.CopyFrom(model)
            for value in (*checked.graph.input, *checked.graph.output):
                value.type.tensor_type.shape.dim.add().dim_param = "any_rank"
        self.onnx.checker.check_model(checked)
        return model

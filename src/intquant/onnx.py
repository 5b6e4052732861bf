"""Export a quantizer to ONNX: a graph that quantizes (or dequantizes) as the quantizer does.

Needs the ``onnx`` package (``pip install "intquant[onnx]"``), imported only when a model is
built. :func:`quantize_model` and :func:`dequantize_model` build models with one input ``x`` and
one output ``y``; :func:`code_dtype` gives the codes' dtype. Two exports:

* standard (``exact=False``; QuantizeLinear/DequantizeLinear, per-tensor and per-axis):
  ``y = clip(round(float32(x) / float32(scale)) + zero_point, low, high)`` in an 8- or 16-bit
  integer type, and ``y = float32(q - zero_point) * float32(scale)``;
* exact (``exact=True``; elementary operators, also per-block):
  ``y = int64(clip(round(x / scale + zero_point), low, high))`` in numpy 1.24's dtypes, and
  ``y = (float64(q) - float64(zero_point)) * float64(scale)``: intquant's codes and values.

With a non-zero zero point the standard export can differ from intquant by one at half-way
points (ONNX rounds ``x / scale`` and adds the zero point as an integer); every code agreed in
the exact export. See docs/onnx.md for the measurements, shapes and caveats (0-d input, NaN).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy

from intquant._core.checks import check_flag, check_int, check_n_bits, check_scale, is_integer
from intquant._core.formulas import integer_bounds
from intquant._core.plan import DequantPlan, QuantPlan
from intquant._numpy124.promotion import as_numpy_operand
from intquant.errors import (
    InvalidTypeError,
    InvalidValueError,
    MissingDependencyError,
)

if TYPE_CHECKING:
    import onnx

__all__ = [
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "MissingDependencyError",
    "code_dtype",
    "quantize_model",
    "dequantize_model",
]

#: The opset models use by default: the first with int16/uint16 QuantizeLinear.
DEFAULT_OPSET = 21
#: The oldest opset accepted: per-axis QuantizeLinear / DequantizeLinear arrived in opset 13.
MIN_OPSET = 13
_SIXTEEN_BIT_OPSET = 21

_INSTALL_HINT = 'install it with pip install "intquant[onnx]"'
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
# Integer types of QuantizeLinear by width: (unsigned, signed, first opset).
_QDQ_TYPES = (
    (numpy.dtype(numpy.uint8), numpy.dtype(numpy.int8), MIN_OPSET),
    (numpy.dtype(numpy.uint16), numpy.dtype(numpy.int16), _SIXTEEN_BIT_OPSET),
)
# Types onnxruntime clips (Clip, Max, Min) directly; others go through int32.
_CLIPPABLE = (numpy.dtype(numpy.int8), numpy.dtype(numpy.uint8))
_FLOAT16 = numpy.dtype(numpy.float16)
_FLOAT32 = numpy.dtype(numpy.float32)
_FLOAT64 = numpy.dtype(numpy.float64)
_INT64 = numpy.dtype(numpy.int64)
_ROUNDING_OPS = {"half_even": "Round", "floor": "Floor", "ceil": "Ceil"}


def code_dtype(quantizer: Any, *, exact: bool = False, opset: int = DEFAULT_OPSET) -> numpy.dtype[Any]:
    """The dtype of the codes :func:`quantize_model` outputs and :func:`dequantize_model` reads.

    int64 for the exact export. For the standard export, the narrowest of int8, uint8, int16,
    uint16 (opset 21 or newer for the 16-bit types) that holds the clipping range
    ``[-offset (+1 if narrow), 2**n_bits - 1 - offset]`` and every zero point; unsigned when
    none of them is negative. Needs no ``onnx``.

    Raises
    ------
    InvalidValueError, InvalidTypeError, MissingParameterError
        If the quantizer cannot be exported this way (see :func:`quantize_model`).

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
    _check_opset(opset)
    export = _Export.of(quantizer, exact=check_flag("exact", exact), dequantize=True)
    return _INT64 if exact else export.standard_type(opset)


def quantize_model(
    quantizer: Any,
    *,
    exact: bool = False,
    input_dtype: Any = numpy.float32,
    shape: Sequence[int | str | None] | None = None,
    opset: int = DEFAULT_OPSET,
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

    Parameters
    ----------
    quantizer : UniformQuantizer
        A quantizer with ``scale``, ``zero_point``, ``offset`` and (to clip) ``n_bits``.
    exact : bool
        Build the exact export instead of the standard one.
    input_dtype : dtype-like
        The dtype of ``x``: float16, float32 (default), float64, or an integer dtype.
    shape : sequence of int, str or None, optional
        The shape of ``x``: a size, a name for a size that may vary, or None. By default one
        dimension of any size (per-tensor), the rank of the parameters with any size except
        along ``axis`` (per-axis), or the shape of the calibration data (per-block, which can
        have no other).
    opset : int
        The ONNX opset, at least 13 (21 for 16-bit codes in the standard export).

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
        parameters; an opset out of range.
    InvalidTypeError
        For an unsupported ``input_dtype`` or a quantizer that is not one.

    Examples
    --------
    >>> import numpy
    >>> from intquant import QuantizedArray
    >>> quantizer = QuantizedArray(4, numpy.array([-1.0, 0.0, 2.0]), is_signed=True).quantizer
    >>> model = quantize_model(quantizer)
    >>> [node.op_type for node in model.graph.node]
    ['QuantizeLinear', 'Clip']
    >>> model = quantize_model(quantizer, exact=True)
    >>> [node.op_type for node in model.graph.node]
    ['Div', 'Add', 'Round', 'Clip', 'Cast']
    """
    export = _Export.of(quantizer, exact=check_flag("exact", exact))
    dtype = _check_input_dtype(input_dtype)
    _check_opset(opset)
    dims = export.input_dims(shape)
    if exact:
        plan = quantizer.quant_plan(dtype, export.plan_shape(len(dims)))
        if plan.generic:
            raise InvalidValueError(
                f"the exact export cannot reproduce this quantizer on input of rank {len(dims)}: its "
                f"array parameters have more dimensions (numpy would broadcast the codes to another "
                f"shape), or the input is 0-d (numpy 1.24 promotes a 0-d value against arrays by the "
                f"value itself, which a graph cannot know in advance). Export with a shape of higher "
                f"rank, or use scalar parameters."
            )
        onnx_module = _import_onnx()
        graph = _Graph(onnx_module)
        graph.exact_quantize(export, plan, dtype)
        return graph.model("quantize (exact)", dtype, dims, _INT64, opset)
    codes = export.standard_type(opset)
    onnx_module = _import_onnx()
    graph = _Graph(onnx_module)
    graph.standard_quantize(export, codes, dtype)
    return graph.model("quantize (QuantizeLinear)", dtype, dims, codes, opset)


def dequantize_model(
    quantizer: Any,
    *,
    exact: bool = False,
    shape: Sequence[int | str | None] | None = None,
    opset: int = DEFAULT_OPSET,
) -> onnx.ModelProto:
    """An ONNX model computing ``quantizer.dequant(q)``: input the codes ``x``, output ``y``.

    Standard export (``exact=False``): codes of the type :func:`code_dtype` gives, and::

        y = DequantizeLinear(x, float32(scale), zero_point, axis) = float32(x - zero_point) * float32(scale)

    in float32, so within a few float32 rounding errors of intquant's float64 values. Exact
    export (``exact=True``): int64 codes, and::

        y = (float64(x) - float64(zero_point)) * float64(scale)

    in float64: the same values as intquant, bit for bit.

    Parameters
    ----------
    quantizer : UniformQuantizer
    exact : bool
    shape : sequence of int, str or None, optional
        The shape of the codes; as in :func:`quantize_model`.
    opset : int

    Returns
    -------
    onnx.ModelProto

    Raises
    ------
    MissingDependencyError, MissingParameterError, InvalidValueError, InvalidTypeError
        As :func:`quantize_model`.

    Examples
    --------
    >>> import numpy
    >>> from intquant import QuantizedArray
    >>> quantizer = QuantizedArray(8, numpy.array([-1.0, 0.0, 2.0])).quantizer
    >>> [node.op_type for node in dequantize_model(quantizer).graph.node]
    ['DequantizeLinear']
    >>> [node.op_type for node in dequantize_model(quantizer, exact=True).graph.node]
    ['Cast', 'Sub', 'Mul']
    """
    export = _Export.of(quantizer, exact=check_flag("exact", exact), dequantize=True)
    _check_opset(opset)
    dims = export.input_dims(shape)
    codes = _INT64 if exact else export.standard_type(opset)
    onnx_module = _import_onnx()
    graph = _Graph(onnx_module)
    if exact:
        graph.exact_dequantize(quantizer.dequant_plan(_INT64, export.plan_shape(len(dims))))
        return graph.model("dequantize (exact)", codes, dims, _FLOAT64, opset)
    graph.standard_dequantize(export, codes)
    return graph.model("dequantize (DequantizeLinear)", codes, dims, _FLOAT32, opset)


# -- checks at the boundary


def _import_onnx() -> Any:
    try:
        return importlib.import_module("onnx")
    except ImportError as error:
        raise MissingDependencyError(
            f"intquant.onnx builds models with the onnx package, which could not be imported "
            f"({error}); {_INSTALL_HINT}."
        ) from error


def _check_opset(opset: Any) -> None:
    if not is_integer(opset):
        raise InvalidTypeError(f"'opset' must be an int such as {DEFAULT_OPSET}; got {opset!r}.")
    check_int("opset", opset, minimum=MIN_OPSET, expected=f"at least {MIN_OPSET} (per-axis QuantizeLinear)",
              advice=f"Use opset={DEFAULT_OPSET}.")  # fmt: skip


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


def _float_parameter(value: Any, name: str) -> Any:
    """A 0-d array parameter as the numpy scalar intquant's kernels see."""
    operand = as_numpy_operand(value)
    if operand.dtype.kind not in "biuf":
        raise InvalidTypeError(f"the quantizer's {name} must be a real number or array; got {value!r}.")
    return operand[()] if isinstance(operand, numpy.ndarray) and operand.ndim == 0 else operand


@dataclass(frozen=True)
class _Export:
    """What a model needs from a quantizer, validated.

    ``scales`` and ``zero_points`` list each block's parameters as the numpy scalars intquant's
    kernels receive (one for per-tensor quantizers), in the C order of the block grid ``grid``;
    ``bounds`` lists each block's clipping range (None without clipping). ``axis`` is the
    normalized axis of a per-axis quantizer and ``extent`` the block extent of a per-block one.
    """

    exact: bool
    grid: tuple[int, ...]
    scales: tuple[Any, ...]
    zero_points: tuple[Any, ...]
    bounds: tuple[tuple[int, int], ...] | None
    rounding: str
    axis: int | None
    extent: tuple[int, ...] | None

    @staticmethod
    def of(quantizer: Any, *, exact: bool, dequantize: bool = False) -> _Export:
        """Validate ``quantizer`` for an export; ``dequantize``: for a dequantizing model (or its
        codes' type), which neither rounds nor, when exact, clips."""
        from intquant.quantizer import UniformQuantizer  # the quantizer imports much; only here

        if not isinstance(quantizer, UniformQuantizer):
            raise InvalidTypeError(
                f"expected a UniformQuantizer (e.g. QuantizedArray(...).quantizer); got "
                f"{type(quantizer).__name__}."
            )
        needs_bounds = not (exact and dequantize)
        settings = quantizer.settings(need_offset=needs_bounds)  # raises for missing parameters
        scale, zero_point = settings.scale, settings.zero_point
        offset: Any = settings.offset if needs_bounds else 0
        if not dequantize:
            check_scale(scale)
        if settings.unclipped is not None and not exact:
            raise InvalidValueError(
                "this quantizer does not clip its codes (no_clipping=True, or QAT parameters "
                "inferred from the values), so they have no integer range and no ONNX integer "
                "type holds them, as QuantizeLinear and DequantizeLinear need. Use exact=True "
                "(int64 codes, no Clip)."
            )
        clipping = settings.unclipped is None and needs_bounds
        n_bits = check_n_bits(settings.n_bits) if clipping else 0
        rounding = quantizer.rounding
        if rounding == "stochastic" and not dequantize:
            raise InvalidValueError(
                "stochastic rounding draws random numbers, which an ONNX graph cannot reproduce; "
                "export a quantizer with rounding='half_even', 'half_up', 'floor' or 'ceil'."
            )
        if rounding != "half_even" and not exact and not dequantize:
            raise InvalidValueError(
                f"QuantizeLinear rounds half to even, but this quantizer rounds {rounding!r}; "
                f"use exact=True, which reproduces every deterministic rounding mode."
            )
        narrow = bool(quantizer.is_narrow)
        if not settings.grouped:
            scale = _float_parameter(scale, "scale")
            zero_point = _float_parameter(zero_point, "zero_point")
            parameters = (scale, zero_point, offset)
            if all(numpy.size(value) == 1 for value in parameters):
                # one-element arrays: one value each (the exact export takes their dtypes from
                # the quantizer's plan, where they promote as arrays)
                scale, zero_point, offset = (
                    numpy.asarray(value).reshape(())[()] if numpy.ndim(value) else value
                    for value in parameters
                )
            if numpy.ndim(scale) or numpy.ndim(zero_point) or numpy.ndim(offset):
                raise InvalidValueError(
                    f"a per-tensor quantizer needs a single scale, zero point and offset; got "
                    f"shapes {numpy.shape(scale)}, {numpy.shape(zero_point)} and "
                    f"{numpy.shape(offset)}. Set axis= or block_size= for per-channel parameters."
                )
            bounds: tuple[tuple[int, int], ...] | None = None
            if clipping:
                bounds = (integer_bounds(n_bits, int(offset), narrow),)
            return _Export(exact, (), (scale,), (zero_point,), bounds, rounding, None, None)
        grid = tuple(int(size) for size in scale.shape)
        zero_points = numpy.broadcast_to(numpy.asarray(zero_point), grid).reshape(-1)
        offsets = numpy.broadcast_to(numpy.asarray(offset), grid).reshape(-1)
        bounds = (
            tuple(integer_bounds(n_bits, int(block_offset), narrow) for block_offset in offsets)
            if clipping
            else None
        )
        axis: int | None = None
        extent: tuple[int, ...] | None = None
        if quantizer.block_size is not None:
            extent = tuple(int(size) for size in quantizer.block_size)
            if not exact:
                raise InvalidValueError(
                    f"per-block parameters (block_size={extent}) have no QuantizeLinear equivalent "
                    f"here (ONNX's blocked quantization runs along a single axis, from opset 21); "
                    f"use exact=True, or per-axis quantization (axis=...)."
                )
            if len(extent) != len(grid):
                raise InvalidValueError(
                    f"block_size {extent} has {len(extent)} extents but the parameters' grid "
                    f"{grid} has {len(grid)} dimensions; recompute the parameters."
                )
        else:
            chosen_axis: Any = quantizer.axis
            axis = int(chosen_axis) % len(grid)
            if any(size != 1 for index, size in enumerate(grid) if index != axis):
                raise InvalidValueError(
                    f"per-axis parameters along axis {axis} must have shape (1, .., C, .., 1); got "
                    f"{grid}. Recompute them with compute_quantization_parameters."
                )
        return _Export(
            exact,
            grid,
            tuple(scale.reshape(-1)),
            tuple(zero_points),
            bounds,
            rounding,
            axis,
            extent,
        )

    # -- shapes

    @property
    def static_shape(self) -> tuple[int, ...] | None:
        """The only input shape a per-block model takes (None otherwise)."""
        if self.extent is None:
            return None
        return tuple(size * block for size, block in zip(self.grid, self.extent, strict=True))

    @property
    def parameter_shape(self) -> tuple[int, ...]:
        """The shape the parameters broadcast against the (reshaped) input with."""
        if self.extent is None:
            return self.grid
        return tuple(dimension for size in self.grid for dimension in (size, 1))

    def input_dims(self, shape: Sequence[int | str | None] | None) -> list[int | str | None]:
        """The input's dimensions: ``shape`` checked against the parameters, or the default."""
        static = self.static_shape
        if static is not None:
            expected: tuple[int | None, ...] = static
        elif self.axis is not None:
            expected = tuple(size if index == self.axis else None for index, size in enumerate(self.grid))
        else:
            expected = ()
        if shape is None:
            if not expected:
                return ["N"]
            return [f"d{index}" if size is None else size for index, size in enumerate(expected)]
        dims = _check_dims(shape)
        if not expected:
            return dims
        if len(dims) != len(expected) or any(
            isinstance(dim, int) and size is not None and dim != size
            for dim, size in zip(dims, expected, strict=False)
        ):
            what = "the calibration data's shape" if static is not None else "this size along the axis"
            wanted = tuple("any" if size is None else size for size in expected)
            raise InvalidValueError(
                f"'shape' {tuple(shape)} does not fit the quantizer's parameters (grid {self.grid}): "
                f"the input needs the shape {wanted} ({what})."
            )
        return [dim if size is None else size for dim, size in zip(dims, expected, strict=True)]

    # -- the standard export

    def standard_type(self, opset: int) -> numpy.dtype[Any]:
        """The narrowest QuantizeLinear integer type holding every bound and zero point."""
        assert self.bounds is not None  # refused in of() for the standard export
        for zero_point in self.zero_points:
            if not float(zero_point).is_integer():
                raise InvalidValueError(
                    f"QuantizeLinear needs integer zero points; this quantizer has {zero_point}. "
                    f"Use exact=True."
                )
        values = [value for pair in self.bounds for value in pair] + [int(zp) for zp in self.zero_points]
        low, high = min(values), max(values)
        for unsigned, signed, since in _QDQ_TYPES:
            for candidate in (unsigned, signed) if low >= 0 else (signed,):
                info = numpy.iinfo(candidate)
                if info.min <= low and high <= info.max:
                    if opset < since:
                        raise InvalidValueError(
                            f"codes and zero points in [{low}, {high}] need QuantizeLinear's "
                            f"{candidate} type, which arrived in opset {since}; got opset {opset}. "
                            f"Use opset={since} or newer, or exact=True."
                        )
                    return candidate
        raise InvalidValueError(
            f"codes and zero points in [{low}, {high}] fit no QuantizeLinear integer type (int8, "
            f"uint8, int16, uint16). Use fewer bits, or exact=True (int64 codes)."
        )

    def float32_scales(self) -> numpy.ndarray:
        """The scales as float32, refusing those float32 cannot hold."""
        scales = numpy.array([numpy.float64(scale) for scale in self.scales], dtype=numpy.float64)
        with numpy.errstate(over="ignore"):
            narrowed = scales.astype(numpy.float32)
        if not numpy.all(numpy.isfinite(narrowed)) or numpy.any(narrowed == 0):
            raise InvalidValueError(
                f"QuantizeLinear takes a float32 scale, and float32 cannot hold the scale "
                f"{float(scales[~numpy.isfinite(narrowed) | (narrowed == 0)][0])!r}; use exact=True."
            )
        return narrowed

    # -- the exact export

    def plan_shape(self, rank: int) -> tuple[int, ...]:
        """A shape of ``rank`` dimensions whose plan is the plan of every input the model takes:
        per tensor only the rank matters (0-d inputs promote like numpy scalars), per axis the
        parameters' grid, per block the calibration data's shape."""
        if self.static_shape is not None:
            return self.static_shape
        if self.axis is not None:
            return self.grid
        return (1,) * rank


def _check_dims(shape: Any) -> list[int | str | None]:
    """``shape`` as a list of sizes, names and None, refusing anything else."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
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


def _computed_in(dtype: numpy.dtype[Any]) -> numpy.dtype[Any]:
    """The dtype a graph computes a ``dtype`` step in: float32 for float16 (see ``_Graph.step``)."""
    return _FLOAT32 if dtype == _FLOAT16 else dtype


def _exactly_holds(dtype: numpy.dtype[Any], values: Any) -> bool:
    """Whether ``dtype`` holds every integer of ``values`` exactly."""
    with numpy.errstate(over="ignore", invalid="ignore"):
        wide = numpy.asarray(values, dtype=numpy.float64)
        return bool(numpy.all(wide.astype(dtype).astype(numpy.float64) == wide))


class _Graph:
    """Nodes and constants of one model, named uniquely as they are added."""

    def __init__(self, onnx_module: Any) -> None:
        self.onnx = onnx_module
        self.nodes: list[Any] = []
        self.constants: list[Any] = []
        self.names: set[str] = {"x", "y"}

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

    # -- the four graphs

    def standard_quantize(self, export: _Export, codes: numpy.dtype[Any], dtype: numpy.dtype[Any]) -> None:
        assert export.bounds is not None
        value = "x" if dtype == _FLOAT32 else self.cast("x", _FLOAT32)
        per_axis = export.axis is not None
        scale = self.constant("scale", export.float32_scales() if per_axis else export.float32_scales()[0])
        zero_points = numpy.array([int(zp) for zp in export.zero_points], dtype=codes)
        zero_point = self.constant("zero_point", zero_points if per_axis else zero_points[0])
        attributes: dict[str, Any] = {"axis": export.axis} if per_axis else {}
        value = self.node("QuantizeLinear", [value, scale, zero_point], **attributes)
        info = numpy.iinfo(codes)
        if all(low == info.min and high == info.max for low, high in export.bounds):
            return
        if codes in _CLIPPABLE:
            self.clip(value, codes, export.bounds, export.parameter_shape)
            return
        int32 = numpy.dtype(numpy.int32)
        self.cast(self.clip(self.cast(value, int32), int32, export.bounds, export.parameter_shape), codes)

    def standard_dequantize(self, export: _Export, codes: numpy.dtype[Any]) -> None:
        per_axis = export.axis is not None
        scale = self.constant("scale", export.float32_scales() if per_axis else export.float32_scales()[0])
        zero_points = numpy.array([int(zp) for zp in export.zero_points], dtype=codes)
        zero_point = self.constant("zero_point", zero_points if per_axis else zero_points[0])
        attributes: dict[str, Any] = {"axis": export.axis} if per_axis else {}
        self.node("DequantizeLinear", ["x", scale, zero_point], **attributes)

    def exact_quantize(self, export: _Export, plan: QuantPlan, dtype: numpy.dtype[Any]) -> None:
        """The plan's steps as nodes: per step ``Round(Cast<A>(Div(Cast<D>(x), scale)) + zero_point)``
        (float16 steps run in float32 and are rounded to float16 in between), the steps' codes
        merged per block with ``Where``, then clipped and cast to int64."""
        view = None if plan.layout is None else plan.layout.view
        source = self._reshaped("x", view)
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
        self._reshaped(self.cast(codes, _INT64), None if view is None else export.static_shape)

    def exact_dequantize(self, plan: DequantPlan) -> None:
        """``Mul(Sub(Cast<float64>(x), zero_point), scale)``: the plan's single float64 step (int64
        codes), with the per-block view's reshapes around it."""
        (step,) = plan.steps
        view = None if plan.layout is None else plan.layout.view
        codes = self.cast(self._reshaped("x", view), _FLOAT64)
        centered = self.node("Sub", [codes, self.constant("zero_point", step.zero_point, _FLOAT64)])
        values = self.node("Mul", [centered, self.constant("scale", step.scale, _FLOAT64)])
        self._reshaped(values, None if view is None or plan.layout is None else plan.layout.shape)

    def _reshaped(self, value: str, shape: tuple[int, ...] | None) -> str:
        """``value`` reshaped to ``shape`` (unchanged when None)."""
        if shape is None:
            return value
        return self.node("Reshape", [value, self.constant("shape", shape, numpy.int64)])

    def model(
        self,
        what: str,
        input_dtype: numpy.dtype[Any],
        dims: list[int | str | None],
        output_dtype: numpy.dtype[Any],
        opset: int,
    ) -> Any:
        """The model: ``x`` in, the last node's output renamed ``y``, checked."""
        helper = self.onnx.helper
        self.nodes[-1].output[0] = "y"  # the last node computes the output
        graph = helper.make_graph(
            self.nodes,
            f"intquant {what}",
            [helper.make_tensor_value_info("x", self._type(input_dtype), dims)],
            [helper.make_tensor_value_info("y", self._type(output_dtype), dims)],
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
        self.onnx.checker.check_model(model)
        return model

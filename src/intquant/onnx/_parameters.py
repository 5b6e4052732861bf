"""A quantizer's parameters as ONNX graphs need them: validated, per block, with their integer types.

:class:`OnnxParameters` reads a quantizer once (scale, zero point, clipping range of each block,
granularity, rounding) and refuses what an ONNX graph cannot compute; the exports
(:mod:`intquant.onnx.export`) and the QDQ insertion (:mod:`intquant.onnx.insert`) build their
nodes from it. :data:`QDQ_TYPES` lists QuantizeLinear's integer types and the opset of each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy

from intquant._core.checks import check_n_bits, check_scale
from intquant._core.formulas import integer_bounds
from intquant._numpy124.promotion import as_numpy_operand
from intquant.errors import InvalidTypeError, InvalidValueError
from intquant.onnx._support import MIN_OPSET, QDQ_OPSET, check_dims

__all__ = ["QDQ_TYPES", "OnnxParameters", "QdqType", "narrowest_type"]


class QdqType(NamedTuple):
    """An integer type of QuantizeLinear/DequantizeLinear: its ONNX name (``TensorProto``
    attribute), range and the first opset that has it."""

    name: str
    low: int
    high: int
    opset: int

    @property
    def bits(self) -> int:
        return int(self.high - self.low).bit_length()


#: QuantizeLinear's integer types, narrowest first (unsigned before signed of a width).
QDQ_TYPES = (
    QdqType("UINT4", 0, 15, QDQ_OPSET),
    QdqType("INT4", -8, 7, QDQ_OPSET),
    QdqType("UINT8", 0, 255, MIN_OPSET),
    QdqType("INT8", -128, 127, MIN_OPSET),
    QdqType("UINT16", 0, 65535, QDQ_OPSET),
    QdqType("INT16", -32768, 32767, QDQ_OPSET),
)


def narrowest_type(low: int, high: int, types: Sequence[QdqType]) -> QdqType | None:
    """The first of ``types`` whose range holds ``[low, high]`` (None if none does)."""
    for candidate in types:
        if candidate.low <= low and high <= candidate.high:
            return candidate
    return None


def _float_parameter(value: Any, name: str) -> Any:
    """A 0-d array parameter as the numpy scalar intquant's kernels see."""
    operand = as_numpy_operand(value)
    if operand.dtype.kind not in "biuf":
        raise InvalidTypeError(f"the quantizer's {name} must be a real number or array; got {value!r}.")
    return operand[()] if isinstance(operand, numpy.ndarray) and operand.ndim == 0 else operand


@dataclass(frozen=True)
class OnnxParameters:
    """What a graph needs from a quantizer, validated.

    ``scales`` and ``zero_points`` list each block's parameters as the numpy scalars intquant's
    kernels receive (one for per-tensor quantizers), in the C order of the block grid ``grid``;
    ``bounds`` lists each block's clipping range (None without clipping). ``axis`` is the
    normalized axis of a per-axis quantizer and ``extent`` the block extent of a per-block one.
    ``min_rank`` is the number of dimensions of per-tensor parameters given as one-element
    arrays (0 for scalars): numpy broadcasts values of lower rank to it.
    """

    exact: bool
    grid: tuple[int, ...]
    scales: tuple[Any, ...]
    zero_points: tuple[Any, ...]
    bounds: tuple[tuple[int, int], ...] | None
    rounding: str
    axis: int | None
    extent: tuple[int, ...] | None
    min_rank: int = 0

    @staticmethod
    def of(quantizer: Any, *, exact: bool, dequantize: bool = False) -> OnnxParameters:
        """Validate ``quantizer`` for a graph; ``dequantize``: for a dequantizing graph (or its
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
            min_rank = max(numpy.ndim(value) for value in parameters)
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
            return OnnxParameters(exact, (), (scale,), (zero_point,), bounds, rounding, None, None, min_rank)
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
        return OnnxParameters(
            exact, grid, tuple(scale.reshape(-1)), tuple(zero_points), bounds, rounding, axis, extent
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

    def input_dims(self, shape: Sequence[int | str | None] | None) -> list[int | str | None] | None:
        """The input's dimensions: ``shape`` checked against the parameters, or the default; None
        for any rank (the per-tensor default with scalar parameters)."""
        static = self.static_shape
        if static is not None:
            expected: tuple[int | None, ...] = static
        elif self.axis is not None:
            expected = tuple(size if index == self.axis else None for index, size in enumerate(self.grid))
        else:
            expected = ()
        if shape is None:
            if not expected:
                return None if self.min_rank == 0 else [f"d{index}" for index in range(self.min_rank)]
            return [f"d{index}" if size is None else size for index, size in enumerate(expected)]
        dims = check_dims(shape)
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

    def plan_shape(self, rank: int) -> tuple[int, ...]:
        """A shape of ``rank`` dimensions whose plan is the plan of every input of that rank the
        model takes: per tensor only the rank matters (0-d inputs promote like numpy scalars),
        per axis the parameters' grid, per block the calibration data's shape."""
        if self.static_shape is not None:
            return self.static_shape
        if self.axis is not None:
            return self.grid
        return (1,) * rank

    # -- integer types and float32 scales

    def integer_range(self) -> tuple[int, int]:
        """The smallest range holding every clipping bound and integer zero point."""
        assert self.bounds is not None  # the callers refuse quantizers without clipping first
        for zero_point in self.zero_points:
            if not float(zero_point).is_integer():
                raise InvalidValueError(
                    f"QuantizeLinear needs integer zero points; this quantizer has {zero_point}."
                )
        values = [value for pair in self.bounds for value in pair] + [int(zp) for zp in self.zero_points]
        return min(values), max(values)

    def standard_type(self, opset: int) -> numpy.dtype[Any]:
        """The narrowest 8- or 16-bit QuantizeLinear type holding every bound and zero point."""
        try:
            low, high = self.integer_range()
        except InvalidValueError as error:
            raise InvalidValueError(f"{error} Use exact=True.") from None
        chosen = narrowest_type(low, high, [kind for kind in QDQ_TYPES if kind.bits >= 8])
        if chosen is None:
            raise InvalidValueError(
                f"codes and zero points in [{low}, {high}] fit no QuantizeLinear integer type (int8, "
                f"uint8, int16, uint16). Use fewer bits, or exact=True (int64 codes)."
            )
        dtype = numpy.dtype(chosen.name.lower())
        if opset < chosen.opset:
            raise InvalidValueError(
                f"codes and zero points in [{low}, {high}] need QuantizeLinear's {dtype} type, which "
                f"arrived in opset {chosen.opset}; got opset {opset}. Use opset={chosen.opset} or "
                f"newer, or exact=True."
            )
        return dtype

    def float32_scales(self, advice: str = "use exact=True") -> numpy.ndarray:
        """The scales as float32 (each float64 rounded to the nearest float32), refusing those
        float32 cannot hold (overflow, or underflow to 0)."""
        scales = numpy.array([numpy.float64(scale) for scale in self.scales], dtype=numpy.float64)
        with numpy.errstate(over="ignore", under="ignore"):
            narrowed = scales.astype(numpy.float32)
        bad = ~numpy.isfinite(narrowed) | (narrowed == 0)
        if numpy.any(bad):
            raise InvalidValueError(
                f"QuantizeLinear takes a float32 scale, and float32 cannot hold the scale "
                f"{float(scales[bad][0])!r}; {advice}."
            )
        return narrowed

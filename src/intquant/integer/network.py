"""A network of integer layers: input codes in, output codes out, every step exact.

An :class:`IntegerNetwork` is an input quantizer followed by elements (:class:`IntegerLinear`,
:class:`IntegerConv2d`, :class:`IntegerReLU`, :class:`IntegerFlatten`), each consuming the codes
of the one before. Construction proves the chain: each layer's input quantizer has the scale
and zero point of the codes it receives and its ``input_range`` holds every code they can take
(the previous output range, narrowed by a ReLU), each ReLU has their zero point, and only the
last element may output accumulators (a layer without output quantizer). A run then checks its
input codes once (dtype, range, and every element's shape rule) and executes the plans.

:meth:`IntegerNetwork.from_float` builds one from a float model in one call, calibrating on the
integer pipeline itself::

    input quantizer: unsigned asymmetric, activation_bits, calibrated on x_calibration
    for each Linear / Conv2d, in order, on the codes q reaching it (range [lo, hi]):
        weights, bias -> codes (from_float; accumulator_bits -> the constraint over [lo, hi])
        a = acc(q) * s_x * s_w                        (the dequantized accumulators)
        a = max(a, 0)                                 if a ReLU follows the layer
        output quantizer: unsigned asymmetric, calibrated on a (output_bits for the last layer)
    a ReLU narrows the codes' range to [max(lo, zp), hi]; Flatten reshapes.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy

from intquant._core.calibrator import Calibrator
from intquant._core.checks import as_real_array, check_int
from intquant._core.codec import JSONSerializable, dumps
from intquant.errors import InvalidTypeError, InvalidValueError, SerializationError
from intquant.integer.accumulator import AccumulatorReport
from intquant.integer.conv import IntegerConv2d
from intquant.integer.elements import IntegerFlatten, IntegerReLU
from intquant.integer.layer import (
    DEFAULT_REQUANTIZATION,
    IntegerLayer,
    QuantizerFacts,
    check_codes,
    check_quantizer,
)
from intquant.integer.linear import IntegerLinear
from intquant.integer.model import Conv2d, Flatten, Linear, ReLU
from intquant.integer.requantize import requantize
from intquant.options import QuantizationOptions
from intquant.quantizer import UniformQuantizer
from intquant.statistics import MinMaxQuantizationStats

__all__ = ["Element", "IntegerNetwork"]

#: An element of an integer network.
Element = Union[IntegerLinear, IntegerConv2d, IntegerReLU, IntegerFlatten]
_ELEMENTS = (IntegerLinear, IntegerConv2d, IntegerReLU, IntegerFlatten)
_FLOAT_ELEMENTS = (Linear, Conv2d, ReLU, Flatten)


class _Codes:
    """What flows between two elements: codes of a scale and zero point within a range, or
    (``quantizer`` None) the accumulators of the last layer."""

    __slots__ = ("code_range", "quantizer", "scale", "zero_point")

    def __init__(self, facts: QuantizerFacts | None, code_range: tuple[int, int] | None) -> None:
        self.quantizer = None if facts is None else facts.quantizer
        self.scale = None if facts is None else facts.scale
        self.zero_point = None if facts is None else facts.zero_point
        self.code_range = code_range


def _chain(input_facts: QuantizerFacts, elements: tuple[Any, ...]) -> _Codes:
    """Check that the elements consume each other's codes (see the module docstring); return what
    the last one outputs."""
    flowing = _Codes(input_facts, input_facts.code_range)
    for index, element in enumerate(elements):
        where = f"element {index} ({type(element).__name__})"
        if flowing.code_range is None:
            raise InvalidValueError(
                f"{where} follows a layer without output quantizer, whose outputs are accumulators, "
                f"not codes; only the last element may output accumulators. Give that layer an "
                f"output_quantizer."
            )
        if isinstance(element, IntegerReLU):
            if element.zero_point != flowing.zero_point:
                raise InvalidValueError(
                    f"{where} has zero_point {element.zero_point}, but its input codes have zero "
                    f"point {flowing.zero_point}. Use IntegerReLU({flowing.zero_point})."
                )
            low, high = flowing.code_range
            flowing.code_range = (min(max(low, element.zero_point), high), high)
        elif isinstance(element, IntegerLayer):
            facts = check_quantizer("input_quantizer", element.input_quantizer)
            if facts.scale != flowing.scale or facts.zero_point != flowing.zero_point:
                raise InvalidValueError(
                    f"{where} has an input quantizer of scale {facts.scale!r} and zero point "
                    f"{facts.zero_point}, but its input codes have scale {flowing.scale!r} and zero "
                    f"point {flowing.zero_point}. Build it with the previous layer's output quantizer."
                )
            low, high = flowing.code_range
            if not element.input_range[0] <= low <= high <= element.input_range[1]:
                raise InvalidValueError(
                    f"{where} accepts input codes in {list(element.input_range)}, but it receives "
                    f"codes in {[low, high]}. Build it with input_range=({low}, {high})."
                )
            output = element.output_quantizer
            flowing = _Codes(
                None if output is None else check_quantizer("output_quantizer", output),
                element.output_range,
            )
    return flowing


def _calibrated(values: numpy.ndarray, n_bits: int, calibrator: Any) -> UniformQuantizer:
    """An unsigned asymmetric quantizer of ``n_bits`` calibrated on ``values``: by min/max, or by
    a copy of ``calibrator`` (the caller's object is not changed). The range is widened to hold
    0 (``zero_in_range``): 0.0 has an exact code, and a range of one value (a constant
    activation) still gives a positive scale."""
    options = QuantizationOptions(n_bits, zero_in_range=True)
    if calibrator is None:
        stats = MinMaxQuantizationStats()
        stats.compute_quantization_stats(values)
        # rmin/rmax only: the distinct values are not needed (nor written to JSON)
        quantizer = UniformQuantizer(options, MinMaxQuantizationStats(rmax=stats.rmax, rmin=stats.rmin))
    else:
        method = copy.deepcopy(calibrator)
        method.compute_quantization_stats(values)
        quantizer = UniformQuantizer(options, method)
    quantizer.compute_quantization_parameters(options, quantizer.quant_stats)
    return quantizer


def _bits(name: str, value: Any, default: int) -> int:
    return default if value is None else check_int(name, value, minimum=1, maximum=32)


class IntegerNetwork(JSONSerializable, versioned_tag="intquant.IntegerNetwork", format_version=1):
    """An input quantizer and a chain of integer elements (see the module docstring).

    Parameters
    ----------
    input_quantizer : UniformQuantizer
        Calibrated, per tensor: :meth:`quantize_input` uses it.
    elements : sequence of IntegerLinear, IntegerConv2d, IntegerReLU, IntegerFlatten
        At least one; each consumes the previous one's codes.

    Raises
    ------
    InvalidTypeError, InvalidValueError
        For elements that do not chain (the message names the element and the fix).

    Examples
    --------
    >>> import numpy
    >>> from intquant.integer import Linear, ReLU, IntegerNetwork
    >>> rng = numpy.random.default_rng(0)
    >>> model = [Linear(rng.normal(size=(4, 3))), ReLU(), Linear(rng.normal(size=(2, 4)))]
    >>> x = rng.normal(size=(100, 3))
    >>> network = IntegerNetwork.from_float(model, x, bits=8)
    >>> codes = network(x[:2])
    >>> codes.dtype, codes.shape
    (dtype('int64'), (2, 2))
    """

    def __init__(self, input_quantizer: UniformQuantizer, elements: Sequence[Element]) -> None:
        facts = check_quantizer("input_quantizer", input_quantizer)
        if isinstance(elements, (str, bytes)) or not isinstance(elements, Sequence):
            raise InvalidTypeError(
                f"'elements' must be a sequence of integer elements; got {type(elements).__name__}."
            )
        items = tuple(elements)
        for index, element in enumerate(items):
            if not isinstance(element, _ELEMENTS):
                raise InvalidTypeError(
                    f"element {index} ({type(element).__name__}): an IntegerNetwork holds IntegerLinear, "
                    f"IntegerConv2d, IntegerReLU and IntegerFlatten elements."
                )
        if not any(isinstance(element, IntegerLayer) for element in items):
            names = [type(element).__name__ for element in items]
            raise InvalidValueError(
                f"'elements' must hold at least one IntegerLinear or IntegerConv2d; got {names}."
            )
        self._output = _chain(facts, items)
        self._input = facts
        self._elements = items

    # -- what the network holds
    @property
    def input_quantizer(self) -> UniformQuantizer:
        """A copy of the input quantizer."""
        return copy.deepcopy(self._input.quantizer)

    @property
    def elements(self) -> tuple[Element, ...]:
        return self._elements

    @property
    def layers(self) -> tuple[IntegerLinear | IntegerConv2d, ...]:
        """The elements that are layers, in order."""
        return tuple(
            element for element in self._elements if isinstance(element, (IntegerLinear, IntegerConv2d))
        )

    @property
    def output_quantizer(self) -> UniformQuantizer | None:
        """A copy of the quantizer of the output codes; None when the last layer outputs
        accumulators."""
        return None if self._output.quantizer is None else copy.deepcopy(self._output.quantizer)

    # -- computation
    def quantize_input(self, x: Any) -> numpy.ndarray:
        """The int64 codes of float inputs ``x`` by the input quantizer."""
        values = as_real_array(x, "the inputs")
        codes = self._input.quantizer.quant(numpy.asarray(values, dtype=numpy.float64))
        return numpy.asarray(codes, dtype=numpy.int64)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output shape for input codes of ``shape``, checking every element's shape rule."""
        current = tuple(shape)
        for index, element in enumerate(self._elements):
            try:
                current = element.output_shape(current)
            except InvalidValueError as error:
                raise InvalidValueError(f"element {index} ({type(element).__name__}): {error}") from error
        return current

    def _checked(self, codes: Any) -> numpy.ndarray:
        array = check_codes("input codes", codes, self._input.code_range)
        self.output_shape(array.shape)
        return array

    def _steps(self, codes: numpy.ndarray) -> list[numpy.ndarray]:
        """Each element's outputs, from checked codes (a layer by :meth:`IntegerLayer.run_codes`:
        its range check, then its compiled call or the numpy executors)."""
        outputs = []
        current = codes
        for index, element in enumerate(self._elements):
            if isinstance(element, IntegerLayer):
                current = element.run_codes(current, f"element {index}'s input codes")
            elif isinstance(element, IntegerReLU):
                current = numpy.maximum(current, element.zero_point)
            else:
                current = current.reshape(element.output_shape(current.shape))
            outputs.append(current)
        return outputs

    def run(self, codes: Any) -> numpy.ndarray:
        """The int64 output codes of input ``codes`` (integers within the input quantizer's code
        range, of a shape the first element takes) through every element."""
        return self._steps(self._checked(codes))[-1]

    def intermediates(self, codes: Any) -> list[numpy.ndarray]:
        """The codes after each element (accumulators after a last layer without output
        quantizer), for comparing backends element by element."""
        return self._steps(self._checked(codes))

    def __call__(self, x: Any) -> numpy.ndarray:
        """:meth:`quantize_input`, then :meth:`run`."""
        return self.run(self.quantize_input(x))

    def predict(self, x: Any) -> numpy.ndarray:
        """The argmax of the output codes over the last axis (int64 class indices)."""
        return numpy.argmax(self(x), axis=-1).astype(numpy.int64)

    def dequantize_output(self, codes: Any) -> numpy.ndarray:
        """The float64 values of output codes (by the output quantizer; accumulators times the
        last layer's accumulator scale when it has none)."""
        array = check_codes(
            "output codes", codes, (int(numpy.iinfo(numpy.int64).min), int(numpy.iinfo(numpy.int64).max))
        )
        if self._output.quantizer is not None:
            return numpy.asarray(self._output.quantizer.dequant(array), dtype=numpy.float64)
        layer = self._elements[-1]
        assert isinstance(layer, IntegerLayer)  # _chain: only a last layer outputs accumulators
        if array.ndim < 1 or array.shape[layer.channel_axis] != layer.out_channels:
            raise InvalidValueError(
                f"output accumulators must have {layer.out_channels} channels on axis "
                f"{layer.channel_axis}; got shape {array.shape}."
            )
        shape = [1] * array.ndim
        shape[layer.channel_axis] = layer.out_channels
        return array.astype(numpy.float64) * layer.accumulator_scale.reshape(shape)

    def accumulator_report(self, x: Any = None, *, limit_bits: Optional[int] = None) -> AccumulatorReport:
        """Every layer's worst-case accumulators (and, given float inputs ``x``, those observed on
        them), checked against ``limit_bits`` if given."""
        limit = None if limit_bits is None else check_int("limit_bits", limit_bits, minimum=1)
        inputs: list[numpy.ndarray | None] = [None] * len(self._elements)
        if x is not None:
            codes = self._checked(self.quantize_input(x))
            inputs = [codes, *self._steps(codes)[:-1]]
        rows = [
            element.accumulators(inputs[index], name=f"{index}: {element.short_name()}")
            for index, element in enumerate(self._elements)
            if isinstance(element, IntegerLayer)
        ]
        return AccumulatorReport(layers=tuple(rows), limit_bits=limit)

    def __repr__(self) -> str:
        inner = ", ".join(repr(element) for element in self._elements)
        return f"IntegerNetwork([{inner}])"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IntegerNetwork):
            return NotImplemented
        return dumps(self) == dumps(other)

    __hash__ = None  # type: ignore[assignment]

    # -- building from a float model
    @classmethod
    def from_float(
        cls,
        model: Sequence[Union[Linear, Conv2d, ReLU, Flatten]],
        x_calibration: Any,
        *,
        bits: int = 8,
        weight_bits: Optional[int] = None,
        activation_bits: Optional[int] = None,
        output_bits: Optional[int] = None,
        per_channel: bool = True,
        calibrator: Any = None,
        requantization: Any = DEFAULT_REQUANTIZATION,
        accumulator_bits: Optional[int] = None,
    ) -> IntegerNetwork:
        """Quantize a float model, calibrating on the integer pipeline (module docstring).

        Parameters
        ----------
        model : sequence of Linear, Conv2d, ReLU, Flatten
        x_calibration : array_like of float
            Calibration inputs, of the shape the first element takes.
        bits : int
            The default of ``weight_bits`` and ``activation_bits``.
        weight_bits, activation_bits : int, optional
        output_bits : int, optional
            Bits of the last layer's output codes (default ``activation_bits``). For a
            classifier, wider logit codes (the demo uses 16) avoid ties in :meth:`predict`'s
            argmax at low widths; they cost nothing in the accumulators.
        per_channel : bool
            One weight scale per output channel (default) or per layer.
        calibrator : intquant calibration object, optional
            E.g. ``PercentileStats(99.99)`` or ``MSEStats()`` (per tensor): a copy calibrates
            each activation quantizer; None for min/max.
        requantization : FloatRescale, FixedPoint, PowerOfTwo or DropLowBits
            Every layer's mode.
        accumulator_bits : int, optional
            Keep every layer's worst-case accumulator within this many signed bits
            (:func:`intquant.integer.constraint.fit_weight_scales`).

        Raises
        ------
        InvalidTypeError, InvalidValueError
            For a model of other elements or without a layer, calibration values that do not fit
            the model, or options out of range.
        """
        weights = _bits("weight_bits", weight_bits, check_int("bits", bits, minimum=1, maximum=32))
        activations = _bits("activation_bits", activation_bits, bits)
        outputs = _bits("output_bits", output_bits, activations)
        if calibrator is not None and (
            not isinstance(calibrator, Calibrator)
            or calibrator.axis is not None
            or calibrator.block_size is not None
        ):
            raise InvalidTypeError(
                f"'calibrator' must be a per-tensor intquant calibration object (PercentileStats(), "
                f"MSEStats(), ...) or None; got {calibrator!r}."
            )
        if isinstance(model, (str, bytes)) or not isinstance(model, Sequence):
            raise InvalidTypeError(
                f"'model' must be a sequence of Linear, Conv2d, ReLU, Flatten; got {type(model).__name__}."
            )
        items = tuple(model)
        for index, item in enumerate(items):
            if not isinstance(item, _FLOAT_ELEMENTS):
                raise InvalidTypeError(
                    f"model element {index} must be a Linear, Conv2d, ReLU or Flatten of "
                    f"intquant.integer; got {type(item).__name__}."
                )
        layer_positions = [index for index, item in enumerate(items) if isinstance(item, (Linear, Conv2d))]
        if not layer_positions:
            raise InvalidValueError("'model' must hold at least one Linear or Conv2d layer.")
        values = numpy.asarray(as_real_array(x_calibration, "x_calibration"), dtype=numpy.float64)
        if values.ndim < 1 or values.shape[0] == 0:
            raise InvalidValueError(
                f"'x_calibration' must be a non-empty batch of inputs; got shape {values.shape}."
            )
        if not numpy.all(numpy.isfinite(values)):
            raise InvalidValueError("'x_calibration' must be finite; it holds NaN or infinite values.")

        input_quantizer = _calibrated(values, activations, calibrator)
        facts = check_quantizer("input_quantizer", input_quantizer)
        quantizer, zero_point, code_range = input_quantizer, facts.zero_point, facts.code_range
        codes = numpy.asarray(input_quantizer.quant(values), dtype=numpy.int64)
        elements: list[Element] = []
        for index, item in enumerate(items):
            where = f"model element {index} ({type(item).__name__})"
            if isinstance(item, (Linear, Conv2d)):
                options: dict[str, Any] = {
                    "input_quantizer": quantizer,
                    "weight_bits": weights,
                    "per_channel": per_channel,
                    "accumulator_bits": accumulator_bits,
                    "input_range": code_range,
                }
                if isinstance(item, Conv2d):
                    bare: IntegerLinear | IntegerConv2d = IntegerConv2d.from_float(
                        item.weight, item.bias, stride=item.stride, padding=item.padding, **options
                    )
                else:
                    bare = IntegerLinear.from_float(item.weight, item.bias, **options)
                try:
                    accumulators = bare(codes)
                except InvalidValueError as error:
                    raise InvalidValueError(f"{where}: {error}") from error
                shape = [1] * accumulators.ndim
                shape[bare.channel_axis] = bare.out_channels
                real = accumulators * bare.accumulator_scale.reshape(shape)
                if index + 1 < len(items) and isinstance(items[index + 1], ReLU):
                    real = numpy.maximum(real, 0.0)
                n_bits = outputs if index == layer_positions[-1] else activations
                output = _calibrated(real, n_bits, calibrator)
                layer = bare.replace(output_quantizer=output, requantization=requantization)
                assert layer.requant_plan is not None  # it has an output quantizer
                codes = requantize(accumulators, layer.requant_plan, layer.channel_axis)
                out_facts = check_quantizer("output_quantizer", output)
                quantizer, zero_point = output, out_facts.zero_point
                code_range = layer.output_range  # type: ignore[assignment]
                elements.append(layer)
            elif isinstance(item, ReLU):
                relu = IntegerReLU(zero_point)
                codes = relu(codes)
                code_range = (min(max(code_range[0], zero_point), code_range[1]), code_range[1])
                elements.append(relu)
            else:
                flatten = IntegerFlatten()
                try:
                    codes = flatten(codes)
                except InvalidValueError as error:
                    raise InvalidValueError(f"{where}: {error}") from error
                elements.append(flatten)
        return cls(input_quantizer, elements)

    # -- serialization
    def dump_dict(self) -> dict[str, Any]:
        return {"input_quantizer": self._input.quantizer, "elements": list(self._elements)}

    @staticmethod
    def load_dict(metadata: dict[str, Any], format_version: int = 1) -> IntegerNetwork:
        """Rebuild from :meth:`dump_dict` output; the chain is checked again.

        Raises
        ------
        SerializationError
            For missing or unknown fields, elements of other types, or a chain that does not fit.
        """
        if not isinstance(metadata, dict) or set(metadata) != {"input_quantizer", "elements"}:
            shown = sorted(metadata) if isinstance(metadata, dict) else type(metadata).__name__
            raise SerializationError(
                f"IntegerNetwork fields must be exactly input_quantizer, elements; got {shown}."
            )
        quantizer, elements = metadata["input_quantizer"], metadata["elements"]
        if not isinstance(quantizer, UniformQuantizer):
            raise SerializationError(
                f"IntegerNetwork field 'input_quantizer' must be a UniformQuantizer; got "
                f"{type(quantizer).__name__}."
            )
        if not isinstance(elements, list) or not all(isinstance(element, _ELEMENTS) for element in elements):
            raise SerializationError(
                "IntegerNetwork field 'elements' must be a list of IntegerLinear, IntegerConv2d, "
                f"IntegerReLU and IntegerFlatten; got {elements!r}."
            )
        try:
            return IntegerNetwork(quantizer, elements)
        except (ValueError, TypeError) as error:
            raise SerializationError(f"invalid serialized IntegerNetwork: {error}") from error

"""Integer layers against float64 layers of the same shapes, side by side in one process.

For each shape and bit width (4 and 8: weights signed symmetric per channel, inputs and outputs
unsigned asymmetric per tensor, all calibrated on the data), times

* ``float64``: the float layer on float64 inputs: ``x @ W.T + b`` for a linear layer; for a
  convolution, im2col (zero padding, ``sliding_window_view``, one contiguous copy) then one
  matmul, ``+ b`` and the transpose to ``(N, O, H, W)``;
* ``accumulate``: the integer layer's exact int64 accumulators from int64 input codes
  (``layer.accumulate(codes)``: the raw-code product on float BLAS, the zero points folded, the
  bias added) -- for reference;
* one column per requantization mode: the whole integer layer, ``layer(codes)``, accumulators
  then output codes (``FloatRescale()``, ``FixedPoint()``, ``PowerOfTwo()``,
  ``DropLowBits(target_bits=8)``);
* when ``intquant.torch.integer`` / ``intquant.onnx.integer`` exist (and torch / onnxruntime
  are installed): ``torch float64`` (``F.linear`` / ``F.conv2d`` on float64 tensors), ``torch``
  (the ``float``-mode layer as ``IntegerLayerModule``, int64 codes in and out, checked) and
  ``onnxruntime`` (the same layer exported by ``integer_layer_to_onnx``, default options:
  MatMulInteger/ConvInteger where exact, run by ONNX Runtime's CPU provider); their outputs are
  checked equal to numpy's first.

Inputs: normal values (mean 0.5; a non-zero input zero point), weights normal / sqrt(K), biases
normal * 0.1, seed 0. Every side is warmed up first, and the integer results are checked
against an exact int64 computation on the first rows. Then the sides run in turns (the order
rotating each round) until the cell's budget is spent, at least 3 rounds; the table gives the
median time of each side in ms and **ratio = side / float64** (the issue's target: <= 2 for
``layer(codes)``). BLAS (numpy's, torch's, ONNX Runtime's intra-op pool) is held to ``--threads``
threads (default 1; the machine is shared). With numba installed a layer call takes the compiled
path (:mod:`intquant.integer.fused`); ``INTQUANT_PURE_NUMPY=1`` times the numpy executors alone.
Usage:
``python benchmarks/integer_layers.py [--quick] [--threads N] [--budget SECONDS] [--markdown PATH]``.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy

import intquant
from intquant._numba import dispatch
from intquant.integer import (
    DropLowBits,
    FixedPoint,
    FloatRescale,
    IntegerConv2d,
    IntegerLinear,
    PowerOfTwo,
)

BITS = (4, 8)
MODES: dict[str, Any] = {
    "float": FloatRescale(),
    "fixed-point": FixedPoint(),
    "power-of-two": PowerOfTwo(),
    "drop-low-bits": DropLowBits(target_bits=8),
}
CHECK_ROWS = 16  # rows (or images) checked against an exact int64 computation


@dataclass(frozen=True)
class Shape:
    """A linear layer ``(N, K) x K -> O`` or a convolution ``(N, C, H, W)`` with ``O`` kh x kw filters."""

    name: str
    input_shape: tuple[int, ...]
    out_channels: int
    kernel: tuple[int, int] | None = None  # None: linear
    padding: int = 0

    @property
    def is_conv(self) -> bool:
        return self.kernel is not None


SHAPES = (
    Shape("linear (1000, 64) x 64", (1000, 64), 64),
    Shape("linear (256, 512) x 512", (256, 512), 512),
    Shape("linear (4096, 784) x 256", (4096, 784), 256),
    Shape("conv (32, 16, 28, 28), 32 3x3, pad 1", (32, 16, 28, 28), 32, kernel=(3, 3), padding=1),
)
QUICK_SHAPES = SHAPES[:2] + SHAPES[3:]


# -- float references


def float_linear(x: numpy.ndarray, weight: numpy.ndarray, bias: numpy.ndarray) -> numpy.ndarray:
    """``x @ W.T + b`` in float64."""
    out = x @ weight.T
    out += bias
    return out


def float_conv(x: numpy.ndarray, weight: numpy.ndarray, bias: numpy.ndarray, padding: int) -> numpy.ndarray:
    """A float64 convolution (stride 1) by im2col and one matmul, ``(N, O, H_out, W_out)``."""
    n, c, _, _ = x.shape
    o, _, kh, kw = weight.shape
    padded = numpy.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = numpy.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))
    h_out, w_out = windows.shape[2], windows.shape[3]
    columns = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * h_out * w_out, c * kh * kw)  # the copy
    out = columns @ weight.reshape(o, -1).T
    out += bias
    return out.reshape(n, h_out, w_out, o).transpose(0, 3, 1, 2)


# -- exact check


def exact_accumulators(layer: Any, codes: numpy.ndarray) -> numpy.ndarray:
    """``sum (q_x - zp_x) (q_w - zp_w) + b`` in int64 numpy (no BLAS), on the first rows."""
    plan = layer.accumulator_plan
    centered_w = plan.weight_codes.reshape(plan.out_channels, -1) - plan.weight_zero_point[:, None]
    if plan.kind == "linear":
        centered = codes[:CHECK_ROWS] - plan.input_zero_point
        return centered @ centered_w.T + plan.bias_codes
    (ph, pw), (_, _, kh, kw) = plan.padding, plan.weight_codes.shape
    padded = numpy.pad(
        codes[:CHECK_ROWS] - plan.input_zero_point, ((0, 0), (0, 0), (ph, ph), (pw, pw))
    )  # padding with zp_x, centered: 0
    windows = numpy.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))
    columns = windows.transpose(0, 2, 3, 1, 4, 5)
    out = columns.reshape(*columns.shape[:3], -1) @ centered_w.T + plan.bias_codes
    return out.transpose(0, 3, 1, 2)


# -- optional backends


def torch_sides(
    layer: Any, codes: numpy.ndarray, float_inputs: Any, threads: int
) -> dict[str, Callable[[], Any]]:
    """``torch float64`` (F.linear / F.conv2d) and ``torch`` (``IntegerLayerModule``), if available."""
    if (
        importlib.util.find_spec("torch") is None
        or importlib.util.find_spec("intquant.torch.integer") is None
    ):
        return {}
    import torch
    import torch.nn.functional as F  # noqa: N812

    from intquant.torch.integer import IntegerLayerModule

    torch.set_num_threads(threads)
    module = IntegerLayerModule.from_layer(layer)
    tensor = torch.from_numpy(codes)
    values, weight, bias = (torch.from_numpy(numpy.ascontiguousarray(value)) for value in float_inputs[:3])
    padding = float_inputs[3]

    def torch_float() -> Any:
        with torch.no_grad():
            if layer.accumulator_plan.kind == "conv2d":
                return F.conv2d(values, weight, bias, padding=padding)
            return F.linear(values, weight, bias)

    def torch_integer() -> Any:
        with torch.no_grad():
            return module(tensor)

    if not numpy.array_equal(torch_integer().numpy(), layer(codes)):
        raise AssertionError("intquant.torch's integer layer differs from numpy's")
    return {"torch float64": torch_float, "torch": torch_integer}


def onnx_sides(layer: Any, codes: numpy.ndarray, threads: int) -> dict[str, Callable[[], Any]]:
    """``onnxruntime``: the layer exported by ``intquant.onnx.integer``, if available."""
    if (
        importlib.util.find_spec("onnxruntime") is None
        or importlib.util.find_spec("intquant.onnx.integer") is None
    ):
        return {}
    import onnxruntime

    from intquant.onnx.integer import integer_layer_to_onnx

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    model = integer_layer_to_onnx(layer)
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name

    def run() -> Any:
        return session.run(None, {name: codes})[0]

    if not numpy.array_equal(run(), layer(codes)):
        raise AssertionError("the ONNX export of the integer layer differs from numpy's")
    return {"onnxruntime": run}


# -- timing


def interleaved(sides: dict[str, Callable[[], Any]], budget: float, min_runs: int = 3) -> dict[str, float]:
    """Median seconds per call of each side, the sides run in turns (order rotating) after a warm-up."""
    for function in sides.values():
        function()
    labels = list(sides)
    times: dict[str, list[float]] = {label: [] for label in labels}
    started = time.perf_counter()
    runs = 0
    while runs < min_runs or (time.perf_counter() - started < budget and runs < 10_000):
        turn = runs % len(labels)
        for label in labels[turn:] + labels[:turn]:
            begin = time.perf_counter()
            sides[label]()
            times[label].append(time.perf_counter() - begin)
        runs += 1
    return {label: float(numpy.median(measured)) for label, measured in times.items()}


# -- one cell


@dataclass
class Cell:
    """The timings of one shape at one width."""

    shape: Shape
    n_bits: int
    product_dtype: str
    medians: dict[str, float]


def make_layers(
    shape: Shape, n_bits: int, rng: numpy.random.Generator
) -> tuple[dict[str, Any], Callable[[], Any], numpy.ndarray, tuple[Any, ...]]:
    """The integer layer of each mode, the float side's call, the int64 input codes, and the
    float inputs ``(x, weight, bias, padding)``."""
    x = rng.normal(loc=0.5, size=shape.input_shape)
    if shape.is_conv:
        assert shape.kernel is not None
        fan_in = shape.input_shape[1] * shape.kernel[0] * shape.kernel[1]
        weight = rng.normal(size=(shape.out_channels, shape.input_shape[1], *shape.kernel)) / numpy.sqrt(
            fan_in
        )
    else:
        weight = rng.normal(size=(shape.out_channels, shape.input_shape[-1])) / numpy.sqrt(
            shape.input_shape[-1]
        )
    bias = rng.normal(size=shape.out_channels) * 0.1

    def float_side() -> numpy.ndarray:
        if shape.is_conv:
            return float_conv(x, weight, bias, shape.padding)
        return float_linear(x, weight, bias)

    input_quantizer = intquant.QuantizedArray(n_bits, x).quantizer
    output_quantizer = intquant.QuantizedArray(n_bits, float_side()).quantizer
    layers = {}
    for name, mode in MODES.items():
        if shape.is_conv:
            layers[name] = IntegerConv2d.from_float(
                weight,
                bias,
                input_quantizer=input_quantizer,
                output_quantizer=output_quantizer,
                weight_bits=n_bits,
                requantization=mode,
                padding=shape.padding,
            )
        else:
            layers[name] = IntegerLinear.from_float(
                weight,
                bias,
                input_quantizer=input_quantizer,
                output_quantizer=output_quantizer,
                weight_bits=n_bits,
                requantization=mode,
            )
    codes = numpy.asarray(input_quantizer.quant(x), dtype=numpy.int64)
    return layers, float_side, codes, (x, weight, bias, shape.padding)


def measure(shape: Shape, n_bits: int, budget: float, threads: int, rng: numpy.random.Generator) -> Cell:
    """Check, then time every side of one cell."""
    layers, float_side, codes, float_inputs = make_layers(shape, n_bits, rng)
    reference = layers["float"]
    expected = exact_accumulators(reference, codes)
    got = reference.accumulate(codes)
    if not numpy.array_equal(got[:CHECK_ROWS], expected):
        raise AssertionError(f"{shape.name}, {n_bits} bits: the accumulators are not exact")
    sides: dict[str, Callable[[], Any]] = {
        "float64": float_side,
        "accumulate": lambda: reference.accumulate(codes),
    }
    for name, layer in layers.items():
        sides[name] = functools.partial(layer, codes)
    sides.update(torch_sides(reference, codes, float_inputs, threads))
    sides.update(onnx_sides(reference, codes, threads))
    medians = interleaved(sides, budget)
    return Cell(shape, n_bits, str(reference.accumulator_plan.product_dtype), medians)


# -- output


def table(cells: list[Cell]) -> list[str]:
    """A markdown table: median ms of every side, and its ratio to float64."""
    labels = [label for label in cells[0].medians if label != "float64"]
    extra = sorted({label for cell in cells for label in cell.medians} - set(cells[0].medians))
    labels += extra
    header = ["shape", "bits", "product", "float64 ms"] + [f"{label} ms (ratio)" for label in labels]
    lines = ["| " + " | ".join(header) + " |", "|---|---:|---|" + "---:|" * (len(header) - 3)]
    for cell in cells:
        base = cell.medians["float64"]
        row = [cell.shape.name, str(cell.n_bits), cell.product_dtype, f"{base * 1e3:.3f}"]
        for label in labels:
            if label in cell.medians:
                row.append(f"{cell.medians[label] * 1e3:.3f} ({cell.medians[label] / base:.2f})")
            else:
                row.append("-")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="skip the (4096, 784) shape, 0.3 s per cell")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads of every library (default 1)")
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds per cell (default 1.5; 0.3 quick)"
    )
    parser.add_argument("--markdown", default=None, help="also write the output to this file")
    arguments = parser.parse_args()
    budget = arguments.budget if arguments.budget is not None else (0.3 if arguments.quick else 1.5)
    shapes = QUICK_SHAPES if arguments.quick else SHAPES

    from threadpoolctl import threadpool_limits

    rng = numpy.random.default_rng(0)
    cells = []
    with threadpool_limits(arguments.threads):
        for shape in shapes:
            for n_bits in BITS:
                cells.append(measure(shape, n_bits, budget, arguments.threads, rng))
    lines = [
        f"Integer layers against float64, {arguments.threads} BLAS thread(s), {budget} s per cell; "
        f"numpy {numpy.__version__}, {platform.machine()}, Python {platform.python_version()}; "
        f"compiled layer call (numba, intquant.integer.fused): "
        f"{'on' if dispatch.enabled() else 'off (INTQUANT_PURE_NUMPY=1, or no numba)'}",
        "",
        "Median ms; (ratio) = time / float64 time. `float` ... `drop-low-bits`: the whole layer "
        "`layer(codes)`, accumulators then requantization in that mode.",
        "",
        *table(cells),
    ]
    text = "\n".join(lines)
    print(text)
    if arguments.markdown:
        with open(arguments.markdown, "w", encoding="utf-8") as file:
            file.write(text + "\n")


if __name__ == "__main__":
    main()

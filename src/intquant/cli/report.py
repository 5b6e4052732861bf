"""``intquant report``: the quantization error of every calibration method at every bit width.

Two passes over the data, whatever the number of methods and widths:

1. **Collect.** Each chunk of rows is read once and given to one collector per method
   (:mod:`intquant.cli.collect`: min/max ranges, per tensor or per block; the histograms of the
   percentile, MSE and entropy methods). Then each ``(method, bits)`` quantizer is computed from
   its method's statistics, as the Python API computes it.
2. **Measure.** Each chunk is read once more, converted to float64 once, and every quantizer
   quantizes and dequantizes it (the whole array's plans restricted to the chunk, into reused
   buffers); the errors are accumulated per quantizer.

With ``e = dequant(quant(x)) - x`` over all ``n`` values, a row holds ``mse = sum(e**2) / n``,
``sqnr_db = 10 log10(sum(x**2) / sum(e**2))`` and ``max_abs_error = max |e|`` (float64), as
:func:`intquant.metrics.quantization_error` computes them on the whole array (the sums are taken
chunk by chunk, so they may differ from it in the last bits). One progress bar covers both
passes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy

from intquant._core.execute import dequantize_with, quantize_with
from intquant._core.formulas import fitting_code_dtype
from intquant._core.plan import restricted_dequant_plan, restricted_quant_plan
from intquant.cli.collect import check_granularity, collector
from intquant.cli.commands import check_option_flags, percentile_of, quantization_options
from intquant.cli.files import check_output, load_array, output_format, parse_input, row_chunks, write_file
from intquant.cli.progress import Progress
from intquant.errors import InvalidValueError
from intquant.quantizer import UniformQuantizer

__all__ = ["ErrorSums", "report_command", "report_rows"]

_FLOAT64 = numpy.dtype(numpy.float64)


@dataclass
class ErrorSums:
    """The error of one quantizer, accumulated chunk by chunk (see the module docstring)."""

    squared: float = 0.0
    worst: float = 0.0

    def result(self, count: int, power: float) -> dict[str, float]:
        mse = self.squared / count
        sqnr_db = (
            math.inf
            if self.squared == 0
            else (10 * math.log10(power / self.squared) if power > 0 else -math.inf)
        )
        return {"mse": mse, "sqnr_db": sqnr_db, "max_abs_error": self.worst}


@dataclass
class _Row:
    method: str
    n_bits: int
    quantizer: UniformQuantizer
    quant_plan: Any = None
    dequant_plan: Any = None
    codes: numpy.dtype[Any] = field(default_factory=lambda: numpy.dtype(numpy.int64))
    sums: ErrorSums = field(default_factory=ErrorSums)


def report_command(arguments: argparse.Namespace) -> int:
    check_option_flags(arguments)
    spec = parse_input(arguments.input)
    plot_kind = None
    if arguments.plot is not None:
        plot_kind = _plot_format(arguments.plot)
        check_output(arguments.plot, [spec.path], arguments.force)
    values = load_array(spec)
    rows = report_rows(values, arguments, spec.text)
    if arguments.json:
        print(json.dumps([{key: _json_number(value) for key, value in row.items()} for row in rows]))
    else:
        print(f"{'method':<11}{'bits':>5}{'MSE':>13}{'SQNR dB':>10}{'max error':>12}")
        for row in rows:
            print(
                f"{row['method']:<11}{row['n_bits']:>5}{row['mse']:>13.4e}{row['sqnr_db']:>10.2f}"
                f"{row['max_abs_error']:>12.4g}"
            )
    if arguments.plot is not None and plot_kind is not None:
        _plot(rows, arguments.plot, plot_kind, replace=arguments.force)
    return 0


def report_rows(values: numpy.ndarray, arguments: argparse.Namespace, name: str) -> list[dict[str, Any]]:
    """``{"method", "n_bits", "mse", "sqnr_db", "max_abs_error"}`` for every method and width,
    from two passes over ``values`` (see the module docstring)."""
    axis, block_size = arguments.axis, arguments.block_size
    check_granularity(axis, block_size, values.shape, name)
    percentile = percentile_of(arguments)
    collectors = [
        collector(method, percentile, values.shape, axis, block_size, keep_uniques=False)
        for method in arguments.method
    ]
    row_multiple = math.lcm(*(statistics.row_multiple for statistics in collectors))
    if values.ndim == 0:
        slices: list[Any] = [()]
    else:
        rest = (slice(None),) * (values.ndim - 1)
        slices = [(part, *rest) for part in row_chunks(values.shape, arguments.chunk_size, row_multiple)]
    quantizers = len(arguments.method) * len(arguments.bits)
    total = len(slices) * (1 + quantizers) + quantizers
    with Progress(total, quiet=arguments.quiet, unit="step") as progress, _pool() as pool:
        progress.describe("collecting")
        for region in slices:
            chunk = numpy.asarray(values[region])
            # Each method's collector sees the chunks in order, each in its own thread.
            for future in [pool.submit(statistics.add, chunk) for statistics in collectors]:
                future.result()
            progress.advance()
        progress.describe("calibrating")
        rows = []
        for method, statistics in zip(arguments.method, collectors, strict=True):
            for n_bits in arguments.bits:
                options = quantization_options(arguments, n_bits)
                stats = statistics.statistics(options)
                quantizer = UniformQuantizer(options, stats)
                quantizer.compute_quantization_parameters(options, stats)
                rows.append(_Row(method, n_bits, quantizer))
                progress.advance()
        progress.describe("measuring")
        # Rows whose quantizers quantize alike (a method choosing the min/max range, say) are
        # measured once.
        measured: dict[Any, _Row] = {}
        for row in rows:
            measured.setdefault(_fingerprint(row.quantizer) or id(row), row)
        measure = _Measurement(list(measured.values()), values)
        concurrent = pool  # stochastic noise is a function of (seed, index): threads are safe
        for region in slices:
            measure.add(numpy.asarray(values[region]), region, concurrent)
            progress.advance(len(rows))
        for row in rows:
            row.sums = measured[_fingerprint(row.quantizer) or id(row)].sums
    return [
        {"method": row.method, "n_bits": row.n_bits, **row.sums.result(measure.count, measure.power)}
        for row in rows
    ]


def _fingerprint(quantizer: UniformQuantizer) -> tuple[Any, ...] | None:
    """What ``quant`` depends on, as a key: equal keys, equal codes (None for stochastic
    rounding: each of its rows is measured on its own)."""
    settings = quantizer.settings()
    if settings.rounding == "stochastic":
        return None
    keys: list[Any] = []
    for value in settings:
        if isinstance(value, (numpy.ndarray, numpy.generic)):
            array = numpy.asarray(value)
            keys.append((type(value).__name__, array.dtype.str, array.shape, array.tobytes()))
        else:
            keys.append((type(value).__name__, repr(value)))
    return tuple(keys)


@contextlib.contextmanager
def _pool() -> Iterator[ThreadPoolExecutor]:
    """Threads for the report's independent work (numpy and the compiled loops release the GIL);
    on an error or a signal, the work not started yet is dropped."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    pool = ThreadPoolExecutor(
        max_workers=max(1, min(cores, _MAX_THREADS)), thread_name_prefix="intquant-report"
    )
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


#: At most this many threads: the blocks are memory-bound beyond.
_MAX_THREADS = 8
#: Elements measured at once: the float64 buffers (0.5 MiB each) stay in a CPU's cache while
#: every quantizer runs over them.
_BLOCK = 1 << 16


@dataclass
class _Sums:
    """What one block contributes: its values' count and power (flat blocks, which cover every
    value), and the error sums of the rows it measured (the flat rows, or the grouped ones)."""

    rows: list[_Row]
    count: int = 0
    power: float = 0.0
    errors: list[tuple[float, float]] = field(default_factory=list)


class _Measurement:
    """The second pass: every row's quantizer over each chunk, block by block into reused buffers.

    A per-tensor quantizer measures the chunk as flat blocks of ``_BLOCK`` elements, with the
    plans of a 1-D array (per tensor, a code depends on its value only); a per-axis or per-block
    one (or one whose parameters numpy broadcasts) as blocks of rows, with the whole array's
    plans restricted to them; a 0-d array is measured whole. Stochastic rounding's noise is that
    of each element's flat index in the whole array, so it does not depend on the blocks. Blocks
    may run in threads; their sums are added in the blocks' order, so the result does not depend
    on the threads.
    """

    def __init__(self, rows: list[_Row], values: numpy.ndarray) -> None:
        self.rows, self.count, self.power = rows, 0, 0.0
        self._dtype = values.dtype
        self._whole = values.shape
        per_row = math.prod(values.shape[1:]) if values.ndim > 1 else 1
        self._rows_per_block = max(1, _BLOCK // per_row)
        self._size = max(1, min(max(_BLOCK, per_row * self._rows_per_block), values.size))
        self._buffers = threading.local()
        self._flat: list[_Row] = []
        self._grouped: list[_Row] = []
        for row in rows:
            plan = row.quantizer.quant_plan(values.dtype, values.shape)
            span = plan.span
            row.codes = numpy.dtype(numpy.int64) if span is None else fitting_code_dtype("smallest", *span)
            if values.ndim and plan.layout is None and not plan.generic:
                self._flat.append(row)
            else:
                row.quant_plan = plan
                row.dequant_plan = row.quantizer.dequant_plan(row.codes, values.shape)
                self._grouped.append(row)
        self._flat_plans: dict[tuple[int, int], tuple[Any, Any]] = {}
        self._plans_lock = threading.Lock()

    def add(self, chunk: numpy.ndarray, region: Any, pool: ThreadPoolExecutor | None) -> None:
        """Measure every quantizer on ``chunk``, the rows ``region`` of the array."""
        flat = chunk.reshape(-1)
        offset = (region[0].start or 0) * math.prod(chunk.shape[1:]) if chunk.ndim else 0
        tasks: list[tuple[Any, ...]] = [
            (self._flat_block, flat[start : start + _BLOCK], offset + start)
            for start in range(0, flat.size, _BLOCK)
        ]
        if self._grouped and not chunk.ndim:
            tasks.append((self._grouped_block, chunk, ()))
        elif self._grouped:
            first = region[0].start or 0
            for start in range(0, chunk.shape[0], self._rows_per_block):
                stop = min(chunk.shape[0], start + self._rows_per_block)
                part = (slice(first + start, first + stop), *region[1:])
                tasks.append((self._grouped_block, chunk[start:stop], part))
        if pool is None:
            results = [task[0](*task[1:]) for task in tasks]
        else:
            results = [future.result() for future in [pool.submit(*task) for task in tasks]]
        for sums in results:  # in the blocks' order
            self.count += sums.count
            self.power += sums.power
            for row, (squared, worst) in zip(sums.rows, sums.errors, strict=True):
                row.sums.squared += squared
                row.sums.worst = max(row.sums.worst, worst)

    def _buffer(self, name: str, dtype: Any) -> numpy.ndarray:
        """This thread's buffer ``name`` (``self._size`` elements of ``dtype``)."""
        key = f"{name}-{numpy.dtype(dtype).str}"
        buffer = getattr(self._buffers, key, None)
        if buffer is None:
            buffer = numpy.empty(self._size, dtype=dtype)
            setattr(self._buffers, key, buffer)
        return buffer

    def _original(self, values: numpy.ndarray) -> numpy.ndarray:
        original = self._buffer("original", _FLOAT64)[: values.size]
        numpy.copyto(original, values.reshape(-1), casting="unsafe")
        return original

    def _flat_block(self, values: numpy.ndarray, offset: int) -> _Sums:
        original = self._original(values)
        sums = _Sums(self._flat, original.size, float(numpy.einsum("i,i->", original, original)))
        for index, row in enumerate(self._flat):
            quant_plan, dequant_plan = self._flat_plan(index, row, values.size)
            origin = ((offset,), (math.prod(self._whole),))
            sums.errors.append(self._error(row, quant_plan, dequant_plan, values, original, origin))
        return sums

    def _grouped_block(self, values: numpy.ndarray, part: Any) -> _Sums:
        original = self._original(values)
        sums = _Sums(self._grouped)
        for row in self._grouped:
            quant_plan = restricted_quant_plan(row.quant_plan, part) if part else row.quant_plan
            dequant_plan = restricted_dequant_plan(row.dequant_plan, part) if part else row.dequant_plan
            origin = (tuple(piece.start or 0 for piece in part), self._whole) if part else None
            sums.errors.append(self._error(row, quant_plan, dequant_plan, values, original, origin))
        return sums

    def _flat_plan(self, index: int, row: _Row, size: int) -> tuple[Any, Any]:
        key = (index, size)
        with self._plans_lock:
            if key not in self._flat_plans:
                self._flat_plans[key] = (
                    row.quantizer.quant_plan(self._dtype, (size,)),
                    row.quantizer.dequant_plan(row.codes, (size,)),
                )
            return self._flat_plans[key]

    def _error(
        self,
        row: _Row,
        quant_plan: Any,
        dequant_plan: Any,
        values: Any,
        original: Any,
        origin: tuple[tuple[int, ...], tuple[int, ...]] | None,
    ) -> tuple[float, float]:
        """``(sum(e**2), max|e|)`` of ``e = dequant(quant(values)) - values`` (``original``: the
        values as flat float64; ``origin``: their place in the whole array, as ``(offsets,
        whole shape)``, None for the whole array)."""
        shape = numpy.shape(values)
        codes = self._buffer("codes", row.codes)[: original.size].reshape(shape)
        noise = row.quantizer.rng
        if noise is not None and origin is not None:
            noise = noise.region(*origin)
        quantize_with(quant_plan, values, noise, out=codes)
        error = self._buffer("restored", _FLOAT64)[: original.size]
        dequantize_with(dequant_plan, codes, out=error.reshape(shape))
        numpy.subtract(error, original, out=error)
        return float(numpy.einsum("i,i->", error, error)), max(float(error.max()), -float(error.min()))


def _json_number(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _plot_format(path: Path) -> str:
    """The format a plot is saved in, from its extension (any that matplotlib writes)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise InvalidValueError('--plot needs matplotlib: pip install "intquant[demo]"') from None
    kinds = sorted(
        FigureCanvasAgg(Figure()).get_supported_filetypes(), key=lambda kind: (kind != "png", kind)
    )
    return output_format(path, tuple(f".{kind}" for kind in kinds), "plots")[1:]


def _plot(rows: list[dict[str, Any]], path: Path, kind: str, *, replace: bool) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for method in dict.fromkeys(row["method"] for row in rows):
        points = [
            (row["n_bits"], row["sqnr_db"])
            for row in rows
            if row["method"] == method and math.isfinite(row["sqnr_db"])
        ]
        axes.plot([bits for bits, _ in points], [sqnr for _, sqnr in points], marker="o", label=method)
    axes.set_xlabel("bits")
    axes.set_ylabel("SQNR (dB)")
    axes.set_title("Quantization error against bit width")
    axes.grid(True, alpha=0.3)
    axes.legend()
    write_file(
        path, path.suffix, lambda temporary: figure.savefig(temporary, format=kind, dpi=100), replace=replace
    )
    print(f"wrote {path}")

"""The ``intquant`` command line: calibrate, quantize, dequantize and report on arrays on disk.

``.npy`` inputs are memory-mapped and processed in chunks of rows with streaming statistics, so
files larger than memory work. Outputs are written atomically, never over an input, and replace
an existing file only with ``--force``. Bad files or options give a one-line error on stderr and
exit status 2. SIGINT, SIGTERM and SIGHUP remove the temporary file and leave an old output as it
was; the command prints one line and exits with status 128 + the signal's number.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy

from intquant._core.codec import dumps, loads
from intquant._core.execute import dequantize_with, quantize_with
from intquant._core.extras import ROUNDING_MODES
from intquant._core.granularity import granularity_of
from intquant._core.plan import restricted_dequant_plan, restricted_quant_plan
from intquant.calibration import EntropyStats, MSEStats, PercentileStats
from intquant.cli.files import check_output, load_array, row_chunks, write_array, write_file, write_text
from intquant.errors import IntquantError, InvalidValueError
from intquant.metrics import QuantizationErrors
from intquant.options import QuantizationOptions
from intquant.quantized_array import QuantizedArray
from intquant.quantizer import UniformQuantizer
from intquant.statistics import MinMaxQuantizationStats, calibrate

__all__ = ["main"]

METHODS = ("minmax", "percentile", "mse", "entropy")
DEFAULT_CHUNK = 1 << 22  # elements per chunk
DEMO_PLOT = "intquant-demo.png"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"intquant: error: {message}", file=sys.stderr)
        raise SystemExit(2)


class _Interrupted(BaseException):
    """Raised by main()'s signal handlers: a BaseException, so that no ``except Exception`` stops
    it before the writers' cleanup and main()."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (2 for bad input, with a one-line error;
    128 + N after signal N: SIGINT, SIGTERM or SIGHUP)."""
    try:
        with _signals_raise():
            return _run(argv)
    except (_Interrupted, KeyboardInterrupt) as interrupt:  # the temporary file is removed by now
        signum = interrupt.signum if isinstance(interrupt, _Interrupted) else int(signal.SIGINT)
        print(f"intquant: interrupted by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum


def _run(argv: Sequence[str] | None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        return int(arguments.run(arguments))
    except (IntquantError, OSError, ValueError, KeyError, MemoryError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"intquant: error: {message}", file=sys.stderr)
        return 2


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP (and SIGINT, if Python's default handler has it)
    raise _Interrupted, the first one only: the writers' cleanup is not cut by a second signal.
    Ignored signals (nohup) stay ignored; the previous handlers come back afterwards. Only in the
    main thread, where Python runs signal handlers."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if not received:
            received.append(signum)
            raise _Interrupted(signum)

    previous: dict[int, Any] = {}
    try:
        for name in ("SIGTERM", "SIGHUP", "SIGINT"):
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            current = signal.getsignal(signum)
            if current is None or current == signal.SIG_IGN:
                continue  # set outside Python, or ignored on purpose (nohup)
            if name == "SIGINT" and current is not signal.default_int_handler:
                continue
            previous[signum] = signal.signal(signum, handler)
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


# -- arguments
def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="intquant", description="Uniform (affine) quantization of numpy arrays.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND", parser_class=_Parser)
    input_help = "a .npy (memory-mapped), .npz (file.npz:name) or .csv file"

    calibrate = commands.add_parser("calibrate", help="compute a quantizer from data and write it as JSON")
    calibrate.add_argument("input", help=input_help)
    calibrate.add_argument("-o", "--output", type=Path, required=True, help="the quantizer JSON to write")
    _add_options(calibrate)
    calibrate.add_argument("--method", choices=METHODS, default="minmax", help="how to choose the range")
    calibrate.add_argument("--percentile", type=float, default=99.99, help="for --method percentile")
    calibrate.set_defaults(run=_calibrate)

    for name, run, what in (
        ("quantize", _quantize, "integer codes"),
        ("dequantize", _dequantize, "float values"),
    ):
        command = commands.add_parser(name, help=f"apply a quantizer JSON to an array; write {what} as .npy")
        command.add_argument("input", help=input_help)
        command.add_argument("quantizer", type=Path, help="a quantizer JSON written by 'intquant calibrate'")
        command.add_argument("-o", "--output", type=Path, required=True, help="the .npy file to write")
        _add_common(command)
        command.set_defaults(run=run)

    report = commands.add_parser("report", help="quantization error per bit width and method")
    report.add_argument("input", help=input_help)
    report.add_argument(
        "--bits", type=_bit_widths, default=tuple(range(2, 9)), help="e.g. 2-8 or 2,4,8 (default 2-8)"
    )
    report.add_argument(
        "--method",
        type=_methods,
        default=("minmax",),
        help=f"comma-separated, of {','.join(METHODS)} (default minmax)",
    )
    report.add_argument("--percentile", type=float, default=99.99, help="for the percentile method")
    report.add_argument("--signed", action="store_true", help="signed codes")
    report.add_argument("--symmetric", action="store_true", help="symmetric range (implies --signed)")
    report.add_argument("--plot", type=Path, help="draw SQNR against bits per method into this PNG")
    report.add_argument("--json", action="store_true", help="print the table as JSON")
    _add_common(report)
    report.set_defaults(run=_report)

    demo = commands.add_parser(
        "demo", help="quantize a logistic-regression digit classifier and run it on integers only"
    )
    demo.add_argument(
        "--plot", type=Path, default=Path(DEMO_PLOT), help=f"accuracy plot (default ./{DEMO_PLOT})"
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=_demo)
    return parser


def _add_common(command: argparse.ArgumentParser) -> None:
    command.add_argument("--force", action="store_true", help="replace an existing output file")
    command.add_argument("--quiet", action="store_true", help="no progress bar")
    command.add_argument("--chunk-size", type=_positive, default=DEFAULT_CHUNK, help="elements per chunk")


def _add_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--n-bits", type=int, default=8, help="bits per code, 1 to 32 (default 8)")
    command.add_argument("--signed", action="store_true", help="signed codes (offset 2**(n-1))")
    command.add_argument("--symmetric", action="store_true", help="symmetric range (implies --signed)")
    command.add_argument("--narrow", action="store_true", help="narrow range: no code -2**(n-1)")
    command.add_argument("--axis", type=int, help="one scale per index along this axis")
    command.add_argument("--block-size", type=_block, help="one scale per block, e.g. 1,32")
    command.add_argument("--rounding", choices=ROUNDING_MODES, default="half_even")
    _add_common(command)


def _bit_widths(text: str) -> tuple[int, ...]:
    try:
        if "-" in text:
            first, last = (int(part) for part in text.split("-", 1))
            if not 1 <= first <= last <= 32:  # before building the range, which may be huge
                raise argparse.ArgumentTypeError(f"bit widths must be 1 to 32; got {text!r}")
            bits = tuple(range(first, last + 1))
        else:
            bits = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected bit widths such as 2-8 or 2,4,8; got {text!r}") from None
    if not bits or any(not 1 <= n <= 32 for n in bits):
        raise argparse.ArgumentTypeError(f"bit widths must be 1 to 32; got {text!r}")
    return bits


def _methods(text: str) -> tuple[str, ...]:
    methods = tuple(text.split(","))
    unknown = [method for method in methods if method not in METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    return methods


def _block(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected extents such as 1,32; got {text!r}") from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number; got {text!r}")
    return int(text)


# -- commands
def _options(arguments: argparse.Namespace, n_bits: int | None = None) -> QuantizationOptions:
    options = QuantizationOptions(
        n_bits if n_bits is not None else arguments.n_bits,
        is_signed=bool(arguments.signed or arguments.symmetric),
        is_symmetric=bool(arguments.symmetric),
        **{
            name: getattr(arguments, name)
            for name in ("rounding", "axis", "block_size")
            if getattr(arguments, name, None) is not None
        },
    )
    options.is_narrow = bool(getattr(arguments, "narrow", False))
    return options


def _calibrate(arguments: argparse.Namespace) -> int:
    output = arguments.output
    check_output(output, [_input_path(arguments.input)], arguments.force)
    options = _options(arguments)
    values = load_array(arguments.input)
    stats = _collect(values, arguments.method, arguments.percentile, options, arguments)
    quantizer = UniformQuantizer(options, stats)
    quantizer.compute_quantization_parameters(options, stats)
    write_text(output, dumps(quantizer), replace=arguments.force)
    print(
        f"wrote a {options.n_bits}-bit {arguments.method} quantizer for {values.shape} {values.dtype} values"
    )
    print(f"to {output}")
    return 0


def _collect(
    values: numpy.ndarray, method: str, percentile: float, options: Any, arguments: argparse.Namespace
) -> Any:
    """Statistics of ``values``, streamed over chunks of rows."""
    grouped = options.axis is not None or options.block_size is not None
    if method != "minmax":
        if grouped:
            raise InvalidValueError(
                f"--method {method} calibrates whole tensors; use --method minmax with --axis/--block-size"
            )
        factories: dict[str, Callable[[], Any]] = {
            "percentile": lambda: PercentileStats(percentile),
            "mse": MSEStats,
            "entropy": EntropyStats,
        }
        stats: Any = factories[method]()
        for chunk in _chunks(values, arguments):
            stats.update(chunk)
        return stats
    stats = MinMaxQuantizationStats()
    if not grouped or values.ndim == 0:
        for chunk in _chunks(values, arguments):
            stats.update(chunk)
        return stats
    extent = granularity_of(options.axis, options.block_size).extent(values.shape)
    if extent[0] == values.shape[0]:  # every block spans all rows: merge chunk grids
        for chunk in _chunks(values, arguments, extent[0]):
            stats.update(chunk, axis=options.axis, block_size=options.block_size)
        return stats
    parts = []  # blocks split the rows: each chunk holds whole blocks; stack their grids
    for chunk in _chunks(values, arguments, extent[0]):
        parts.append(calibrate(numpy.asarray(chunk), options.axis, options.block_size))
    stats.rmin = numpy.concatenate([part[0] for part in parts])
    stats.rmax = numpy.concatenate([part[1] for part in parts])
    stats.uvalues = [uniques for part in parts for uniques in part[2]]
    return stats


def _chunks(
    values: numpy.ndarray, arguments: argparse.Namespace, row_multiple: int = 1
) -> Iterator[numpy.ndarray]:
    """Chunks of rows of ``values`` (in memory), with a progress bar for long work."""
    if values.ndim == 0:
        yield numpy.asarray(values)
        return
    slices = list(row_chunks(values.shape, arguments.chunk_size, row_multiple))
    for part in _progress(slices, arguments):
        yield numpy.asarray(values[part])


def _progress(items: list[Any], arguments: argparse.Namespace) -> Any:
    """``items`` wrapped in a tqdm bar on stderr, shown after a second of work, only on a terminal."""
    if arguments.quiet or not sys.stderr.isatty():
        return items
    try:
        from tqdm import tqdm  # type: ignore[import-untyped]
    except ImportError:  # the progress bar is optional (pip install "intquant[cli]")
        return items
    return tqdm(items, delay=1.0, file=sys.stderr, unit="chunk", leave=False)


def _load_quantizer(path: Path) -> UniformQuantizer:
    if not path.is_file():
        raise InvalidValueError(f"no such quantizer file: {path}")
    loaded = loads(path.read_bytes())
    if isinstance(loaded, QuantizedArray):
        loaded = loaded.quantizer
    if not isinstance(loaded, UniformQuantizer):
        raise InvalidValueError(f"{path} holds a {type(loaded).__name__}, not a quantizer")
    return loaded


def _apply(arguments: argparse.Namespace, quantize: bool) -> int:
    """Quantize or dequantize an array on disk in chunks of rows: the whole array's plan (which
    checks the array against the quantizer's block grid) restricted to each chunk."""
    output = arguments.output
    check_output(output, [_input_path(arguments.input), arguments.quantizer], arguments.force)
    quantizer = _load_quantizer(arguments.quantizer)
    values = load_array(arguments.input)
    plan: Any = (quantizer.quant_plan if quantize else quantizer.dequant_plan)(values.dtype, values.shape)
    restrict: Any = restricted_quant_plan if quantize else restricted_dequant_plan
    rng = quantizer.rng
    dtype = numpy.dtype(numpy.int64 if quantize else numpy.float64)

    def run(part_plan: Any, chunk: numpy.ndarray) -> Any:  # in the output's dtype, in one pass
        if quantize:
            return quantize_with(part_plan, chunk, rng, dtype=dtype)
        return dequantize_with(part_plan, chunk, dtype)

    layout = plan.layout
    row_multiple = layout.extent[0] if layout is not None and layout.grid and layout.grid[0] > 1 else 1

    def fill() -> Iterator[numpy.ndarray]:  # the output's rows in order, written as they come
        if values.ndim == 0:
            yield run(plan, numpy.asarray(values))
            return
        rest = (slice(None),) * (values.ndim - 1)
        for part in _progress(list(row_chunks(values.shape, arguments.chunk_size, row_multiple)), arguments):
            yield run(restrict(plan, (part, *rest)), numpy.asarray(values[part]))

    write_array(output, values.shape, dtype, fill(), replace=arguments.force)
    print(f"wrote {values.shape} {dtype} to {output}")
    return 0


def _quantize(arguments: argparse.Namespace) -> int:
    return _apply(arguments, quantize=True)


def _dequantize(arguments: argparse.Namespace) -> int:
    return _apply(arguments, quantize=False)


def _report(arguments: argparse.Namespace) -> int:
    if arguments.plot is not None:
        check_output(arguments.plot, [_input_path(arguments.input)], arguments.force)
    values = load_array(arguments.input)
    rows = []
    for method in arguments.method:
        signed = bool(arguments.signed or arguments.symmetric)
        base = argparse.Namespace(signed=signed, symmetric=arguments.symmetric, n_bits=8)
        stats = _collect(values, method, arguments.percentile, _options(base), arguments)
        for n_bits in arguments.bits:
            if n_bits == 1 and arguments.symmetric:
                continue  # 1-bit symmetric quantization has no positive level
            options = _options(base, n_bits)
            quantizer = UniformQuantizer(options, stats)
            quantizer.compute_quantization_parameters(options, stats)
            rows.append({"method": method, "n_bits": n_bits, **_errors(values, quantizer, arguments)})
    if arguments.json:
        print(json.dumps([{key: _json_number(value) for key, value in row.items()} for row in rows]))
    else:
        print(f"{'method':<11}{'bits':>5}{'MSE':>13}{'SQNR dB':>10}{'max error':>12}")
        for row in rows:
            print(
                f"{row['method']:<11}{row['n_bits']:>5}{row['mse']:>13.4e}{row['sqnr_db']:>10.2f}{row['max_abs_error']:>12.4g}"
            )
    if arguments.plot is not None:
        _plot(rows, arguments.plot, replace=arguments.force)
    return 0


def _errors(
    values: numpy.ndarray, quantizer: UniformQuantizer, arguments: argparse.Namespace
) -> dict[str, float]:
    """MSE, SQNR (dB) and max error of dequant(quant(values)), accumulated over chunks."""
    errors = QuantizationErrors()
    for chunk in _chunks(values, argparse.Namespace(quiet=True, chunk_size=arguments.chunk_size)):
        errors.add(chunk, quantizer.dequant(quantizer.quant(chunk)))
    return errors.result()


def _json_number(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _plot(rows: list[dict[str, Any]], path: Path, *, replace: bool) -> None:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise InvalidValueError('--plot needs matplotlib: pip install "intquant[demo]"') from None
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
        path, ".png", lambda temporary: figure.savefig(temporary, format="png", dpi=100), replace=replace
    )
    print(f"wrote {path}")


def _demo(arguments: argparse.Namespace) -> int:
    from intquant.demo import run_demo

    run_demo(arguments.plot, show_progress=not arguments.quiet and sys.stderr.isatty())
    return 0


def _input_path(spec: str) -> Path:
    path_text, _, member = spec.partition(".npz:")
    return Path(path_text + ".npz") if member else Path(spec)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

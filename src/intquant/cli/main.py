"""The ``intquant`` command line: calibrate, quantize, dequantize and report on arrays on disk.

``.npy`` inputs are memory-mapped and processed in chunks of rows with streaming statistics, so
files larger than memory work; ``.npz`` and ``.safetensors`` checkpoints are processed whole,
array by array. Outputs are written atomically, never over an input, and replace an existing
file only with ``--force``. Bad files or options give a one-line error on stderr, in
command-line terms, and exit status 2 (``intquant`` alone prints the commands and exits with 2).
SIGINT, SIGTERM and SIGHUP remove the temporary file and leave an old output as it was; the
command prints one line and exits with status 128 + the signal's number. ``docs/cli.md``
describes every command, option and file format.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from intquant import __version__
from intquant._core.extras import ROUNDING_MODES
from intquant.cli.collect import DEFAULT_PERCENTILE, METHODS
from intquant.cli.commands import (
    CODE_DTYPES,
    VALUE_DTYPES,
    calibrate_command,
    demo_command,
    dequantize_command,
    quantize_command,
)
from intquant.cli.messages import command_line_message
from intquant.cli.report import report_command
from intquant.errors import IntquantError

__all__ = ["main"]

DEFAULT_CHUNK = 1 << 20  # elements per chunk
DEMO_PLOT = "intquant-demo.png"
_INPUT_HELP = (
    "a .npy file (memory-mapped), one array of an archive as FILE.npz:NAME or "
    "FILE.safetensors:NAME, or a .csv file"
)
_CHECKPOINT_HELP = f"{_INPUT_HELP}; or a whole .npz/.safetensors checkpoint"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"intquant: error: {message}", file=sys.stderr)
        raise SystemExit(2)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help with each option's default shown, where it has one worth showing."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS) and not isinstance(
            action.default, list
        )
        if shown and "%(default)" not in text and "default:" not in text and action.option_strings:
            text += " (default: %(default)s)"
        return text


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
    parser = _parser()
    arguments = parser.parse_args(argv)
    if arguments.command is None:  # as git does: the commands, and a failing status
        parser.print_help()
        return 2
    try:
        return int(arguments.run(arguments))
    except (IntquantError, OSError, ValueError, KeyError, MemoryError) as error:
        print(f"intquant: error: {command_line_message(error)}", file=sys.stderr)
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
    parser = _Parser(
        prog="intquant",
        description="Uniform (affine) quantization of numpy arrays, bit-exact with Concrete ML 1.7.",
        epilog="Run 'intquant COMMAND -h' for a command's options; docs/cli.md describes them all.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"intquant {__version__}")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands", parser_class=_Parser
    )

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=summary, description=description, formatter_class=_HelpFormatter
        )

    calibrate = command(
        "calibrate",
        "compute a quantizer from data and write it as JSON",
        "Compute a quantizer from data and write it as JSON: one quantizer for an array, or one\n"
        "per array (a JSON object of name -> quantizer) for a whole checkpoint.",
    )
    calibrate.add_argument("input", help=_CHECKPOINT_HELP)
    calibrate.add_argument(
        "-o", "--output", type=Path, required=True, metavar="FILE", help="the quantizer JSON to write (.json)"
    )
    calibrate.add_argument("--n-bits", type=_n_bits, default=8, metavar="N", help="bits per code, 1 to 32")
    _add_options(calibrate)
    calibrate.add_argument("--method", choices=METHODS, default="minmax", help="how to choose the range")
    calibrate.add_argument(
        "--percentile",
        type=_percentile,
        metavar="P",
        help=f"for --method percentile: clip at the (100-P)th and Pth percentiles "
        f"(default: {DEFAULT_PERCENTILE})",
    )
    calibrate.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="checkpoints: leave out the arrays whose names match (repeatable; e.g. '*bias')",
    )
    _add_common(calibrate)
    calibrate.set_defaults(run=calibrate_command)

    quantize = command(
        "quantize",
        "apply a quantizer JSON to an array or checkpoint: integer codes",
        "Quantize an array (or every array of a checkpoint that has a quantizer; the others are\n"
        "copied) with a quantizer JSON written by 'intquant calibrate'.",
    )
    quantize.add_argument("input", help=_CHECKPOINT_HELP)
    quantize.add_argument("quantizer", type=Path, help="a quantizer JSON written by 'intquant calibrate'")
    quantize.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="FILE",
        help="codes to write: .npy or .csv; .npz or .safetensors for a checkpoint",
    )
    quantize.add_argument(
        "--dtype",
        choices=CODE_DTYPES,
        default="smallest",
        help="the codes' dtype; smallest: the smallest integer type that holds the quantizer's clipping "
        "range (int64 when it does not clip)",
    )
    quantize.add_argument(
        "--seed", type=_seed, metavar="N", help="seed of stochastic rounding (the same seed, the same codes)"
    )
    quantize.add_argument(
        "--pack",
        action="store_true",
        help="pack the codes to the quantizer's bits (1 to 8) in bytes, in a .npz or .safetensors "
        "file that records the layout; dequantize unpacks them",
    )
    _add_common(quantize)
    quantize.set_defaults(run=quantize_command)

    dequantize = command(
        "dequantize",
        "apply a quantizer JSON to codes: values back",
        "Dequantize codes (an array, or every array of a checkpoint that has a quantizer; the\n"
        "others are copied) with the quantizer JSON they were quantized with.",
    )
    dequantize.add_argument("input", help=_CHECKPOINT_HELP)
    dequantize.add_argument("quantizer", type=Path, help="the quantizer JSON the codes were quantized with")
    dequantize.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="FILE",
        help="values to write: .npy or .csv; .npz or .safetensors for a checkpoint",
    )
    dequantize.add_argument(
        "--dtype",
        choices=VALUE_DTYPES,
        help="the restored values' dtype (default: the float dtype of the data the quantizer was "
        "calibrated on, which 'intquant calibrate' records as the dtype of the quantizer's "
        "rmin/rmax; float64 when that is not a float)",
    )
    _add_common(dequantize)
    dequantize.set_defaults(run=dequantize_command)

    report = command(
        "report",
        "quantization error per bit width and calibration method",
        "Quantization error (MSE, SQNR, max error) of every calibration method at every bit\n"
        "width, from two passes over the data.",
    )
    report.add_argument("input", help=_INPUT_HELP)
    report.add_argument(
        "--bits", type=_bit_widths, default="2-8", metavar="WIDTHS", help="bit widths, e.g. 2-8 or 2,4,8"
    )
    report.add_argument(
        "--method",
        type=_methods,
        default="minmax",
        metavar="METHODS",
        help=f"comma-separated, of {','.join(METHODS)}",
    )
    report.add_argument(
        "--percentile",
        type=_percentile,
        metavar="P",
        help=f"for the percentile method: clip at the (100-P)th and Pth percentiles "
        f"(default: {DEFAULT_PERCENTILE})",
    )
    _add_options(report)
    report.add_argument(
        "--plot",
        type=Path,
        metavar="IMAGE",
        help="draw SQNR against bits per method into this image (.png, .svg, .pdf, ...)",
    )
    report.add_argument("--json", action="store_true", help="print the table as JSON")
    _add_common(report)
    report.set_defaults(run=report_command)

    demo = command(
        "demo",
        "quantize a digit classifier and run it on integers only",
        "Train a 64-64-10 MLP on scikit-learn's bundled digits, run it as integer layers at 2-8\n"
        "bits (intquant.integer); print the accuracies and the accumulator widths against a\n"
        "16-bit limit, with and without the accumulator constraint, and plot them.",
    )
    demo.add_argument(
        "--plot",
        type=Path,
        default=Path(DEMO_PLOT),
        metavar="IMAGE",
        help="the plot to write (.png): accuracy and accumulator bits against bit width",
    )
    demo.add_argument("--force", action="store_true", help="replace an existing plot")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=demo_command)
    return parser


def _add_common(command: argparse.ArgumentParser) -> None:
    command.add_argument("--force", action="store_true", help="replace an existing output file")
    command.add_argument("--quiet", action="store_true", help="no progress bar")
    command.add_argument(
        "--chunk-size", type=_positive, default=DEFAULT_CHUNK, metavar="N", help="elements per chunk"
    )


def _add_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--signed", action="store_true", help="signed codes (offset 2**(n-1))")
    command.add_argument("--symmetric", action="store_true", help="symmetric range (implies --signed)")
    command.add_argument("--narrow", action="store_true", help="narrow range: no code -2**(n-1)")
    granularity = command.add_mutually_exclusive_group()
    granularity.add_argument(
        "--axis", type=int, metavar="AXIS", help="one scale per index along this axis (per channel)"
    )
    granularity.add_argument(
        "--block-size", type=_block, metavar="EXTENTS", help="one scale per block of these extents, e.g. 1,32"
    )
    command.add_argument(
        "--rounding", choices=ROUNDING_MODES, default="half_even", help="how codes are rounded"
    )
    command.add_argument(
        "--seed",
        type=_seed,
        metavar="N",
        help="seed of --rounding stochastic (the same seed, the same codes)",
    )
    command.add_argument("--zero-in-range", action="store_true", help="widen the range to include 0")
    command.add_argument(
        "--power-of-two-scale", action="store_true", help="round the scale up to a power of two"
    )
    command.add_argument(
        "--full-range",
        action="store_true",
        help="with --symmetric: spread max|x| over all 2**n levels, scale max|x| / ((2**n - 1) / 2) "
        "(PyTorch's symmetric convention) instead of max|x| / (2**(n-1) - 1)",
    )


def _n_bits(text: str) -> int:
    try:
        n_bits = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of bits from 1 to 32; got {text!r}"
        ) from None
    if not 1 <= n_bits <= 32:
        raise argparse.ArgumentTypeError(f"bits must be 1 to 32; got {n_bits}")
    return n_bits


def _percentile(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 50 < value <= 100:  # NaN fails too
        raise argparse.ArgumentTypeError(
            f"expected a share of values in (50, 100], such as 99.99; got {text!r}"
        )
    return value


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
    return tuple(dict.fromkeys(bits))


def _methods(text: str) -> tuple[str, ...]:
    methods = tuple(dict.fromkeys(text.split(",")))
    unknown = [method for method in methods if method not in METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    return methods


def _block(text: str) -> tuple[int, ...]:
    try:
        extents = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected extents such as 1,32; got {text!r}") from None
    if any(extent < 1 for extent in extents):
        raise argparse.ArgumentTypeError(f"extents must be at least 1; got {text!r}")
    return extents


def _seed(text: str) -> int:
    try:
        seed = int(text)
    except ValueError:
        seed = -1
    if seed < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number 0 or more; got {text!r}")
    return seed


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number; got {text!r}")
    return int(text)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

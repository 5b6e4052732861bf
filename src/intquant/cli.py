"""The ``intquant`` command line.

``intquant demo`` calibrates the sample array shipped with the package at several bit widths,
prints the scale, zero point and errors of each, and writes the widest quantizer as JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy

from intquant.errors import IntquantError
from intquant.metrics import quantization_error
from intquant.quantized_array import QuantizedArray
from intquant.serialization import dumps

__all__ = ["main"]

DEFAULT_BITS = (2, 3, 4, 6, 8)
DEFAULT_OUTPUT = "intquant-demo-quantizer.json"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (2 for bad input, with a one-line error)."""
    parser = _parser()
    arguments = parser.parse_args(argv)
    try:
        return int(arguments.run(arguments))
    except (IntquantError, OSError, ValueError) as error:
        print(f"intquant: error: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intquant", description="Uniform (affine) quantization of numpy arrays."
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="calibrate the bundled sample array at several bit widths and report the error",
        description="Quantize the sample array shipped with intquant (64x64 float32 weights) "
        "at several bit widths; print scale, zero point, MSE, SQNR and max error for each, "
        "and write the quantizer of the widest as JSON.",
    )
    demo.add_argument(
        "--bits",
        type=_bit_list,
        default=DEFAULT_BITS,
        help="comma-separated bit widths, each 1 to 32 (default: 2,3,4,6,8)",
    )
    demo.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path(DEFAULT_OUTPUT),
        help=f"where to write the quantizer JSON (default: ./{DEFAULT_OUTPUT})",
    )
    demo.add_argument("--signed", action="store_true", help="signed codes (offset 2**(n-1))")
    demo.add_argument("--symmetric", action="store_true", help="symmetric range (implies --signed)")
    demo.set_defaults(run=_run_demo)
    return parser


def _bit_list(text: str) -> tuple[int, ...]:
    try:
        bits = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 2,4,8; got {text!r}"
        ) from None
    if not bits or any(not 1 <= n <= 32 for n in bits):
        raise argparse.ArgumentTypeError(f"each bit width must be 1 to 32; got {text!r}")
    return bits


def load_sample() -> numpy.ndarray:
    """The sample array shipped with the package: 64x64 float32 dense-layer-like weights."""
    with resources.files("intquant").joinpath("data/sample.npy").open("rb") as file:
        return numpy.load(file, allow_pickle=False)


def _run_demo(arguments: argparse.Namespace) -> int:
    values = load_sample()
    signed = arguments.signed or arguments.symmetric
    print(
        f"intquant demo: {values.size} {values.dtype} values of shape {values.shape} "
        f"in [{values.min():.4f}, {values.max():.4f}] (intquant/data/sample.npy)"
    )
    kind = "symmetric" if arguments.symmetric else "asymmetric"
    print(f"options: {'signed' if signed else 'unsigned'}, {kind}")
    print(f"{'bits':>4}  {'scale':>12}  {'zero_point':>10}  {'MSE':>11}  {'SQNR dB':>8}  {'max error':>10}")
    widest = None
    for n_bits in sorted(arguments.bits):
        array = QuantizedArray(n_bits, values, is_signed=signed, is_symmetric=arguments.symmetric)
        error = quantization_error(values, array.quantizer)
        print(
            f"{n_bits:>4}  {float(array.quantizer.scale):>12.6g}  {int(array.quantizer.zero_point):>10}  "
            f"{error['mse']:>11.4e}  {error['sqnr_db']:>8.2f}  {error['max_abs_error']:>10.4g}"
        )
        widest = array
    assert widest is not None  # argparse guarantees at least one bit width
    write_text_atomically(arguments.output, dumps(widest.quantizer))
    print(f"wrote the {widest.n_bits}-bit quantizer to {arguments.output}")
    return 0


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename.

    A failure leaves no partial file behind: either the old content or the new one is there.
    """
    folder = path.parent if str(path.parent) else Path(".")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

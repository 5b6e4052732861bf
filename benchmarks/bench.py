"""intquant against the reference's formulas in plain numpy, side by side in one process.

For N from 1e3 to 1e8 float64 values (normal, so both signed zeros occur after rounding), prints
the time of the reference and of intquant for ``quant``, ``dequant`` and ``QuantizedArray(7, x)``,
their ratio, and each time against a numpy copy of the input; then the peak extra memory of
``quant`` against its output, and times for small arrays. Usage:
``python benchmarks/bench.py [--max-n 1e8] [--budget SECONDS]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy
import reference_formulas as reference

import intquant

try:
    from intquant._numba import dispatch as _compiled
except ImportError:  # intquant 0.1, before the layers: lets this script time an older checkout too
    from intquant import _compiled  # type: ignore[attr-defined,no-redef]


def best_time(function: Callable[[], Any], budget: float) -> float:
    """The median of repeated runs (at least 5, and as many as fit in ``budget`` seconds)."""
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - started < budget and len(times) < 1000):
        begin = time.perf_counter()
        function()
        times.append(time.perf_counter() - begin)
    return float(numpy.median(times))


def peak_extra_bytes(function: Callable[[], Any]) -> tuple[int, int]:
    """Peak bytes allocated while ``function`` runs, and the size of its result."""
    tracemalloc.start()
    result = function()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, int(numpy.asarray(result).nbytes)


def calibrated(values: numpy.ndarray) -> intquant.UniformQuantizer:
    """A 7-bit quantizer calibrated on ``values``."""
    return intquant.QuantizedArray(7, values).quantizer


def large_rows(n: int, rng: numpy.random.Generator, budget: float) -> None:
    """Print the three operations on ``n`` float64 values."""
    values = rng.normal(size=n)
    copy_time = best_time(values.copy, budget)
    quantizer = calibrated(values)
    scale, zero_point = quantizer.scale, quantizer.zero_point
    codes = quantizer.quant(values)
    rows: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        (
            "quant",
            lambda: reference.quant(values, scale, zero_point, 0, 127),
            lambda: quantizer.quant(values),
        ),
        ("dequant", lambda: reference.dequant(codes, scale, zero_point), lambda: quantizer.dequant(codes)),
        (
            "QuantizedArray",
            lambda: reference.quantized_array(7, values),
            lambda: intquant.QuantizedArray(7, values),
        ),
    ]
    for name, reference_call, intquant_call in rows:
        reference_time = best_time(reference_call, budget)
        intquant_time = best_time(intquant_call, budget)
        print(
            f"{n:>9.0e} {name:<15} {reference_time * 1e3:>10.3f} {intquant_time * 1e3:>10.3f} "
            f"{reference_time / intquant_time:>7.2f} {reference_time / copy_time:>10.2f} "
            f"{intquant_time / copy_time:>9.2f}"
        )


def small_rows(n: int, rng: numpy.random.Generator) -> None:
    """Print quant and dequant on ``n`` float64 values, in microseconds."""
    values = rng.normal(size=n)
    quantizer = calibrated(values)
    scale, zero_point = quantizer.scale, quantizer.zero_point
    codes = quantizer.quant(values)
    rows: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        (
            "quant",
            lambda: reference.quant(values, scale, zero_point, 0, 127),
            lambda: quantizer.quant(values),
        ),
        ("dequant", lambda: reference.dequant(codes, scale, zero_point), lambda: quantizer.dequant(codes)),
    ]
    for name, reference_call, intquant_call in rows:
        reference_time = best_time(reference_call, 0.3)
        intquant_time = best_time(intquant_call, 0.3)
        print(
            f"{n:>6} {name:<8} {reference_time * 1e6:>10.2f} {intquant_time * 1e6:>10.2f} "
            f"{reference_time / intquant_time:>7.2f}"
        )


def per_axis_rows(rng: numpy.random.Generator, budget: float) -> None:
    """Print per-axis and per-block ``quant`` of a 1024x64 float32 matrix against one broadcast
    numpy expression computing the same codes (no validation, parameters already cast)."""
    values = rng.normal(size=(1024, 64)).astype(numpy.float32)
    for name, options in (("per axis 0", {"axis": 0}), ("per block 32x16", {"block_size": (32, 16)})):
        quantizer = intquant.QuantizedArray(8, values, is_signed=True, **options).quantizer
        grid = quantizer.scale.shape  # per block: view the values as (g0, b0, g1, b1)
        extent = tuple(size // blocks for size, blocks in zip(values.shape, grid, strict=True))
        view = values.reshape(tuple(size for pair in zip(grid, extent, strict=True) for size in pair))
        # numpy 1.24's dtypes for these parameters: float32 division, float32 addition (small zero
        # points); the comparison below checks the expression gives intquant's codes
        scale = quantizer.scale.astype(numpy.float32).reshape(grid[0], 1, grid[1], 1)
        zero_point = quantizer.zero_point.astype(numpy.float32).reshape(grid[0], 1, grid[1], 1)

        def expression(
            view: numpy.ndarray = view, scale: Any = scale, zero_point: Any = zero_point
        ) -> numpy.ndarray:
            codes = numpy.rint(view / scale + zero_point)
            return numpy.clip(codes, -128, 127).astype(numpy.int64).reshape(values.shape)

        if not numpy.array_equal(expression(), quantizer.quant(values)):
            raise SystemExit(f"{name}: the broadcast expression and intquant disagree")
        expression_time = best_time(expression, budget)
        intquant_time = best_time(lambda quantizer=quantizer: quantizer.quant(values), budget)
        print(
            f"{name:<16} {expression_time * 1e3:>10.3f} {intquant_time * 1e3:>10.3f} "
            f"{intquant_time / expression_time:>7.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-n", type=float, default=1e8)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per measurement")
    arguments = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {numpy.__version__}, intquant {intquant.__version__}, compiled loops: "
        f"{'yes (numba)' if _compiled.enabled() else 'no'}"
    )
    rng = numpy.random.default_rng(0)

    print("\nsmall arrays before numba is loaded (plain-numpy path), times in µs")
    print(f"{'N':>6} {'op':<8} {'reference':>10} {'intquant':>10} {'x ref':>7}")
    for n in (1, 10, 100, 1000):
        small_rows(n, rng)

    calibrated(rng.normal(size=_compiled.MIN_SIZE * 2)).dequant(numpy.zeros(4, dtype=numpy.int64))
    print("\ntimes in ms; 'x ref' = reference time / intquant time; 'x copy' = time / numpy copy time")
    print(
        f"{'N':>9} {'op':<15} {'reference':>10} {'intquant':>10} {'x ref':>7} {'ref x copy':>10} "
        f"{'iq x copy':>9}"
    )
    n = 1000
    while n <= arguments.max_n:
        large_rows(n, rng, arguments.budget)
        n *= 10

    values = rng.normal(size=10_000_000)
    quantizer = calibrated(values)
    peak, output = peak_extra_bytes(lambda: quantizer.quant(values))
    reference_peak, _ = peak_extra_bytes(
        lambda: reference.quant(values, quantizer.scale, quantizer.zero_point, 0, 127)
    )
    print(
        f"\npeak memory of quant on 1e7 float64: intquant {peak / output:.2f}x its output, "
        f"reference {reference_peak / output:.2f}x"
    )

    print("\n1024x64 float32, times in ms; 'x expr' = intquant time / one broadcast numpy expression")
    print(f"{'granularity':<16} {'expression':>10} {'intquant':>10} {'x expr':>7}")
    per_axis_rows(rng, arguments.budget)

    print("\nsmall arrays once numba is loaded, times in µs")
    print(f"{'N':>6} {'op':<8} {'reference':>10} {'intquant':>10} {'x ref':>7}")
    for n in (1, 10, 100, 1000):
        small_rows(n, rng)


if __name__ == "__main__":
    main()

"""Two intquant source trees timed against each other, interleaved, in one process.

Usage: ``python benchmarks/compare_versions.py BEFORE_SRC AFTER_SRC [--max-n 1e6]``, where
each argument is a ``src`` folder (e.g. of ``git worktree add /tmp/before <commit>``). Both are
imported under their own module names, their caches warmed, and each operation is timed in
alternation (before, after, before, ...), so that machine noise hits both alike; the table shows
medians and their ratio, after each tree's results were checked equal.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy


def load(source: str, prefix: str) -> ModuleType:
    """Import the intquant package of ``source`` and move its modules aside under ``prefix``."""
    sys.path.insert(0, source)
    try:
        import intquant
    finally:
        sys.path.remove(source)
    # Load what each tree imports lazily (the compiled loops: 50,000 values or more, 200,000 for
    # the parallel ones) and warm the caches that look modules up by name (type hints), before
    # the names move.
    intquant.QuantizedArray(7, numpy.linspace(-1, 1, 11)).dequant()
    intquant.QuantizedArray(7, numpy.linspace(-1, 1, 300_000)).dequant()  # and the parallel ones
    for name in [name for name in sys.modules if name == "intquant" or name.startswith("intquant.")]:
        sys.modules[f"{prefix}{name}"] = sys.modules.pop(name)
    return intquant


def medians(first: Callable[[], Any], second: Callable[[], Any], rounds: int) -> tuple[float, float]:
    """Median seconds per call of each function, timed in alternation."""
    times: tuple[list[float], list[float]] = ([], [])
    calls = 1
    begin = time.perf_counter()
    first()
    if time.perf_counter() - begin < 1e-3:
        calls = 20  # batch tiny calls so that the clock's resolution does not matter
    for _ in range(rounds):
        for function, measured in ((first, times[0]), (second, times[1])):
            begin = time.perf_counter()
            for _ in range(calls):
                function()
            measured.append((time.perf_counter() - begin) / calls)
    return float(numpy.median(times[0])), float(numpy.median(times[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--max-n", type=float, default=1e6)
    arguments = parser.parse_args()
    before, after = load(arguments.before, "before_"), load(arguments.after, "after_")
    rng = numpy.random.default_rng(0)
    print(f"{'N':>9} {'op':<15} {'before µs':>11} {'after µs':>11} {'after/before':>12}")
    n = 1
    while n <= arguments.max_n:
        values = rng.normal(size=n)
        old, new = before.QuantizedArray(7, values).quantizer, after.QuantizedArray(7, values).quantizer
        codes = old.quant(values)
        if not numpy.array_equal(codes, new.quant(values)):
            raise SystemExit(f"the two trees give different codes for N={n}")
        rounds = 200 if n <= 10_000 else 20
        rows = [
            ("quant", lambda old=old, v=values: old.quant(v), lambda new=new, v=values: new.quant(v)),
            ("dequant", lambda old=old, c=codes: old.dequant(c), lambda new=new, c=codes: new.dequant(c)),
            (
                "QuantizedArray",
                lambda v=values: before.QuantizedArray(7, v),
                lambda v=values: after.QuantizedArray(7, v),
            ),
        ]
        for name, first, second in rows:
            old_time, new_time = medians(first, second, rounds)
            ratio = new_time / old_time
            print(f"{n:>9.0e} {name:<15} {old_time * 1e6:>11.2f} {new_time * 1e6:>11.2f} {ratio:>12.2f}")
        n *= 10


if __name__ == "__main__":
    main()

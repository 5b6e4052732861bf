"""Check ``intquant._avx512_sort`` bit for bit against numpy 1.24's AVX-512 float32 sort.

``generate`` must run under numpy 1.24 on an AVX512_SKX CPU, where ``numpy.sort`` of a
float32 array *is* the sort being emulated.  It draws many arrays, sorts them with
numpy, checks the emulation at every position where a zero lands (and at whole small
arrays and a sample of other positions) and can save arrays and expectations::

    .venv-oldest/bin/python tools/check_avx512_sort.py generate --save /tmp/cases.npz

``check`` replays a saved file under any numpy (2.x in particular)::

    .venv/bin/python tools/check_avx512_sort.py check /tmp/cases.npz

Both print how many arrays and positions matched and which emulation paths ran.
"""

from __future__ import annotations

import argparse
import collections
import functools
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from intquant._numpy124 import avx512_sort as emu

F32 = NDArray[np.float32]
PATHS: collections.Counter[str] = collections.Counter()


def _count(name: str, label: Callable[..., str | None] | None = None) -> None:
    """Wrap ``emu.<name>`` so each call is tallied in PATHS (optionally under a label)."""
    inner: Callable[..., Any] = getattr(emu, name)

    @functools.wraps(inner)
    def wrapper(*args: Any) -> Any:
        tag = label(*args) if label else name
        if tag:
            PATHS[tag] += 1
        return inner(*args)

    setattr(emu, name, wrapper)


_count("_sort_small", lambda block: "bitonic sort_128")
_count("_partition", lambda *args: "vector partition")
_count("_scalar_prefix", lambda front, back, *rest: "pivot==min chain step" if front is not back else None)
_count("_heapsort_slice", lambda *args: "heapsort fallback")
_count("_heapsort_slice_generic", lambda *args: "heapsort, non-zero minimum")
_count(
    "_zero_min_extraction",
    lambda h, n_min: (
        "heapsort extraction, "
        + ("big heap" if h.size >= 100_000 else "small heap")
        + (", >255 values" if np.unique(h).size > 256 else "")
    ),
)
_count("_nested_phase", lambda cls, n, n_min: f"heapsort nested phase, {int(cls.max())} levels")
_count("_single_value_phase", lambda *args: "heapsort single-value phase")


def _draw(rng: np.random.Generator, kind: str, n: int) -> F32:
    """One test array of ``kind`` and size ``n``."""

    def normal(scale: float) -> F32:
        return np.asarray(np.round(rng.normal(0.0, scale, n).astype(np.float32), 2), dtype=np.float32)

    def signed_zeros() -> F32:
        negative = rng.random(n) < rng.random()
        return np.asarray(np.where(negative, np.float32(-0.0), np.float32(0.0)), dtype=np.float32)

    if kind.startswith("normal"):
        return normal(float(kind.split("-")[1]))
    if kind == "duplicates":  # few distinct values, both zeros
        steps = rng.integers(-2, 3, n).astype(np.float32) * np.float32(rng.choice([0.01, 0.5, 3.0]))
        return np.where(steps == 0, signed_zeros(), steps).astype(np.float32)
    if kind == "zeros":
        return signed_zeros()
    if kind == "sorted":
        return np.sort(normal(float(rng.choice([0.003, 0.01, 0.1]))))
    if kind == "reversed":
        return np.ascontiguousarray(np.sort(normal(float(rng.choice([0.003, 0.01, 0.1]))))[::-1])
    if kind == "constant":
        value = np.float32(rng.choice([0.0, -0.0, 0.25]))
        out = np.full(n, value, dtype=np.float32)
        return signed_zeros() if value == 0 and rng.random() < 0.5 else out
    if kind == "inf":
        out = normal(float(rng.choice([0.003, 0.01, 1.0])))
        out[rng.integers(0, n, max(1, n // 50))] = rng.choice(np.array([np.inf, -np.inf], np.float32))
        return out
    if kind == "negative-min":  # heapsort with a non-zero minimum and zeros among the big ones
        pool = np.array([-1.0, -0.0, 0.0, 0.5, 2.0], dtype=np.float32)
        return rng.choice(pool, n, p=[0.7, 0.1, 0.1, 0.05, 0.05])
    if kind == "mixture":  # random weights over zeros and a few small values
        pool = np.array([-0.0, 0.0, 0.01, 0.02, 0.03, -0.01], dtype=np.float32)
        return rng.choice(pool, n, p=rng.dirichlet(np.ones(pool.size) * 0.7))
    if kind == "sparse":  # mostly signed zeros, many distinct values besides
        out = normal(float(rng.choice([0.1, 1.0, 10.0])))
        zero = rng.random(n) < rng.uniform(0.5, 0.98)
        out[zero] = signed_zeros()[zero]
        return out
    if kind == "nan":
        out = normal(0.01)
        out[rng.integers(0, n, max(1, n // 20))] = np.float32(np.nan)
        return out
    raise ValueError(kind)


KINDS = [
    "normal-0.003", "normal-0.01", "normal-0.1", "normal-1", "duplicates", "zeros", "sorted",
    "reversed", "constant", "inf", "negative-min", "mixture", "sparse", "nan",
]  # fmt: skip


def _plan(rng: np.random.Generator, medium: int, big: int, big_max: int) -> Iterator[tuple[str, int]]:
    for n in range(1, 201):  # dense small sizes: every kind at every size
        for kind in KINDS:
            yield kind, n
    for _ in range(medium):
        yield str(rng.choice(KINDS)), int(np.exp(rng.uniform(np.log(200), np.log(100_000))))
    for k in range(big):
        big_kinds = ("normal-0.01", "normal-0.003", "sparse", "normal-1", "mixture", "normal-0.1")
        yield big_kinds[k % len(big_kinds)], int(rng.integers(1_000_000, big_max + 1))
    for kind in ("normal-0.01", "normal-0.003", "mixture", "negative-min", "sparse"):
        yield kind, 300_001 if big else 30_001


def _slice_for(expected: F32, rng: np.random.Generator) -> tuple[int, int]:
    """The whole array if small, else the run of zeros (or a short stretch)."""
    n = expected.size
    if n <= 2000:
        return 0, n
    zeros = np.flatnonzero(expected == 0)
    if zeros.size:
        return int(zeros[0]), int(zeros[-1]) + 1
    start = int(rng.integers(0, n))
    return start, min(n, start + 64)


def _sample_positions(expected: F32, rng: np.random.Generator) -> NDArray[np.int64]:
    zeros = np.flatnonzero(expected == 0)
    picks = [zeros[:2], zeros[-1:], rng.choice(zeros, min(3, zeros.size)) if zeros.size else zeros]
    picks.append(rng.integers(0, expected.size, 4))
    return np.unique(np.concatenate(picks).astype(np.int64))


class Tally:
    def __init__(self) -> None:
        self.arrays = self.positions = self.zero_positions = self.mismatches = 0

    def compare(self, what: str, got: F32, expected: F32, values: F32) -> None:
        self.positions += got.size
        self.zero_positions += int(np.count_nonzero(expected == 0))
        bad = np.flatnonzero(got.view(np.uint32) != expected.view(np.uint32))
        if bad.size:
            self.mismatches += int(bad.size)
            shown = bad[:5]
            print(f"MISMATCH {what}: n={values.size} at {shown.tolist()}")
            print(f"  got {got[shown].tolist()} expected {expected[shown].tolist()}")

    def report(self, header: str, seconds: float) -> int:
        print(
            f"{header}: numpy {np.__version__}, {self.arrays} arrays, {self.positions} positions"
            f" checked ({self.zero_positions} holding a zero), {self.mismatches} mismatches,"
            f" {seconds:.0f}s"
        )
        for path, count in sorted(PATHS.items()):
            print(f"  {path}: {count}")
        return 1 if self.mismatches else 0


def _check_one(
    tally: Tally, values: F32, lo: int, hi: int, want: tuple[F32, NDArray[np.int64], F32], label: str
) -> None:
    """Check the slice ``[lo, hi)`` and single positions; ``want`` = (slice, positions, values there)."""
    want_slice, positions, want_at = want
    before = values.copy()
    tally.arrays += 1
    tally.compare(f"{label} slice [{lo}, {hi})", emu.sorted_slice(values, lo, hi), want_slice, values)
    got = np.array([emu.element_at_sorted_position(values, int(p)) for p in positions], dtype=np.float32)
    tally.compare(f"{label} positions", got, want_at, values)
    if not np.array_equal(before.view(np.uint32), values.view(np.uint32)):
        tally.mismatches += 1
        print(f"INPUT MODIFIED {label}")


def generate(args: argparse.Namespace) -> int:
    if not np.__version__.startswith("1.24."):
        sys.exit(f"generate needs numpy 1.24 (its numpy.sort is the reference), not {np.__version__}")
    rng = np.random.default_rng(args.seed)
    tally = Tally()
    saved: collections.defaultdict[str, list[NDArray[Any]]] = collections.defaultdict(list)
    start = time.perf_counter()
    for kind, n in _plan(rng, args.medium, args.big, args.big_max):
        values = _draw(rng, kind, n)
        expected = np.sort(values)  # numpy 1.24 on AVX-512: x86_quicksort_float_AVX512_SKX
        lo, hi = _slice_for(expected, rng)
        positions = _sample_positions(expected, rng)
        _check_one(tally, values, lo, hi, (expected[lo:hi], positions, expected[positions]), kind)
        saved["values"].append(values)
        saved["bounds"].append(np.array([lo, hi, positions.size]))
        saved["slice"].append(expected[lo:hi])
        saved["positions"].append(positions)
        saved["at"].append(expected[positions])
    status = tally.report("generate", time.perf_counter() - start)
    if args.save:
        arrays: dict[str, Any] = {key: np.concatenate(items) for key, items in saved.items()}
        arrays["sizes"] = np.array([v.size for v in saved["values"]])
        np.savez_compressed(args.save, **arrays)
        print(f"saved {len(saved['values'])} arrays to {args.save}")
    return status


def check(args: argparse.Namespace) -> int:
    data = np.load(args.file)
    values_all = np.split(data["values"], np.cumsum(data["sizes"])[:-1])
    bounds = data["bounds"].reshape(-1, 3)
    slices = np.split(data["slice"], np.cumsum(bounds[:, 1] - bounds[:, 0])[:-1])
    positions = np.split(data["positions"], np.cumsum(bounds[:, 2])[:-1])
    at = np.split(data["at"], np.cumsum(bounds[:, 2])[:-1])
    tally = Tally()
    start = time.perf_counter()
    for k, values in enumerate(values_all):
        lo, hi, _ = (int(x) for x in bounds[k])
        _check_one(tally, values, lo, hi, (slices[k], positions[k], at[k]), f"case {k}")
    return tally.report(f"check {args.file}", time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="check against numpy 1.24's sort (and save cases)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--medium", type=int, default=1500, help="arrays of 200 .. 100000 elements")
    gen.add_argument("--big", type=int, default=6, help="arrays of 1e6+ elements")
    gen.add_argument("--big-max", type=int, default=3_000_000)
    gen.add_argument("--save", type=Path, help="write arrays and expectations to this .npz")
    chk = sub.add_parser("check", help="check saved cases under the current numpy")
    chk.add_argument("file", type=Path)
    args = parser.parse_args()
    return generate(args) if args.command == "generate" else check(args)


if __name__ == "__main__":
    sys.exit(main())

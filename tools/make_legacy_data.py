"""Record numpy 1.24's own behaviour as test data, so the emulations are tested on any numpy.

Run with numpy 1.24 on an x86-64 machine with AVX-512 (the reference's platform), e.g.
``.venv-oldest/bin/python tools/make_legacy_data.py``. It writes

* ``tests/data/legacy_promotion.json``: the result dtype of ``numpy.add(array, scalar)`` for many
  array dtypes and scalar types/values (value-based casting);
* ``tests/data/legacy_sort_cases.npz``: arrays holding both signed zeros and, for each, the bits
  of the element that ``numpy.sort`` puts at the first zero's position and at a random one;
  and whole arrays sorted by ``numpy.sort(kind="heapsort")``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
ARRAY_DTYPES = [
    "float16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "bool",
]
SCALAR_TYPES = ["python", "float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool"]
VALUES = [0, 1, -1, 127, 128, 255, 256, -128, -129, 65535, 65536, -32769, 2**31, 2**32, -(2**40),
          0.0, 1.5, -1.5, 64999.9, 65000.0, -65000.0, 65504.0, 1e5, 3.39e38, 3.4e38, 1e300, 1e-300,
          float("inf"), float("nan"), True, False]  # fmt: skip


def _scalar(kind: str, value: object) -> object | None:
    if kind == "python":
        return value
    if isinstance(value, float) and kind.startswith(("int", "uint")):
        return None
    with numpy.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return numpy.array(value).astype(kind)[()]
        except (OverflowError, ValueError):
            return None


def promotion_table() -> list[dict[str, object]]:
    rows = []
    for array_dtype in ARRAY_DTYPES:
        array = numpy.ones(3, dtype=array_dtype)
        for kind in SCALAR_TYPES:
            for value in VALUES:
                scalar = _scalar(kind, value)
                if scalar is None or (
                    array_dtype == "bool" and kind in ("bool", "python") and isinstance(value, bool)
                ):
                    continue
                with numpy.errstate(all="ignore"):
                    result = numpy.add(array, scalar).dtype
                stored = value if kind == "python" else (bool(scalar) if kind == "bool" else scalar.item())
                rows.append(
                    {"array": array_dtype, "scalar_type": kind, "value": stored, "result": str(result)}
                )
    return rows


def sort_cases() -> dict[str, numpy.ndarray]:
    rng = numpy.random.default_rng(124)
    arrays: dict[str, list[numpy.ndarray]] = {"float16": [], "float32": [], "float64": []}
    sizes = list(range(2, 160)) + [int(s) for s in rng.integers(160, 3000, 40)] + [20000]
    for index, size in enumerate(sizes):
        for dtype in arrays:
            scale = [0.004, 0.01, 0.1][index % 3]
            values = numpy.round(rng.normal(size=size) * scale, 2).astype(dtype)
            if index % 7 == 0:
                values = numpy.sort(values)[:: 1 if index % 2 else -1].copy()
            zeros = values == 0
            if numpy.signbit(values[zeros]).any() and (~numpy.signbit(values[zeros])).any():
                arrays[dtype].append(values)
    result: dict[str, numpy.ndarray] = {}
    for dtype, items in arrays.items():
        positions, random_positions, at_first_zero, at_random = [], [], [], []
        for values in items:
            ordered = numpy.sort(values)
            first_zero = int(numpy.count_nonzero(values < 0))
            other = int(rng.integers(0, values.size))
            positions.append(first_zero)
            random_positions.append(other)
            at_first_zero.append(ordered[first_zero])
            at_random.append(ordered[other])
        result[f"{dtype}_values"] = numpy.concatenate(items)
        result[f"{dtype}_sizes"] = numpy.array([v.size for v in items])
        result[f"{dtype}_first_zero"] = numpy.array(positions)
        result[f"{dtype}_random_position"] = numpy.array(random_positions)
        result[f"{dtype}_at_first_zero"] = numpy.array(at_first_zero, dtype=dtype)
        result[f"{dtype}_at_random_position"] = numpy.array(at_random, dtype=dtype)
    # numpy 1.24's heapsort (introsort's fallback), whole arrays with both signed zeros.
    heap_inputs = [numpy.round(rng.normal(size=int(size)) * 0.01, 2) for size in rng.integers(1, 400, 60)]
    result["heapsort_values"] = numpy.concatenate(heap_inputs)
    result["heapsort_sizes"] = numpy.array([values.size for values in heap_inputs])
    result["heapsort_sorted"] = numpy.concatenate(
        [numpy.sort(values, kind="heapsort") for values in heap_inputs]
    )
    return result


def main() -> None:
    assert numpy.__version__.startswith("1.24"), f"run this with numpy 1.24, not {numpy.__version__}"
    (DATA / "legacy_promotion.json").write_text(json.dumps(promotion_table()))
    numpy.savez_compressed(DATA / "legacy_sort_cases.npz", **sort_cases())
    print(f"wrote {DATA / 'legacy_promotion.json'} and {DATA / 'legacy_sort_cases.npz'}")


if __name__ == "__main__":
    main()

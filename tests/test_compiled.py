"""The compiled loops give exactly what the plain-numpy path gives, bit for bit.

Each test forces the compiled path on small arrays (``MIN_SIZE = 1``) and compares it with the
plain path (``_compiled.disabled``, set by ``INTQUANT_PURE_NUMPY=1``) on random inputs of every
supported dtype and layout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy
import pytest

import intquant
from intquant import (
    QuantizationOptions,
    UniformQuantizationParameters,
    UniformQuantizer,
    quantizers,
)
from intquant._core.execute import dequantize, quantize
from intquant._core.formulas import minmax_statistics
from intquant._numba import dispatch as _compiled
from intquant.errors import InvalidValueError
from tests.golden import recipes

pytest.importorskip("numba")


@pytest.fixture
def compiled_everywhere(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_compiled, "MIN_SIZE", 1)
    monkeypatch.setattr(_compiled, "disabled", False)
    assert _compiled.enabled()
    yield


def _both(monkeypatch: pytest.MonkeyPatch, function: Callable[[], Any]) -> tuple[Any, Any]:
    """``function()`` on the compiled path, then on the plain path (or the errors they raise)."""
    results = []
    for disabled in (False, True):
        monkeypatch.setattr(_compiled, "disabled", disabled)
        try:
            results.append(function())
        except InvalidValueError as error:
            results.append(("error", str(error)))
    return results[0], results[1]


def _bits(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_bits(item) for item in value)
    if isinstance(value, (numpy.ndarray, numpy.generic)):
        return (numpy.asarray(value).dtype.str, numpy.shape(value), numpy.asarray(value).tobytes())
    return value


def _layouts(values: numpy.ndarray) -> list[numpy.ndarray]:
    grid = values.reshape(40, 50)
    return [values, grid, numpy.asfortranarray(grid), grid[:, ::3], values[::-2]]


def _random_values(rng: numpy.random.Generator, dtype: str) -> numpy.ndarray:
    scale = rng.choice([0.003, 0.01, 1.0, 300.0])
    values = rng.normal(size=2000) * scale
    if rng.random() < 0.3:
        values = numpy.round(values, 2)  # exact ties and both signed zeros
    return values.astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_quantize_matches(compiled_everywhere: None, monkeypatch: pytest.MonkeyPatch, dtype: str) -> None:
    rng = numpy.random.default_rng(1)
    for _ in range(40):
        values = _random_values(rng, dtype)
        scale = numpy.float64(rng.choice([1e-3, 0.0123, 0.5, 7.0, 1e5]))
        zero_point = numpy.int64(rng.choice([0, 3, -200, 70000, 2**40]))
        bounds = [None, (0, 255), (-128, 127), (-(2**31), 2**31 - 1), (0, 2**32 - 1)][rng.integers(5)]
        for layout in _layouts(values):
            compiled, plain = _both(monkeypatch, lambda: quantize(layout, scale, zero_point, bounds))  # noqa: B023
            assert _bits(compiled) == _bits(plain)


def test_quantize_errors_match(compiled_everywhere: None, monkeypatch: pytest.MonkeyPatch) -> None:
    values = numpy.array([1.0, numpy.nan, 2.0])
    compiled, plain = _both(monkeypatch, lambda: quantize(values, numpy.float64(0.5), 0, (0, 3)))
    assert compiled == plain and compiled[0] == "error"
    values = numpy.array([1.0, 1e300])
    compiled, plain = _both(monkeypatch, lambda: quantize(values, numpy.float64(0.5), 0, None))
    assert compiled == plain and compiled[0] == "error"
    values = numpy.array([-numpy.inf, numpy.inf, 1.0])
    compiled, plain = _both(monkeypatch, lambda: quantize(values, numpy.float64(0.5), 0, (-8, 7)))
    assert _bits(compiled) == _bits(plain)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int32", "int64", "uint64"])
def test_dequantize_matches(compiled_everywhere: None, monkeypatch: pytest.MonkeyPatch, dtype: str) -> None:
    rng = numpy.random.default_rng(2)
    info = numpy.iinfo(dtype)
    codes = rng.integers(max(info.min, -(2**40)), min(info.max, 2**40), size=2000, dtype=dtype)
    for scale in (numpy.float64(0.013), 0.5, numpy.float32(0.1)):
        for zero_point in (numpy.int64(-3), 0, numpy.int64(2**35)):
            for layout in _layouts(codes):
                compiled, plain = _both(monkeypatch, lambda: dequantize(layout, scale, zero_point))  # noqa: B023
                assert _bits(compiled) == _bits(plain)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_statistics_match(compiled_everywhere: None, monkeypatch: pytest.MonkeyPatch, dtype: str) -> None:
    rng = numpy.random.default_rng(3)
    for index in range(30):
        values = _random_values(rng, dtype)
        if index % 5 == 0:
            values[::7] = values.dtype.type(1e4)  # a range too wide for the key bitmap
        for layout in _layouts(values):
            compiled, plain = _both(monkeypatch, lambda: minmax_statistics(layout))  # noqa: B023
            assert _bits(compiled) == _bits(plain)


def test_large_arrays_with_both_zeros(monkeypatch: pytest.MonkeyPatch) -> None:
    # The compiled introsort path (float64) on an array above the default threshold.
    values = numpy.round(numpy.random.default_rng(4).normal(size=200_000) * 0.01, 2)
    compiled, plain = _both(monkeypatch, lambda: minmax_statistics(values))
    assert _bits(compiled) == _bits(plain)


def test_the_golden_cases_on_the_compiled_path(compiled_everywhere: None) -> None:
    lines = (Path(__file__).parent / "data" / "golden_public.jsonl").read_text().splitlines()
    api = recipes.api_from_module(quantizers, intquant.dumps, intquant.loads)
    failures = []
    for line in lines:
        case = json.loads(line)
        got, expect = recipes.run(case["recipe"], api), case["expect"]
        ok = ("error" in got and expect["error"] in got["mro"]) if "error" in expect else got == expect
        if not ok:
            failures.append(case["recipe"]["id"])
    assert failures == []


def test_zero_d_arrays_and_scalars_match(compiled_everywhere: None, monkeypatch: pytest.MonkeyPatch) -> None:
    quantizer = UniformQuantizer(QuantizationOptions(4), None, UniformQuantizationParameters(0.05, 2, 0))
    for values in (numpy.array(0.37), numpy.array(0.37, dtype=numpy.float32), numpy.float64(0.37), 0.37):
        compiled, plain = _both(monkeypatch, lambda: quantizer.quant(values))  # noqa: B023
        assert _bits(compiled) == _bits(plain)
        assert type(compiled) is numpy.int64
    codes = numpy.array(7)
    compiled, plain = _both(monkeypatch, lambda: quantizer.dequant(codes))
    assert _bits(compiled) == _bits(plain) and type(compiled) is numpy.float64


def test_small_arrays_do_not_load_numba_on_their_own() -> None:
    script = (
        "import sys, numpy, intquant\n"
        "from intquant._numba import dispatch as _compiled\n"
        "intquant.QuantizedArray(4, numpy.linspace(-1, 1, 1000))\n"
        "assert 'numba' not in sys.modules\n"
        f"intquant.QuantizedArray(4, numpy.linspace(-1, 1, {_compiled.MIN_SIZE}))\n"
        "assert 'numba' in sys.modules and _compiled.worthwhile(10)\n"
    )
    environment = {name: value for name, value in os.environ.items() if name != "INTQUANT_PURE_NUMPY"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, env=environment
    )
    assert result.returncode == 0, result.stderr


def test_compiled_heapsort_matches_the_emulation() -> None:
    from intquant._numba import loops as _numba_loops
    from intquant._numpy124.introsort import _heapsorted

    rng = numpy.random.default_rng(5)
    for _ in range(100):
        values = numpy.round(rng.normal(size=int(rng.integers(1, 300))) * 0.01, 2)
        low = int(rng.integers(0, values.size))
        high = int(rng.integers(low, values.size))
        work, expected = values.copy(), values.copy()
        _numba_loops.heapsort_range(work, low, high)
        expected[low : high + 1] = _heapsorted(values[low : high + 1])
        assert work.tobytes() == expected.tobytes()


def test_zero_d_float32_arrays_divide_in_float64(
    compiled_everywhere: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # numpy 1.24 treats a 0-d array as a scalar: float32 value / float64 scale runs in float64.
    scale = numpy.float64(0.1) / 3
    values = numpy.linspace(-1, 1, 2001, dtype=numpy.float32)
    in_float64 = numpy.rint(values.astype(numpy.float64) / scale).astype(numpy.int64)
    in_float32 = numpy.rint(values / numpy.float32(scale)).astype(numpy.int64)
    index = int(numpy.flatnonzero(in_float64 != in_float32)[0])  # a value where the dtype shows
    compiled, plain = _both(
        monkeypatch, lambda: quantize(numpy.array(values[index]), scale, numpy.int64(0), None)
    )
    assert compiled == plain == in_float64[index]

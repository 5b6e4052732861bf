"""Stochastic rounding's counter-based noise: ``u(seed, flat index)``, the same codes whatever the
chunking (numpy regions, dask chunks, the command line's row chunks) and the layout of the
parameters; its statistics; copies and pickles; format version 2 of the tags."""

from __future__ import annotations

import copy
import json
import math
import pickle
from pathlib import Path

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intquant import (
    QuantizationOptions,
    QuantizedArray,
    UniformQuantizationParameters,
    UniformQuantizer,
    dumps,
    loads,
)
from intquant._core.codec import loads_as
from intquant._core.counter_noise import CounterNoise, counter_uniform
from intquant._core.execute import quantize, quantize_with
from intquant._core.plan import restricted_quant_plan
from intquant.compat import v1_9
from intquant.errors import InvalidValueError, SerializationError

_MASK = 2**64 - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def _reference(seed: int, index: int) -> float:
    """The formula of intquant._core.counter_noise, in plain Python integers."""
    key = _mix((seed + _GOLDEN) & _MASK)
    return (_mix((key + (index + 1) * _GOLDEN) & _MASK) >> 11) / 2.0**53


def _quantizer(**extras: object) -> UniformQuantizer:
    options = QuantizationOptions(8, is_signed=True, rounding="stochastic", **extras)
    return UniformQuantizer(options, None, UniformQuantizationParameters(numpy.float64(1.0), 0, 128))


def _calibrated(values: numpy.ndarray, **extras: object) -> UniformQuantizer:
    return QuantizedArray(6, values, rounding="stochastic", **extras).quantizer


# -- the kernel


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, _MASK),
    indices=st.lists(st.integers(0, _MASK - 1), min_size=1, max_size=20),
)
def test_the_kernel_is_the_formula(seed: int, indices: list[int]) -> None:
    drawn = counter_uniform(seed, numpy.array(indices, dtype=numpy.uint64))
    assert drawn.dtype == numpy.float64
    assert drawn.tolist() == [_reference(seed, index) for index in indices]
    assert all(0.0 <= value < 1.0 for value in drawn.tolist())


def test_seeds_are_taken_modulo_2_to_the_64() -> None:
    indices = numpy.arange(10, dtype=numpy.uint64)
    assert numpy.array_equal(counter_uniform(-1, indices), counter_uniform(_MASK, indices))
    assert numpy.array_equal(counter_uniform(2**64 + 3, indices), counter_uniform(3, indices))
    assert not numpy.array_equal(counter_uniform(3, indices), counter_uniform(4, indices))


def test_the_draws_look_uniform_and_independent() -> None:
    n = 1_000_000
    u = CounterNoise(123).draw((n,))
    sigma_mean = math.sqrt(1 / 12 / n)
    assert abs(u.mean() - 0.5) < 5 * sigma_mean
    sigma_variance = math.sqrt((1 / 80 - 1 / 144) / n)  # sd of the mean of (u - 1/2)**2
    assert abs(((u - 0.5) ** 2).mean() - 1 / 12) < 5 * sigma_variance
    counts = numpy.bincount((u * 16).astype(numpy.int64), minlength=16)
    expected = n / 16
    assert numpy.all(numpy.abs(counts - expected) < 5 * math.sqrt(expected * 15 / 16))
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 45.0  # 15 degrees of freedom: P(chi2 > 45) < 1e-4
    lag = numpy.corrcoef(u[:-1], u[1:])[0, 1]  # neighbouring indices
    assert abs(lag) < 5 / math.sqrt(n)
    other = CounterNoise(124).draw((n,))  # neighbouring seeds
    assert abs(numpy.corrcoef(u, other)[0, 1]) < 5 / math.sqrt(n)


def test_regions_index_the_whole_array() -> None:
    whole = CounterNoise(5).draw((6, 7, 8))
    assert numpy.array_equal(CounterNoise(5).region((2, 3, 1), (6, 7, 8)).draw((4, 2, 7)), whole[2:, 3:5, 1:])
    assert numpy.array_equal(CounterNoise(5).region((0,), (336,)).draw((336,)), whole.reshape(-1))
    assert CounterNoise(5).draw(()).shape == () and CounterNoise(5).draw(()) == whole.flat[0]


def test_regions_that_do_not_fit_are_refused() -> None:
    with pytest.raises(InvalidValueError, match=r"origin \(7, 0\) for a whole array of shape \(6, 7\)"):
        CounterNoise(5).region((7, 0), (6, 7))
    with pytest.raises(InvalidValueError, match="one offset per dimension"):
        CounterNoise(5).region((1,), (6, 7))
    with pytest.raises(InvalidValueError, match=r"values of shape \(5, 7\) do not fit at \(2, 0\)"):
        CounterNoise(5).region((2, 0), (6, 7)).draw((5, 7))
    with pytest.raises(InvalidValueError, match=r"values of shape \(42,\) do not fit"):
        CounterNoise(5).region((0, 0), (6, 7)).draw((42,))


# -- codes


def test_codes_are_floor_of_x_plus_u() -> None:
    values = numpy.random.default_rng(1).uniform(-100, 100, size=(40, 30))
    codes = _quantizer(seed=9).quant(values)
    assert numpy.array_equal(codes, numpy.floor(values + CounterNoise(9).draw(values.shape)))


def test_large_arrays_take_the_same_formula_with_or_without_numba() -> None:
    values = numpy.random.default_rng(2).uniform(-100, 100, size=300_000).astype(numpy.float32)
    codes = _quantizer(seed=3).quant(values)  # float32 divided in float32, then float64 noise
    shifted = (values / numpy.float32(1.0)).astype(numpy.float64)
    assert numpy.array_equal(codes, numpy.floor(shifted + CounterNoise(3).draw(values.shape)))


def test_codes_are_unbiased() -> None:
    n = 200_000
    values = numpy.random.default_rng(4).uniform(-3, 3, size=n)
    codes = _quantizer(seed=21).quant(values)
    fraction = values - numpy.floor(values)
    sigma = math.sqrt(float((fraction * (1 - fraction)).sum())) / n  # sd of mean(q - x)
    assert abs(float((codes - values).mean())) < 5 * sigma
    constant = _quantizer(seed=22).quant(numpy.full(n, 0.3))
    assert abs(constant.mean() - 0.3) < 5 * math.sqrt(0.3 * 0.7 / n)


def test_successive_calls_give_the_same_codes() -> None:
    values = numpy.random.default_rng(5).normal(size=1000) * 10
    quantizer = _quantizer(seed=7)
    first = quantizer.quant(values)
    assert numpy.array_equal(quantizer.quant(values), first)
    assert numpy.array_equal(_quantizer(seed=7).quant(values), first)
    assert not numpy.array_equal(_quantizer(seed=8).quant(values), first)
    part = values[10:20]  # quantized alone, a whole array of its own: indices from 0
    assert numpy.array_equal(quantizer.quant(part), numpy.floor(part + CounterNoise(7).draw(part.shape)))


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["tensor", "axis", "block"]),
    cuts=st.tuples(st.integers(1, 12), st.integers(1, 18)),
    seed=st.integers(0, _MASK),
)
def test_codes_do_not_depend_on_the_regions(kind: str, cuts: tuple[int, int], seed: int) -> None:
    values = numpy.random.default_rng(6).normal(size=(12, 18)) * 4
    granularity = {"tensor": {}, "axis": {"axis": 1}, "block": {"block_size": (4, 6)}}[kind]
    quantizer = _calibrated(values, seed=seed, **granularity)
    whole = quantizer.quant(values)
    plan = quantizer.quant_plan(values.dtype, values.shape)
    pieces = numpy.empty_like(whole)
    for row in range(0, 12, cuts[0]):
        for column in range(0, 18, cuts[1]):
            region = (slice(row, min(12, row + cuts[0])), slice(column, min(18, column + cuts[1])))
            noise = quantizer.rng
            assert noise is not None
            pieces[region] = quantize_with(
                restricted_quant_plan(plan, region),
                values[region],
                noise.region((row, column), values.shape),
            )
    assert numpy.array_equal(pieces, whole)


def test_per_axis_and_per_block_noise_is_that_of_the_flat_index() -> None:
    values = numpy.random.default_rng(7).normal(size=(8, 12)) * 4
    for granularity in ({"axis": 0}, {"axis": 1}, {"block_size": (2, 4)}):
        quantizer = _calibrated(values, seed=13, **granularity)
        scale = numpy.asarray(quantizer.scale, dtype=numpy.float64)
        zero_point = numpy.asarray(quantizer.zero_point, dtype=numpy.float64)
        if "block_size" in granularity:
            scale = numpy.repeat(numpy.repeat(scale, 2, axis=0), 4, axis=1)
            zero_point = numpy.repeat(numpy.repeat(zero_point, 2, axis=0), 4, axis=1)
        elif granularity["axis"] == 0:
            scale, zero_point = scale.reshape(-1, 1), zero_point.reshape(-1, 1)
        low, high = -quantizer.offset, 2**6 - 1 - quantizer.offset
        expected = numpy.clip(
            numpy.floor(values / scale + zero_point + CounterNoise(13).draw(values.shape)), low, high
        )
        assert numpy.array_equal(quantizer.quant(values), expected), granularity


def test_the_kernel_api_takes_a_generator_or_nothing() -> None:
    values = numpy.full(1000, 0.5)
    codes = quantize(values, 1.0, 0, None, "stochastic", numpy.random.default_rng(0))
    seed = int(numpy.random.default_rng(0).integers(0, 2**64, dtype=numpy.uint64))
    assert numpy.array_equal(codes, numpy.floor(values + CounterNoise(seed).draw(values.shape)))
    fresh = [quantize(values, 1.0, 0, None, "stochastic") for _ in range(2)]
    assert set(numpy.unique(fresh[0]).tolist()) == {0, 1}
    assert not numpy.array_equal(fresh[0], fresh[1])  # a fresh seed per call: 2**-1000 to fail


# -- dask


def test_dask_chunks_give_the_numpy_codes() -> None:
    da = pytest.importorskip("dask.array", reason="dask is an optional extra")
    values = numpy.random.default_rng(8).normal(size=(20, 24)) * 3
    for granularity in ({}, {"axis": 1}, {"block_size": (5, 4)}):
        quantizer = _calibrated(values, seed=17, **granularity)
        expected = quantizer.quant(values)
        for chunks in ((7, 11), (20, 1), (3, 24)):
            lazy = quantizer.quant(da.from_array(values, chunks=chunks))
            assert numpy.array_equal(lazy.compute(), expected), (granularity, chunks)
    unseeded = _calibrated(values)
    lazy = unseeded.quant(da.from_array(values, chunks=(6, 6)))
    assert numpy.array_equal(lazy.compute(), unseeded.quant(values))  # the seed it drew once


# -- copies, pickles, no seed


def test_without_a_seed_a_quantizer_draws_one_once() -> None:
    values = numpy.full(2000, 0.5)
    quantizer = _quantizer()
    first = quantizer.quant(values)
    assert numpy.array_equal(quantizer.quant(values), first)
    assert numpy.array_equal(copy.deepcopy(quantizer).quant(values), first)
    assert numpy.array_equal(copy.copy(quantizer).quant(values), first)
    assert numpy.array_equal(pickle.loads(pickle.dumps(quantizer)).quant(values), first)
    assert not numpy.array_equal(_quantizer().quant(values), first)  # another object, another seed
    assert not numpy.array_equal(loads(dumps(quantizer)).quant(values), first)  # JSON has no seed
    seeded = _quantizer(seed=1)
    assert numpy.array_equal(pickle.loads(pickle.dumps(seeded)).quant(values), seeded.quant(values))


def test_a_pickle_without_a_drawn_seed_still_quantizes() -> None:
    quantizer = _quantizer()
    state = pickle.dumps(quantizer)  # before any draw
    restored = pickle.loads(state)
    del restored.__dict__["_drawn_seed"]  # as an older intquant pickled it
    values = numpy.full(100, 0.5)
    assert numpy.array_equal(restored.quant(values), restored.quant(values))


# -- serialization


def _tag(text: str) -> dict[str, object]:
    loaded = json.loads(text)
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize("module", [None, v1_9], ids=["1.7", "1.9"])
def test_stochastic_texts_are_format_version_2(module: object) -> None:
    options_class = QuantizationOptions if module is None else v1_9.QuantizationOptions
    values = numpy.random.default_rng(9).normal(size=50)
    for rounding, version in (("stochastic", 2), ("floor", 1)):
        options = options_class(4, rounding=rounding, seed=3)
        quantizer = (UniformQuantizer if module is None else v1_9.UniformQuantizer)(options)
        quantizer.compute_quantization_stats(values)
        quantizer.compute_quantization_parameters(options, quantizer.quant_stats)
        for item in (options, quantizer):
            text = dumps(item)
            tag = _tag(text)
            assert tag["format_version"] == version, (rounding, type(item))
            loaded = loads(text) if module is None else loads_as(text, "concrete-ml-1.9")
            assert type(loaded) is type(item) and loaded == item
        assert numpy.array_equal(loads(dumps(quantizer)).quant(values), quantizer.quant(values))


def test_version_1_stochastic_texts_load_with_the_new_noise() -> None:
    values = numpy.random.default_rng(10).normal(size=50)
    quantizer = _calibrated(values, seed=5)
    text = dumps(quantizer)
    assert '"format_version": 2' in text
    old = loads(text.replace('"format_version": 2', '"format_version": 1'))
    assert old == quantizer
    assert numpy.array_equal(old.quant(values), quantizer.quant(values))
    with pytest.raises(SerializationError, match="format version 3 was written by a newer intquant"):
        loads(text.replace('"format_version": 2', '"format_version": 3'))


def test_other_texts_keep_format_version_1() -> None:
    for options in (QuantizationOptions(4, rounding="floor"), QuantizationOptions(4, axis=0)):
        assert _tag(dumps(options))["format_version"] == 1
    assert "format_version" not in dumps(QuantizationOptions(4))  # the seed's tag


# -- the command line


def test_cli_chunk_sizes_give_the_python_codes(tmp_path: Path) -> None:
    from intquant.cli import main

    values = numpy.random.default_rng(11).normal(size=(37, 6)) * 2
    numpy.save(tmp_path / "w.npy", values)
    for axis in ([], ["--axis", "1"]):
        name = f"q{len(axis)}.json"
        arguments = ["calibrate", str(tmp_path / "w.npy"), "-o", str(tmp_path / name), "--n-bits", "4"]
        assert main([*arguments, "--rounding", "stochastic", *axis, "--force"]) == 0
        quantizer = loads((tmp_path / name).read_text())
        seeded = UniformQuantizer(
            QuantizationOptions(4, rounding="stochastic", seed=7, **({"axis": 1} if axis else {}))
        )
        seeded.copy_stats(quantizer.quant_stats)
        seeded.copy_params(quantizer.quant_params)
        expected = seeded.quant(values)
        for chunk_size in ("5", "1000000"):
            out = tmp_path / f"codes{chunk_size}.npy"
            command = ["quantize", str(tmp_path / "w.npy"), str(tmp_path / name), "-o", str(out)]
            assert main([*command, "--seed", "7", "--chunk-size", chunk_size, "--force", "--quiet"]) == 0
            assert numpy.array_equal(numpy.load(out), expected), (axis, chunk_size)


def test_cli_report_does_not_depend_on_the_chunk_size(tmp_path: Path) -> None:
    import contextlib
    import io

    from intquant.cli import main

    numpy.save(tmp_path / "w.npy", numpy.random.default_rng(12).normal(size=(300, 40)))
    reports = []
    for chunk_size in ("7", "1000000"):
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            status = main(
                [
                    "report",
                    str(tmp_path / "w.npy"),
                    "--bits",
                    "3",
                    "--rounding",
                    "stochastic",
                    "--seed",
                    "7",
                    "--json",
                    "--quiet",
                    "--chunk-size",
                    chunk_size,
                ]
            )
        assert status == 0
        reports.append(json.loads(stdout.getvalue()))
    small, large = reports
    assert len(small) == len(large) == 1
    for key, value in small[0].items():
        if isinstance(value, float):  # sums added in another order: equal to rounding
            assert value == pytest.approx(large[0][key], rel=1e-12), key
        else:
            assert value == large[0][key], key

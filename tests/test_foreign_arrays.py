"""Arrays of other libraries given to the numpy API (intquant._core.foreign): dask arrays stay dask
arrays (quant/dequant lazy, statistics by intquant.dask's tree reduction), torch tensors and other
libraries' arrays are refused with what to use instead, and nothing is gathered silently."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy
import pytest

from intquant import (
    MinMaxQuantizationStats,
    QuantizationOptions,
    QuantizedArray,
    UniformQuantizationParameters,
    UniformQuantizer,
)
from intquant.calibration import PercentileStats
from intquant.errors import IntquantError, InvalidTypeError, InvalidValueError

SRC = Path(__file__).resolve().parents[1] / "src"
SHAPE = (40, 30)
CHUNKS = (7, 11)


def _require(module: str, extra: str) -> Any:
    return pytest.importorskip(module, reason=f"{module} is not installed (the {extra!r} extra)")


# -- helpers


def float_values(dtype: Any = numpy.float64, seed: int = 0) -> numpy.ndarray:
    """Values of SHAPE none of which rounds to -0.0, so that uvalues are exact across chunks."""
    values = numpy.random.default_rng(seed).normal(scale=0.5, size=SHAPE)
    values[(values < 0) & (values > -0.01)] = -0.25
    return values.astype(dtype)


def calibrated(values: numpy.ndarray, options: QuantizationOptions, **kwargs: Any) -> UniformQuantizer:
    """The quantizer the numpy API calibrates on ``values`` (per axis or block as ``options`` say)."""
    quantizer = UniformQuantizer(options, **kwargs)
    quantizer.compute_quantization_stats(values)
    quantizer.compute_quantization_parameters(options, quantizer.quant_stats)
    return quantizer


def assert_identical(actual: Any, expected: Any) -> None:
    """Same type (numpy scalar or array), dtype, shape and bits (-0.0 differs from 0.0)."""
    assert type(actual) is type(expected), (type(actual), type(expected))
    actual, expected = numpy.asarray(actual), numpy.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, (actual.dtype, actual.shape)
    assert actual.tobytes() == expected.tobytes()


def assert_same_statistics(actual: Any, expected: Any) -> None:
    assert_identical(actual.rmin, expected.rmin)
    assert_identical(actual.rmax, expected.rmax)
    if isinstance(expected.uvalues, list):
        assert isinstance(actual.uvalues, list) and len(actual.uvalues) == len(expected.uvalues)
        for mine, theirs in zip(actual.uvalues, expected.uvalues, strict=True):
            assert_identical(mine, theirs)
    else:
        assert_identical(actual.uvalues, expected.uvalues)


@contextmanager
def nothing_computed() -> Iterator[None]:
    """Make any dask computation inside the block fail the test."""
    import dask

    def refuse(graph: Any, keys: Any, **kwargs: Any) -> Any:
        raise AssertionError("a dask graph was computed where nothing should be")

    with dask.config.set(scheduler=refuse):
        yield


class Source:
    """Values that dask reads slice by slice (``da.from_array(Source(values), chunks)``),
    recording the size of each read; it has no ``__array__``, so nothing can read it whole
    otherwise."""

    def __init__(self, values: numpy.ndarray) -> None:
        self.values = values
        self.shape, self.dtype, self.ndim = values.shape, values.dtype, values.ndim
        self.reads: list[int] = []

    def __getitem__(self, key: Any) -> numpy.ndarray:
        piece = self.values[key].copy()
        if piece.size:
            self.reads.append(piece.size)
        return piece


class Tasks:
    """Counts the dask computations started inside the block, and records the largest numeric
    array a task returned (a gather returns the whole array from its last task)."""

    def __init__(self) -> None:
        from dask.callbacks import Callback

        self.computes = 0
        self.largest = 0
        tasks = self

        class _Hooks(Callback):
            def _start(self, graph: Any) -> None:
                tasks.computes += 1

            def _posttask(self, key: Any, result: Any, graph: Any, state: Any, worker: Any) -> None:
                if isinstance(result, numpy.ndarray) and result.dtype != object:
                    tasks.largest = max(tasks.largest, result.size)

        self.hooks = _Hooks()


def test_the_task_recorder_sees_a_gather(da: Any) -> None:
    tasks = Tasks()
    with tasks.hooks:
        numpy.asarray(da.from_array(float_values(), chunks=CHUNKS))
    assert tasks.computes == 1 and tasks.largest == float_values().size


# -- dask arrays through the seed API


@pytest.fixture(scope="module")
def da() -> Any:
    return _require("dask.array", "dask")


QUANT_CASES = [
    ({}, None),
    ({"is_signed": True}, "int8"),
    ({}, numpy.uint8),
    ({}, "smallest"),
    ({"is_signed": True}, numpy.float32),
    ({"axis": 1}, None),
    ({"axis": 0, "is_signed": True}, "smallest"),
    ({"block_size": (10, 15)}, numpy.int16),
    ({"rounding": "floor"}, None),
]


@pytest.mark.parametrize(("flags", "code_dtype"), QUANT_CASES)
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_quant_and_dequant_of_a_dask_array_are_lazy_and_equal_numpy(
    da: Any, flags: dict[str, Any], code_dtype: Any, dtype: Any
) -> None:
    import intquant.dask as iqdask

    values = float_values(dtype)
    quantizer = calibrated(values, QuantizationOptions(8, **flags))
    array = da.from_array(values, chunks=CHUNKS)
    with nothing_computed():
        codes = quantizer.quant(array, code_dtype)
        restored = quantizer.dequant(codes)
    assert isinstance(codes, da.Array) and isinstance(restored, da.Array)
    assert codes.chunks == array.chunks
    expected_codes = quantizer.quant(values, code_dtype)
    assert codes.dtype == expected_codes.dtype
    assert_identical(codes.compute(), expected_codes)
    assert_identical(codes.compute(), iqdask.quant(quantizer, array, code_dtype).compute())
    assert_identical(restored.compute(), quantizer.dequant(expected_codes))


@pytest.mark.parametrize("target", [None, numpy.float32, "float64"])
@pytest.mark.parametrize("code_dtype", [numpy.int64, numpy.uint8, numpy.float32])
def test_dequant_takes_the_numpy_paths_dtype(da: Any, target: Any, code_dtype: Any) -> None:
    values = float_values()
    quantizer = calibrated(values, QuantizationOptions(8))
    codes = quantizer.quant(values, code_dtype)
    with nothing_computed():
        restored = quantizer.dequant(da.from_array(codes, chunks=CHUNKS), target)
    expected = quantizer.dequant(codes, target)
    assert restored.dtype == expected.dtype
    assert_identical(restored.compute(), expected)


def test_zero_dimensional_dask_arrays(da: Any) -> None:
    quantizer = calibrated(float_values(), QuantizationOptions(4))
    value = numpy.array(0.3)
    codes = quantizer.quant(da.from_array(value))
    assert isinstance(codes, da.Array) and codes.shape == ()
    assert codes.compute() == quantizer.quant(value)
    assert quantizer.dequant(codes).compute() == quantizer.dequant(quantizer.quant(value))


def test_the_values_are_read_only_when_the_result_is_computed(da: Any) -> None:
    import dask

    calls = []

    def source() -> numpy.ndarray:
        calls.append(1)
        return float_values()

    array = da.from_delayed(dask.delayed(source)(), shape=SHAPE, dtype=numpy.float64)
    quantizer = calibrated(float_values(), QuantizationOptions(4, axis=0))
    restored = quantizer.dequant(quantizer.quant(array))
    assert calls == []
    assert_identical(restored.compute(), quantizer.dequant(quantizer.quant(float_values())))
    assert calls == [1]


GRANULARITIES = [{}, {"axis": 0}, {"axis": 1}, {"block_size": (10, 15)}]


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64, numpy.int16])
def test_statistics_of_a_dask_array_are_the_tree_reduction(
    da: Any, granularity: dict[str, Any], dtype: Any
) -> None:
    import intquant.dask as iqdask

    values = float_values() * 100 if numpy.dtype(dtype).kind == "i" else float_values()
    values = values.astype(dtype)
    array = da.from_array(values, chunks=CHUNKS)
    expected = MinMaxQuantizationStats()
    expected.compute_quantization_stats(values, **granularity)

    stats = MinMaxQuantizationStats()
    source = Source(values)
    tasks = Tasks()
    with tasks.hooks:
        stats.compute_quantization_stats(da.from_array(source, chunks=CHUNKS), **granularity)
    assert tasks.computes == 1  # computed when called, in one pass
    assert max(source.reads) <= CHUNKS[0] * CHUNKS[1] < values.size  # read chunk by chunk
    assert sum(source.reads) == values.size  # every value read once
    assert tasks.largest <= CHUNKS[0] * CHUNKS[1]  # no task returns more than a chunk: no gather
    assert_same_statistics(stats, expected)
    assert_same_statistics(stats, iqdask.compute_statistics(array, **granularity))

    quantizer = UniformQuantizer(QuantizationOptions(8, **granularity))
    quantizer.compute_quantization_stats(array)
    assert_same_statistics(quantizer, expected)


def test_statistics_follow_the_objects_float32_sort(da: Any) -> None:
    # Float32 values rounding to both zeros, whose kept zero differs between numpy 1.24's two
    # float32 sorts (AVX-512 and introsort): the object's choice must reach the chunk summaries.
    rng = numpy.random.default_rng(2)
    grid = numpy.array([-0.001, 0.001, 0.5, -0.5, 1.0, 0.25, -0.0, 0.0], dtype=numpy.float32)
    values = rng.choice(grid, size=int(rng.integers(20, 200)))
    signs = {}
    for sort in ("avx512", "introsort"):
        expected = MinMaxQuantizationStats(float32_sort=sort)
        expected.update(values)
        stats = MinMaxQuantizationStats(float32_sort=sort)
        stats.update(da.from_array(values, chunks=values.size))  # one chunk: exact
        assert_same_statistics(stats, expected)
        signs[sort] = bool(numpy.signbit(expected.uvalues[expected.uvalues == 0][0]))
    assert signs["avx512"] != signs["introsort"]  # the data do tell the two sorts apart


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_update_with_a_dask_array_equals_numpy_update(da: Any, granularity: dict[str, Any]) -> None:
    first, second = float_values(seed=1), float_values(seed=2) * 3
    expected = MinMaxQuantizationStats()
    expected.update(first, **granularity)
    expected.update(second, **granularity)
    stats = MinMaxQuantizationStats()
    stats.update(da.from_array(first, chunks=CHUNKS), **granularity)
    stats.update(da.from_array(second, chunks=CHUNKS), **granularity)
    assert_same_statistics(stats, expected)

    quantizer = UniformQuantizer(QuantizationOptions(8, **granularity))
    quantizer.update(first)
    quantizer.update(da.from_array(second, chunks=CHUNKS))
    assert_same_statistics(quantizer, expected)


def test_update_refuses_a_mismatch_before_computing(da: Any) -> None:
    stats = MinMaxQuantizationStats()
    stats.update(float_values())
    before = stats.quant_stats
    quantizer = calibrated(float_values(), QuantizationOptions(8))
    quantizer_before = UniformQuantizer()
    quantizer_before.copy_stats(quantizer)
    with nothing_computed():
        with pytest.raises(InvalidTypeError, match="cannot merge statistics of float32 values"):
            stats.update(da.from_array(float_values(numpy.float32), chunks=CHUNKS))
        with pytest.raises(InvalidTypeError, match=r"block grid \(40, 1\)"):
            stats.update(da.from_array(float_values(), chunks=CHUNKS), axis=0)
        with pytest.raises(InvalidTypeError, match="cannot merge statistics of float32 values"):
            quantizer.update(da.from_array(float_values(numpy.float32), chunks=CHUNKS))
    assert_same_statistics(stats, before)
    assert_same_statistics(quantizer, quantizer_before)


def test_a_calibrated_quantizer_from_dask_equals_numpy(da: Any) -> None:
    values = float_values()
    options = QuantizationOptions(6, is_signed=True, axis=1)
    quantizer = UniformQuantizer(options)
    quantizer.compute_quantization_stats(da.from_array(values, chunks=CHUNKS))
    quantizer.compute_quantization_parameters(options, quantizer.quant_stats)
    assert quantizer == calibrated(values, options)


def test_out_is_refused_for_dask_arrays_before_computing(da: Any) -> None:
    values = float_values()
    quantizer = calibrated(values, QuantizationOptions(8))
    out = numpy.zeros(SHAPE, dtype=numpy.int64)
    array = da.from_array(values, chunks=CHUNKS)
    with nothing_computed():
        with pytest.raises(
            InvalidTypeError, match=r"quant\(values, out=\) got a dask array of shape \(40, 30\)"
        ):
            quantizer.quant(array, out=out)
        with pytest.raises(InvalidTypeError, match=r"result\.store\(target\)"):
            quantizer.dequant(da.from_array(quantizer.quant(values), chunks=CHUNKS), out=numpy.zeros(SHAPE))
    assert not out.any()


def test_what_cannot_be_split_into_chunks_is_refused_before_computing(da: Any) -> None:
    values = float_values()
    array = da.from_array(values, chunks=CHUNKS)
    per_column = UniformQuantizer(
        QuantizationOptions(4), params=UniformQuantizationParameters(numpy.full(30, 0.1), 0, 0)
    )
    quantizer = calibrated(values, QuantizationOptions(4))
    with nothing_computed():
        with pytest.raises(InvalidValueError, match=r"30 scales .* but no axis or block_size"):
            per_column.quant(array)
        with pytest.raises(InvalidTypeError, match="float32 or float64"):
            quantizer.dequant(da.from_array(quantizer.quant(values), chunks=CHUNKS), numpy.int8)
        with pytest.raises(InvalidTypeError):
            quantizer.quant(array, "float16")
        with pytest.raises(InvalidValueError, match="empty"):
            MinMaxQuantizationStats().compute_quantization_stats(array[:0])
        with pytest.raises(InvalidTypeError, match="bool"):
            MinMaxQuantizationStats().compute_quantization_stats(array > 0)


def test_nan_in_a_dask_array_is_reported_when_computed(da: Any) -> None:
    values = float_values()
    quantizer = calibrated(values, QuantizationOptions(4))
    values[3, 4] = numpy.nan
    codes = quantizer.quant(da.from_array(values, chunks=CHUNKS))
    with pytest.raises(InvalidValueError):
        codes.compute()
    with pytest.raises(InvalidValueError, match="NaN"):
        MinMaxQuantizationStats().compute_quantization_stats(da.from_array(values, chunks=CHUNKS))


def test_quantized_array_refuses_dask_arrays_without_computing(da: Any) -> None:
    values = float_values()
    array = da.from_array(values, chunks=CHUNKS)
    qa = QuantizedArray(4, values)
    before = (qa.values.copy(), qa.qvalues.copy())
    advice = (
        r"intquant\.dask\.quantizer_from\(values, QuantizationOptions\(n_bits\)\).*quantizer\.quant\(values\)"
    )
    with nothing_computed():
        with pytest.raises(
            InvalidTypeError, match=r"QuantizedArray values are a dask array of shape \(40, 30\)"
        ):
            QuantizedArray(4, array)
        with pytest.raises(InvalidTypeError, match=advice):
            QuantizedArray(4, array)
        with pytest.raises(InvalidTypeError, match="dask array"):
            QuantizedArray(
                4, array.astype(numpy.int64), value_is_float=False, scale=0.1, zero_point=0, offset=0
            )
        with pytest.raises(InvalidTypeError, match=advice):
            qa.update_values(array)
        with pytest.raises(InvalidTypeError, match=advice):
            qa.update_quantized_values(array.astype(numpy.int64))
    assert_identical(qa.values, before[0])
    assert_identical(qa.qvalues, before[1])


def test_calibration_methods_refuse_dask_arrays_without_computing(da: Any) -> None:
    percentile = PercentileStats(99.0)
    with nothing_computed(), pytest.raises(InvalidTypeError, match="needs the values in memory"):
        percentile.update(da.from_array(float_values(), chunks=CHUNKS))
    assert percentile.is_empty()


def test_other_dask_collections_are_refused(da: Any) -> None:
    import dask

    lazy = dask.delayed(float_values)()
    quantizer = calibrated(float_values(), QuantizationOptions(4))
    with nothing_computed():
        with pytest.raises(InvalidTypeError, match=r"Delayed, a lazy dask collection.*to_dask_array"):
            quantizer.quant(lazy)
        with pytest.raises(InvalidTypeError, match="a lazy dask collection"):
            MinMaxQuantizationStats().compute_quantization_stats(lazy)
        with pytest.raises(InvalidTypeError, match="a lazy dask collection"):
            QuantizedArray(4, lazy)


# -- torch tensors


@pytest.fixture(scope="module")
def torch() -> Any:
    return _require("torch", "torch")


TENSOR_ADVICE = (
    r"intquant\.torch\.TorchUniformQuantizer\(quantizer\)\.quant\(tensor\).*"
    r"intquant\.torch\.fake_quant\(tensor, quantizer\).*tensor\.detach\(\)\.cpu\(\)\.numpy\(\)"
)


@pytest.mark.parametrize("requires_grad", [True, False])
def test_tensors_are_refused_by_every_entry_point(torch: Any, requires_grad: bool) -> None:
    values = float_values()
    tensor = torch.tensor(values, requires_grad=requires_grad)
    codes = torch.tensor(calibrated(values, QuantizationOptions(4)).quant(values))
    quantizer = calibrated(values, QuantizationOptions(4))
    qa = QuantizedArray(4, values)
    calls = {
        "quant": lambda: quantizer.quant(tensor),
        "dequant": lambda: quantizer.dequant(codes),
        "quantizer statistics": lambda: quantizer.compute_quantization_stats(tensor),
        "quantizer update": lambda: quantizer.update(tensor),
        "statistics": lambda: MinMaxQuantizationStats().compute_quantization_stats(tensor),
        "update": lambda: MinMaxQuantizationStats().update(tensor),
        "QuantizedArray": lambda: QuantizedArray(4, tensor),
        "QuantizedArray codes": lambda: QuantizedArray(
            4, codes, value_is_float=False, scale=0.1, zero_point=0, offset=0
        ),
        "update_values": lambda: qa.update_values(tensor),
        "update_quantized_values": lambda: qa.update_quantized_values(codes),
        "percentile": lambda: PercentileStats(99.0).update(tensor),
    }
    for name, call in calls.items():
        with pytest.raises(InvalidTypeError, match=TENSOR_ADVICE) as caught:
            call()
        assert isinstance(caught.value, TypeError) and isinstance(caught.value, IntquantError), name
        assert "torch.Tensor (shape (40, 30)" in str(caught.value), name
    with pytest.raises(InvalidTypeError, match=f"requires_grad={requires_grad}"):
        quantizer.quant(tensor)
    assert_identical(qa.values, values)  # unchanged by the refused updates


def test_parameters_and_integer_tensors_are_refused(torch: Any) -> None:
    quantizer = calibrated(float_values(), QuantizationOptions(4))
    with pytest.raises(InvalidTypeError, match=r"torch\.nn\.parameter\.Parameter .*requires_grad=True"):
        quantizer.quant(torch.nn.Parameter(torch.ones(3)))
    with pytest.raises(InvalidTypeError, match=r"dtype torch\.int64"):
        quantizer.dequant(torch.arange(3))
    with pytest.raises(InvalidTypeError, match=r"QuantizedArray holds numpy arrays in memory"):
        QuantizedArray(4, torch.ones(3))


def test_the_advice_for_tensors_works(torch: Any) -> None:
    from intquant.torch import TorchUniformQuantizer, fake_quant

    values = float_values(numpy.float32)
    quantizer = calibrated(values, QuantizationOptions(4, is_signed=True))
    tensor = torch.tensor(values, requires_grad=True)
    codes = TorchUniformQuantizer(quantizer).quant(tensor)
    assert_identical(codes.numpy(), quantizer.quant(tensor.detach().cpu().numpy()))
    fake = fake_quant(tensor, quantizer)
    fake.sum().backward()
    assert tensor.grad is not None and fake.dtype == tensor.dtype


# -- other libraries' arrays, and what keeps working


class ArrayAPIArray:
    """An array of another array-API library (as jax or cupy arrays look to intquant)."""

    __module__ = "otherlib.core"

    def __init__(self, values: numpy.ndarray) -> None:
        self._values = values

    def __array_namespace__(self, api_version: Any = None) -> Any:
        return sys.modules[__name__]

    def __array__(self, dtype: Any = None, copy: Any = None) -> numpy.ndarray:
        return numpy.asarray(self._values, dtype=dtype)


class SubArray(numpy.ndarray):
    """A subclass of numpy arrays (as astropy's quantities or numpy's memory maps are)."""


class FrameLike:
    """What pandas and numpy-backed xarray objects look like to intquant: ``__array__`` (and, for
    xarray, a dask graph of None)."""

    def __init__(self, values: numpy.ndarray) -> None:
        self._values = values

    def __array__(self, dtype: Any = None, copy: Any = None) -> numpy.ndarray:
        return numpy.asarray(self._values, dtype=dtype)

    def __dask_graph__(self) -> None:
        return None


def test_other_array_api_arrays_are_refused() -> None:
    values = float_values()
    quantizer = calibrated(values, QuantizationOptions(4))
    foreign = ArrayAPIArray(values)
    message = r"otherlib\.core\.ArrayAPIArray, an array of otherlib.*numpy\.asarray\(values\)"
    with pytest.raises(InvalidTypeError, match=message):
        quantizer.quant(foreign)
    with pytest.raises(InvalidTypeError, match=message):
        MinMaxQuantizationStats().compute_quantization_stats(foreign)
    with pytest.raises(InvalidTypeError, match=r"QuantizedArray holds numpy arrays in memory"):
        QuantizedArray(4, foreign)
    assert_identical(quantizer.quant(numpy.asarray(foreign)), quantizer.quant(values))  # the advice


@pytest.mark.parametrize(
    "convert",
    [
        lambda values: values.tolist(),
        lambda values: tuple(map(tuple, values.tolist())),
        FrameLike,
        lambda values: values.view(SubArray),
        lambda values: values[0, 0].item(),
        lambda values: values[0, 0],
    ],
    ids=["list", "tuple", "array-like", "ndarray subclass", "Python float", "numpy scalar"],
)
def test_what_numpy_converts_keeps_working(convert: Any) -> None:
    values = float_values()
    quantizer = calibrated(values, QuantizationOptions(4))
    given = convert(values)
    expected = numpy.asarray(values[0, 0]) if numpy.ndim(given) == 0 else values
    assert_identical(numpy.asarray(quantizer.quant(given)), numpy.asarray(quantizer.quant(expected)))
    stats = MinMaxQuantizationStats()
    stats.compute_quantization_stats(given)
    assert float(stats.rmax) == float(numpy.max(expected))
    if numpy.ndim(given) > 0:
        assert_identical(QuantizedArray(4, given).qvalues, QuantizedArray(4, values).qvalues)


def test_recognizing_foreign_arrays_imports_no_library() -> None:
    code = (
        "import sys, numpy, intquant\n"
        "from intquant import QuantizedArray\n"
        "qa = QuantizedArray(4, numpy.linspace(-1, 1, 8))\n"
        "qa.quantizer.quant([0.5, 1.0]); qa.quantizer.quant(numpy.float64(0.5)); qa.update_values([0.1])\n"
        "qa.quantizer.update([0.25]); qa.quantizer.dequant(qa.qvalues)\n"
        "loaded = sorted({'dask', 'torch', 'intquant.dask', 'intquant.torch'} & set(sys.modules))\n"
        "assert not loaded, loaded\n"
    )
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path}
    )
    assert result.returncode == 0, result.stderr

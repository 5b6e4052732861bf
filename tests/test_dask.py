"""intquant.dask: statistics, quant and dequant of dask arrays equal the numpy path's, on threads
and on a real two-process cluster with an array larger than a worker's memory."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import dask  # noqa: E402

from intquant import (  # noqa: E402
    MinMaxQuantizationStats,
    QuantizationOptions,
    UniformQuantizationParameters,
    UniformQuantizer,
)
from intquant import dask as iqdask  # noqa: E402
from intquant.errors import (  # noqa: E402
    IntquantError,
    InvalidOptionsError,
    InvalidTypeError,
    InvalidValueError,
    MissingParameterError,
)

SHAPE = (60, 50)
# Chunkings of SHAPE: one chunk, ragged chunks, whole rows, a zero-size chunk, single elements
# along one dimension.
CHUNKINGS: list[Any] = [SHAPE, (7, 11), (25, 50), ((10, 0, 50), (50,)), (60, 1)]


# -- helpers


def normal_values(dtype: Any, *, negative_zeros: bool = False, seed: int = 0) -> numpy.ndarray:
    """Values of SHAPE; unless ``negative_zeros``, none rounds to -0.0 (no value in [-0.005, 0)
    nor -0.0), so that the rounded values hold one zero only and ``uvalues`` is exact."""
    values = numpy.random.default_rng(seed).normal(scale=0.5, size=SHAPE)
    if not negative_zeros:
        values[(values < 0) & (values > -0.01)] = -0.25
    return values.astype(dtype)


def make_options(n_bits: int, flags: dict[str, Any]) -> QuantizationOptions:
    options = QuantizationOptions(
        n_bits, **{name: flag for name, flag in flags.items() if name != "is_narrow"}
    )
    options.is_narrow = flags.get("is_narrow", False)
    return options


def numpy_statistics(values: numpy.ndarray, **granularity: Any) -> MinMaxQuantizationStats:
    stats = MinMaxQuantizationStats()
    stats.compute_quantization_stats(values, **granularity)
    return stats


def numpy_quantizer(values: numpy.ndarray, options: QuantizationOptions, **kwargs: Any) -> UniformQuantizer:
    granularity = {"axis": options.axis, "block_size": options.block_size}  # type: ignore[attr-defined]
    stats = numpy_statistics(values, **granularity)
    params = UniformQuantizationParameters()
    params.compute_quantization_parameters(options, stats)
    return UniformQuantizer(options, stats, params, **kwargs)


def assert_identical(actual: Any, expected: Any) -> None:
    """Same type (numpy scalar or array), dtype, shape and bits (so -0.0 differs from 0.0)."""
    assert type(actual) is type(expected), (type(actual), type(expected))
    actual, expected = numpy.asarray(actual), numpy.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert actual.tobytes() == expected.tobytes(), (actual, expected)


def assert_same_values(actual: Any, expected: Any) -> None:
    """Same dtype, shape and values, a zero of either sign matching one of the other."""
    actual, expected = numpy.asarray(actual), numpy.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert numpy.array_equal(actual, expected)


def assert_same_statistics(
    actual: MinMaxQuantizationStats, expected: MinMaxQuantizationStats, *, zero_signs: bool = True
) -> None:
    """rmin and rmax identical; uvalues identical (or equal but for zero signs)."""
    assert_identical(actual.rmin, expected.rmin)
    assert_identical(actual.rmax, expected.rmax)
    compare = assert_identical if zero_signs else assert_same_values
    if isinstance(expected.uvalues, list):
        assert isinstance(actual.uvalues, list) and len(actual.uvalues) == len(expected.uvalues)
        for block, expected_block in zip(actual.uvalues, expected.uvalues, strict=True):
            compare(block, expected_block)
    else:
        compare(actual.uvalues, expected.uvalues)


def signed_zeros(values: numpy.ndarray) -> numpy.ndarray:
    """The signbit of each zero in ``values``."""
    return numpy.signbit(values[values == 0])


# -- statistics


@pytest.mark.parametrize("chunks", CHUNKINGS)
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_per_tensor_statistics_equal_numpy(chunks: Any, dtype: Any) -> None:
    values = normal_values(dtype)
    actual = iqdask.compute_statistics(da.from_array(values, chunks=chunks))
    expected = numpy_statistics(values)
    assert_same_statistics(actual, expected)
    assert type(actual.rmin) is numpy.dtype(dtype).type and actual.uvalues.dtype == dtype


@pytest.mark.parametrize("dtype", [numpy.int64, numpy.int32, numpy.uint8])
def test_integer_statistics_equal_numpy(dtype: Any) -> None:
    values = numpy.random.default_rng(1).integers(0, 200, size=SHAPE).astype(dtype)
    assert_same_statistics(
        iqdask.compute_statistics(da.from_array(values, chunks=(7, 11))), numpy_statistics(values)
    )


@pytest.mark.parametrize("chunks", CHUNKINGS)
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_statistics_with_both_zeros_equal_numpy_but_for_zero_signs(chunks: Any, dtype: Any) -> None:
    values = normal_values(dtype, negative_zeros=True)
    rounded = numpy.round(values, 2)
    assert signed_zeros(rounded).any() and not signed_zeros(rounded).all()  # both zeros present
    array = da.from_array(values, chunks=chunks)
    actual = iqdask.compute_statistics(array)
    assert_same_statistics(actual, numpy_statistics(values), zero_signs=False)
    # The documented rule: the zero kept is the one update() keeps, fed the chunks in C order.
    streamed = MinMaxQuantizationStats()
    for index in numpy.ndindex(array.numblocks):
        block = array.blocks[index].compute()
        if block.size:
            streamed.update(block)
    assert_same_statistics(actual, streamed)


def test_the_first_chunks_zero_is_kept() -> None:
    # -0.001 rounds to -0.0 and 0.001 to 0.0: each chunk holds one of the two zeros.
    negative_first = da.from_array(numpy.array([-0.001, 1.0, 0.001, 2.0]), chunks=2)
    positive_first = da.from_array(numpy.array([0.001, 1.0, -0.001, 2.0]), chunks=2)
    assert signed_zeros(iqdask.compute_statistics(negative_first).uvalues).tolist() == [True]
    assert signed_zeros(iqdask.compute_statistics(positive_first).uvalues).tolist() == [False]
    # Inside one chunk, numpy 1.24's choice is reproduced exactly.
    for values in (numpy.array([-0.001, 1.0, 0.001, 2.0]), numpy.array([0.001, 1.0, -0.001, 2.0])):
        one_chunk = iqdask.compute_statistics(da.from_array(values, chunks=4))
        assert_same_statistics(one_chunk, numpy_statistics(values))


GRANULARITIES: list[dict[str, Any]] = [
    {"axis": 0},
    {"axis": 1},
    {"axis": -1},
    {"block_size": (10, 25)},
    {"block_size": (1, 50)},
    {"block_size": (60, 5)},
]


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("chunks", [SHAPE, (20, 25), (7, 11), ((10, 0, 50), (50,))])
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_grouped_statistics_equal_numpy(granularity: dict[str, Any], chunks: Any, dtype: Any) -> None:
    # (20, 25) chunks hold whole blocks of every granularity but the per-axis ones along a
    # split dimension; (7, 11) chunks split every block.
    values = normal_values(dtype)
    actual = iqdask.compute_statistics(da.from_array(values, chunks=chunks), **granularity)
    assert_same_statistics(actual, numpy_statistics(values, **granularity))


def test_blocks_inside_one_chunk_are_exact_even_with_both_zeros() -> None:
    values = normal_values(numpy.float64, negative_zeros=True)
    actual = iqdask.compute_statistics(da.from_array(values, chunks=(20, 25)), block_size=(10, 25))
    expected = numpy_statistics(values, block_size=(10, 25))
    assert any(signed_zeros(block).any() for block in expected.uvalues)
    assert_same_statistics(actual, expected)


def test_zero_dimensional_and_numpy_inputs() -> None:
    assert_same_statistics(
        iqdask.compute_statistics(da.from_array(numpy.array(-0.25))), numpy_statistics(numpy.array(-0.25))
    )
    values = normal_values(numpy.float32)
    assert_same_statistics(iqdask.compute_statistics(values), numpy_statistics(values))


@pytest.mark.parametrize("split_every", [2, 3, 100])
def test_the_tree_shape_does_not_change_the_result(split_every: int) -> None:
    values = normal_values(numpy.float64, negative_zeros=True)
    array = da.from_array(values, chunks=(7, 11))
    expected = iqdask.compute_statistics(array)
    assert_same_statistics(iqdask.compute_statistics(array, split_every=split_every), expected)
    assert_same_statistics(
        iqdask.compute_statistics(array, axis=1, split_every=split_every),
        iqdask.compute_statistics(array, axis=1),
    )


@pytest.mark.parametrize(
    "bad, message", [(numpy.nan, "NaN"), (numpy.inf, "an infinity"), (-numpy.inf, "an infinity")]
)
@pytest.mark.parametrize("granularity", [{}, {"axis": 0}])
def test_non_finite_values_are_refused(bad: float, message: str, granularity: dict[str, Any]) -> None:
    values = normal_values(numpy.float64)
    values[33, 7] = bad
    with pytest.raises(
        InvalidValueError,
        match=f"cannot calibrate on values containing {message} \\(dask array of shape \\(60, 50\\)",
    ):
        iqdask.compute_statistics(da.from_array(values, chunks=(7, 11)), **granularity)


def test_bad_calibration_inputs_are_refused() -> None:
    with pytest.raises(InvalidValueError, match=r"empty array \(shape \(0, 3\), dtype float64\)"):
        iqdask.compute_statistics(da.zeros((0, 3)))
    with pytest.raises(InvalidTypeError, match=r"got a bool array of shape \(4,\)"):
        iqdask.compute_statistics(da.ones(4, dtype=bool))
    with pytest.raises(InvalidTypeError, match=r"must be real numbers .* got dtype complex128"):
        iqdask.compute_statistics(da.ones(4, dtype=complex))
    unknown = da.ones(10, chunks=5)
    unknown = unknown[unknown > 0]
    with pytest.raises(InvalidValueError, match=r"unknown chunk sizes .* array.compute_chunk_sizes\(\)"):
        iqdask.compute_statistics(unknown)
    with pytest.raises(InvalidValueError, match=r"axis 2 is out of range for values of shape \(60, 50\)"):
        iqdask.compute_statistics(da.ones(SHAPE), axis=2)
    with pytest.raises(InvalidValueError, match=r"block_size \(7, 50\) must .* each dividing"):
        iqdask.compute_statistics(da.ones(SHAPE), block_size=(7, 50))
    with pytest.raises(InvalidOptionsError, match=r"either 'axis' .* or 'block_size'"):
        iqdask.compute_statistics(da.ones(SHAPE), axis=0, block_size=(1, 50))
    with pytest.raises(InvalidValueError, match=r"'split_every' must be an int of at least 2 .*; got 1\."):
        iqdask.compute_statistics(da.ones(SHAPE), split_every=1)


def test_update_statistics_equals_numpy_update() -> None:
    first, second = normal_values(numpy.float32, seed=1), normal_values(numpy.float32, seed=2) * 3
    stats = MinMaxQuantizationStats()
    iqdask.update_statistics(stats, da.from_array(first, chunks=(7, 11)))
    iqdask.update_statistics(stats, da.from_array(second, chunks=(25, 50)))
    expected = MinMaxQuantizationStats()
    expected.update(first)
    expected.update(second)
    assert_same_statistics(stats, expected)
    # merge() works as usual on the results.
    merged = iqdask.compute_statistics(da.from_array(first, chunks=(7, 11)))
    merged.merge(iqdask.compute_statistics(da.from_array(second, chunks=(7, 11))))
    assert_same_statistics(merged, expected)
    # Per axis too.
    per_axis = MinMaxQuantizationStats()
    for values in (first, second):
        iqdask.update_statistics(per_axis, da.from_array(values, chunks=(7, 11)), axis=0)
    expected_per_axis = MinMaxQuantizationStats()
    for values in (first, second):
        expected_per_axis.update(values, axis=0)
    assert_same_statistics(per_axis, expected_per_axis)


def test_update_statistics_refuses_a_mismatch_before_computing() -> None:
    def explode() -> numpy.ndarray:
        raise AssertionError("the array was computed")

    never = da.from_delayed(dask.delayed(explode)(), shape=SHAPE, dtype=numpy.float64)
    stats = numpy_statistics(normal_values(numpy.float32))
    before = MinMaxQuantizationStats()
    before.copy_stats(stats)
    with pytest.raises(InvalidTypeError, match="cannot merge statistics of float64 values"):
        iqdask.update_statistics(stats, never)
    with pytest.raises(InvalidTypeError, match=r"with block grid \(60, 1\) into statistics .* grid \(\)"):
        iqdask.update_statistics(stats, never.astype(numpy.float32), axis=0)
    assert_same_statistics(stats, before)
    with pytest.raises(
        InvalidTypeError, match=r"into a MinMaxQuantizationStats \(or a UniformQuantizer\); got dict"
    ):
        iqdask.update_statistics({}, never)  # type: ignore[arg-type]
    # A failed computation leaves the statistics unchanged too.
    with pytest.raises(AssertionError, match="the array was computed"):
        iqdask.update_statistics(stats, never.astype(numpy.float32))
    assert_same_statistics(stats, before)


OPTIONS: list[dict[str, Any]] = [
    {},
    {"is_signed": True},
    {"is_signed": True, "is_symmetric": True},
    {"is_signed": True, "is_narrow": True},  # not a constructor argument: set afterwards
    {"is_signed": True, "axis": 0},
    {"is_signed": True, "is_symmetric": True, "axis": 1},
    {"block_size": (10, 25)},
    {"rounding": "half_up", "zero_in_range": True, "power_of_two_scale": True},
    {"rounding": "floor"},
]


@pytest.mark.parametrize("n_bits", [2, 8])
@pytest.mark.parametrize("flags", OPTIONS)
def test_quantizer_from_equals_the_numpy_quantizer(n_bits: int, flags: dict[str, Any]) -> None:
    values = normal_values(numpy.float32)
    options = make_options(n_bits, flags)
    actual = iqdask.quantizer_from(da.from_array(values, chunks=(7, 11)), options)
    expected = numpy_quantizer(values, options)
    assert actual == expected
    assert_identical(actual.scale, expected.scale)
    assert_identical(actual.zero_point, expected.zero_point)


def test_quantizer_from_checks_options_before_computing() -> None:
    with pytest.raises(InvalidOptionsError, match="is_symmetric=True needs is_signed=True"):
        iqdask.quantizer_from(da.ones(4), QuantizationOptions(4, is_symmetric=True))


# -- quantization


def assert_quant_and_dequant_equal_numpy(
    quantizer: UniformQuantizer, values: numpy.ndarray, chunks: Any, dtype: Any = None
) -> None:
    array = da.from_array(values, chunks=chunks)
    codes = iqdask.quant(quantizer, array, dtype)
    expected_codes = quantizer.quant(values, dtype)
    assert isinstance(codes, da.Array) and codes.chunks == array.chunks
    assert codes.dtype == expected_codes.dtype
    assert_identical(codes.compute(), expected_codes)
    restored = iqdask.dequant(quantizer, codes)
    expected_values = quantizer.dequant(expected_codes)
    assert isinstance(restored, da.Array) and restored.chunks == array.chunks
    assert restored.dtype == expected_values.dtype
    assert_identical(restored.compute(), expected_values)


@pytest.mark.parametrize("chunks", CHUNKINGS)
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("flags", OPTIONS)
def test_quant_and_dequant_equal_numpy(chunks: Any, dtype: Any, flags: dict[str, Any]) -> None:
    values = normal_values(dtype, negative_zeros=True)
    quantizer = numpy_quantizer(values, make_options(4, flags))
    assert_quant_and_dequant_equal_numpy(quantizer, values, chunks)


@pytest.mark.parametrize("code_dtype", ["smallest", "int32", "float32", "float64", numpy.int64])
@pytest.mark.parametrize("flags", [{"is_signed": True}, {"is_signed": True, "axis": 1}])
def test_code_dtypes_equal_numpy(code_dtype: Any, flags: dict[str, Any]) -> None:
    values = normal_values(numpy.float32)
    quantizer = numpy_quantizer(values, make_options(8, flags))
    assert_quant_and_dequant_equal_numpy(quantizer, values, (7, 11), code_dtype)


def test_blocks_with_different_offsets_share_one_code_range() -> None:
    # A constant block gets offset 0 while the others get 128: the 'smallest' dtype must hold
    # both ranges, [-128, 255], in every chunk.
    values = normal_values(numpy.float64)
    values[:10, :25] = 1.5
    quantizer = numpy_quantizer(values, QuantizationOptions(8, is_signed=True, block_size=(10, 25)))
    assert isinstance(quantizer.offset, numpy.ndarray) and set(quantizer.offset.ravel()) == {0, 128}
    assert_quant_and_dequant_equal_numpy(quantizer, values, (20, 25), "smallest")
    assert iqdask.quant(quantizer, da.from_array(values, chunks=(7, 11)), "smallest").dtype == numpy.int16


def test_unclipped_and_qat_codes_equal_numpy() -> None:
    values = normal_values(numpy.float64) * 100
    quantizer = numpy_quantizer(normal_values(numpy.float64), QuantizationOptions(4), no_clipping=True)
    assert_quant_and_dequant_equal_numpy(quantizer, values, (7, 11))
    assert_quant_and_dequant_equal_numpy(quantizer, values, (7, 11), "int32")
    grid = numpy.round(normal_values(numpy.float64) * 4) / 4  # values already on a 0.25 grid
    qat = numpy_quantizer(grid, QuantizationOptions(6, is_qat=True))
    assert_quant_and_dequant_equal_numpy(qat, grid, (7, 11))


def test_dequant_of_float32_codes_keeps_float32() -> None:
    values = normal_values(numpy.float32)
    quantizer = numpy_quantizer(values, QuantizationOptions(4, axis=0))
    codes = quantizer.quant(values, "float32")
    restored = iqdask.dequant(quantizer, da.from_array(codes, chunks=(7, 11)))
    assert restored.dtype == numpy.float32
    assert_identical(restored.compute(), quantizer.dequant(codes))


@pytest.mark.parametrize("target", [numpy.float32, "float64"])
@pytest.mark.parametrize("granularity", [{}, {"block_size": (10, 10)}])
def test_dequant_casts_as_numpy_dequant_does(target: Any, granularity: dict[str, Any]) -> None:
    values = normal_values(numpy.float64)
    quantizer = numpy_quantizer(values, QuantizationOptions(8, **granularity))
    codes = quantizer.quant(values)
    restored = iqdask.dequant(quantizer, da.from_array(codes, chunks=(7, 11)), target)
    assert restored.dtype == numpy.dtype(target)
    assert_identical(restored.compute(), quantizer.dequant(codes, target))
    empty = iqdask.dequant(quantizer, da.from_array(codes, chunks=((10, 0, 50), (50,))), target)
    assert_identical(empty.compute(), quantizer.dequant(codes, target))  # a zero-size chunk too
    with pytest.raises(InvalidTypeError, match=r"float32 or float64 .*got 'int8'"):
        iqdask.dequant(quantizer, da.from_array(codes), "int8")


def test_statistics_keep_their_float32_sort() -> None:
    values = normal_values(numpy.float32)
    stats = iqdask.compute_statistics(da.from_array(values, chunks=(7, 11)), float32_sort="introsort")
    assert stats.float32_sort == "introsort"
    with pytest.raises(InvalidValueError, match="'float32_sort' must be 'avx512'"):
        iqdask.compute_statistics(da.from_array(values), float32_sort="quicksort")
    with pytest.raises(InvalidValueError, match="'float32_sort' must be 'avx512'"):
        iqdask.update_statistics(MinMaxQuantizationStats(), da.from_array(values), float32_sort="quicksort")


def test_update_statistics_folds_into_a_quantizer() -> None:
    first, second = normal_values(numpy.float64, seed=1), normal_values(numpy.float64, seed=2) * 2
    quantizer = UniformQuantizer(QuantizationOptions(8, axis=1))
    iqdask.update_statistics(quantizer, da.from_array(first, chunks=(7, 11)), axis=1)
    iqdask.update_statistics(quantizer, da.from_array(second, chunks=(7, 11)), axis=1)
    expected = MinMaxQuantizationStats()
    expected.update(first, axis=1)
    expected.update(second, axis=1)
    assert_same_statistics(quantizer.quant_stats, expected)


def test_zero_dimensional_quantization() -> None:
    quantizer = numpy_quantizer(normal_values(numpy.float64), QuantizationOptions(4))
    value = numpy.array(0.3)
    codes = iqdask.quant(quantizer, da.from_array(value))
    assert codes.shape == () and codes.compute() == quantizer.quant(value)
    restored = iqdask.dequant(quantizer, codes).compute()
    assert restored == quantizer.dequant(quantizer.quant(value))


def test_quant_is_lazy() -> None:
    calls = []

    def source() -> numpy.ndarray:
        calls.append(1)
        return normal_values(numpy.float64)

    array = da.from_delayed(dask.delayed(source)(), shape=SHAPE, dtype=numpy.float64)
    quantizer = numpy_quantizer(normal_values(numpy.float64), QuantizationOptions(4, axis=0))
    codes = iqdask.quant(quantizer, array)
    restored = iqdask.dequant(quantizer, codes)
    assert calls == []
    assert_identical(restored.compute(), quantizer.dequant(quantizer.quant(normal_values(numpy.float64))))
    assert calls == [1]


def test_quant_refuses_what_it_cannot_split_before_computing() -> None:
    values = normal_values(numpy.float64)
    array = da.from_array(values, chunks=(7, 11))
    with pytest.raises(MissingParameterError, match="no scale, zero_point, offset yet"):
        iqdask.quant(UniformQuantizer(QuantizationOptions(4)), array)
    with pytest.raises(MissingParameterError, match="no scale, zero_point yet"):
        iqdask.dequant(UniformQuantizer(QuantizationOptions(4)), array)
    unclipped = numpy_quantizer(values, QuantizationOptions(4), no_clipping=True)
    with pytest.raises(InvalidValueError, match=r"'smallest' dtype .* without clipping"):
        iqdask.quant(unclipped, array, "smallest")
    quantizer = numpy_quantizer(values, QuantizationOptions(4))
    with pytest.raises(InvalidTypeError, match=r"quant can return codes as int8, uint8, .* or 'smallest'"):
        iqdask.quant(quantizer, array, "float16")
    with pytest.raises(InvalidTypeError, match=r"values to quantize must be real numbers .* shape \(3,\)"):
        iqdask.quant(quantizer, da.from_array(numpy.array(["a", "b", "c"])))
    per_axis = numpy_quantizer(values, QuantizationOptions(4, axis=0))
    with pytest.raises(InvalidValueError, match=r"block grid of shape \(60, 1\), but values of shape"):
        iqdask.quant(per_axis, array[:30])
    with pytest.raises(InvalidValueError, match=r"block grid of shape \(60, 1\), but values of shape"):
        iqdask.dequant(per_axis, array[:30])
    per_axis.axis = None  # array parameters without a granularity: broadcasting is not chunkwise
    with pytest.raises(InvalidValueError, match="holds 60 scales and 60 zero points but no axis"):
        iqdask.quant(per_axis, array)
    with pytest.raises(InvalidTypeError, match="expected a UniformQuantizer; got QuantizationOptions"):
        iqdask.quant(QuantizationOptions(4), array)  # type: ignore[arg-type]


def test_nan_is_reported_when_the_codes_are_computed() -> None:
    values = normal_values(numpy.float64)
    quantizer = numpy_quantizer(values, QuantizationOptions(4))
    values[5, 5] = numpy.nan
    codes = iqdask.quant(quantizer, da.from_array(values, chunks=(7, 11)))
    with pytest.raises(InvalidValueError, match="cannot quantize NaN"):
        codes.compute()


# -- without dask


def test_importing_intquant_does_not_import_dask() -> None:
    code = (
        "import sys, intquant, intquant.dask; "
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_dask_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dask", None)  # as if dask were not installed
    monkeypatch.setitem(sys.modules, "dask.array", None)
    with pytest.raises(iqdask.MissingDependencyError, match='pip install "intquant\\[dask\\]"') as caught:
        iqdask.compute_statistics(numpy.ones(3))
    assert isinstance(caught.value, IntquantError) and isinstance(caught.value, ImportError)


# -- on a real cluster: two worker processes, an array larger than either worker's memory

# Each worker may use 400 MB: a worker process takes about 85 MB, and about 200 MB once it has
# loaded numba for intquant's compiled loops (the `fast` extra), which leaves room for a few
# chunks of 8 MB below distributed's pause threshold (80%). The array, 800 MB of float64, is
# twice one worker's limit and as large as the whole cluster's memory. It is never held anywhere
# at once: each worker generates the chunks it works on (seeded by the chunk's index), and this
# process regenerates them one at a time for the numpy reference. Its rounded values hold both
# -0.0 and 0.0, so the statistics also check the documented zero rule (that of update() fed the
# chunks in order). About 10-25 s on two cores.
WORKER_MEMORY = 400 * 10**6
CLUSTER_VALUES = 100_000_000
CLUSTER_CHUNK = 1_000_000
CLUSTER_SEED = 20260127


def cluster_chunk(index: int) -> numpy.ndarray:
    """Chunk ``index`` of the cluster test's values: normal, seeded by the chunk's index."""
    return numpy.random.default_rng([CLUSTER_SEED, index]).normal(scale=2.0, size=CLUSTER_CHUNK)


def generated_chunk(block_info: Any = None) -> numpy.ndarray:
    """map_blocks' view of :func:`cluster_chunk` (run on the workers)."""
    (index,) = block_info[None]["chunk-location"]
    return cluster_chunk(index)


@pytest.fixture
def client(request: pytest.FixtureRequest) -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=":0",  # any free port: another run may hold 8787
        memory_limit=WORKER_MEMORY,
    )
    request.addfinalizer(cluster.close)
    client = distributed.Client(cluster)
    request.addfinalizer(client.close)
    yield client


def worker_pids(client: Any) -> dict[str, int]:
    return client.run(os.getpid)  # type: ignore[no-any-return]


def test_a_cluster_calibrates_and_quantizes_an_array_larger_than_a_worker(client: Any) -> None:
    values = da.map_blocks(
        generated_chunk,
        dtype=numpy.float64,
        chunks=((CLUSTER_CHUNK,) * (CLUSTER_VALUES // CLUSTER_CHUNK),),
        meta=numpy.empty((0,), dtype=numpy.float64),
    )
    assert values.nbytes >= 2 * WORKER_MEMORY
    pids = worker_pids(client)
    assert len(pids) == 2 and os.getpid() not in pids.values()

    with distributed.get_task_stream(client) as tasks:
        # Statistics through the cluster (the default scheduler while the client is open).
        options = QuantizationOptions(8, is_signed=True)
        quantizer = iqdask.quantizer_from(values, options)
        # Reductions over the lazily quantized and dequantized arrays, in one pass.
        codes = iqdask.quant(quantizer, values)
        restored = iqdask.dequant(quantizer, codes)
        counts, lowest, highest, worst = dask.compute(
            da.bincount(codes + 128, minlength=256),
            restored.min(),
            restored.max(),
            abs(restored - values).max(),
        )
    assert {task["worker"] for task in tasks.data} == set(pids)  # both workers took part
    assert worker_pids(client) == pids  # no worker was restarted for using too much memory

    # The same computations in this process, one chunk at a time with numpy.
    expected_stats = MinMaxQuantizationStats()
    expected_counts = numpy.zeros(256, dtype=numpy.int64)
    expected_lowest, expected_highest, expected_worst = math.inf, -math.inf, 0.0
    for index in range(values.numblocks[0]):
        block = cluster_chunk(index)
        expected_stats.update(block)
        block_codes = quantizer.quant(block)
        expected_counts += numpy.bincount(block_codes + 128, minlength=256)
        block_restored = quantizer.dequant(block_codes)
        expected_lowest = min(expected_lowest, block_restored.min())
        expected_highest = max(expected_highest, block_restored.max())
        expected_worst = max(expected_worst, numpy.abs(block_restored - block).max())

    assert_same_statistics(quantizer.quant_stats, expected_stats)
    expected_params = UniformQuantizationParameters()
    expected_params.compute_quantization_parameters(options, expected_stats)
    assert quantizer.quant_params == expected_params
    assert counts.dtype == numpy.int64 and numpy.array_equal(counts, expected_counts)
    assert counts.sum() == CLUSTER_VALUES
    assert (lowest, highest, worst) == (expected_lowest, expected_highest, expected_worst)
    assert worst <= quantizer.scale / 2 * (1 + 1e-12)  # every value lies in the calibrated range

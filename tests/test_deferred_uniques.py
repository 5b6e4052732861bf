"""``uvalues`` computed when first read: the same results as computing them at once, from a
private copy of the data, shared safely between copies and threads."""

from __future__ import annotations

import copy
import pickle
import threading

import numpy
import pytest

from intquant import MinMaxQuantizationStats, QuantizedArray, UniformQuantizer
from intquant._core.uniques import PendingUniques, pending_state
from intquant.statistics import calibrate


def _with_both_zeros(dtype: type, size: int = 5000, seed: int = 0) -> numpy.ndarray:
    """Standard normal values: those in (-0.005, 0) round to -0.0, those in [0, 0.005) to 0.0."""
    return numpy.random.default_rng(seed).standard_normal(size).astype(dtype)


def _same(first: object, second: object) -> bool:
    """Equal values, dtypes and signs of zeros (arrays, or lists of them per block)."""
    if isinstance(first, list):
        return isinstance(second, list) and len(first) == len(second) and all(map(_same, first, second))
    assert isinstance(first, numpy.ndarray) and isinstance(second, numpy.ndarray)
    return (
        first.dtype == second.dtype
        and numpy.array_equal(first, second)
        and numpy.array_equal(numpy.signbit(first), numpy.signbit(second))
    )


@pytest.mark.parametrize("dtype", [numpy.float16, numpy.float32, numpy.float64, numpy.int16, numpy.int64])
@pytest.mark.parametrize("size", [1, 7, 5000, 120_000])
def test_deferred_uniques_equal_eager_ones(dtype: type, size: int) -> None:
    values = (_with_both_zeros(numpy.float64, size, seed=size) * 40).astype(dtype)
    eager = calibrate(values)
    stats = MinMaxQuantizationStats()
    stats.compute_quantization_stats(values)
    assert isinstance(pending_state(stats, "uvalues"), PendingUniques)
    assert stats.rmin == eager[0] and stats.rmax == eager[1]
    assert type(stats.rmin) is type(eager[0])
    assert _same(stats.uvalues, eager[2])
    assert pending_state(stats, "uvalues") is None  # resolved once, stored as a plain array


def test_caller_changing_its_array_afterwards_changes_nothing() -> None:
    values = _with_both_zeros(numpy.float32)
    expected = calibrate(values)[2]
    quantizer = UniformQuantizer()
    quantizer.compute_quantization_stats(values)
    values[:] = 123.0  # the caller reuses its buffer before anything reads uvalues
    assert _same(quantizer.uvalues, expected)


def test_the_private_copy_is_released_once_computed() -> None:
    stats = MinMaxQuantizationStats()
    stats.compute_quantization_stats(_with_both_zeros(numpy.float64))
    pending = pending_state(stats, "uvalues")
    assert pending is not None and pending.holds_values
    stats.uvalues  # noqa: B018 (the read computes them)
    assert not pending.holds_values


def test_copies_share_the_pending_state_but_not_the_result() -> None:
    stats = MinMaxQuantizationStats()
    stats.compute_quantization_stats(_with_both_zeros(numpy.float32))
    twin, deep = stats.quant_stats, copy.deepcopy(stats)
    pending = pending_state(stats, "uvalues")
    assert pending_state(twin, "uvalues") is pending and pending_state(deep, "uvalues") is pending
    twin.uvalues[0] = 99.0  # the twin's own array
    assert stats.uvalues[0] != 99.0 and deep.uvalues[0] != 99.0
    assert stats.uvalues is not deep.uvalues


def test_setting_uvalues_replaces_the_pending_state() -> None:
    stats = MinMaxQuantizationStats()
    stats.compute_quantization_stats(_with_both_zeros(numpy.float64))
    stats.uvalues = numpy.array([1.0, 2.0])
    assert stats.uvalues.tolist() == [1.0, 2.0]
    assert MinMaxQuantizationStats.uvalues is None  # the seed's class-level default
    assert MinMaxQuantizationStats().uvalues is None


def test_text_pickle_and_equality_match_eager_statistics() -> None:
    values = _with_both_zeros(numpy.float32, 20_000)
    eager = MinMaxQuantizationStats(*reversed(calibrate(values)[:2]), calibrate(values)[2])
    lazy = MinMaxQuantizationStats()
    lazy.compute_quantization_stats(values)
    restored = pickle.loads(pickle.dumps(lazy))
    assert pending_state(restored, "uvalues") is None
    assert lazy.dumps() == eager.dumps()
    assert restored == eager and lazy == eager


def test_per_axis_statistics_defer_too() -> None:
    values = _with_both_zeros(numpy.float32, 4096).reshape(64, 64)
    eager = calibrate(values, axis=0)
    stats = MinMaxQuantizationStats()
    stats.compute_quantization_stats(values, axis=0)
    assert numpy.array_equal(stats.rmin, eager[0]) and numpy.array_equal(stats.rmax, eager[1])
    assert _same(stats.uvalues, eager[2])


def test_threads_reading_at_once_get_the_same_uniques() -> None:
    values = _with_both_zeros(numpy.float32, 300_000)
    expected = calibrate(values)[2]
    stats = MinMaxQuantizationStats()
    stats.compute_quantization_stats(values)
    copies = [stats.quant_stats for _ in range(4)]
    results: list[numpy.ndarray] = []
    start = threading.Barrier(len(copies))

    def read(target: MinMaxQuantizationStats) -> None:
        start.wait()
        results.append(target.uvalues)

    threads = [threading.Thread(target=read, args=(target,)) for target in copies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == len(copies) and all(_same(result, expected) for result in results)


def test_qat_parameters_read_the_uniques() -> None:
    grid = numpy.arange(-8, 8, dtype=numpy.float64) * 0.25
    qa = QuantizedArray(4, grid, is_qat=True)
    assert qa.quantizer.scale == 0.25  # the smallest step of uvalues, so they were computed


def test_update_keeps_bounded_summaries() -> None:
    stats = MinMaxQuantizationStats()
    stats.update(_with_both_zeros(numpy.float64))
    assert pending_state(stats, "uvalues") is None  # update never holds a copy of a batch


@pytest.mark.parametrize("granularity", [{}, {"axis": 0}, {"block_size": (4, 8)}])
def test_quantized_array_leaves_uniques_pending_until_read(granularity: dict[str, object]) -> None:
    values = _with_both_zeros(numpy.float32, 4096).reshape(64, 64)
    qa = QuantizedArray(8, values, is_signed=True, **granularity)  # type: ignore[arg-type]
    pending = pending_state(qa.quantizer, "uvalues")
    assert pending is not None and pending.holds_values  # parameters did not need them
    eager = calibrate(values, **granularity)[2]  # type: ignore[arg-type]
    assert _same(qa.quantizer.uvalues, eager)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("scale", [1.0, 300.0, 327.67, 400.0])
def test_large_values_held_as_cent_keys_give_the_same_uniques(dtype: type, scale: float) -> None:
    """Above the compiled threshold, values whose keys rint(x*100) fit int16 are held as those
    keys (the private copy shrinks), others as a copy; the uniques are the same either way."""
    from intquant._numba import dispatch

    if not dispatch.enabled():
        pytest.skip("numba is not installed or INTQUANT_PURE_NUMPY is set: no cent keys")
    values = numpy.clip(_with_both_zeros(numpy.float64, 200_000, seed=3), -1, 1) * scale
    values[:4] = [-0.0, 0.0, -0.004, 0.004]
    values = values.astype(dtype)
    stats = MinMaxQuantizationStats()
    stats.compute_quantization_stats(values)
    pending = pending_state(stats, "uvalues")
    assert pending is not None
    fits = scale * 100 <= 32767
    assert pending.held_bytes == (values.size * 2 if fits else values.nbytes)
    assert _same(stats.uvalues, calibrate(values)[2])
    assert pending.held_bytes == 0


def _threaded_range_cases() -> list[numpy.ndarray]:
    """Arrays large enough for the range reduced on threads (and keys): zero extremes of both
    signs, non-zero ones, keys beyond int16, a lone -0.0 among +0.0."""
    rng = numpy.random.default_rng(7)
    normal = rng.standard_normal(250_000)
    nonnegative = numpy.abs(normal)
    nonnegative[::5] = 0.0
    nonnegative[3::7] = -0.0
    nonpositive = -nonnegative
    zeros = numpy.zeros(250_000)
    zeros[177_777] = -0.0
    return [normal, nonnegative, nonpositive, zeros, normal * 1000, normal + 400]


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
@pytest.mark.parametrize("case", range(len(_threaded_range_cases())))
def test_threaded_range_equals_numpy_min_and_max(dtype: type, case: int) -> None:
    values = _threaded_range_cases()[case].astype(dtype)
    rmin, rmax, pending = calibrate(values, defer_uniques=True)
    expected_min, expected_max = numpy.min(values), numpy.max(values)
    for got, expected in ((rmin, expected_min), (rmax, expected_max)):
        assert type(got) is type(expected) and got == expected
        assert numpy.signbit(got) == numpy.signbit(expected)
    stats = MinMaxQuantizationStats(rmax, rmin, pending)
    assert _same(stats.uvalues, calibrate(values)[2])


@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf, -numpy.inf])
def test_threaded_range_still_refuses_non_finite_values(bad: float) -> None:
    values = _with_both_zeros(numpy.float32, 250_000)
    values[223_456] = bad
    with pytest.raises(ValueError, match="NaN" if numpy.isnan(bad) else "infinity"):
        MinMaxQuantizationStats().compute_quantization_stats(values)

"""The compiled port of numpy 1.24's AVX-512 float32 quicksort (``intquant._numba.avx512_loops``)
gives, bit for bit, what the numpy emulation (``intquant._numpy124.avx512_sort``) and numpy 1.24
itself (``tests/data/legacy_sort_cases.npz``) give; the batch entry point gives what the per-row
function gives.

Expected values come from the emulation's ``sorted_slice`` (every position where a zero lands on
small arrays, a sample of them and of other positions on large ones). The compiled select reports
which steps it took, so the tests also check that the "pivot == minimum" shortcut and the
heapsort fallback really ran where they are meant to.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from intquant._numba import dispatch as _compiled
from intquant._numpy124 import avx512_sort, introsort
from intquant.errors import InvalidTypeError, InvalidValueError

numba = pytest.importorskip("numba", reason="numba is not installed: the compiled AVX-512 sort is not tested")
from intquant._numba import avx512_loops  # noqa: E402  (imports numba)

CASES = numpy.load(Path(__file__).parent / "data" / "legacy_sort_cases.npz")
ZERO_HEAVY = numpy.array([-0.0, 0.0, 0.01, -0.01, 1.0, -1.0, numpy.inf, -numpy.inf, numpy.nan], numpy.float32)


@pytest.fixture
def compiled_everywhere(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_compiled, "MIN_SIZE", 1)
    monkeypatch.setattr(_compiled, "disabled", False)
    assert _compiled.enabled()
    yield


def _bits(value: object) -> bytes:
    return numpy.asarray(value, dtype=numpy.float32).tobytes()


def _compiled_at(values: numpy.ndarray, position: int, paths: numpy.ndarray) -> numpy.float32:
    before = values.tobytes()
    element = _compiled.avx512_element_at(values, position, paths=paths)
    assert values.tobytes() == before, "the input was modified"
    return element


def _positions(values: numpy.ndarray, rng: numpy.random.Generator, every: int = 3000) -> numpy.ndarray:
    """Every position of a small array; on a larger one the first and last positions where a zero
    lands, a sample of the others where one does and of the rest."""
    if values.size <= every:
        return numpy.arange(values.size)
    ordered = numpy.sort(numpy.where(numpy.isnan(values), numpy.float32(numpy.inf), values))
    zeros = numpy.flatnonzero(ordered == 0)
    picks = [zeros[:3], zeros[-2:], rng.integers(0, values.size, 8)]
    if zeros.size:
        picks.append(rng.choice(zeros, min(25, zeros.size), replace=False))
    return numpy.unique(numpy.concatenate(picks))


def _check(values: numpy.ndarray, positions: numpy.ndarray) -> numpy.ndarray:
    """Compare the compiled select with the emulation at ``positions``; return the step counts."""
    values = numpy.asarray(values, dtype=numpy.float32)
    paths = numpy.zeros(avx512_loops.PATH_COUNT, dtype=numpy.int64)
    if positions.size > 50:  # one emulated sort of the whole stretch is cheaper than each position
        low, high = int(positions.min()), int(positions.max()) + 1
        stretch = avx512_sort.sorted_slice(values, low, high)
        expected = [stretch[p - low] for p in positions.tolist()]
    else:
        expected = [avx512_sort.sorted_slice(values, p, p + 1)[0] for p in positions.tolist()]
    got = [_compiled_at(values, p, paths) for p in positions.tolist()]
    mismatches = [
        p for p, a, b in zip(positions.tolist(), got, expected, strict=True) if _bits(a) != _bits(b)
    ]
    assert mismatches == [], f"n={values.size}: compiled != emulation at {mismatches[:10]}"
    return paths


def _mostly_zeros(rng: numpy.random.Generator, n: int, negative_share: float, others: int) -> numpy.ndarray:
    values = numpy.where(rng.random(n) < negative_share, numpy.float32(-0.0), numpy.float32(0.0))
    spots = rng.integers(0, n, others)
    values[spots] = rng.choice(numpy.array([1.0, -1.0, 0.5, -0.25, 3.0], numpy.float32), others)
    return values.astype(numpy.float32)


@pytest.mark.parametrize("size", [1_000, 10_000, 100_000, 1_000_000])
@pytest.mark.parametrize("spread", [1.0, 0.003])
def test_rounded_normal_data_match_the_emulation(size: int, spread: float) -> None:
    rng = numpy.random.default_rng(size + int(spread * 1000))
    for _ in range(2 if size < 1_000_000 else 1):
        values = numpy.round(rng.normal(0.0, spread, size), 2).astype(numpy.float32)
        assert (values == 0).any() and numpy.signbit(values[values == 0]).any()
        paths = _check(values, _positions(values, rng))
        assert paths[avx512_loops.PARTITIONS] > 0


def test_mostly_zero_arrays_match_the_emulation() -> None:
    rng = numpy.random.default_rng(7)
    totals = numpy.zeros(avx512_loops.PATH_COUNT, dtype=numpy.int64)
    for size in (200, 1_000, 5_000, 40_000, 300_000):
        for negative_share in (0.0, 0.05, 0.5, 0.97):
            for others in (0, 3, size // 50):
                values = _mostly_zeros(rng, size, negative_share, others)
                totals += _check(values, _positions(values, rng, every=1000))
    assert totals[avx512_loops.MINIMUM_PIVOT_STEPS] > 0, "the pivot == minimum shortcut never ran"
    assert totals[avx512_loops.HEAPSORTS] > 0


def test_every_size_around_the_vector_and_network_limits() -> None:
    # Sizes 1..300: sort_16/32/64/128 (padding with +inf), and partitions whose scalar prefix
    # takes 0..15 elements; every position is checked.
    rng = numpy.random.default_rng(8)
    totals = numpy.zeros(avx512_loops.PATH_COUNT, dtype=numpy.int64)
    for size in range(1, 301):
        pools = (ZERO_HEAVY[:4], ZERO_HEAVY[:8], numpy.array([-0.0, 0.0], numpy.float32))
        for pool in pools:
            values = rng.choice(pool, size)
            totals += _check(values, numpy.arange(size))
    assert totals[avx512_loops.BITONIC_SORTS] > 0 and totals[avx512_loops.PARTITIONS] > 0


@pytest.mark.parametrize(
    ("label", "pool", "weights"),
    [
        ("zero minimum, one value above", [-0.0, 0.0, 0.01], [0.45, 0.45, 0.1]),
        (
            "zero minimum, several values above",
            [-0.0, 0.0, 0.01, 0.02, 0.5, 3.0],
            [0.4, 0.4, 0.05, 0.05, 0.05, 0.05],
        ),
        ("non-zero minimum, zeros above it", [-1.0, -0.0, 0.0, 0.5, 2.0], [0.7, 0.1, 0.1, 0.05, 0.05]),
    ],
)
def test_arrays_that_exhaust_the_depth_budget_take_the_heapsort(
    label: str, pool: list[float], weights: list[float] | None
) -> None:
    # A dominant minimum makes the pivot the range's minimum again and again: each partition
    # drops at most 15 elements, the 2*floor(log2 n) budget runs out and heapsort_ takes over.
    rng = numpy.random.default_rng(len(label))
    heapsorts = 0
    for size in (500, 3_000, 50_000):
        values = rng.choice(numpy.array(pool, numpy.float32), size, p=weights)
        paths = _check(values, _positions(values, rng, every=1000))
        heapsorts += int(paths[avx512_loops.HEAPSORTS])
        assert paths[avx512_loops.MINIMUM_PIVOT_STEPS] > 0, label
    assert heapsorts > 0, f"{label}: the heapsort fallback never ran"


def test_equal_elements_stop_after_one_partition() -> None:
    # pivot == minimum == maximum: qsort_ sorts neither side, so the signs stay where the one
    # partition put them.
    rng = numpy.random.default_rng(14)
    for size in (129, 1_000, 30_000):
        values = rng.choice(ZERO_HEAVY[:2], size)
        paths = _check(values, _positions(values, rng, every=1000))
        assert paths.tolist() == [paths[0], 0, 0, 0] and paths[0] > 0


def test_nan_and_infinities_match_the_emulation() -> None:
    # NaNs sort as +inf and the last slots read NaN; infinities are ordinary values.
    rng = numpy.random.default_rng(9)
    for size in (5, 40, 129, 1_000, 20_000):
        for share in (0.01, 0.3):
            values = numpy.round(rng.normal(0.0, 0.01, size), 2).astype(numpy.float32)
            values[rng.random(size) < share] = numpy.nan
            values[rng.random(size) < share / 2] = numpy.inf
            values[rng.random(size) < share / 2] = -numpy.inf
            _check(values, numpy.unique(numpy.concatenate([_positions(values, rng), [size - 1]])))
    all_nan = numpy.full(300, numpy.nan, numpy.float32)
    assert numpy.isnan(_compiled.avx512_element_at(all_nan, 0))


def test_the_minimum_pivot_shortcut_is_the_partition() -> None:
    # When the pivot is the range's minimum, the 48-element shortcut leaves the range exactly as
    # the full partition does (blocks [last, 0, 2, ..., last - 1, 1] after the scalar steps).
    rng = numpy.random.default_rng(10)
    ws = avx512_loops.workspace()
    for size in range(129, 129 + 80):
        for pool in (ZERO_HEAVY[:2], ZERO_HEAVY[:3], numpy.array([2.0, 2.0, 5.0, 9.0], numpy.float32)):
            values = rng.choice(pool, size)
            left = int(rng.integers(0, 5))
            padded = numpy.concatenate(
                [numpy.full(left, 7.0, numpy.float32), values, numpy.full(3, 7.0, numpy.float32)]
            )
            pivot = numpy.float32(values.min())
            full, short = padded.copy(), padded.copy()
            index, smallest, biggest = avx512_loops.partition_range(full, left, left + size, pivot, ws)
            assert smallest == pivot and biggest == values.max()
            assert avx512_loops.minimum_pivot_step(short, left, left + size, pivot, ws) == index
            assert full.tobytes() == short.tobytes(), size


def test_real_numpy_1_24_results(compiled_everywhere: None) -> None:
    bounds = numpy.cumsum(CASES["float32_sizes"])[:-1]
    arrays = numpy.split(CASES["float32_values"], bounds)
    assert len(arrays) > 100
    paths = numpy.zeros(avx512_loops.PATH_COUNT, dtype=numpy.int64)
    for column in ("first_zero", "random_position"):
        positions = CASES[f"float32_{column}"].tolist()
        expected = [_bits(value) for value in CASES[f"float32_at_{column}"]]
        got = [_bits(_compiled_at(values, p, paths)) for values, p in zip(arrays, positions, strict=True)]
        assert got == expected, column
        routed = [
            _bits(introsort.element_at_sorted_position(values, p))
            for values, p in zip(arrays, positions, strict=True)
        ]
        assert routed == expected, column
    assert paths[avx512_loops.HEAPSORTS] > 0 and paths[avx512_loops.BITONIC_SORTS] > 0


def test_element_at_sorted_position_takes_the_compiled_select(
    compiled_everywhere: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    select = _compiled.avx512_element_at

    def spy(values: numpy.ndarray, position: int, scratch: bool = False) -> numpy.float32:
        calls.append(position)
        return select(values, position, scratch)

    monkeypatch.setattr(_compiled, "avx512_element_at", spy)
    values = _mostly_zeros(numpy.random.default_rng(11), 2_000, 0.5, 20)
    negatives = int(numpy.count_nonzero(values < 0))
    element = introsort.element_at_sorted_position(values, negatives)
    assert calls == [negatives]
    assert _bits(element) == _bits(avx512_sort.element_at_sorted_position(values, negatives))
    scratch = values.copy()
    assert _bits(introsort.element_at_sorted_position(scratch, negatives, scratch=True)) == _bits(element)
    monkeypatch.setattr(_compiled, "disabled", True)  # the pure path stays the emulation
    assert _bits(introsort.element_at_sorted_position(values, negatives)) == _bits(element)
    assert calls == [negatives, negatives]


def test_the_compiled_select_checks_its_arguments() -> None:
    values = numpy.zeros(10, numpy.float32)
    with pytest.raises(IndexError):
        _compiled.avx512_element_at(values, 10)
    assert _bits(_compiled.avx512_element_at(numpy.array([1, -0.0, 2], numpy.float32), -3)) == _bits(-0.0)
    with pytest.raises(TypeError):
        _compiled.avx512_element_at(values.astype(numpy.float64), 0)


@settings(max_examples=150)
@given(
    values=hnp.arrays(numpy.float32, st.integers(1, 400), elements=st.sampled_from(ZERO_HEAVY.tolist())),
)
def test_generated_small_arrays_match_at_every_position(values: numpy.ndarray) -> None:
    _check(values, numpy.arange(values.size))


@settings(max_examples=60)
@given(
    size=st.integers(129, 20_000),
    negative_share=st.floats(0.0, 1.0),
    others=st.integers(0, 300),
    seed=st.integers(0, 2**32 - 1),
)
def test_generated_zero_heavy_arrays_match_where_zeros_land(
    size: int, negative_share: float, others: int, seed: int
) -> None:
    rng = numpy.random.default_rng(seed)
    values = _mostly_zeros(rng, size, negative_share, others)
    _check(values, _positions(values, rng, every=500))


def _row_batches(dtype: str) -> Iterator[tuple[numpy.ndarray, numpy.ndarray]]:
    rng = numpy.random.default_rng(12)
    for count, width in ((1, 1), (7, 16), (40, 129), (25, 700), (3, 5_000)):
        rows = numpy.round(rng.normal(0.0, rng.choice([0.003, 0.01, 1.0]), (count, width)), 2)
        signed_zeros = numpy.where(rng.random(rows.shape) < 0.5, -0.0, 0.0)
        rows[::2] = numpy.where(rng.random(rows.shape) < 0.6, signed_zeros, rows)[::2]  # mostly zeros
        rows = rows.astype(dtype)
        negatives = numpy.count_nonzero(rows < 0, axis=1)
        yield rows, negatives  # where the first zero lands
        yield rows, rng.integers(0, width, count)
    strided = numpy.round(rng.normal(0.0, 0.01, (30, 400)), 2).astype(dtype)[::2, ::3]
    yield strided, numpy.count_nonzero(strided < 0, axis=1)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_batch_equals_the_per_row_function(monkeypatch: pytest.MonkeyPatch, dtype: str) -> None:
    monkeypatch.setattr(_compiled, "MIN_SIZE", 1)
    for rows, positions in _row_batches(dtype):
        before = rows.copy()
        monkeypatch.setattr(_compiled, "disabled", True)
        per_row = [
            introsort.element_at_sorted_position(row, int(p)) for row, p in zip(rows, positions, strict=True)
        ]
        pure = introsort.elements_at_sorted_positions(rows, positions)
        monkeypatch.setattr(_compiled, "disabled", False)
        compiled = introsort.elements_at_sorted_positions(rows, positions)
        expected = numpy.array(per_row, dtype=dtype)
        assert compiled.dtype == pure.dtype == numpy.dtype(dtype) and compiled.shape == (rows.shape[0],)
        assert compiled.tobytes() == expected.tobytes()
        assert pure.tobytes() == expected.tobytes()
        assert rows.tobytes() == before.tobytes()


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_batch_of_real_numpy_1_24_arrays(compiled_everywhere: None, dtype: str) -> None:
    bounds = numpy.cumsum(CASES[f"{dtype}_sizes"])[:-1]
    arrays = numpy.split(CASES[f"{dtype}_values"], bounds)
    for column in ("first_zero", "random_position"):
        expected = CASES[f"{dtype}_at_{column}"]
        positions = CASES[f"{dtype}_{column}"]
        got = [
            introsort.elements_at_sorted_positions(values[None, :], positions[k : k + 1])
            for k, values in enumerate(arrays)
        ]
        assert numpy.concatenate(got).tobytes() == expected.astype(dtype).tobytes(), column


def test_batch_of_many_rows_is_cut_into_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_compiled, "THREADS", 3)
    monkeypatch.setattr(_compiled, "PARALLEL_MIN_SIZE", 1_000)
    monkeypatch.setattr(_compiled, "disabled", False)
    rows = _mostly_zeros(numpy.random.default_rng(13), 200 * 64, 0.5, 300).reshape(200, 64)
    positions = numpy.count_nonzero(rows < 0, axis=1)
    expected = [
        avx512_sort.element_at_sorted_position(row, int(p)) for row, p in zip(rows, positions, strict=True)
    ]
    got = _compiled.sorted_rows_elements_at(rows, positions)
    assert got.tobytes() == numpy.array(expected, numpy.float32).tobytes()


def test_batch_checks_its_arguments() -> None:
    rows = numpy.zeros((3, 4), numpy.float32)
    with pytest.raises(InvalidTypeError, match="2-d"):
        introsort.elements_at_sorted_positions(rows[0], numpy.zeros(1, numpy.int64))
    with pytest.raises(InvalidTypeError, match="2-d"):
        introsort.elements_at_sorted_positions(rows.astype(numpy.int32), numpy.zeros(3, numpy.int64))
    with pytest.raises(InvalidTypeError, match="integers"):
        introsort.elements_at_sorted_positions(rows, numpy.zeros(3))
    with pytest.raises(InvalidValueError, match="one position per row"):
        introsort.elements_at_sorted_positions(rows, numpy.zeros(2, numpy.int64))
    with pytest.raises(InvalidValueError, match=r"\[0, 4\)"):
        introsort.elements_at_sorted_positions(rows, numpy.array([0, 4, 1]))
    with pytest.raises(InvalidValueError, match="NaN"):
        introsort.elements_at_sorted_positions(numpy.full((3, 4), numpy.nan), numpy.zeros(3, numpy.int64))
    assert introsort.elements_at_sorted_positions(rows[:0], numpy.zeros(0, numpy.int64)).shape == (0,)

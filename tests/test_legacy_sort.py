"""The signed zero numpy 1.24's unique keeps, reproduced on any numpy (tests/data from numpy 1.24)."""

from __future__ import annotations

from pathlib import Path

import numpy
import pytest

from intquant._numpy124.avx512_sort import element_at_sorted_position as avx512_element_at
from intquant._numpy124.introsort import _heapsorted, _introsort_element_at, reference_unique

CASES = numpy.load(Path(__file__).parent / "data" / "legacy_sort_cases.npz")


def _arrays(dtype: str) -> list[numpy.ndarray]:
    bounds = numpy.cumsum(CASES[f"{dtype}_sizes"])[:-1]
    return numpy.split(CASES[f"{dtype}_values"], bounds)


def _bits(value: numpy.generic) -> bytes:
    return numpy.asarray(value).tobytes()


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_element_at_sorted_position_matches_numpy_1_24(dtype: str) -> None:
    element_at = avx512_element_at if dtype == "float32" else _introsort_element_at
    arrays = _arrays(dtype)
    assert len(arrays) > 100
    for column in ("first_zero", "random_position"):
        expected = CASES[f"{dtype}_at_{column}"]
        positions = CASES[f"{dtype}_{column}"]
        got = [_bits(element_at(values, int(p))) for values, p in zip(arrays, positions, strict=True)]
        assert got == [_bits(value) for value in expected], column


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_reference_unique_keeps_the_zero_numpy_1_24_keeps(dtype: str) -> None:
    for values, expected in zip(_arrays(dtype), CASES[f"{dtype}_at_first_zero"], strict=True):
        uniques = reference_unique(values)
        zero = uniques[uniques == 0]
        assert zero.size == 1
        assert numpy.signbit(zero[0]) == numpy.signbit(expected)


def test_emulation_does_not_touch_its_input() -> None:
    values = _arrays("float64")[-1]
    before = values.copy()
    _introsort_element_at(values, 3)
    avx512_element_at(values.astype(numpy.float32), 3)
    assert numpy.array_equal(values, before) and (numpy.signbit(values) == numpy.signbit(before)).all()


def test_unique_without_mixed_zeros_is_numpys() -> None:
    values = numpy.array([3.0, -0.0, 1.0, -0.0, 1.0])
    assert reference_unique(values).tolist() == [-0.0, 1.0, 3.0]
    assert numpy.signbit(reference_unique(values)[0])
    assert reference_unique(numpy.array([2, 1, 2])).tolist() == [1, 2]


def test_small_arrays_are_insertion_sorted_so_the_first_zero_wins() -> None:
    # numpy 1.24 sorts up to 16 float64 elements by (stable) insertion sort.
    assert numpy.signbit(reference_unique(numpy.array([0.5, -0.0, 0.0, -1.0]))[1])
    assert not numpy.signbit(reference_unique(numpy.array([0.5, 0.0, -0.0, -1.0]))[1])


def test_heapsort_fallback_matches_numpy_1_24() -> None:
    bounds = numpy.cumsum(CASES["heapsort_sizes"])[:-1]
    inputs = numpy.split(CASES["heapsort_values"], bounds)
    expected = numpy.split(CASES["heapsort_sorted"], bounds)
    for values, ordered in zip(inputs, expected, strict=True):
        assert numpy.asarray(_heapsorted(values)).tobytes() == ordered.tobytes()

"""Per-axis and per-block statistics and parameters computed over the block grid at once
(``intquant._core.blockwise``) equal the per-block loops they replace, exactly: values, dtypes,
signs of zeros, the offset's type, and the errors (and warnings, which the test configuration
turns into errors) raised for the same inputs.

The oracles below are the loops intquant ran before: each block through the per-tensor formulas.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import intquant
from intquant._core.blockwise import block_ranges, block_uniques, choose_block_parameters
from intquant._core.formulas import (
    STABILITY_CONST,
    adjust_parameters_to_power_of_two,
    block_statistics,
    choose_uniform_parameters,
    minmax_statistics,
    range_including_zero,
)
from intquant._core.granularity import PerAxis, grouped
from intquant._numpy124.promotion import as_numpy_operand
from intquant.errors import InvalidValueError
from intquant.parameters import compute_parameters

FLOAT_DTYPES = tuple(numpy.dtype(name) for name in ("float16", "float32", "float64"))
INTEGER_DTYPES = tuple(
    numpy.dtype(name) for name in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
)
DTYPES = FLOAT_DTYPES + INTEGER_DTYPES

# is_signed, is_symmetric, is_qat, is_precomputed_qat: every combination the options accept
FLAGS = (
    (False, False, False, False),
    (True, False, False, False),
    (True, True, False, False),
    (False, False, True, False),
    (True, False, True, False),
    (False, False, True, True),
    (True, False, True, True),
)
PRESET_SCALES = (None, 0.5, numpy.float32(0.1), 3, -1.0, 0.0, 1e-300, float("inf"), numpy.float16(2.0))


# -- the oracles: the per-block loops


def loop_statistics(values: numpy.ndarray, extent: tuple[int, ...]) -> tuple[Any, Any, list[Any]]:
    rows = grouped(values, extent)
    grid = rows.shape[:-1]
    statistics = [minmax_statistics(row) for row in rows.reshape(-1, rows.shape[-1])]
    rmin = numpy.array([low for low, _, _ in statistics], dtype=values.dtype).reshape(grid)
    rmax = numpy.array([high for _, high, _ in statistics], dtype=values.dtype).reshape(grid)
    return rmin, rmax, [uvalues for _, _, uvalues in statistics]


def loop_parameters(options: Any, stats: Any, scale: Any = None) -> tuple[Any, Any, Any]:
    """``compute_parameters`` as it was: every block through ``choose``, then gathered."""
    n_bits = options.n_bits
    rmin, rmax, uvalues = stats.rmin, stats.rmax, stats.uvalues

    def choose(low: Any, high: Any, block_uvalues: Any) -> tuple[Any, Any, int]:
        if options.zero_in_range:
            low, high = range_including_zero(low, high)
        result = choose_uniform_parameters(
            low,
            high,
            n_bits,
            is_signed=options.is_signed,
            is_symmetric=options.is_symmetric,
            is_qat=options.is_qat,
            is_precomputed_qat=options.is_precomputed_qat,
            uvalues=None if block_uvalues is None else numpy.asarray(block_uvalues),
            scale=scale if numpy.ndim(scale) == 0 else None,
        )
        if not options.power_of_two_scale:
            return result
        single_value = numpy.float64(as_numpy_operand(high) - as_numpy_operand(low)) < STABILITY_CONST
        recompute = not (single_value or options.is_symmetric or options.is_qat)
        power, zero_point = adjust_parameters_to_power_of_two(
            result[0], result[1], result[2], low, recompute_zero_point=recompute
        )
        return power, zero_point, result[2]

    lows, highs = rmin.reshape(-1), rmax.reshape(-1)
    blocks = [
        choose(lows[index], highs[index], None if uvalues is None else uvalues[index])
        for index in range(lows.size)
    ]
    scale_grid = numpy.array([block[0] for block in blocks], dtype=numpy.float64).reshape(rmin.shape)
    zero_point = numpy.array([block[1] for block in blocks], dtype=numpy.int64).reshape(rmin.shape)
    offsets = {block[2] for block in blocks}
    offset = (
        offsets.pop()
        if len(offsets) == 1
        else numpy.array([b[2] for b in blocks], dtype=numpy.int64).reshape(rmin.shape)
    )
    return scale_grid, zero_point, offset


# -- comparisons


def assert_identical(actual: Any, expected: Any) -> None:
    """Same type, dtype, shape, values and signs of zeros."""
    assert type(actual) is type(expected), (type(actual), type(expected))
    if isinstance(expected, (numpy.ndarray, numpy.generic)):
        assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
        assert numpy.shape(actual) == numpy.shape(expected)
        assert numpy.array_equal(actual, expected), (actual, expected)
        if expected.dtype.kind == "f":
            assert numpy.array_equal(numpy.signbit(actual), numpy.signbit(expected)), (actual, expected)
    else:
        assert actual == expected, (actual, expected)


def outcome(function: Any, *arguments: Any) -> tuple[str, Any]:
    """``("value", result)`` or ``("error", (type, message))``."""
    try:
        return "value", function(*arguments)
    except (ValueError, TypeError, ArithmeticError, IndexError, RuntimeWarning) as error:
        return "error", (type(error), str(error))


def assert_same_parameters(options: Any, stats: Any, scale: Any = None) -> None:
    kind, expected = outcome(loop_parameters, options, stats, scale)
    actual_kind, actual = outcome(compute_parameters, options, stats, scale)
    assert actual_kind == kind, (actual, expected)
    if kind == "error":
        assert actual == expected
        return
    for got, wanted in zip(actual, expected, strict=True):
        assert_identical(got, wanted)


def assert_same_statistics(values: numpy.ndarray, extent: tuple[int, ...]) -> None:
    kind, expected = outcome(loop_statistics, values, extent)
    actual_kind, actual = outcome(block_statistics, values, extent)
    assert actual_kind == kind, (actual, expected)
    if kind == "error":  # the new message names the block instead of the block's shape
        assert actual[0] is expected[0] is InvalidValueError
        return
    assert_identical(actual[0], expected[0])
    assert_identical(actual[1], expected[1])
    assert len(actual[2]) == len(expected[2])
    for got, wanted in zip(actual[2], expected[2], strict=True):
        assert_identical(got, wanted)


def make_options(n_bits: int, flags: tuple[bool, bool, bool, bool], zero_in_range: bool, power: bool) -> Any:
    is_signed, is_symmetric, is_qat, is_precomputed_qat = flags
    return SimpleNamespace(
        n_bits=n_bits,
        is_signed=is_signed,
        is_symmetric=is_symmetric,
        is_qat=is_qat,
        is_precomputed_qat=is_precomputed_qat,
        zero_in_range=zero_in_range,
        power_of_two_scale=power,
    )


# -- strategies


def _specials(dtype: numpy.dtype[Any]) -> list[Any]:
    if dtype.kind == "f":
        big = float(numpy.finfo(dtype).max)
        return [0.0, -0.0, 0.001, -0.001, 0.004, -0.004, 0.005, -0.005, 1e-7, -1e-7, 0.25, -0.75,
                1.5, 3.0, 100.0, -100.0, big, -big, big / 2, -big / 3, 0.5e-6]  # fmt: skip
    info = numpy.iinfo(dtype)
    return [0, 1, -1, 2, 100, -100, 127, -128, 255, 256, 3000, int(info.min), int(info.max),
            int(info.min) + 1, int(info.max) - 1, int(info.max) // 2]  # fmt: skip


def _in_range(dtype: numpy.dtype[Any], value: Any) -> bool:
    if dtype.kind == "f":
        return True
    info = numpy.iinfo(dtype)
    return int(info.min) <= value <= int(info.max)


@st.composite
def palettes(draw: st.DrawFn, dtype: numpy.dtype[Any]) -> list[Any]:
    """A few values of ``dtype``: blocks drawn from them repeat values, hold single values, mix
    signed zeros and span huge ranges."""
    specials = [value for value in _specials(dtype) if _in_range(dtype, value)]
    if dtype.kind == "f":
        free = st.floats(allow_nan=False, allow_infinity=False, width=8 * dtype.itemsize)
        free = st.one_of(free, st.floats(-10, 10, width=8 * dtype.itemsize))
    else:
        info = numpy.iinfo(dtype)
        free = st.one_of(st.integers(int(info.min), int(info.max)), st.integers(-300, 300).filter(
            lambda value: _in_range(dtype, value)))  # fmt: skip
    values = draw(st.lists(st.one_of(st.sampled_from(specials), free), min_size=1, max_size=6))
    return [
        numpy.array(value).astype(dtype)[()] if dtype.kind == "f" else dtype.type(value) for value in values
    ]


@st.composite
def calibration_cases(draw: st.DrawFn, dtypes: tuple[numpy.dtype[Any], ...] = DTYPES) -> tuple[Any, Any]:
    """``(values, extent)``: a 1-3-d array and a block extent that tiles it (per axis or block)."""
    dtype = draw(st.sampled_from(dtypes))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5))
    palette = draw(palettes(dtype))
    values = draw(hnp.arrays(dtype, shape, elements=st.sampled_from(palette)))
    if draw(st.booleans()):
        axis = draw(st.integers(-len(shape), len(shape) - 1))
        extent = PerAxis(axis).extent(shape)
    else:
        extent = tuple(
            draw(st.sampled_from([d for d in range(1, size + 1) if size % d == 0])) for size in shape
        )
    return values, extent


option_draws = st.tuples(
    st.sampled_from((1, 2, 3, 8, 16, 32)),
    st.sampled_from(FLAGS),
    st.booleans(),
    st.booleans(),
)


# -- statistics


@given(calibration_cases())
def test_statistics_equal_the_per_block_loop(case: tuple[Any, Any]) -> None:
    assert_same_statistics(*case)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_zero_signs_of_uniques(dtype: numpy.dtype[Any]) -> None:
    """Blocks holding -0.0 and 0.0 (as such, or once rounded to cents) keep the zero numpy 1.24's
    sort leaves first, whichever it is; blocks with one kind of zero keep that one."""
    rng = numpy.random.default_rng(5)
    zeros = numpy.array([0.0, -0.0, 0.001, -0.001, 0.004, -0.004, 1.0, -1.0, 2.5], dtype=dtype)
    values = rng.choice(zeros, size=(40, 37)).astype(dtype)
    values[0] = -0.0
    values[1] = 0.0
    values[2, :] = 0.001
    values[3, :] = -0.004
    assert_same_statistics(values, (1, 37))
    assert_same_statistics(values, (8, 1))
    signs = {
        bool(numpy.signbit(u[u == 0][0])) for u in block_statistics(values, (1, 37))[2] if (u == 0).any()
    }
    assert signs == {False, True}  # both signs occur: the test can tell them apart


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_zero_extremes(dtype: numpy.dtype[Any]) -> None:
    """rmin / rmax of 0 from a block holding both zeros: the zero numpy.min / max gives."""
    values = numpy.array([[0.0, -0.0, 1.0, 0.0], [-0.0, 0.0, -0.0, -1.0], [-0.0] * 4, [0.0] * 4], dtype=dtype)
    assert_same_statistics(values, (1, 4))
    assert_same_statistics(values.T.copy(), (4, 1))
    rng = numpy.random.default_rng(7)
    for length in (2, 3, 7, 16, 33, 130):
        for other in (1.0, -1.0):
            mixed = rng.choice(numpy.array([0.0, -0.0, other], dtype=dtype), size=(300, length)).astype(dtype)
            rmin, rmax = block_ranges(mixed)
            for got, reduce in ((rmin, numpy.min), (rmax, numpy.max)):
                expected = numpy.array([reduce(row) for row in mixed], dtype=dtype)
                assert numpy.array_equal(numpy.signbit(got), numpy.signbit(expected))


@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf, -numpy.inf])
def test_non_finite_values_name_the_first_bad_block(bad: float) -> None:
    values = numpy.zeros((4, 6), dtype=numpy.float32)
    values[2, 5] = bad
    values[3, 0] = numpy.nan
    with pytest.raises(InvalidValueError, match=r"block \(2, 0\) of the block grid \(4, 1\)"):
        block_ranges(grouped(values, (1, 6)))
    assert_same_statistics(values, (1, 6))
    assert_same_statistics(values, (2, 3))


def test_integer_uniques_keep_their_dtype() -> None:
    values = numpy.array([[3, 1, 3, 1], [7, 7, 7, 7]], dtype=">i4")  # big-endian, as loaded
    assert_same_statistics(values, (1, 4))
    assert block_uniques(grouped(values, (1, 4)))[0].dtype == numpy.dtype(">i4")


# -- parameters


@given(calibration_cases(), option_draws, st.sampled_from(PRESET_SCALES))
def test_parameters_from_calibration_equal_the_per_block_loop(
    case: tuple[Any, Any], drawn: tuple[Any, ...], scale: Any
) -> None:
    values, extent = case
    kind, statistics = outcome(loop_statistics, values, extent)
    if kind == "error":
        return
    stats = SimpleNamespace(rmin=statistics[0], rmax=statistics[1], uvalues=statistics[2])
    assert_same_parameters(make_options(*drawn), stats, scale)


@st.composite
def given_ranges(draw: st.DrawFn) -> Any:
    """Statistics set by hand: arrays ``rmin <= rmax`` of one dtype, with their ``uvalues``."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=6))
    palette = draw(palettes(dtype))
    first = draw(hnp.arrays(dtype, shape, elements=st.sampled_from(palette)))
    second = draw(hnp.arrays(dtype, shape, elements=st.sampled_from(palette)))
    rmin, rmax = numpy.minimum(first, second), numpy.maximum(first, second)
    uvalues = [
        numpy.unique(numpy.array([low, high]))
        for low, high in zip(rmin.reshape(-1), rmax.reshape(-1), strict=True)
    ]
    return SimpleNamespace(rmin=rmin, rmax=rmax, uvalues=uvalues)


@given(given_ranges(), option_draws, st.sampled_from(PRESET_SCALES))
def test_parameters_of_given_ranges_equal_the_per_block_loop(
    stats: Any, drawn: tuple[Any, ...], scale: Any
) -> None:
    assert_same_parameters(make_options(*drawn), stats, scale)


def _hand_picked_statistics() -> list[Any]:
    rng = numpy.random.default_rng(11)
    cases = []
    normal = rng.standard_normal((6, 10)).astype(numpy.float32)
    normal[1] = 0.25  # a single value
    normal[2] = 3e-7  # a single value near zero
    normal[3, :5] = -0.0  # signed zeros
    cases.append(loop_statistics(normal, (1, 10)))
    grid = numpy.arange(-8, 8, dtype=numpy.float64).reshape(4, 4) * 0.25  # uniform grids (QAT)
    grid[3] = [0.0, 0.1, 0.3, 0.37]
    cases.append(loop_statistics(grid, (1, 4)))
    wide = numpy.array([[-6e4, 6e4], [-3e4, 3e4], [5.0, 5.0]], dtype=numpy.float16)  # overflowing spread
    cases.append(loop_statistics(wide, (1, 2)))
    huge = numpy.array([[-1e308, 1e308], [1e300, 1.7e308], [-1e307, 1e308], [1.0, 2.0]])
    cases.append(loop_statistics(huge, (1, 2)))
    int8 = numpy.array([[-128, 127], [-128, -128], [0, 0], [5, 9], [-100, 100]], dtype=numpy.int8)
    cases.append(loop_statistics(int8, (1, 2)))
    int64 = numpy.iinfo(numpy.int64)
    extremes = numpy.array([[int64.min, int64.max], [int64.min, int64.min], [int64.max, int64.max], [-1, 1]])
    cases.append(loop_statistics(extremes, (1, 2)))
    uint64 = numpy.array([[0, 2**64 - 1], [2**63, 2**64 - 1], [7, 7]], dtype=numpy.uint64)
    cases.append(loop_statistics(uint64, (1, 2)))
    return [SimpleNamespace(rmin=rmin, rmax=rmax, uvalues=uvalues) for rmin, rmax, uvalues in cases]


HAND_PICKED = _hand_picked_statistics()


@pytest.mark.parametrize("case", range(len(HAND_PICKED)))
@pytest.mark.parametrize("flags", FLAGS)
def test_hand_picked_parameters_equal_the_per_block_loop(case: int, flags: tuple[bool, ...]) -> None:
    for n_bits, zero_in_range, power, scale in itertools.product(
        (1, 2, 8, 32), (False, True), (False, True), PRESET_SCALES
    ):
        assert_same_parameters(make_options(n_bits, flags, zero_in_range, power), HAND_PICKED[case], scale)


def test_qat_uniform_grids_take_their_smallest_step() -> None:
    """QAT blocks whose uvalues lie on a uniform grid (the per-block path) next to blocks that do
    not (the grid path); the test can fail: the two scales differ."""
    stats = HAND_PICKED[1]
    options = make_options(8, FLAGS[3], False, False)
    scale, _, _ = compute_parameters(options, stats)
    assert scale[0, 0] == 0.25  # the grid's step, not (rmax - rmin) / 255
    assert scale[3, 0] == numpy.float64(0.37) / 255
    assert_same_parameters(options, stats)


def test_errors_come_from_the_first_refused_block() -> None:
    """1-bit symmetric quantization is refused at the first block of several values; a range too
    wide for its dtype at its own block."""
    stats = HAND_PICKED[2]  # float16: blocks 0 and 1 overflow, block 2 is a single value
    with pytest.raises(InvalidValueError, match="would be inf"):
        compute_parameters(make_options(8, FLAGS[0], False, False), stats)
    assert_same_parameters(make_options(8, FLAGS[0], False, False), stats)
    single = SimpleNamespace(rmin=stats.rmin[2:], rmax=stats.rmax[2:], uvalues=None)
    assert compute_parameters(make_options(1, FLAGS[2], False, False), single)[2] == 0  # no error
    assert_same_parameters(make_options(1, FLAGS[2], False, False), HAND_PICKED[0])


def test_mixed_and_unusual_dtypes_go_block_by_block() -> None:
    mixed = SimpleNamespace(
        rmin=numpy.array([-1.0, 0.5], dtype=numpy.float32), rmax=numpy.array([2.0, 0.5]), uvalues=None
    )
    flags = SimpleNamespace(rmin=numpy.array([False, True]), rmax=numpy.array([True, True]), uvalues=None)
    for options in (make_options(8, FLAGS[1], False, True), make_options(4, FLAGS[2], True, False)):
        assert_same_parameters(options, mixed)
        assert_same_parameters(options, flags)


def test_offset_is_an_array_when_blocks_differ() -> None:
    stats = HAND_PICKED[0]  # block 1 is a single value: offset 0 there
    _, _, offset = compute_parameters(make_options(8, FLAGS[1], False, False), stats)
    assert isinstance(offset, numpy.ndarray) and offset.dtype == numpy.int64
    assert offset[1, 0] == 0 and offset[0, 0] == 128
    assert_same_parameters(make_options(8, FLAGS[1], False, False), stats)
    _, _, offset = compute_parameters(make_options(8, FLAGS[0], False, False), stats)
    assert type(offset) is int


def test_uvalues_are_read_only_when_needed() -> None:
    class Stats:
        rmin = HAND_PICKED[0].rmin
        rmax = HAND_PICKED[0].rmax

        @property
        def uvalues(self) -> Any:
            raise AssertionError("uvalues read")

    for flags in FLAGS:
        options = make_options(8, flags, False, False)
        if flags[2] and not flags[3]:
            with pytest.raises(AssertionError, match="uvalues read"):
                compute_parameters(options, Stats())
        else:
            compute_parameters(options, Stats())


def test_choose_block_parameters_hands_blocks_to_the_per_tensor_formula() -> None:
    """Only QAT grid candidates reach ``alone`` when nothing is refused."""
    seen: list[Any] = []
    stats = HAND_PICKED[1]

    def alone(low: Any, high: Any, uvalues: Any) -> tuple[Any, Any, Any]:
        seen.append((low, high))
        return numpy.float64(0.25), 0, 0

    choose_block_parameters(
        stats.rmin, stats.rmax, 8, is_signed=False, is_symmetric=False, is_qat=True,
        is_precomputed_qat=False, uvalues=stats.uvalues, scale=None, zero_in_range=False,
        power_of_two_scale=False, single_value_width=STABILITY_CONST, alone=alone,
    )  # fmt: skip
    assert len(seen) == 4  # every block holds at most 2**8 values
    seen.clear()
    choose_block_parameters(
        stats.rmin, stats.rmax, 1, is_signed=False, is_symmetric=False, is_qat=True,
        is_precomputed_qat=False, uvalues=stats.uvalues, scale=None, zero_in_range=False,
        power_of_two_scale=False, single_value_width=STABILITY_CONST, alone=alone,
    )  # fmt: skip
    assert seen == []  # 4 values are more than 2**1: not a grid
    wide = numpy.array([-1e308, 0.0, 1e308])  # its spread overflows, its grid step does not
    many = numpy.linspace(0.0, 3.0, 300)  # more values than 2**8: not a candidate
    choose_block_parameters(
        numpy.array([-1e308, 0.0, 0.0]), numpy.array([1e308, 1.0, 3.0]), 8, is_signed=False,
        is_symmetric=False, is_qat=True, is_precomputed_qat=False,
        uvalues=[wide, numpy.array([0.0, 1.0]), many], scale=None, zero_in_range=False,
        power_of_two_scale=False, single_value_width=STABILITY_CONST, alone=alone,
    )  # fmt: skip
    assert len(seen) == 2  # the first two blocks are candidates; the first is not taken for refused
    seen.clear()
    choose_block_parameters(
        stats.rmin, stats.rmax, 8, is_signed=False, is_symmetric=False, is_qat=False,
        is_precomputed_qat=False, uvalues=stats.uvalues, scale=None, zero_in_range=False,
        power_of_two_scale=False, single_value_width=STABILITY_CONST, alone=alone,
    )  # fmt: skip
    assert seen == []


@pytest.mark.parametrize("dtype", DTYPES)
def test_quantized_array_per_axis_matches_per_block_loop(dtype: numpy.dtype[Any]) -> None:
    """End to end: calibration per axis and per block gives the loop's statistics and parameters."""
    rng = numpy.random.default_rng(3)
    if dtype.kind == "f":
        values = (rng.standard_normal((6, 8)) * 3).astype(dtype)
    else:
        info = numpy.iinfo(dtype)
        values = rng.integers(max(int(info.min), -1000), min(int(info.max), 1000), (6, 8)).astype(dtype)
    for granularity, extent in (
        ({"axis": 0}, (1, 8)),
        ({"axis": 1}, (6, 1)),
        ({"block_size": (2, 4)}, (2, 4)),
    ):
        stats = intquant.MinMaxQuantizationStats()
        stats.compute_quantization_stats(values, **granularity)
        rmin, rmax, uvalues = loop_statistics(values, extent)
        assert_identical(stats.rmin, rmin)
        assert_identical(stats.rmax, rmax)
        for got, wanted in zip(stats.uvalues, uvalues, strict=True):
            assert_identical(got, wanted)
        for flags in FLAGS:
            options = make_options(8, flags, False, False)
            assert_same_parameters(options, SimpleNamespace(rmin=rmin, rmax=rmax, uvalues=uvalues))

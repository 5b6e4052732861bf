"""Every calibration method per tensor, per axis and per block: each block's range is exactly the
one the method gives the block calibrated alone, the granularity is never silently ignored, and
streaming, merging and serialization work at every granularity."""

from __future__ import annotations

import json
from typing import Any

import numpy
import pytest

import intquant
from intquant import MinMaxQuantizationStats, QuantizationOptions, QuantizedArray, UniformQuantizer
from intquant._core.granularity import grouped
from intquant.calibration import EntropyStats, MovingAverageMinMaxStats, MSEStats, PercentileStats
from intquant.errors import InvalidOptionsError, InvalidTypeError, InvalidValueError, SerializationError

CLASSES = (PercentileStats, MSEStats, EntropyStats, MovingAverageMinMaxStats)
OPTIONS = (
    QuantizationOptions(3),
    QuantizationOptions(4, is_signed=True, is_symmetric=True),
    QuantizationOptions(8, is_signed=True),
)


def _make(cls: type, **granularity: Any) -> Any:
    """A small, fast configuration of ``cls``."""
    if cls is MovingAverageMinMaxStats:
        return cls(0.25, **granularity)
    if cls is MSEStats:
        return cls(bins=64, candidates=20, **granularity)
    if cls is EntropyStats:
        return cls(bins=64, candidates=16, **granularity)
    return cls(99.0, bins=64, **granularity)


def _with(options: QuantizationOptions, **granularity: Any) -> QuantizationOptions:
    """``options`` with an axis or block size."""
    copied = QuantizationOptions(options.n_bits, options.is_signed, options.is_symmetric, **granularity)
    copied.is_narrow = options.is_narrow
    return copied


def _matrix(seed: int = 0) -> numpy.ndarray:
    """Rows of very different shapes: scales, signs, a constant row, a row of zeros and a ReLU row."""
    rng = numpy.random.default_rng(seed)
    rows = [
        rng.normal(size=48) * 0.01,
        rng.standard_t(2, size=48) * 5,
        rng.uniform(2.0, 3.0, size=48),
        -rng.lognormal(size=48),
        numpy.full(48, 1.5),
        numpy.zeros(48),
        numpy.maximum(rng.normal(size=48), 0.0),
        numpy.append(rng.normal(size=47), 60.0),
    ]
    return numpy.stack(rows)


def _alone(cls: type, batches: list[numpy.ndarray], options: QuantizationOptions) -> tuple[Any, Any]:
    stats = _make(cls)
    for batch in batches:
        stats.update(batch)
    return stats.range_for(options)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_per_axis_ranges_are_each_channels_own(cls: type, axis: int) -> None:
    values = _matrix()
    batches = [values[:, :20], values[:, 20:30] * 1.5, values[:, 30:]] if axis == 0 else [values]
    stats = _make(cls, axis=axis)
    for batch in batches:
        stats.update(batch)
    channels = values.shape[axis]
    for options in OPTIONS:
        low, high = stats.range_for(_with(options, axis=axis))
        shape = (channels, 1) if axis == 0 else (1, channels)
        assert low.shape == high.shape == shape and low.dtype == high.dtype == numpy.float64
        for channel in range(channels):
            alone = [numpy.take(batch, channel, axis=axis) for batch in batches]
            expected = _alone(cls, alone, options)
            assert (low.reshape(-1)[channel], high.reshape(-1)[channel]) == expected


@pytest.mark.parametrize("cls", CLASSES)
def test_per_block_ranges_are_each_blocks_own(cls: type) -> None:
    values = _matrix(1).reshape(8, 48)
    block_size = (2, 12)
    stats = _make(cls, block_size=block_size)
    stats.update(values)
    stats.update(values[:, ::-1] * 0.5)  # a second batch of the same shape
    rows = grouped(values, block_size).reshape(-1, 24)
    second = grouped(values[:, ::-1] * 0.5, block_size).reshape(-1, 24)
    for options in OPTIONS:
        low, high = stats.range_for(_with(options, block_size=block_size))
        assert low.shape == (4, 4)
        for block in range(16):
            expected = _alone(cls, [rows[block], second[block]], options)
            assert (low.reshape(-1)[block], high.reshape(-1)[block]) == expected


@pytest.mark.parametrize("cls", CLASSES)
def test_ranges_have_the_shapes_of_min_max_statistics(cls: type) -> None:
    values = numpy.random.default_rng(3).normal(size=(4, 6, 8)).astype(numpy.float32)
    for granularity in ({"axis": 1}, {"axis": -1}, {"block_size": (2, 3, 4)}):
        minmax = MinMaxQuantizationStats()
        minmax.compute_quantization_stats(values, **granularity)
        stats = _make(cls)
        stats.update(values, **granularity)
        assert numpy.shape(stats.rmin) == numpy.shape(minmax.rmin) == numpy.shape(stats.rmax)
        assert stats.range_for(_with(QuantizationOptions(8), **granularity))[0].shape == numpy.shape(
            minmax.rmin
        )
        expected = {"axis": granularity.get("axis", None), "block_size": granularity.get("block_size")}
        if "axis" in granularity:
            expected["axis"] = granularity["axis"] % 3  # counted from the front once values are seen
        assert (stats.axis, stats.block_size) == (expected["axis"], expected["block_size"])


@pytest.mark.parametrize("cls", CLASSES)
def test_a_negative_axis_is_counted_from_the_front_once_values_are_seen(cls: type) -> None:
    values = _matrix(2)
    given, taken = _make(cls, axis=-1), _make(cls)
    assert given.axis == -1 and taken.axis is None
    given.update(values)
    taken.update(values, axis=1)
    assert given == taken and given.axis == taken.axis == 1
    assert json.loads(intquant.dumps(given))["serialized_value"]["axis"] == 1


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("granularity", [{"axis": 0}, {"axis": 1}, {"block_size": (2, 16)}])
def test_quantized_array_calibrates_a_method_at_its_granularity(
    cls: type, granularity: dict[str, Any]
) -> None:
    values = _matrix(2)
    array = QuantizedArray(4, values, stats=_make(cls), **granularity)
    quantizer = array.quantizer
    assert (quantizer.axis, quantizer.block_size) == (granularity.get("axis"), granularity.get("block_size"))
    stats = _make(cls, **granularity)
    stats.update(values)
    options = _with(QuantizationOptions(4), **granularity)
    reference = UniformQuantizer(options)
    reference.compute_quantization_parameters(options, stats)
    assert numpy.array_equal(quantizer.scale, reference.scale) and quantizer.scale.ndim == 2
    assert numpy.array_equal(quantizer.zero_point, reference.zero_point)
    assert numpy.array_equal(array.qvalues, reference.quant(values))
    text = intquant.dumps(array)
    key, value = next(iter(granularity.items()))
    serialized = json.loads(text)["serialized_value"]["quantizer"]["serialized_value"]
    assert serialized[key] == (
        value if key == "axis" else {"type_name": "tuple", "serialized_value": list(value)}
    )
    assert intquant.loads(text) == array


@pytest.mark.parametrize("cls", CLASSES)
def test_a_method_made_with_a_granularity_calibrates_a_quantized_array_of_it(cls: type) -> None:
    values = _matrix(2)
    array = QuantizedArray(4, values, stats=_make(cls, axis=1), axis=1)
    assert array.quantizer.scale.shape == (1, 48)
    with pytest.raises(
        InvalidOptionsError, match=f"this {cls.__name__} collects per axis \\(axis=1\\); these values"
    ):
        QuantizedArray(4, values, stats=_make(cls, axis=1), axis=0)
    with pytest.raises(
        InvalidOptionsError,
        match=f"this {cls.__name__} collected its statistics per axis \\(axis=1\\) .* the options ask for "
        "ranges per tensor",
    ):
        QuantizedArray(4, values, stats=_make(cls, axis=1))


@pytest.mark.parametrize("cls", CLASSES)
def test_a_granularity_is_never_silently_ignored(cls: type) -> None:
    values = _matrix(3)
    per_tensor = _make(cls)
    per_tensor.update(values)
    message = (
        f"this {cls.__name__} collected its statistics per tensor \\(a block grid of shape \\(\\)\\); "
        f"the options ask for ranges per axis \\(axis=0\\). Quantize with options of the calibrator's "
        f"granularity \\(axis=None, block_size=None\\), or calibrate a new {cls.__name__}\\(axis=0\\)"
    )
    with pytest.raises(InvalidOptionsError, match=message):
        QuantizedArray(8, values, stats=per_tensor, axis=0)  # it has values: not calibrated again
    with pytest.raises(InvalidOptionsError, match="the options ask for ranges per axis"):
        per_tensor.range_for(QuantizationOptions(8, axis=0))
    with pytest.raises(InvalidOptionsError, match="the options ask for ranges per axis"):
        intquant.UniformQuantizationParameters().compute_quantization_parameters(
            QuantizationOptions(8, axis=0), per_tensor
        )
    per_axis = _make(cls, axis=0)
    per_axis.update(values)
    for options in (
        QuantizationOptions(8),
        QuantizationOptions(8, axis=1),
        QuantizationOptions(8, block_size=(1, 48)),
    ):
        with pytest.raises(InvalidOptionsError, match="collected its statistics per axis \\(axis=0\\)"):
            per_axis.range_for(options)
    assert per_axis.range_for(QuantizationOptions(8, axis=-2))[0].shape == (8, 1)  # the same axis


@pytest.mark.parametrize("cls", CLASSES)
def test_batches_must_keep_the_granularity_and_the_blocks(cls: type) -> None:
    values = _matrix(4)
    stats = _make(cls)
    stats.update(values, axis=0)  # an object made without a granularity takes the first batch's
    stats.update(values[:, :5])  # the other dimension may change, per axis
    stats.update(values[:, :7], axis=-2)
    before = intquant.dumps(stats)
    with pytest.raises(
        InvalidOptionsError,
        match="collects per axis \\(axis=0\\); these values were given per axis \\(axis=1\\)",
    ):
        stats.update(values, axis=1)
    with pytest.raises(InvalidOptionsError, match="these values were given per block"):
        stats.update(values, block_size=(1, 48))
    with pytest.raises(
        InvalidValueError, match="over a block grid of shape \\(8, 1\\); values of shape \\(4, 48\\) make"
    ):
        stats.update(values[:4])
    with pytest.raises(InvalidValueError, match="axis 2 is out of range for values of shape \\(8, 48\\)"):
        _make(cls).update(values, axis=2)
    assert intquant.dumps(stats) == before  # refused batches change nothing
    stats.compute_quantization_stats(values[:, :3])  # starting again keeps the granularity
    assert stats.axis == 0 and stats.range_for(QuantizationOptions(8, axis=0))[0].shape == (8, 1)


@pytest.mark.parametrize("cls", CLASSES)
def test_blocks_spanning_rows_take_chunks_of_any_height(cls: type) -> None:
    """Chunks of rows of blocks that span all rows (as the command line feeds them)."""
    values = _matrix(5)
    chunked, one_pass = _make(cls), _make(cls)
    for start, stop in ((0, 3), (3, 4), (4, 8)):
        chunked.update(values[start:stop], block_size=(stop - start, 12))
    one_pass.update(values, block_size=(8, 12))
    options = QuantizationOptions(6, block_size=(8, 12))
    for chunk_range, whole_range in zip(chunked.range_for(options), one_pass.range_for(options), strict=True):
        assert chunk_range.shape == whole_range.shape == (1, 4)
    if cls is MovingAverageMinMaxStats:
        return  # averages of chunks are not those of one pass
    assert numpy.array_equal(chunked.dump_dict()["minimum"], one_pass.dump_dict()["minimum"])
    with pytest.raises(InvalidOptionsError, match="collects per block \\(block_size=\\(3, 12\\)\\)"):
        chunked.update(values, block_size=(8, 6))


@pytest.mark.parametrize("cls", CLASSES)
def test_merging_per_axis_statistics(cls: type) -> None:
    values = _matrix(6)
    ends = numpy.stack([values.min(axis=1), values.max(axis=1)], axis=1)
    first, second = numpy.hstack([ends, values[:, :20]]), numpy.hstack([values[:, 20:], ends])
    merged, other, sequential = _make(cls, axis=0), _make(cls, axis=0), _make(cls, axis=0)
    merged.update(first)
    other.update(second)
    sequential.update(first)
    sequential.update(second)
    before = intquant.dumps(other)
    merged.merge(other)
    assert intquant.dumps(other) == before
    if cls is not MovingAverageMinMaxStats:  # the same grids: the counts add up
        assert merged == sequential
    empty = _make(cls)  # no granularity yet: it takes the other's
    empty.merge(other)
    assert empty == other
    for mismatched in (_make(cls, axis=1), _make(cls)):
        mismatched.update(values)
        with pytest.raises(
            InvalidValueError, match=f"{cls.__name__}.merge expects statistics collected over the same blocks"
        ):
            mismatched.merge(other)
    unused = _make(cls, axis=1)  # a granularity, no values: the other's must be that one
    with pytest.raises(
        InvalidValueError, match="this object collects per axis \\(axis=1\\), the other per axis \\(axis=0\\)"
    ):
        unused.merge(other)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("granularity", [{}, {"axis": 1}, {"block_size": (4, 12)}])
def test_serialization_at_every_granularity(cls: type, granularity: dict[str, Any]) -> None:
    values = _matrix(7)
    stats = _make(cls, **granularity)
    assert intquant.loads(intquant.dumps(stats)) == stats  # the granularity, before any values
    stats.update(values)
    text = intquant.dumps(stats)
    loaded = intquant.loads(text)
    assert loaded == stats and json.loads(text)["format_version"] == 2
    options = _with(QuantizationOptions(5), **granularity)
    for mine, theirs in zip(loaded.range_for(options), stats.range_for(options), strict=True):
        assert numpy.array_equal(mine, theirs)
    metadata = stats.dump_dict()
    grid = numpy.shape(stats.rmin)
    field = "average_min" if cls is MovingAverageMinMaxStats else "counts"
    expected = grid if cls is MovingAverageMinMaxStats else (*grid, 64)
    assert numpy.shape(metadata[field]) == expected
    loaded.update(values * 2)  # no shared state
    assert loaded != stats


def _bad(cls: type, **changes: Any) -> dict[str, Any]:
    stats = _make(cls, axis=0)
    stats.update(_matrix(8))
    return {**stats.dump_dict(), **changes}


@pytest.mark.parametrize(
    "cls, changes, message",
    [
        (PercentileStats, {"axis": None}, "a per-tensor state holds one value per field"),
        (
            PercentileStats,
            {"axis": 1},
            "a state over a block grid of shape \\(8, 1\\) does not fit per axis \\(axis=1\\)",
        ),
        (PercentileStats, {"axis": None, "block_size": (1, 48, 2)}, "does not fit per block"),
        (
            PercentileStats,
            {"low": numpy.zeros(3)},
            "'low' must have the block grid's shape \\(8, 1\\); got shape \\(3,\\)",
        ),
        (PercentileStats, {"high": 1.0}, "'high' must be a numpy array of numbers, one per block; got float"),
        (
            PercentileStats,
            {"minimum": numpy.full((8, 1), numpy.nan)},
            "'minimum' must hold finite float64 values",
        ),
        (MSEStats, {"counts": numpy.zeros((8, 1, 64), numpy.int64)}, "every block holds at least one value"),
        (
            EntropyStats,
            {"zeros": numpy.int64(3)},
            "'zeros' must be a non-negative integer \\(per axis or block",
        ),
        (MovingAverageMinMaxStats, {"average_max": numpy.zeros(8)}, "block grid's shape \\(8, 1\\)"),
        (MovingAverageMinMaxStats, {"axis": 1}, "does not fit per axis \\(axis=1\\)"),
    ],
)
def test_bad_per_block_metadata_is_refused(cls: type, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SerializationError, match=message):
        cls.load_dict(_bad(cls, **changes))


@pytest.mark.parametrize("cls", CLASSES)
def test_bad_granularity_arguments(cls: type) -> None:
    with pytest.raises(InvalidTypeError, match="'axis' must be an int or None; got 'x'"):
        _make(cls, axis="x")
    with pytest.raises(InvalidOptionsError, match=r"give either 'axis' .* or 'block_size'"):
        _make(cls, axis=0, block_size=(1, 2))
    with pytest.raises(InvalidTypeError, match="'block_size' must be a tuple of ints"):
        _make(cls).update(_matrix(), block_size=3)
    with pytest.raises(InvalidValueError, match="block_size \\(3, 48\\) must give one extent per dimension"):
        _make(cls, block_size=(3, 48)).update(_matrix())


@pytest.mark.parametrize("cls", CLASSES)
def test_values_with_nan_name_their_block(cls: type) -> None:
    values = _matrix()
    values[5, 3] = numpy.nan
    stats = _make(cls, axis=0)
    with pytest.raises(
        InvalidValueError, match="containing NaN \\(shape \\(8, 48\\), dtype float64, in block 5"
    ):
        stats.update(values)
    assert stats.is_empty()


def test_the_per_axis_quantizer_holds_parameters_of_its_channels() -> None:
    """The issue's case: a per-axis quantizer calibrated with MSEStats no longer holds one scale."""
    values = numpy.random.default_rng(9).normal(size=(64, 32)) * numpy.linspace(0.1, 10, 64)[:, None]
    quantizer = QuantizedArray(8, values, axis=0, stats=MSEStats()).quantizer
    assert quantizer.axis == 0 and quantizer.scale.shape == (64, 1)
    assert quantizer.scale[-1, 0] > 50 * quantizer.scale[0, 0]
    with pytest.raises(
        InvalidValueError, match="values of shape \\(32, 10\\) make a grid of shape \\(32, 1\\)"
    ):
        quantizer.quant(values[:32, :10])

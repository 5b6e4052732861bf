"""Per-axis and per-block quantization: each block exactly as a tensor of its own."""

from __future__ import annotations

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from intquant import QuantizationOptions, QuantizedArray, UniformQuantizer, dumps, loads
from intquant._core.granularity import PerAxis, grouped, ungrouped


def _describe(value: object) -> tuple[str, tuple[int, ...], bytes]:
    array = numpy.asarray(value)
    return array.dtype.str, array.shape, array.tobytes()


arrays_3d = hnp.arrays(
    st.sampled_from([numpy.float32, numpy.float64]),
    hnp.array_shapes(min_dims=3, max_dims=3, min_side=1, max_side=5),
    elements=st.floats(-100, 100, allow_nan=False, width=32),
)


@settings(max_examples=60, deadline=None)
@given(
    values=arrays_3d,
    axis=st.integers(0, 2),
    n_bits=st.integers(2, 12),
    signed=st.booleans(),
    symmetric=st.booleans(),
)
def test_a_slice_quantized_per_axis_is_that_slice_quantized_alone(
    values: numpy.ndarray, axis: int, n_bits: int, signed: bool, symmetric: bool
) -> None:
    flags = {"is_signed": signed or symmetric, "is_symmetric": symmetric}
    per_axis = QuantizedArray(n_bits, values, axis=axis, **flags)
    for index in range(values.shape[axis]):
        alone = QuantizedArray(n_bits, numpy.take(values, [index], axis=axis), **flags)
        grid = [0, 0, 0]
        grid[axis] = index
        position = tuple(grid)
        assert _describe(per_axis.quantizer.scale[position]) == _describe(
            numpy.float64(alone.quantizer.scale)
        )
        assert int(per_axis.quantizer.zero_point[position]) == int(alone.quantizer.zero_point)
        assert per_axis.quantizer.rmin[position] == alone.quantizer.rmin
        codes = numpy.take(per_axis.qvalues, [index], axis=axis)
        assert _describe(codes) == _describe(alone.qvalues)
        restored = numpy.take(per_axis.dequant(), [index], axis=axis)
        assert _describe(restored) == _describe(alone.dequant())
        assert _describe(per_axis.quantizer.uvalues[index]) == _describe(alone.quantizer.uvalues)


def test_per_block_on_paper() -> None:
    values = numpy.array([[0.0, 1.0, 10.0, 30.0], [2.0, 3.0, 20.0, 40.0]])
    array = QuantizedArray(2, values, block_size=(2, 2))
    assert array.quantizer.scale.shape == (1, 2)
    assert array.quantizer.scale.tolist() == [[1.0, 10.0]]  # (3 - 0) / 3 and (40 - 10) / 3
    assert array.qvalues.tolist() == [[0, 1, 0, 2], [2, 3, 1, 3]]


def test_grouping_round_trips() -> None:
    values = numpy.arange(2 * 4 * 6).reshape(2, 4, 6)
    for extent in [(2, 4, 6), (1, 4, 6), (2, 1, 6), (1, 2, 3), (1, 1, 1)]:
        rows = grouped(values, extent)
        assert numpy.array_equal(ungrouped(rows, values.shape, extent), values)
    assert PerAxis(-1).extent((2, 4, 6)) == (2, 4, 1)


def test_bad_granularity() -> None:
    with pytest.raises(ValueError, match="axis 3 is out of range for values of shape \\(2, 2\\)"):
        QuantizedArray(4, numpy.ones((2, 2)), axis=3)
    with pytest.raises(ValueError, match="must give one extent per dimension"):
        QuantizedArray(4, numpy.ones((4, 4)), block_size=(3, 4))


def test_values_of_another_grid_are_refused() -> None:
    quantizer = QuantizedArray(4, numpy.ones((3, 2)), axis=0).quantizer
    with pytest.raises(ValueError, match="parameters for a block grid of shape \\(3, 1\\)"):
        quantizer.quant(numpy.ones((4, 2)))


def test_per_axis_serializes_and_streams() -> None:
    values = numpy.random.default_rng(0).normal(size=(3, 50)).astype(numpy.float32)
    array = QuantizedArray(6, values, axis=0, is_signed=True)
    assert loads(dumps(array)) == array
    quantizer = UniformQuantizer(QuantizationOptions(6, is_signed=True, axis=0))
    quantizer.update(values[:, :20])
    quantizer.update(values[:, 20:])
    assert numpy.array_equal(quantizer.rmin, array.quantizer.rmin)
    assert numpy.array_equal(quantizer.rmax, array.quantizer.rmax)


def test_per_channel_symmetric_scales_match_torch() -> None:
    torch = pytest.importorskip("torch")
    from torch.ao.quantization import PerChannelMinMaxObserver

    weights = numpy.random.default_rng(0).normal(size=(16, 3, 3, 3)).astype(numpy.float32)
    weights[3] *= 20  # channels of very different ranges
    observer = PerChannelMinMaxObserver(
        ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric, quant_min=-127, quant_max=127
    )
    observer(torch.from_numpy(weights))
    torch_scale, torch_zero_point = observer.calculate_qparams()
    # The same grid: 8-bit signed symmetric, max(|rmin|, |rmax|) / 127 per output channel.
    ours = QuantizedArray(8, weights, axis=0, is_signed=True, is_symmetric=True).quantizer
    numpy.testing.assert_allclose(ours.scale.reshape(-1), torch_scale.numpy(), rtol=1e-6)  # torch: float32
    assert torch_zero_point.numpy().tolist() == ours.zero_point.reshape(-1).tolist() == [0] * 16
    tensor = torch.from_numpy(weights)
    codes = torch.clamp(torch.round(tensor / torch_scale.view(-1, 1, 1, 1)), -127, 127)  # half to even
    agreement = numpy.mean(codes.numpy() == ours.quant(weights))
    assert agreement > 0.999  # the rest are float32-vs-float64 scale ties

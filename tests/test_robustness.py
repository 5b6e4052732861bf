"""Nothing silent: hostile numbers, shared objects under threads, calls that fail.

Each test is the repro of a silent wrong result or a raw error found by trying intquant as a
hostile user would; SPEC lists the deliberate differences from the reference.
"""

from __future__ import annotations

import copy
import threading

import numpy
import pytest

from intquant import (
    MinMaxQuantizationStats,
    QuantizationOptions,
    QuantizedArray,
    UniformQuantizationParameters,
    UniformQuantizer,
    dumps,
    loads,
)
from intquant.calibration import EntropyStats, MovingAverageMinMaxStats, MSEStats, PercentileStats
from intquant.errors import InvalidTypeError, InvalidValueError

FLOAT_MAX = numpy.finfo(numpy.float64).max


def _calibrated(values: numpy.ndarray, options: QuantizationOptions) -> UniformQuantizer:
    stats = MinMaxQuantizationStats()
    stats.compute_quantization_stats(values)
    params = UniformQuantizationParameters()
    params.compute_quantization_parameters(options, stats)
    return UniformQuantizer(options, stats, params)


# -- integer data wider than half its dtype: the range is computed without wrapping around


@pytest.mark.parametrize("dtype", [numpy.int8, numpy.int16, numpy.int32, numpy.int64])
def test_integer_ranges_do_not_wrap_around(dtype: type) -> None:
    info = numpy.iinfo(dtype)
    values = numpy.array([info.min, 0, info.max], dtype=dtype)
    quantizer = _calibrated(values, QuantizationOptions(4))
    # the reference wraps rmax - rmin to -1 and takes the range for a constant: codes [0, 0, 1]
    assert quantizer.quant(values).tolist() == [0, 8, 15]
    assert float(quantizer.scale) == (float(info.max) - float(info.min)) / 15


def test_int16_audio_keeps_its_levels() -> None:
    audio = (numpy.sin(numpy.linspace(0, 20, 1000)) * 30000).astype(numpy.int16)
    quantizer = _calibrated(audio, QuantizationOptions(8, is_signed=True, is_symmetric=True))
    codes = quantizer.quant(audio)
    assert len(numpy.unique(codes)) > 200  # the reference gives two distinct codes
    assert numpy.max(numpy.abs(quantizer.dequant(codes) - audio)) <= float(quantizer.scale) / 2 + 1e-9


def test_symmetric_int8_sees_the_magnitude_of_its_minimum() -> None:
    values = numpy.array([-128, 0, 127], dtype=numpy.int8)  # |-128| wraps to -128 in int8
    quantizer = _calibrated(values, QuantizationOptions(8, is_signed=True, is_symmetric=True))
    assert float(quantizer.scale) == 128 / 127


def test_streamed_integer_statistics_do_not_wrap_around() -> None:
    stats = MinMaxQuantizationStats()
    stats.update(numpy.array([-100], dtype=numpy.int8))
    stats.update(numpy.array([100], dtype=numpy.int8))
    params = UniformQuantizationParameters()
    params.compute_quantization_parameters(QuantizationOptions(8), stats)
    assert float(params.scale) == 200 / 255 and int(params.zero_point) == 128


# -- clear errors instead of silent infinities and swapped ranges


def test_a_range_with_rmin_above_rmax_is_refused() -> None:
    params = UniformQuantizationParameters()
    with pytest.raises(InvalidValueError, match="'rmin' must not exceed 'rmax'"):
        params.compute_quantization_parameters(
            QuantizationOptions(8), MinMaxQuantizationStats(rmax=-1.0, rmin=1.0)
        )
    assert params.scale is None  # nothing changed


def test_dequantizing_near_the_float_maximum_is_refused_not_infinite() -> None:
    array = QuantizedArray(8, numpy.array([0.0, 1e300]))
    assert numpy.all(numpy.isfinite(array.dequant()))
    with pytest.raises(InvalidValueError, match="dequantizing these codes overflows"):
        QuantizedArray(8, numpy.array([0.0, FLOAT_MAX])).dequant()
    # infinite float codes are not an overflow: they stay infinite, as in the reference
    quantizer = QuantizedArray(8, numpy.array([0.0, 1.0])).quantizer
    assert numpy.isinf(quantizer.dequant(numpy.array([numpy.inf], dtype=numpy.float32)))[0]


def test_a_power_of_two_scale_that_overflows_is_refused() -> None:
    with pytest.raises(InvalidValueError, match="scale would be inf"):
        QuantizedArray(2, numpy.array([-FLOAT_MAX, FLOAT_MAX]), power_of_two_scale=True)


def test_absurd_offsets_are_refused_by_every_backend_plan() -> None:
    quantizer = QuantizedArray(8, numpy.array([1.0, 2.0, 3.0])).quantizer
    quantizer.offset = 2**70
    with pytest.raises(InvalidValueError, match="gives clipping bounds int64 cannot hold"):
        quantizer.quant(numpy.ones(3))
    onnx = pytest.importorskip("intquant.onnx")
    with pytest.raises(InvalidValueError, match="gives clipping bounds int64 cannot hold"):
        onnx.quantize_model(quantizer, exact=True, input_dtype=numpy.float64)
    quantizer.offset = True
    with pytest.raises(InvalidValueError, match="the offset must be a number"):
        quantizer.quant(numpy.ones(3))


def test_a_moving_average_near_the_float_maximum_stays_finite_and_loads() -> None:
    stats = MovingAverageMinMaxStats(0.5)
    stats.update(numpy.array([FLOAT_MAX]))
    stats.update(numpy.array([-FLOAT_MAX]))  # the old update computed -max - max = -inf
    assert numpy.isfinite(stats.rmin) and numpy.isfinite(stats.rmax)
    assert loads(dumps(stats)) == stats


# -- wrong kinds of input


def test_masked_arrays_are_refused_clearly() -> None:
    masked = numpy.ma.masked_array([1.0, 50.0, 3.0], mask=[False, True, False])
    with pytest.raises(InvalidTypeError, match=r"masked array .* values.compressed\(\)"):
        QuantizedArray(8, masked)
    with pytest.raises(InvalidTypeError, match="masked array"):
        MinMaxQuantizationStats().compute_quantization_stats(masked)
    quantizer = QuantizedArray(8, numpy.array([1.0, 3.0])).quantizer
    with pytest.raises(InvalidTypeError, match="masked array"):
        quantizer.quant(masked)


def test_tensors_given_to_the_numpy_api_point_to_intquant_torch() -> None:
    torch = pytest.importorskip("torch")
    quantizer = QuantizedArray(8, numpy.array([1.0, 3.0])).quantizer
    with pytest.raises(InvalidTypeError, match="TorchUniformQuantizer"):
        quantizer.quant(torch.ones(3, requires_grad=True))


def test_tensors_torch_cannot_hand_over_are_refused_clearly() -> None:
    torch = pytest.importorskip("torch")
    from intquant.torch import TorchUniformQuantizer

    wrapper = TorchUniformQuantizer(QuantizedArray(8, numpy.array([1.0, 3.0])).quantizer)
    with pytest.raises(InvalidTypeError, match="dense"):
        wrapper.quant(torch.ones(3).to_sparse())
    with pytest.raises(InvalidTypeError, match="'meta' device"):
        wrapper.quant(torch.empty(3, device="meta"))


def test_merging_a_calibration_method_into_min_max_statistics_is_refused() -> None:
    stats = MinMaxQuantizationStats()
    stats.update(numpy.array([0.0, 1.0]))
    percentile = PercentileStats(99.0)
    percentile.update(numpy.linspace(-5, 5, 100))
    with pytest.raises(
        InvalidTypeError, match="merge folds in the statistics of data; got a PercentileStats"
    ):
        stats.merge(percentile)
    assert float(stats.rmin) == 0.0 and stats.uvalues is not None


def test_copied_per_axis_statistics_share_no_array() -> None:
    array = QuantizedArray(8, numpy.arange(12.0).reshape(3, 4), axis=0)
    copied = array.quantizer.quant_stats
    copied.uvalues[0][0] = 99.0
    assert array.quantizer.uvalues[0][0] == 0.0


# -- shared objects under threads; calls that fail change nothing


@pytest.mark.parametrize(
    "make",
    [
        MinMaxQuantizationStats,
        lambda: UniformQuantizer(QuantizationOptions(8)),
        lambda: PercentileStats(100.0, bins=64),
        lambda: MSEStats(bins=64),
        lambda: EntropyStats(bins=64),
    ],
    ids=["minmax", "quantizer", "percentile", "mse", "entropy"],
)
def test_updates_from_many_threads_lose_no_batch(make: object) -> None:
    batches = [numpy.array([float(index), -0.5 * index]) for index in range(400)]
    shared, serial = make(), make()  # type: ignore[operator]
    for batch in batches:
        serial.update(batch)
    start = threading.Barrier(16)

    def work(part: list[numpy.ndarray]) -> None:
        start.wait()
        for batch in part:
            shared.update(batch)

    threads = [threading.Thread(target=work, args=(batches[index::16],)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if isinstance(shared, (MinMaxQuantizationStats, UniformQuantizer)):
        assert float(shared.rmin) == -199.5 and float(shared.rmax) == 399.0
        assert numpy.array_equal(shared.uvalues, serial.uvalues)  # every batch's values are in
    else:
        state = shared.dump_dict()
        assert (float(state["minimum"]), float(state["maximum"])) == (-199.5, 399.0)
        # every value was counted (entropy counts exact zeros apart from its bins)
        assert int(state["counts"].sum()) + int(state.get("zeros", 0)) == 800


def test_failed_stochastic_quants_leave_the_codes_of_the_next_call_unchanged() -> None:
    values = numpy.linspace(-1, 1, 50)
    quantizer = QuantizedArray(4, values, rounding="stochastic", seed=7).quantizer
    twin = copy.deepcopy(quantizer)
    quantizer.quant(values)
    twin.quant(values)
    with pytest.raises(InvalidValueError, match="cannot quantize NaN"):
        quantizer.quant(numpy.array([0.5, numpy.nan]))
    with pytest.raises(InvalidTypeError, match="int32, uint32, int64, float32, float64 or 'smallest'"):
        quantizer.quant(values, dtype=numpy.complex64)
    assert numpy.array_equal(quantizer.quant(values), twin.quant(values))

"""The full-range symmetric grid (``full_range=True``): PyTorch's symmetric convention, where the
scale spreads ``max|x|`` over all ``2**n`` signed levels, ``scale = max|x| / ((2**n - 1) / 2)``.

Checked against PyTorch's observers (float32 statistics: intquant's float64 scale rounded to
float32 equals theirs exactly), for SQNR against the seed's grid, per axis and per block, in
serialization, in the calibration methods' range search, on the command line, and refused where it
does not apply.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy
import pytest

import intquant
from intquant import QuantizationOptions, QuantizedArray, UniformQuantizer
from intquant._core.blockwise import choose_block_parameters
from intquant._core.extras import check_full_range, needs_intquant_tag
from intquant._core.formulas import STABILITY_CONST, choose_uniform_parameters, full_range_divisor
from intquant.calibration import EntropyStats, MSEStats, PercentileStats
from intquant.errors import InvalidOptionsError, SerializationError
from intquant.metrics import quantization_error

SYMMETRIC: dict[str, Any] = {"is_signed": True, "is_symmetric": True}
FULL: dict[str, Any] = {**SYMMETRIC, "full_range": True}


def _parameters(low: Any, high: Any, n_bits: int, full_range: bool) -> tuple[Any, Any, int]:
    return choose_uniform_parameters(
        low,
        high,
        n_bits,
        is_signed=True,
        is_symmetric=True,
        is_qat=False,
        is_precomputed_qat=False,
        uvalues=None,
        scale=None,
        full_range=full_range,
    )


def _plumbed() -> bool:
    """Whether ``intquant.parameters.compute_parameters`` passes ``full_range`` to the formulas."""
    scale = QuantizedArray(2, numpy.array([-1.5, 1.5]), **FULL).quantizer.scale
    return bool(scale == 1.0)


def _range_search_plumbed() -> bool:
    """Whether the calibration methods' ranges (``RangeOptions``) carry ``full_range``."""
    from intquant.calibration._histogram import RangeOptions

    return "full_range" in RangeOptions.__dataclass_fields__


needs_plumbing = pytest.mark.skipif(
    not _plumbed(),
    reason="intquant.parameters.compute_parameters does not pass full_range to the formulas yet "
    "(the change is in helper J's report)",
)
needs_range_search = pytest.mark.skipif(
    not _range_search_plumbed(),
    reason="intquant.calibration._histogram.RangeOptions has no full_range yet (helper J's report)",
)


def _sqnr(values: numpy.ndarray, restored: numpy.ndarray) -> float:
    error = restored - values
    return float(10 * numpy.log10(numpy.sum(values * values) / numpy.sum(error * error)))


# -- the formula


@pytest.mark.parametrize("n_bits", [2, 3, 4, 8, 16])
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32, numpy.int16, float])
def test_the_scale_spreads_the_magnitude_over_all_levels(n_bits: int, dtype: Any) -> None:
    low, high = dtype(-300), dtype(250)
    scale, zero_point, offset = _parameters(low, high, n_bits, True)
    assert type(scale) is numpy.float64 and zero_point == 0 and offset == 2 ** (n_bits - 1)
    assert scale == numpy.float64(300) / numpy.float64((2**n_bits - 1) / 2)
    assert full_range_divisor(n_bits) == (2**n_bits - 1) / 2
    seed_scale = _parameters(low, high, n_bits, False)[0]
    assert seed_scale == 300 / (2 ** (n_bits - 1) - 1) and scale < seed_scale


@pytest.mark.parametrize("n_bits", [2, 4, 8])
def test_the_extremes_map_to_the_extreme_codes(n_bits: int) -> None:
    values = numpy.array([-2.0, -1.0, 0.0, 0.5, 2.0])
    scale, zero_point, _ = _parameters(values.min(), values.max(), n_bits, True)
    # 2.0 / scale = 2**(n-1) - 1/2: rounds half to even to 2**(n-1), clipped to 2**(n-1) - 1.
    assert 2.0 / scale == 2 ** (n_bits - 1) - 0.5
    options = QuantizationOptions(n_bits, **FULL)
    from intquant.parameters import UniformQuantizationParameters

    quantizer = UniformQuantizer(
        options, None, UniformQuantizationParameters(scale, zero_point, 2 ** (n_bits - 1))
    )
    codes = quantizer.quant(values)
    assert codes[0] == -(2 ** (n_bits - 1)) and codes[-1] == 2 ** (n_bits - 1) - 1


def test_one_bit_is_refused_as_in_the_seed() -> None:
    with pytest.raises(ValueError, match="no level above zero"):
        _parameters(-1.0, 1.0, 1, True)


@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32, numpy.int8, numpy.int64])
def test_the_block_grid_gives_each_block_s_per_tensor_parameters(dtype: Any) -> None:
    rng = numpy.random.default_rng(5)
    lows = (rng.uniform(-100, 0, 40)).astype(dtype)
    highs = (rng.uniform(0, 100, 40)).astype(dtype)
    lows[3] = highs[3]  # a single-valued block
    for n_bits in (2, 5, 8):
        scale, zero_point, offset = choose_block_parameters(
            lows,
            highs,
            n_bits,
            is_signed=True,
            is_symmetric=True,
            is_qat=False,
            is_precomputed_qat=False,
            uvalues=None,
            scale=None,
            zero_in_range=False,
            power_of_two_scale=False,
            single_value_width=STABILITY_CONST,
            alone=lambda low, high, _, bits=n_bits: _parameters(low, high, bits, True),
            full_range=True,
        )
        for index in range(lows.size):
            alone = _parameters(lows[index], highs[index], n_bits, True)
            block_offset = offset if numpy.ndim(offset) == 0 else offset[index]
            assert (scale[index], zero_point[index], block_offset) == alone, index


def test_full_range_needs_a_signed_symmetric_wide_grid() -> None:
    check_full_range(True, True, False, True)
    check_full_range(False, False, True, False)  # off: nothing to check
    with pytest.raises(InvalidOptionsError, match=r"signed symmetric.*got is_signed=False"):
        check_full_range(False, False, False, True)
    with pytest.raises(InvalidOptionsError, match="is_narrow=True excludes"):
        check_full_range(True, True, True, True)
    with pytest.raises(InvalidOptionsError, match="is_symmetric=False"):
        QuantizationOptions(4, is_signed=True, full_range=True)
    with pytest.raises(InvalidOptionsError, match="is_signed=False"):
        QuantizationOptions(4, full_range=True)
    with pytest.raises(TypeError, match="'full_range' must be True or False"):
        QuantizationOptions(4, full_range=1, **SYMMETRIC)
    assert QuantizationOptions(4, **SYMMETRIC).full_range is False  # off by default


@needs_plumbing
def test_a_narrow_or_asymmetric_quantizer_refuses_it() -> None:
    values = numpy.linspace(-1.0, 1.0, 11)
    with pytest.raises(InvalidOptionsError, match="is_symmetric=False"):
        QuantizedArray(4, values, is_signed=True, full_range=True)
    options = QuantizationOptions(4, **FULL)
    options.is_narrow = True  # set after construction, as in the seed
    with pytest.raises(InvalidOptionsError, match="is_narrow"):
        QuantizedArray(4, values, options=options)


# -- against PyTorch's observers


def _torch() -> Any:
    return pytest.importorskip("torch", reason="torch is needed to compare with its observers")


@needs_plumbing
@pytest.mark.parametrize("n_bits", [2, 3, 4, 5, 6, 7, 8])
def test_per_tensor_parameters_are_pytorch_s(n_bits: int) -> None:
    torch = _torch()
    from torch.ao.quantization.observer import MinMaxObserver

    rng = numpy.random.default_rng(n_bits)
    values = (rng.standard_normal(4000) * 1.7 - 0.2).astype(numpy.float32)
    low, high = -(2 ** (n_bits - 1)), 2 ** (n_bits - 1) - 1
    kwargs = {} if n_bits == 8 else {"quant_min": low, "quant_max": high}  # 8 bits: qint8's own range
    observer = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, **kwargs)
    observer(torch.from_numpy(values))
    torch_scale, torch_zero_point = observer.calculate_qparams()
    quantizer = QuantizedArray(n_bits, values, **FULL).quantizer
    # Exactly theirs once rounded to float32 (they compute in float32, intquant in float64).
    assert numpy.float32(quantizer.scale) == torch_scale.numpy()[0]
    assert quantizer.zero_point == 0 == int(torch_zero_point[0])
    codes = quantizer.quant(values)
    torch_codes = torch.fake_quantize_per_tensor_affine(
        torch.from_numpy(values), float(torch_scale[0]), 0, low, high
    ).numpy() / numpy.float32(torch_scale[0])
    # The side holding max|x| reaches its extreme code (-max|x| -> -2**(n-1); max|x| -> 2**(n-1) - 1).
    assert (codes.min() == low) if -values.min() >= values.max() else (codes.max() == high)
    # Their codes use the float32 scale: a value on a rounding boundary may land one code away.
    differing = numpy.rint(torch_codes).astype(numpy.int64) != codes
    assert differing.mean() < 1e-3
    assert numpy.all(numpy.abs(numpy.rint(torch_codes) - codes)[differing] == 1)


@needs_plumbing
@pytest.mark.parametrize("n_bits", [2, 4, 8])
def test_per_channel_parameters_are_pytorch_s(n_bits: int) -> None:
    torch = _torch()
    from torch.ao.quantization.observer import PerChannelMinMaxObserver

    rng = numpy.random.default_rng(10 + n_bits)
    weights = (rng.standard_normal((16, 48)) * rng.uniform(0.1, 3.0, (16, 1))).astype(numpy.float32)
    kwargs = {} if n_bits == 8 else {"quant_min": -(2 ** (n_bits - 1)), "quant_max": 2 ** (n_bits - 1) - 1}
    observer = PerChannelMinMaxObserver(
        ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric, **kwargs
    )
    observer(torch.from_numpy(weights))
    torch_scale, torch_zero_point = observer.calculate_qparams()
    quantizer = QuantizedArray(n_bits, weights, axis=0, **FULL).quantizer
    assert numpy.array_equal(quantizer.scale.reshape(-1).astype(numpy.float32), torch_scale.numpy())
    assert not numpy.any(quantizer.zero_point) and not torch_zero_point.any()


@needs_plumbing
def test_min_max_sqnr_is_pytorch_s() -> None:
    """The issue's target: min/max with the full-range grid within 0.1 dB of PyTorch's min/max."""
    torch = _torch()
    from torch.ao.quantization.observer import MinMaxObserver

    rng = numpy.random.default_rng(3)
    values = rng.standard_t(4, 20000).astype(numpy.float32)
    for n_bits in (2, 4, 8):
        low, high = -(2 ** (n_bits - 1)), 2 ** (n_bits - 1) - 1
        observer = MinMaxObserver(
            dtype=torch.qint8, qscheme=torch.per_tensor_symmetric, quant_min=low, quant_max=high
        )
        observer(torch.from_numpy(values))
        scale = float(observer.calculate_qparams()[0][0])
        theirs = torch.fake_quantize_per_tensor_affine(torch.from_numpy(values), scale, 0, low, high)
        quantized = QuantizedArray(n_bits, values, **FULL)
        ours = _sqnr(values.astype(numpy.float64), quantized.dequant())
        assert abs(ours - _sqnr(values.astype(numpy.float64), theirs.numpy().astype(numpy.float64))) < 0.1


# -- SQNR against the seed's grid


@needs_plumbing
@pytest.mark.parametrize("n_bits", [2, 4])
def test_full_range_gains_on_uniform_data(n_bits: int) -> None:
    values = numpy.random.default_rng(n_bits).uniform(-1.0, 1.0, 50000)
    seed_grid = _sqnr(values, QuantizedArray(n_bits, values, **SYMMETRIC).dequant())
    full_grid = _sqnr(values, QuantizedArray(n_bits, values, **FULL).dequant())
    # Uniform data: the error is about scale**2 / 12 on both grids, so the gain is the scales'
    # ratio, 20 log10((2**(n-1) - 1/2) / (2**(n-1) - 1)): 3.52 dB at 2 bits, 0.58 dB at 4.
    expected = 20 * numpy.log10((2 ** (n_bits - 1) - 0.5) / (2 ** (n_bits - 1) - 1))
    assert full_grid - seed_grid > expected - 0.1
    assert full_grid - seed_grid > 0.5


# -- granularity


@needs_plumbing
def test_per_axis_and_per_block_are_each_slice_s_per_tensor_grid() -> None:
    weights = numpy.random.default_rng(8).normal(size=(6, 8)) * numpy.arange(1, 9)
    per_axis = QuantizedArray(3, weights, axis=1, **FULL).quantizer
    for column in range(8):
        alone = QuantizedArray(3, weights[:, column], **FULL).quantizer
        assert per_axis.scale.reshape(-1)[column] == alone.scale
    per_block = QuantizedArray(3, weights, block_size=(3, 4), **FULL).quantizer
    assert per_block.scale.shape == (2, 2)
    for row in range(2):
        for column in range(2):
            block = weights[3 * row : 3 * row + 3, 4 * column : 4 * column + 4]
            assert per_block.scale[row, column] == QuantizedArray(3, block, **FULL).quantizer.scale
    codes = per_block.quant(weights)
    assert codes.min() == -4 and codes.max() == 3


# -- serialization


def test_options_and_uncalibrated_quantizers_are_written_under_the_intquant_tag() -> None:
    options = QuantizationOptions(4, **FULL)
    assert needs_intquant_tag(options)
    text = intquant.dumps(options)
    assert json.loads(text)["type_name"] == "intquant.QuantizationOptions"
    assert json.loads(text)["serialized_value"]["full_range"] is True
    assert intquant.loads(text) == options and intquant.loads(text).full_range is True
    assert intquant.loads(text) != QuantizationOptions(4, **SYMMETRIC)
    uncalibrated = UniformQuantizer(options)
    assert json.loads(intquant.dumps(uncalibrated))["type_name"] == "intquant.UniformQuantizer"
    assert (
        json.loads(intquant.dumps(QuantizationOptions(4, **SYMMETRIC)))["type_name"] == "QuantizationOptions"
    )


@needs_plumbing
def test_a_calibrated_quantizer_keeps_the_seed_tag() -> None:
    values = numpy.linspace(-2.0, 1.0, 30)
    quantizer = QuantizedArray(4, values, **FULL).quantizer
    assert not needs_intquant_tag(quantizer)
    text = intquant.dumps(quantizer)
    raw = json.loads(text)
    assert raw["type_name"] == "UniformQuantizer" and raw["serialized_value"]["full_range"] is True
    assert raw["serialized_value"]["scale"]["serialized_value"] == 2.0 / 7.5
    loaded = intquant.loads(text)
    assert loaded == quantizer and loaded.full_range is True
    assert numpy.array_equal(loaded.quant(values), quantizer.quant(values))


def test_loading_refuses_full_range_with_narrow_codes() -> None:
    payload = json.loads(intquant.dumps(QuantizationOptions(4, **FULL)))
    payload["serialized_value"]["is_narrow"] = True
    with pytest.raises(SerializationError, match="is_narrow=True excludes"):
        intquant.loads(json.dumps(payload))


# -- calibration methods


@needs_plumbing
@needs_range_search
@pytest.mark.parametrize("method", [MSEStats, PercentileStats, EntropyStats])
def test_calibration_methods_search_on_the_full_range_grid(method: Any) -> None:
    values = numpy.random.default_rng(11).standard_normal(20000)
    stats = method()
    stats.compute_quantization_stats(values)
    seed_options = QuantizationOptions(3, **SYMMETRIC)
    full_options = QuantizationOptions(3, **FULL)
    full_range = stats.range_for(full_options)
    quantizer = QuantizedArray(3, values, stats=method(), **FULL).quantizer
    magnitude = max(abs(float(full_range[0])), abs(float(full_range[1])))
    assert quantizer.scale == magnitude / 3.5
    if method is MSEStats:  # its range minimizes the error on the grid it is quantized with
        seed_range = stats.range_for(seed_options)
        assert full_range != seed_range
        full = quantization_error(values, quantizer)["mse"]
        seed_scale = max(abs(float(seed_range[0])), abs(float(seed_range[1]))) / 3.5
        on_seed_range = seed_scale * numpy.clip(numpy.rint(values / seed_scale), -4, 3)
        assert full <= numpy.mean((on_seed_range - values) ** 2)


@needs_range_search
def test_range_search_refuses_full_range_with_narrow_codes() -> None:
    stats = MSEStats()
    stats.compute_quantization_stats(numpy.linspace(-1.0, 1.0, 100))
    options = QuantizationOptions(4, **FULL)
    options.is_narrow = True
    with pytest.raises(InvalidOptionsError, match="is_narrow"):
        stats.range_for(options)


# -- the command line


def _cli(tmp_path: Path, *arguments: str) -> tuple[int, str, str]:
    import contextlib
    import io
    import os

    from intquant.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    os.chdir(tmp_path)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                status = main(list(arguments))
            except SystemExit as exit:
                status = int(exit.code or 0)
    finally:
        os.chdir(previous)
    return status, stdout.getvalue(), stderr.getvalue()


@needs_plumbing
def test_the_command_line_flag(tmp_path: Path) -> None:
    values = numpy.random.default_rng(2).uniform(-1.0, 1.0, (20, 10))
    numpy.save(tmp_path / "v.npy", values)
    status, _, stderr = _cli(
        tmp_path, "calibrate", "v.npy", "-o", "q.json", "--n-bits", "2", "--symmetric", "--full-range"
    )
    assert status == 0, stderr
    text = (tmp_path / "q.json").read_text()
    expected = QuantizedArray(2, values, **FULL).quantizer
    assert intquant.loads(text) == expected and text == intquant.dumps(expected)
    status, stdout, stderr = _cli(
        tmp_path, "report", "v.npy", "--bits", "2,4", "--json", "--symmetric", "--full-range"
    )
    assert status == 0, stderr
    for row in json.loads(stdout):
        quantizer = QuantizedArray(row["n_bits"], values, **FULL).quantizer
        assert row["sqnr_db"] == pytest.approx(quantization_error(values, quantizer)["sqnr_db"], rel=1e-12)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--full-range"], "--full-range is for symmetric grids; add --symmetric"),
        (["--signed", "--full-range"], "--full-range is for symmetric grids; add --symmetric"),
        (["--symmetric", "--narrow", "--full-range"], "which --narrow drops"),
    ],
)
def test_the_command_line_refuses_the_flag_where_it_does_not_apply(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    numpy.save(tmp_path / "v.npy", numpy.linspace(-1.0, 1.0, 10))
    for command in (["calibrate", "v.npy", "-o", "q.json"], ["report", "v.npy", "--json"]):
        status, _, stderr = _cli(tmp_path, *command, *flags)
        assert status != 0 and message in stderr, (command, stderr)
    assert not (tmp_path / "q.json").exists()

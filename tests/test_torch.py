"""intquant.torch: torch codes bit-identical to the numpy quantizer's, and fake quantization."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

torch = pytest.importorskip("torch")

import intquant  # noqa: E402
from intquant import (  # noqa: E402
    MinMaxQuantizationStats,
    QuantizationOptions,
    QuantizedArray,
    UniformQuantizationParameters,
    UniformQuantizer,
)
from intquant._numba import dispatch as _compiled  # noqa: E402
from intquant.errors import (  # noqa: E402
    IntquantError,
    InvalidDtypeError,
    InvalidOptionsError,
    InvalidTypeError,
    InvalidValueError,
    MissingParameterError,
)
from intquant.torch import (  # noqa: E402
    FakeQuantize,
    MinMaxObserver,
    TorchUnavailableError,
    TorchUniformQuantizer,
    disable_fake_quant,
    disable_observer,
    enable_fake_quant,
    enable_observer,
    fake_quant,
)
from intquant.torch.kernels import dtype_pairs, rounded_codes  # noqa: E402
from tests.strategies import quantizer_cases  # noqa: E402

FLOATS = (numpy.float16, numpy.float32, numpy.float64)


# -- helpers


def _quantizer(
    calibration: numpy.ndarray,
    n_bits: int,
    *,
    signed: bool = False,
    symmetric: bool = False,
    narrow: bool = False,
    qat: bool = False,
    precomputed_qat: bool = False,
    no_clipping: bool = False,
    **extra: Any,
) -> UniformQuantizer:
    options = QuantizationOptions(
        n_bits, is_signed=signed or symmetric, is_symmetric=symmetric, is_qat=qat, **extra
    )
    options.is_narrow = narrow
    options.is_precomputed_qat = precomputed_qat
    quantizer = UniformQuantizer(options, no_clipping=no_clipping)
    quantizer.compute_quantization_stats(calibration)
    quantizer.compute_quantization_parameters(quantizer.quant_options, quantizer.quant_stats)
    return quantizer


def _assert_same(actual: Any, expected: Any) -> None:
    """Same dtype, shape and bits (a torch tensor on the CPU against a numpy array or scalar)."""
    assert isinstance(actual, torch.Tensor)
    assert actual.device.type == "cpu"
    expected = numpy.asarray(expected)
    got = actual.numpy()
    assert (got.dtype, got.shape) == (expected.dtype, expected.shape)
    assert got.tobytes() == expected.tobytes(), (got, expected)


def _check_quant(quantizer: UniformQuantizer, values: numpy.ndarray, dtype: Any = None) -> Any:
    """quant and dequant of ``values`` (and of their codes) through torch and through numpy: the
    same bits, or the same error (then None is returned)."""
    tensor = torch.from_numpy(values.copy())
    torch_quantizer = TorchUniformQuantizer(quantizer)
    numpy_dtype = None if dtype is None else torch.empty(0, dtype=dtype).numpy().dtype
    try:
        expected = quantizer.quant(values, dtype=numpy_dtype)
    except IntquantError as error:
        with pytest.raises(type(error)) as caught:
            torch_quantizer.quant(tensor, dtype)
        assert str(caught.value).split("(")[0] == str(error).split("(")[0]
        return None
    codes = torch_quantizer.quant(tensor, dtype)
    _assert_same(codes, expected)
    assert torch.equal(tensor, torch.from_numpy(values))  # the input is left alone
    _assert_same(torch_quantizer.dequant(codes), quantizer.dequant(codes.numpy()))
    return codes


def _random_values(
    rng: numpy.random.Generator, dtype: Any, shape: tuple[int, ...], center: float
) -> numpy.ndarray:
    spread = rng.choice([1e-3, 1.0, 30.0])
    values = center + spread * rng.standard_normal(shape)
    return values.astype(dtype)


@pytest.fixture
def plain_numpy_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Once numba is loaded (by an earlier test), intquant sends even 0-d float32 arrays through
    # its compiled loop, which divides them in float32, whereas numpy 1.24 (and intquant's plain
    # path) treats a 0-d array as a scalar and divides in float64. The plain path is the
    # reference's behaviour.
    monkeypatch.setattr(_compiled, "disabled", True)
    yield


# -- quant and dequant: per tensor

VARIANTS = [
    {},
    {"signed": True},
    {"symmetric": True},
    {"signed": True, "narrow": True},
    {"symmetric": True, "narrow": True},
    {"no_clipping": True},
    {"signed": True, "no_clipping": True},
]


@pytest.mark.parametrize("n_bits", [2, 3, 4, 5, 7, 8, 11, 12, 16])
@pytest.mark.parametrize("variant", range(len(VARIANTS)))
def test_quant_matches_numpy_per_tensor(n_bits: int, variant: int) -> None:
    flags = VARIANTS[variant]
    rng = numpy.random.default_rng(1000 * n_bits + variant)
    for dtype in FLOATS:
        for center in (0.0, 3.0, -700.0, 1000.0):  # far from 0: zero points beyond 65535 with 16 bits
            calibration = _random_values(rng, dtype, (40,), center)
            quantizer = _quantizer(calibration, n_bits, **flags)
            # Values inside and outside the calibrated range, and on the half-way points.
            beyond = (calibration.astype(numpy.float64) * 1.5 - center * 0.5).astype(dtype)
            halves = (quantizer.scale * (numpy.arange(-20, 20) + 0.5 - quantizer.zero_point)).astype(dtype)
            values = numpy.concatenate([calibration, beyond, halves]).reshape(2, -1)
            _check_quant(quantizer, values)


def test_big_zero_points_change_the_addition_dtype() -> None:
    # Values far from 0 on 16 bits: the zero point is beyond float32's exact "small scalar"
    # range, so numpy 1.24 adds it in float64 (float32 for float16 values); torch must too.
    rng = numpy.random.default_rng(7)
    for dtype in FLOATS:
        for center in (-500.0, 500.0) if dtype == numpy.float16 else (-5000.0, 5000.0):
            calibration = (center + rng.uniform(0, 1, 50)).astype(dtype)
            quantizer = _quantizer(calibration, 16)
            assert abs(int(quantizer.zero_point)) >= 65536
            (step,) = quantizer.quant_plan(calibration.dtype, calibration.shape).steps
            if dtype != numpy.float64:  # the case under test: a wider addition
                assert step.addition.itemsize > calibration.dtype.itemsize
            values = (center + rng.uniform(-0.2, 1.2, 3000)).astype(dtype)
            _check_quant(quantizer, values)


@pytest.mark.parametrize("dtype", [numpy.int8, numpy.int16, numpy.int32, numpy.int64, numpy.uint8, bool])
def test_integer_and_bool_values(dtype: Any) -> None:
    rng = numpy.random.default_rng(3)
    quantizer = _quantizer(numpy.array([-3.0, 0.0, 90.0]), 6, signed=True)
    values = rng.integers(-200, 200, size=(7, 9)).astype(dtype)
    _check_quant(quantizer, values)
    _check_quant(_quantizer(numpy.array([-3.0, 0.0, 90.0]), 6, no_clipping=True), values)


def test_qat_values_on_a_grid() -> None:
    grid = numpy.arange(-6, 10) * 0.25
    inferred = _quantizer(grid, 4, qat=True)  # scale inferred from the grid: no clipping
    assert float(inferred.scale) == 0.25
    values = numpy.array([-9.0, -1.5, 0.125, 0.375, 2.0, 40.0])
    codes = _check_quant(inferred, values)
    assert codes.tolist() == [-36, -6, 0, 2, 8, 160]
    precomputed = _quantizer(grid, 4, qat=True, precomputed_qat=True)  # clipped to [0, 15]
    assert _check_quant(precomputed, values).tolist() == [0, 0, 0, 2, 8, 15]
    for dtype in (numpy.float16, numpy.float32):
        _check_quant(inferred, values.astype(dtype))
        _check_quant(precomputed, values.astype(dtype))


def test_on_paper() -> None:
    quantizer = UniformQuantizer(QuantizationOptions(3), None, UniformQuantizationParameters(0.5, 2, 0))
    values = torch.tensor([-1.0, -0.75, -0.25, 0.25, 0.75, 9.0])
    codes = TorchUniformQuantizer(quantizer).quant(values)
    # x / 0.5 + 2 = 0, 0.5, 1.5, 2.5, 3.5, 20: halves round to even, 20 clips to 7.
    assert codes.tolist() == [0, 0, 2, 2, 4, 7]
    assert TorchUniformQuantizer(quantizer).dequant(codes).tolist() == [-1.0, -1.0, 0.0, 0.0, 1.0, 2.5]


def test_code_dtypes() -> None:
    rng = numpy.random.default_rng(11)
    values = rng.normal(size=(5, 8)).astype(numpy.float32)
    for n_bits in (4, 16):
        quantizer = _quantizer(values, n_bits, signed=True)
        for dtype in (torch.int64, torch.int32, torch.float32, torch.float64):
            codes = _check_quant(quantizer, values, dtype)
            assert codes.dtype == dtype


def test_code_dtypes_that_cannot_hold_the_codes_are_refused() -> None:
    values = numpy.array([0.0, 1.0])
    for n_bits, dtype, numpy_dtype in ((32, torch.int32, "int32"), (25, torch.float32, "float32")):
        quantizer = _quantizer(values, n_bits)
        with pytest.raises(InvalidValueError, match="not all exactly representable") as numpy_error:
            quantizer.quant(values, dtype=numpy_dtype)
        with pytest.raises(InvalidValueError, match="not all exactly representable") as torch_error:
            TorchUniformQuantizer(quantizer).quant(torch.from_numpy(values), dtype)
        assert str(torch_error.value) == str(numpy_error.value)
    # Without clipping the codes themselves are checked.
    unclipped = _quantizer(values, 4, no_clipping=True)
    assert (
        _check_quant(unclipped, numpy.array([1e6], dtype=numpy.float32), torch.float32).dtype == torch.float32
    )
    with pytest.raises(InvalidValueError, match=r"codes in \[0, 150000000000\]"):
        TorchUniformQuantizer(unclipped).quant(torch.tensor([0.0, 1e10], dtype=torch.float64), torch.float32)
    with pytest.raises(InvalidTypeError, match=r"torch\.int64 \(default\), torch\.int32"):
        TorchUniformQuantizer(unclipped).quant(torch.tensor([1.0]), torch.int8)
    with pytest.raises(InvalidTypeError, match=r"got \['int64'\]"):
        TorchUniformQuantizer(unclipped).quant(torch.tensor([1.0]), ["int64"])


def test_nan_is_refused() -> None:
    quantizer = _quantizer(numpy.array([0.0, 1.0]), 8)
    for dtype in FLOATS:
        values = numpy.array([0.5, numpy.nan, 0.25], dtype=dtype)
        with pytest.raises(InvalidValueError, match="cannot quantize NaN"):
            quantizer.quant(values)
        with pytest.raises(
            InvalidValueError, match=rf"cannot quantize NaN.*shape \(3,\), dtype torch.{dtype.__name__}"
        ):
            TorchUniformQuantizer(quantizer).quant(torch.from_numpy(values))


def test_a_scale_that_underflows_in_float16_gives_what_numpy_gives() -> None:
    # float16(1e-9) is 0: x / 0 is infinite (clipped to the top code) and 0 / 0 is NaN (refused).
    quantizer = UniformQuantizer(QuantizationOptions(8), None, UniformQuantizationParameters(1e-9, 0, 0))
    _check_quant(quantizer, numpy.array([1.0, -2.0], dtype=numpy.float16))
    with pytest.raises(InvalidValueError, match="cannot quantize NaN"):
        TorchUniformQuantizer(quantizer).quant(torch.tensor([0.0, 1.0], dtype=torch.float16))


def test_codes_beyond_int64_without_clipping_are_refused() -> None:
    quantizer = _quantizer(numpy.array([0.0, 1.0]), 8, no_clipping=True)
    for value in (1e300, -1e300, float("inf")):
        with pytest.raises(InvalidValueError, match="beyond int64") as numpy_error:
            quantizer.quant(numpy.array([0.0, value]))
        with pytest.raises(InvalidValueError, match="beyond int64") as torch_error:
            TorchUniformQuantizer(quantizer).quant(torch.tensor([0.0, value], dtype=torch.float64))
        assert str(torch_error.value) == str(numpy_error.value)
    # With clipping, infinities clip to the end codes.
    clipping = _quantizer(numpy.array([0.0, 1.0]), 8)
    _check_quant(clipping, numpy.array([-numpy.inf, 0.5, numpy.inf], dtype=numpy.float32))


def test_zero_dimensional_tensors_follow_numpys_scalar_rules(plain_numpy_path: None) -> None:
    rng = numpy.random.default_rng(5)
    quantizer = _quantizer(rng.normal(size=50), 12, signed=True)
    differ = 0
    for dtype in FLOATS:
        for value in rng.normal(size=300).astype(dtype):
            array = numpy.asarray(value)
            codes = _check_quant(quantizer, array)
            assert codes.shape == ()
            differ += int(codes) != int(quantizer.quant(array.reshape(1))[0])
    assert differ  # some values give another code as a 0-d array (float64 division) than in a 1-d one


def test_rounding_modes() -> None:
    rng = numpy.random.default_rng(9)
    for rounding in ("half_up", "floor", "ceil"):
        for dtype in FLOATS:
            calibration = rng.normal(size=64).astype(dtype)
            quantizer = _quantizer(calibration, 6, signed=True, rounding=rounding)
            halves = (quantizer.scale * (numpy.arange(-8, 8) + 0.5 - quantizer.zero_point)).astype(dtype)
            _check_quant(quantizer, numpy.concatenate([calibration, halves]))


def test_stochastic_rounding_uses_the_quantizers_generator() -> None:
    values = numpy.random.default_rng(2).normal(size=(4, 50)).astype(numpy.float32)
    first = _quantizer(values, 3, rounding="stochastic", seed=4)
    second = _quantizer(values, 3, rounding="stochastic", seed=4)
    torch_quantizer = TorchUniformQuantizer(first)
    for _ in range(2):  # the generator advances as with numpy calls
        _assert_same(torch_quantizer.quant(torch.from_numpy(values)), second.quant(values))


# -- per axis and per block


def _channels(rng: numpy.random.Generator, shape: tuple[int, ...], axis: int, dtype: Any) -> numpy.ndarray:
    """Values whose channels along ``axis`` have very different ranges (one is constant, one is
    far from 0 so that its zero point exceeds 65535 on 16 bits)."""
    values = rng.normal(size=shape)
    size = shape[axis]
    centers = numpy.linspace(-2.0, 2.0, size)
    centers[-1] = 3000.0
    widths = numpy.geomspace(0.01, 10.0, size)
    layout = [1] * len(shape)
    layout[axis] = size
    values = values * widths.reshape(layout) + centers.reshape(layout)
    values[(slice(None),) * axis + (0,)] = -1.5  # a constant channel: offset 0 when signed
    return values.astype(dtype)


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize(
    "flags", [{}, {"signed": True}, {"symmetric": True, "narrow": True}, {"no_clipping": True}]
)
def test_quant_matches_numpy_per_axis(axis: int, flags: dict[str, bool]) -> None:
    rng = numpy.random.default_rng(abs(axis) * 10 + len(flags))
    for dtype in FLOATS:
        for n_bits in (3, 8, 16):
            calibration = _channels(rng, (4, 5, 6), axis, dtype)
            quantizer = _quantizer(calibration, n_bits, axis=axis, **flags)
            shape = [1, 1, 1]
            shape[axis] = calibration.shape[axis]
            assert quantizer.scale.shape == tuple(shape)
            _check_quant(quantizer, calibration)
            _check_quant(quantizer, (calibration.astype(numpy.float64) * 1.5 + 1).astype(dtype))
            for code_dtype in (torch.int32, torch.float64):
                _check_quant(quantizer, calibration, code_dtype)
            with pytest.raises(InvalidValueError, match="block grid"):
                TorchUniformQuantizer(quantizer).quant(torch.zeros(7, 7, 7))


def test_per_axis_blocks_with_different_dtype_plans() -> None:
    rng = numpy.random.default_rng(21)
    for dtype in (numpy.float16, numpy.float32):  # float64 values are computed in float64 only
        calibration = _channels(rng, (3, 6, 5), 1, dtype)
        quantizer = _quantizer(calibration, 16, axis=1)
        steps = quantizer.quant_plan(calibration.dtype, calibration.shape).steps
        assert len(steps) > 1  # the case under test: channels computed in different dtypes
        _check_quant(quantizer, calibration)
        _check_quant(quantizer, calibration.swapaxes(0, 2).copy().swapaxes(0, 2))  # non-contiguous


def test_non_contiguous_tensors() -> None:
    rng = numpy.random.default_rng(4)
    calibration = _channels(rng, (4, 5, 6), 1, numpy.float32)
    quantizer = _quantizer(calibration, 8, signed=True, axis=1)
    tensor = torch.from_numpy(calibration.transpose(2, 1, 0).copy()).permute(2, 1, 0)
    assert not tensor.is_contiguous()
    codes = TorchUniformQuantizer(quantizer).quant(tensor)
    _assert_same(codes, quantizer.quant(tensor.numpy()))


@pytest.mark.parametrize("block_size", [(2, 5, 3), (1, 1, 6), (4, 1, 2), (2, 5, 6)])
def test_quant_matches_numpy_per_block(block_size: tuple[int, int, int]) -> None:
    rng = numpy.random.default_rng(sum(block_size))
    for dtype in FLOATS:
        calibration = (rng.normal(size=(4, 5, 6)) * 3 + numpy.arange(6) * 2000).astype(dtype)
        for flags in ({}, {"signed": True}, {"no_clipping": True}):
            quantizer = _quantizer(
                calibration, 16 if dtype != numpy.float16 else 8, block_size=block_size, **flags
            )
            _check_quant(quantizer, calibration)
            _check_quant(quantizer, (calibration.astype(numpy.float64) * 1.25).astype(dtype))


def test_dequant_matches_numpy() -> None:
    rng = numpy.random.default_rng(8)
    calibration = rng.normal(size=(3, 4)) * 5
    per_tensor = _quantizer(calibration, 8, signed=True)
    per_axis = _quantizer(_channels(rng, (3, 4, 2), 1, numpy.float64), 16, axis=1)
    for quantizer in (per_tensor, per_axis):
        torch_quantizer = TorchUniformQuantizer(quantizer)
        codes = quantizer.quant(_channels(rng, (3, 4, 2), 1, numpy.float64))
        _assert_same(torch_quantizer.dequant(torch.from_numpy(codes)), quantizer.dequant(codes))
        for dtype in (numpy.int32, numpy.uint16, numpy.float16, numpy.float32, numpy.float64):
            typed = (codes % 2000).astype(dtype)
            _assert_same(torch_quantizer.dequant(torch.from_numpy(typed)), quantizer.dequant(typed))
    # 0-d codes, and float codes that numpy keeps in their own precision.
    _assert_same(
        TorchUniformQuantizer(per_tensor).dequant(torch.tensor(5)), per_tensor.dequant(numpy.asarray(5))
    )
    half = numpy.array([1.0, 2.0], dtype=numpy.float16)
    assert per_tensor.dequant(half).dtype == numpy.float16
    _assert_same(TorchUniformQuantizer(per_tensor).dequant(torch.from_numpy(half)), per_tensor.dequant(half))


def test_changed_parameters_are_seen() -> None:
    quantizer = _quantizer(numpy.array([0.0, 1.0]), 4)
    torch_quantizer = TorchUniformQuantizer(quantizer)
    values = torch.tensor([0.2, 0.9])
    before = torch_quantizer.quant(values)
    _assert_same(before, quantizer.quant(values.numpy()))
    quantizer.scale = numpy.float64(0.5)
    after = torch_quantizer.quant(values)
    _assert_same(after, quantizer.quant(values.numpy()))
    assert after.tolist() == [0, 2] != before.tolist()  # 0.4 and 1.8 rounded
    # Per-axis parameters, then the same arrays without the axis (numpy broadcasting).
    values = numpy.random.default_rng(6).normal(size=(3, 4)).astype(numpy.float32)
    per_axis = _quantizer(values, 8, axis=1)
    torch_quantizer = TorchUniformQuantizer(per_axis)
    _assert_same(torch_quantizer.quant(torch.from_numpy(values)), per_axis.quant(values))
    per_axis.axis = None
    _assert_same(torch_quantizer.quant(torch.from_numpy(values)), per_axis.quant(values))


def test_a_float_zero_point_is_not_taken_for_an_equal_int() -> None:
    # numpy 1.24 adds int64(300) to float16 values in float32 but float64(300.0) in float16.
    values = numpy.arange(0, 30, 0.01).astype(numpy.float16)
    results = {}
    for zero_point in (300, 300.0):  # (keyed by type below: 300 == 300.0)
        quantizer = UniformQuantizer(
            QuantizationOptions(16), None, UniformQuantizationParameters(0.013, zero_point, 0)
        )
        results[type(zero_point)] = _check_quant(quantizer, values)
    assert not torch.equal(results[int], results[float])


def test_parameters_of_unusual_types_take_the_numpy_path() -> None:
    values = numpy.array([[0.3, 1.7], [2.2, -0.4]], dtype=numpy.float32)
    quantizer = UniformQuantizer(QuantizationOptions(4), None, UniformQuantizationParameters(0.5, 2, 0))
    quantizer.scale = numpy.array([0.5, 0.25])  # array parameters without axis: numpy broadcasting
    _check_quant(quantizer, values)
    quantizer.scale = 2  # an integer scale (dequant refuses it)
    _assert_same(TorchUniformQuantizer(quantizer).quant(torch.from_numpy(values)), quantizer.quant(values))


# -- errors


def test_errors() -> None:
    quantizer = _quantizer(numpy.array([0.0, 1.0]), 4)
    torch_quantizer = TorchUniformQuantizer(quantizer)
    with pytest.raises(InvalidTypeError, match=r"must be a torch\.Tensor; got ndarray"):
        torch_quantizer.quant(numpy.array([1.0]))
    with pytest.raises(InvalidTypeError, match=r"got torch\.bfloat16 with shape \(2,\)"):
        torch_quantizer.quant(torch.zeros(2, dtype=torch.bfloat16))
    with pytest.raises(InvalidTypeError, match=r"got torch\.complex64"):
        torch_quantizer.dequant(torch.zeros(2, dtype=torch.complex64))
    with pytest.raises(InvalidTypeError, match=r"wraps an intquant\.UniformQuantizer; got dict"):
        TorchUniformQuantizer({})
    with pytest.raises(MissingParameterError, match="has no scale, zero_point, offset"):
        TorchUniformQuantizer(UniformQuantizer(QuantizationOptions(4))).quant(torch.tensor([1.0]))
    with pytest.raises(InvalidValueError, match="scale must be finite and non-zero"):
        TorchUniformQuantizer(
            UniformQuantizer(QuantizationOptions(4), None, UniformQuantizationParameters(0.0, 0, 0))
        ).quant(torch.tensor([1.0]))
    quantizer.scale = numpy.array([1.0], dtype=numpy.float32)
    with pytest.raises(InvalidDtypeError, match="float or a float64 array"):
        torch_quantizer.dequant(torch.tensor([1]))
    with pytest.raises(InvalidTypeError, match=r"float16, float32 or float64 tensor .*; got torch\.int64"):
        fake_quant(torch.tensor([1]), _quantizer(numpy.array([0.0, 1.0]), 4))


def test_import_intquant_does_not_import_torch() -> None:
    code = "import sys, intquant, intquant.quantizers; assert 'torch' not in sys.modules; print('ok')"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        == "ok\n"
    )


def test_a_missing_torch_gives_an_intquant_error() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "try:\n    import intquant.torch\n"
        "except ImportError as error:\n"
        "    from intquant.errors import IntquantError\n"
        "    print(type(error).__name__, isinstance(error, IntquantError), error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("MissingDependencyError True intquant.torch needs PyTorch")
    assert 'pip install "intquant[torch]"' in result.stdout
    assert issubclass(TorchUnavailableError, IntquantError) and issubclass(TorchUnavailableError, ImportError)


# -- fake quantization


def _gradient(values: torch.Tensor, quantizer: Any) -> torch.Tensor:
    leaf = values.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(fake_quant(leaf, quantizer).sum(), leaf)
    return gradient


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_fake_quant_forward(dtype: torch.dtype) -> None:
    rng = numpy.random.default_rng(12)
    calibration = _channels(rng, (3, 4, 5), 1, numpy.float64)
    for quantizer in (_quantizer(calibration, 5, signed=True), _quantizer(calibration, 16, axis=1)):
        torch_quantizer = TorchUniformQuantizer(quantizer)
        tensor = torch.from_numpy(calibration * 1.2).to(dtype)
        expected = torch_quantizer.dequant(torch_quantizer.quant(tensor)).to(dtype)
        restored = fake_quant(tensor, torch_quantizer)
        assert restored.dtype == dtype and torch.equal(restored, expected)
        assert torch.equal(fake_quant(tensor, quantizer), expected)  # a UniformQuantizer works too
        numpy_expected = quantizer.dequant(quantizer.quant(tensor.numpy())).astype(tensor.numpy().dtype)
        assert restored.numpy().tobytes() == numpy_expected.tobytes()


def test_fake_quant_gradient_is_one_inside_the_range_only() -> None:
    quantizer = _quantizer(numpy.array([-1.0, 2.0]), 4, signed=True)
    scale, zero_point = float(quantizer.scale), int(quantizer.zero_point)
    low, high = scale * (-8 - zero_point), scale * (7 - zero_point)  # the representable range
    assert low == pytest.approx(-1.0) and high == pytest.approx(2.0)
    inside = [low, low + 0.01, 0.0, 0.7, high - 1e-9, high]
    outside = [numpy.nextafter(low, -3.0), low - 0.5, numpy.nextafter(high, 3.0), high + 0.07, 50.0]
    values = torch.tensor(inside + outside, dtype=torch.float64)
    gradient = _gradient(values, quantizer)
    assert gradient.tolist() == [1.0] * len(inside) + [0.0] * len(outside)
    # float32 values are compared exactly too.
    assert _gradient(values.float(), quantizer).dtype == torch.float32


def test_fake_quant_gradient_without_clipping_is_one() -> None:
    values = torch.tensor([-100.0, 0.5, 1e6])
    unclipped = _quantizer(numpy.array([0.0, 1.0]), 4, no_clipping=True)
    assert _gradient(values, unclipped).tolist() == [1.0, 1.0, 1.0]
    inferred_qat = _quantizer(numpy.arange(8) * 0.5, 3, qat=True)
    assert _gradient(values, inferred_qat).tolist() == [1.0, 1.0, 1.0]


def test_fake_quant_gradient_with_a_negative_scale() -> None:
    quantizer = _quantizer(numpy.array([-2.0, -2.0]), 3)  # a constant negative range: scale -2
    assert float(quantizer.scale) == -2.0 and int(quantizer.zero_point) == 0
    values = torch.tensor([-14.5, -14.0, -3.0, 0.0, 0.5])  # the range is [-2 * 7, -2 * 0]
    assert _gradient(values, quantizer).tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_fake_quant_gradient_per_axis() -> None:
    # Channels [-1, 1], [0, 4] and [-10, -2]; per channel 3 values inside, 2 outside (5% of the
    # range beyond each end: the representable range differs from [rmin, rmax] by < scale / 2).
    weights = numpy.array([[-1.0, 1.0], [0.0, 4.0], [-10.0, -2.0]])
    values = numpy.array(
        [[-0.9, 0.0, 0.9, 1.1, -1.1], [0.2, 2.0, 3.8, 4.2, -0.2], [-9.6, -6.0, -2.4, -1.6, -10.4]]
    )
    expected = [[1.0, 1.0, 1.0, 0.0, 0.0]] * 3
    for quantizer in (_quantizer(weights, 8, axis=0), _quantizer(weights.T.copy(), 8, axis=1)):
        transposed = quantizer.scale.shape == (1, 3)
        tensor = torch.from_numpy(values.T.copy() if transposed else values)
        gradient = _gradient(tensor, TorchUniformQuantizer(quantizer))
        assert (gradient.T if transposed else gradient).tolist() == expected


def test_quantization_aware_training_fits_y_equals_2x() -> None:
    torch.manual_seed(0)
    inputs = torch.linspace(-1.0, 1.0, 64).unsqueeze(1)
    targets = 2.0 * inputs
    quantizer = TorchUniformQuantizer(_quantizer(numpy.array([-3.0, 3.0]), 6, symmetric=True))
    weight = torch.nn.Parameter(torch.tensor([[0.1]]))
    optimizer = torch.optim.SGD([weight], lr=0.2)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = torch.mean((inputs @ fake_quant(weight, quantizer) - targets) ** 2)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    step = float(quantizer.quantizer.scale)
    assert losses[-1] < losses[0] / 100
    assert abs(float(fake_quant(weight, quantizer).detach()) - 2.0) <= step  # one of the two nearest codes


def test_fake_quant_propagates_nan_without_reading_values_back() -> None:
    quantizer = _quantizer(numpy.array([0.0, 1.0]), 8)
    values = torch.tensor([0.5, float("nan"), 2.0], requires_grad=True)
    restored = fake_quant(values, quantizer)
    finite = numpy.array([0.5, 2.0], dtype=numpy.float32)
    assert torch.isnan(restored[1])
    _assert_same(restored.detach()[[0, 2]], quantizer.dequant(quantizer.quant(finite)).astype(numpy.float32))
    (gradient,) = torch.autograd.grad(restored.nansum(), values)
    assert gradient.tolist() == [1.0, 0.0, 0.0]  # NaN lies outside the representable range
    # With stochastic rounding the numpy path computes it, and refuses NaN as quant does.
    stochastic = _quantizer(numpy.array([0.0, 1.0]), 8, rounding="stochastic", seed=1)
    with pytest.raises(InvalidValueError, match="cannot quantize NaN"):
        fake_quant(values, stochastic)


@given(quantizer_cases())
@settings(max_examples=100)
def test_fake_quant_matches_numpy_on_drawn_quantizers(case: tuple[UniformQuantizer, numpy.ndarray]) -> None:
    quantizer, values = case
    assume(values.dtype.kind == "f")
    tensor = torch.from_numpy(values.copy())
    try:
        with numpy.errstate(over="ignore"):  # float16 values beyond its range: infinities
            expected = quantizer.dequant(quantizer.quant(values)).astype(values.dtype)
    except IntquantError as error:  # an integer scale, which dequant refuses
        with pytest.raises(type(error), match="float or a float64 array to dequantize"):
            fake_quant(tensor, quantizer)
        return
    _assert_same(fake_quant(tensor, quantizer), expected)


# -- the observer and FakeQuantize: parameters, codes and values as intquant's

MODULE_DTYPES = (numpy.float16, numpy.float32, numpy.float64)
MODULE_ROUNDINGS = ("half_even", "half_up", "floor", "ceil")


@st.composite
def _module_options(draw: st.DrawFn, rank: int) -> dict[str, Any]:
    n_bits = draw(st.integers(1, 24))
    is_signed = draw(st.booleans())
    is_symmetric = is_signed and n_bits > 1 and draw(st.booleans())
    return {
        "n_bits": n_bits,
        "is_signed": is_signed,
        "is_symmetric": is_symmetric,
        "is_narrow": draw(st.booleans()),
        "rounding": draw(st.sampled_from(MODULE_ROUNDINGS)),
        "axis": draw(st.sampled_from([None, *range(-rank, rank)])),
        "zero_in_range": draw(st.booleans()),
        "power_of_two_scale": draw(st.booleans()),
    }


@st.composite
def _batches(draw: st.DrawFn, count: int = 1) -> tuple[list[numpy.ndarray], dict[str, Any]]:
    """``count`` float arrays of one dtype and shape, around a drawn center with a drawn spread
    (a spread of 0: a single value; far centers: zero points beyond 65535), and module options."""
    dtype = numpy.dtype(draw(st.sampled_from(MODULE_DTYPES)))
    shape = draw(st.sampled_from([(7,), (3, 5), (2, 3, 4)]))
    centers = [0.0, 0.5, -3.0, 1000.0, -700.0] + ([] if dtype == numpy.float16 else [1e5, -3e7])
    batches = []
    for _ in range(count):
        center = draw(st.sampled_from(centers))
        spread = draw(st.sampled_from([0.0, 1e-7, 1e-3, 1.0, 30.0, 2000.0]))
        base = draw(hnp.arrays(numpy.float64, shape, elements=st.floats(-1.0, 1.0)))
        batches.append((center + spread * base).astype(dtype))
    return batches, draw(_module_options(len(shape)))


def _intquant_quantizer(batches: list[numpy.ndarray], options: dict[str, Any]) -> UniformQuantizer:
    """intquant's own quantizer calibrated (``update``) on the batches with the same options."""
    extra = {name: options[name] for name in ("rounding", "axis", "zero_in_range", "power_of_two_scale")}
    quant_options = QuantizationOptions(
        options["n_bits"], options["is_signed"], options["is_symmetric"], **extra
    )
    quant_options.is_narrow = options["is_narrow"]
    stats = MinMaxQuantizationStats()
    for batch in batches:
        stats.update(batch, axis=options["axis"])
    quantizer = UniformQuantizer(quant_options, stats)
    quantizer.compute_quantization_parameters(quantizer.quant_options, quantizer.quant_stats)
    return quantizer


def _assert_module_matches(batches: list[numpy.ndarray], options: dict[str, Any]) -> None:
    """A FakeQuantize observing the batches: its parameters (values and types), codes and
    fake-quantized values are intquant's; or both refuse the statistics."""
    module = FakeQuantize(**options)
    try:
        quantizer = _intquant_quantizer(batches, options)
    except IntquantError as error:  # e.g. a scale that would not be finite
        with pytest.raises(InvalidValueError, match="not finite"):
            for batch in batches:
                module(torch.from_numpy(batch.copy()))
        assert "not finite" in str(error)
        return
    for batch in batches:
        restored = module(torch.from_numpy(batch.copy()))
    last = batches[-1]
    try:
        codes = quantizer.quant(last)
    except InvalidValueError as error:  # 0 / 0 where the scale underflows to 0 in float16
        assert "cannot quantize NaN" in str(error)
        assert torch.isnan(restored).any()  # NaN where numpy refuses
        with pytest.raises(InvalidValueError, match="cannot quantize NaN"):
            module.quant(torch.from_numpy(last.copy()))
    else:
        _assert_same(restored, quantizer.dequant(codes).astype(last.dtype))
        _assert_same(module.quant(torch.from_numpy(last.copy())), codes)
    exported = module.to_quantizer()
    assert intquant.dumps(exported.quant_params) == intquant.dumps(quantizer.quant_params)
    assert exported.quant_options == quantizer.quant_options
    assert numpy.array_equal(exported.rmin, quantizer.rmin) and exported.rmin.dtype == last.dtype
    assert numpy.array_equal(exported.rmax, quantizer.rmax)
    assert exported.quant_params == quantizer.quant_params


@given(_batches())
@settings(max_examples=200)
def test_module_matches_intquant_on_one_tensor(case: tuple[list[numpy.ndarray], dict[str, Any]]) -> None:
    _assert_module_matches(*case)


@given(_batches(count=3))
@settings(max_examples=60)
def test_module_matches_intquant_updated_on_several_tensors(
    case: tuple[list[numpy.ndarray], dict[str, Any]],
) -> None:
    _assert_module_matches(*case)


def test_module_on_paper() -> None:
    module = FakeQuantize(4, is_signed=True)  # [-8, 7]
    restored = module(torch.tensor([-1.0, 0.0, 0.5, 2.0]))
    # scale 3 / 15 = 0.2, zero point round((2 * -8 - (-1) * 7) / 3) = round(-3) = -3
    assert module.scale.tolist() == [0.2] and module.zero_point.tolist() == [-3]
    # 0.5 / 0.2 - 3 = -0.5 rounds half to even: 0; 0.2 * (0 + 3) in float64, as float32
    assert restored.tolist() == [-1.0, 0.0, numpy.float32(0.6000000000000001).item(), 2.0]
    assert module.quant(torch.tensor([-1.0, 0.5, 9.0])).tolist() == [-8, 0, 7]
    assert module.dequant(torch.tensor([-8, 0, 7])).tolist() == [-1.0, 0.6000000000000001, 2.0]


def test_kernel_dtype_selection_on_the_device_matches_numpy() -> None:
    # Per-channel scales and zero points that need every pair of dtypes numpy 1.24 can pick for
    # float16 values (division in float16/32/64, addition wider), computed at once and selected
    # per channel; and the same pairs read back on the host.
    scale = numpy.array([0.5, 0.5, 0.5, 70000.0, 70000.0, 1e39])
    zero_point = numpy.array([3, 300, 70000, 300, 70000, 70000])
    options = QuantizationOptions(32, axis=1)
    quantizer = UniformQuantizer(
        options, None, UniformQuantizationParameters(scale.reshape(1, 6), zero_point.reshape(1, 6), 0)
    )
    rng = numpy.random.default_rng(3)
    for dtype in MODULE_DTYPES:
        values = (rng.normal(size=(40, 6)) * 3000.0).astype(dtype)
        expected = quantizer.quant(values)
        scale_tensor, zero_tensor = (
            torch.from_numpy(scale).reshape(1, 6),
            torch.from_numpy(zero_point).reshape(1, 6),
        )
        tensor = torch.from_numpy(values)
        for pairs in (None, dtype_pairs(tensor.dtype, (0.5, 1e39), (3, 70000))):
            codes = rounded_codes(tensor, scale_tensor, zero_tensor, "half_even", pairs)
            _assert_same(torch.clamp(codes, 0, 2**32 - 1).to(torch.int64), expected)
        if dtype == numpy.float16:
            assert len(dtype_pairs(tensor.dtype, (0.5, 1e39), (3, 70000))) == 6


def test_module_gradient_is_torchs_clipped_straight_through() -> None:
    module = FakeQuantize(2)  # codes 0..3
    module(torch.tensor([0.0, 3.0]))  # scale 1, zero point 0
    module.disable_observer()
    values = torch.tensor([-0.6, -0.4, 0.0, 1.7, 3.0, 3.4, 3.6, float("nan")], requires_grad=True)
    restored = module(values)
    assert restored[:7].tolist() == [0.0, 0.0, 0.0, 2.0, 3.0, 3.0, 3.0] and torch.isnan(restored[7])
    (gradient,) = torch.autograd.grad(restored[:7].sum(), values)
    # 1 where round(x / scale + zero_point) lies in [0, 3] (-0.4 and 3.4 round into it)
    assert gradient.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    # fake_quant compares the values with the representable range [0, 3] instead.
    (other,) = torch.autograd.grad(fake_quant(values, module.to_quantizer())[:7].sum(), values)
    assert other.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_moving_average_statistics() -> None:
    observer = MinMaxObserver(8, averaging_constant=0.25)
    for values in ([0.0, 2.0], [4.0, 10.0], [-4.0, 2.0]):
        observer(torch.tensor(values, dtype=torch.float64))
    # min: 0, 0 + 0.25 * 4 = 1, 1 + 0.25 * -5 = -0.25; max: 2, 4, 4 + 0.25 * -2 = 3.5
    assert observer.min_val.tolist() == [-0.25] and observer.max_val.tolist() == [3.5]
    scale, zero_point, offset, valid = observer.calculate_qparams()
    expected = _intquant_quantizer_from_range(-0.25, 3.5, 8)
    assert scale.tolist() == [float(expected.scale)] and zero_point.tolist() == [int(expected.zero_point)]
    assert offset.tolist() == [0] and valid.tolist() == [True]
    per_channel = MinMaxObserver(8, axis=0, averaging_constant=0.5)
    per_channel(torch.tensor([[0.0, 1.0], [5.0, 7.0]]))
    per_channel(torch.tensor([[2.0, 3.0], [1.0, 9.0]]))
    assert per_channel.min_val.tolist() == [1.0, 3.0] and per_channel.max_val.tolist() == [2.0, 8.0]


def _intquant_quantizer_from_range(rmin: float, rmax: float, n_bits: int) -> UniformQuantizer:
    stats = MinMaxQuantizationStats(rmax=numpy.float64(rmax), rmin=numpy.float64(rmin))
    quantizer = UniformQuantizer(QuantizationOptions(n_bits), stats)
    quantizer.compute_quantization_parameters(quantizer.quant_options, quantizer.quant_stats)
    return quantizer


def test_statistics_take_the_widest_dtype_observed() -> None:
    observer = MinMaxObserver(8)
    observer(torch.tensor([0.1, 0.7], dtype=torch.float16))
    assert observer.statistics_dtype == torch.float16
    observer(torch.tensor([0.3, 0.9], dtype=torch.float32))
    assert observer.statistics_dtype == torch.float32
    stats = observer.to_statistics()
    assert stats.rmin.dtype == numpy.float32 and float(stats.rmin) == float(numpy.float16(0.1))
    observer.reset_min_max_vals()
    assert observer.is_empty() and observer.min_val.tolist() == [float("inf")]
    with pytest.raises(MissingParameterError, match="observed nothing yet"):
        observer.calculate_qparams()


# -- switches, state and export


def test_switches_work_like_torch_ao() -> None:
    model = torch.nn.Sequential(FakeQuantize(4), torch.nn.Identity(), FakeQuantize(4, axis=0))
    values = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    model(values)
    scales = [model[0].scale.clone(), model[2].scale.clone()]
    model.apply(disable_observer)
    model(values * 10)  # not observed
    assert torch.equal(model[0].scale, scales[0]) and torch.equal(model[2].scale, scales[1])
    assert model[0].observer.max_val.tolist() == [3.0]
    model.apply(disable_fake_quant)
    assert model(values * 0.3).equal(values * 0.3)  # passed through
    model.apply(enable_fake_quant)
    assert not model(values * 0.3).equal(values * 0.3)
    model.apply(enable_observer)
    model(values * 10)
    assert model[0].observer.max_val.tolist() == [30.0]
    with pytest.raises(InvalidTypeError, match="'enabled' must be True or False; got 'yes'"):
        model[0].enable_observer("yes")


@pytest.mark.parametrize("axis", [None, 1])
def test_state_dict_round_trip(axis: int | None) -> None:
    module = FakeQuantize(5, is_signed=True, axis=axis, rounding="half_up", averaging_constant=0.1)
    rng = numpy.random.default_rng(1)
    for _ in range(3):
        module(torch.from_numpy(rng.normal(size=(4, 3)).astype(numpy.float32)))
    module.disable_observer()
    state = module.state_dict()
    assert set(state) == {
        "scale", "zero_point", "offset", "state", "observer.min_val", "observer.max_val", "observer.state",
    }  # fmt: skip
    channels = -1 if axis is None else 2
    assert state["state"].tolist() == [1, 0, 1, channels] and state["observer.state"].tolist() == [
        1,
        32,
        channels,
    ]
    loaded = FakeQuantize(5, is_signed=True, axis=axis, rounding="half_up", averaging_constant=0.1)
    loaded.load_state_dict(state)  # per channel: sized by the state (a lazy module)
    assert not loaded.observer_enabled and loaded.observer.statistics_dtype == torch.float32
    values = torch.from_numpy(rng.normal(size=(4, 3)).astype(numpy.float32) * 2)
    assert torch.equal(loaded(values), module(values))
    assert intquant.dumps(loaded.to_quantizer()) == intquant.dumps(module.to_quantizer())
    loaded.enable_observer()
    module.enable_observer()
    assert torch.equal(loaded(values), module(values))  # the statistics went on from the same state
    with pytest.raises(InvalidValueError, match=r"FakeQuantize state \(at state\) must be 4 ints, format 1"):
        loaded.load_state_dict({**state, "state": torch.tensor([2, 0, 1, channels])})
    with pytest.raises(InvalidValueError, match=r"holds two switches \(0 or 1\)"):
        loaded.load_state_dict({**state, "state": torch.tensor([1, 5, 1, channels])})
    with pytest.raises(InvalidValueError, match=r"statistics' dtype \(0, 16, 32 or 64 bits\)"):
        loaded.load_state_dict({**state, "observer.state": torch.tensor([1, 8, channels])})
    # Tensors only (torch.jit.trace and the TorchScript ONNX exporter detach every entry).
    assert all(isinstance(tensor, torch.Tensor) for tensor in state.values())


def test_casting_a_model_keeps_the_quantizers_dtypes() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), FakeQuantize(8, axis=1))
    model(torch.randn(5, 3))
    state = {
        name: tensor.clone()
        for name, tensor in model[1].state_dict().items()
        if isinstance(tensor, torch.Tensor)
    }
    model.half()
    assert model[0].weight.dtype == torch.float16
    for name, tensor in model[1].state_dict().items():
        if isinstance(tensor, torch.Tensor):
            assert tensor.dtype == state[name].dtype and torch.equal(tensor, state[name])
    model.double()
    assert model[1].scale.dtype == torch.float64 and model[1].zero_point.dtype == torch.int64


@pytest.mark.parametrize("axis", [None, 0, -1])
def test_export_and_import_of_intquant_quantizers(axis: int | None) -> None:
    rng = numpy.random.default_rng(2)
    calibration = _channels(rng, (3, 4), 0 if axis is None else axis, numpy.float32)
    options = QuantizationOptions(6, is_signed=True, is_symmetric=True, axis=axis, power_of_two_scale=True)
    options.is_narrow = True
    quantizer = UniformQuantizer(options)
    quantizer.compute_quantization_stats(calibration)
    quantizer.compute_quantization_parameters(quantizer.quant_options, quantizer.quant_stats)
    module = FakeQuantize.from_quantizer(quantizer)
    assert (
        not module.observer_enabled and module.is_narrow and module.observer.statistics_dtype == torch.float32
    )
    values = torch.from_numpy((calibration * 1.3).astype(numpy.float32))
    _assert_same(module.quant(values), quantizer.quant(values.numpy()))
    _assert_same(module(values), quantizer.dequant(quantizer.quant(values.numpy())).astype(numpy.float32))
    exported = module.to_quantizer()
    assert intquant.dumps(exported.quant_params) == intquant.dumps(quantizer.quant_params)
    assert exported.quant_options == quantizer.quant_options and exported.uvalues is None
    # Observing on from the imported statistics gives intquant's update.
    continued = FakeQuantize.from_quantizer(quantizer, observer_enabled=True)
    continued(values)
    stats = MinMaxQuantizationStats()
    stats.update(calibration, axis=axis)
    stats.update(values.numpy(), axis=axis)
    updated = UniformQuantizer(options, stats)
    updated.compute_quantization_parameters(updated.quant_options, updated.quant_stats)
    assert intquant.dumps(continued.to_quantizer().quant_params) == intquant.dumps(updated.quant_params)


def test_imports_that_are_refused() -> None:
    calibration = numpy.array([[0.0, 1.0], [2.0, 4.0]])
    with pytest.raises(InvalidTypeError, match=r"takes an intquant\.UniformQuantizer; got dict"):
        FakeQuantize.from_quantizer({})  # type: ignore[arg-type]
    for refused, match in (
        (_quantizer(calibration, 4, qat=True), "has is_qat"),
        (_quantizer(calibration, 4, no_clipping=True), "has no_clipping"),
        (_quantizer(calibration, 4, block_size=(1, 2)), "has block_size"),
        (
            QuantizedArray(4, calibration, is_signed=True, is_symmetric=True, full_range=True).quantizer,
            "has full_range",
        ),
    ):
        with pytest.raises(InvalidOptionsError, match=match):
            FakeQuantize.from_quantizer(refused)
    with pytest.raises(MissingParameterError, match="has no scale, zero_point, offset"):
        FakeQuantize.from_quantizer(UniformQuantizer(QuantizationOptions(4)))
    with pytest.raises(MissingParameterError, match="no options"):
        FakeQuantize.from_quantizer(UniformQuantizer(None, None, UniformQuantizationParameters(1.0, 0, 0)))
    float_zero_point = _quantizer(calibration, 4)
    float_zero_point.zero_point = 3.0
    with pytest.raises(InvalidTypeError, match="a zero point of dtype float64"):
        FakeQuantize.from_quantizer(float_zero_point)
    per_tensor_with_axis = _quantizer(calibration, 4)
    per_tensor_with_axis.axis = 0
    with pytest.raises(InvalidValueError, match="needs per-channel parameters"):
        FakeQuantize.from_quantizer(per_tensor_with_axis)
    zero_scale = _quantizer(calibration, 4)
    zero_scale.scale = numpy.float64(0.0)
    with pytest.raises(InvalidValueError, match="finite and non-zero"):
        FakeQuantize.from_quantizer(zero_scale)


# -- errors of the modules


def test_module_errors() -> None:
    module = FakeQuantize(8)
    with pytest.raises(InvalidTypeError, match=r"must be a torch\.Tensor; got list"):
        module([1.0])  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match=r"float16, float32 or float64 tensor .* got torch\.bfloat16"):
        module(torch.zeros(2, dtype=torch.bfloat16))
    with pytest.raises(InvalidTypeError, match=r"got torch\.int64 with shape \(2,\)"):
        module(torch.zeros(2, dtype=torch.int64))
    with pytest.raises(InvalidValueError, match=r"cannot observe an empty tensor \(shape \(0, 3\)\)"):
        module(torch.zeros(0, 3))
    with pytest.raises(InvalidValueError, match=r"containing NaN or an infinity \(shape \(2,\)"):
        module(torch.tensor([1.0, float("inf")]))
    with pytest.raises(InvalidValueError, match="containing NaN"):
        MinMaxObserver(8, axis=0)(torch.tensor([[1.0, 2.0], [float("nan"), 0.0]]))
    too_wide = FakeQuantize(8)
    with pytest.raises(InvalidValueError, match="give a scale that is not finite"):
        too_wide(torch.tensor([-6e4, 6e4], dtype=torch.float16))  # the range overflows float16
    with pytest.raises(InvalidValueError, match="cannot quantize NaN"):
        module.quant(torch.tensor([float("nan")]))
    with pytest.raises(InvalidTypeError, match="integer codes"):
        module.dequant(torch.tensor([1.0]))
    per_channel = FakeQuantize(8, axis=2)
    with pytest.raises(InvalidValueError, match=r"axis=2 is out of range .* shape \(3, 4\)"):
        per_channel(torch.zeros(3, 4))
    with pytest.raises(MissingParameterError, match="no parameters yet"):
        per_channel.to_quantizer()
    per_channel(torch.zeros(3, 4, 5))
    with pytest.raises(InvalidValueError, match=r"statistics of 5 channels of 3-dimensional .* \(3, 4, 6\)"):
        per_channel(torch.zeros(3, 4, 6))
    frozen = FakeQuantize(8, axis=0)
    frozen.disable_observer()
    with pytest.raises(MissingParameterError, match="observer is disabled"):
        frozen(torch.zeros(3, 4))
    for options, error, match in (
        ({"n_bits": 0}, InvalidValueError, "'n_bits' must be"),
        ({"n_bits": 1, "is_signed": True, "is_symmetric": True}, InvalidOptionsError, "no level above zero"),
        ({"is_symmetric": True}, InvalidOptionsError, "needs is_signed=True"),
        ({"rounding": "nearest"}, InvalidValueError, "'rounding' must be one of"),
        ({"averaging_constant": 0.0}, InvalidValueError, r"averaging_constant must be in \(0, 1\]"),
        ({"averaging_constant": "0.1"}, InvalidTypeError, "averaging_constant must be a float"),
        ({"is_narrow": 1}, InvalidTypeError, "is_narrow"),
    ):
        with pytest.raises(error, match=match):
            FakeQuantize(**options)


def test_modules_repr() -> None:
    module = FakeQuantize(4, is_signed=True, axis=0, rounding="floor", averaging_constant=0.5)
    assert repr(module) == (
        "FakeQuantize(\n  rounding='floor', observer_enabled=True, fake_quant_enabled=True\n"
        "  (observer): MinMaxObserver(n_bits=4, is_signed=True, axis=0, averaging_constant=0.5)\n)"
    )


def test_module_stochastic_rounding_draws_from_torchs_generator() -> None:
    options = QuantizationOptions(4, rounding="stochastic")
    module = FakeQuantize.from_quantizer(
        UniformQuantizer(options, None, UniformQuantizationParameters(0.5, 0, 0))
    )
    values = torch.full((20000,), 1.125)  # 2.25 steps: code 2 or 3, 3 a quarter of the time
    torch.manual_seed(5)
    codes = module.quant(values)
    assert set(codes.unique().tolist()) == {2, 3}
    assert abs(float(codes.double().mean()) - 2.25) < 0.02
    torch.manual_seed(5)
    assert torch.equal(module.quant(values), codes)  # torch's seed makes it reproducible


def test_module_without_gradient_returns_plain_values() -> None:
    module = FakeQuantize(3)
    weights = torch.tensor([0.0, 0.3, 7.0], requires_grad=True)
    with torch.no_grad():
        restored = module(weights)
    assert restored.grad_fn is None and not restored.requires_grad
    assert torch.equal(restored, module(weights).detach())


@pytest.mark.parametrize("axis", [None, 0])
def test_a_refused_call_leaves_the_module_as_it_was(axis: int | None) -> None:
    module = FakeQuantize(8, axis=axis)
    module(torch.tensor([[0.0, 1.0], [2.0, 3.0]], dtype=torch.float16))
    before = {name: tensor.clone() for name, tensor in module.state_dict().items()}
    for refused in (
        torch.tensor([[0.0, float("nan")], [2.0, 3.0]], dtype=torch.float16),  # NaN
        torch.tensor([[-6e4, 6e4], [-6e4, 6e4]], dtype=torch.float16),  # the range overflows float16
    ):
        with pytest.raises(InvalidValueError):
            module(refused)
        after = module.state_dict()
        assert all(torch.equal(before[name], after[name]) for name in before)

"""The numeric kernels: cases checkable on paper, and properties over random inputs."""

from __future__ import annotations

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from intquant._core.checks import as_real_array
from intquant._core.execute import dequantize, quantize
from intquant._core.formulas import (
    choose_uniform_parameters,
    integer_bounds,
    is_uniform_grid,
    minmax_statistics,
    round_to_cents,
)
from intquant.errors import InvalidTypeError, InvalidValueError


def _parameters(rmin: float, rmax: float, n_bits: int, **flags: bool) -> tuple[object, object, int]:
    options = {"is_signed": False, "is_symmetric": False, "is_qat": False, "is_precomputed_qat": False}
    options.update(flags)
    return choose_uniform_parameters(rmin, rmax, n_bits, uvalues=None, scale=None, **options)  # type: ignore[arg-type]


# -- on paper
def test_asymmetric_parameters_on_paper() -> None:
    # scale = (3 - (-1)) / (2**2 - 1) = 4/3; zero_point = round((3*0 - (-1)*3) / 4) = round(0.75) = 1
    scale, zero_point, offset = _parameters(-1.0, 3.0, 2)
    assert scale == 4 / 3 and type(scale) is numpy.float64
    assert zero_point == 1 and type(zero_point) is numpy.int64
    assert offset == 0 and type(offset) is int


def test_signed_parameters_on_paper() -> None:
    # offset = 2; zero_point = round((3*-2 - (-1)*(3-2)) / 4) = round(-1.25) = -1
    scale, zero_point, offset = _parameters(-1.0, 3.0, 2, is_signed=True)
    assert (scale, zero_point, offset) == (4 / 3, -1, 2)


def test_symmetric_parameters_on_paper() -> None:
    # scale = max(|-1|, |3|) / (2**3 - 1 - 4) = 1.0, zero point a Python 0
    scale, zero_point, offset = _parameters(-1.0, 3.0, 3, is_signed=True, is_symmetric=True)
    assert (scale, zero_point, offset) == (1.0, 0, 4)
    assert type(zero_point) is int


def test_single_value_ranges() -> None:
    assert _parameters(0.0, 0.0, 8) == (1.0, 0, 0)
    scale, zero_point, offset = _parameters(-2.5, -2.5, 8, is_signed=True)
    assert (scale, zero_point, offset) == (-2.5, 0, 0)  # the reference's scale for a constant: rmax
    assert type(zero_point) is int


def test_zero_point_rounds_half_to_even() -> None:
    # zero_point = round(-rmin * 3 / (rmax - rmin)) with rmin=-0.5, rmax=2.5: round(0.5) = 0
    assert _parameters(-0.5, 2.5, 2)[1] == 0
    # rmin=-1.5, rmax=1.5: round(1.5) = 2
    assert _parameters(-1.5, 1.5, 2)[1] == 2


def test_float32_statistics_subtract_in_float32() -> None:
    rmin, rmax = numpy.float32(0.1), numpy.float32(0.7)
    scale, _, _ = _parameters(rmin, rmax, 8)
    assert scale == numpy.float64(rmax - rmin) / 255  # the difference is float32's
    assert scale != (numpy.float64(rmax) - numpy.float64(rmin)) / 255


def test_quantize_on_paper() -> None:
    values = numpy.array([-1.0, 0.0, 0.5, 1.0, 2.0, 9.0])
    # values / 0.5 + 2 = [0, 2, 3, 4, 6, 20] -> clipped to [0, 7]
    codes = quantize(values, numpy.float64(0.5), numpy.int64(2), (0, 7))
    assert codes.tolist() == [0, 2, 3, 4, 6, 7] and codes.dtype == numpy.int64
    assert quantize(numpy.array([0.25, 0.75]), 0.5, 0, None).tolist() == [0, 2]  # half to even


def test_dequantize_on_paper() -> None:
    restored = dequantize(numpy.array([0, 2, 7]), numpy.float64(0.5), numpy.int64(2))
    assert restored.tolist() == [-1.0, 0.0, 2.5] and restored.dtype == numpy.float64


def test_integer_bounds() -> None:
    assert integer_bounds(8, 0, False) == (0, 255)
    assert integer_bounds(8, 128, False) == (-128, 127)
    assert integer_bounds(8, 128, True) == (-127, 127)


def test_statistics_on_paper() -> None:
    rmin, rmax, uvalues = minmax_statistics(numpy.array([0.126, -1.0, 0.124, 0.5], dtype=numpy.float32))
    assert (rmin, rmax) == (-1.0, 0.5) and type(rmin) is numpy.float32
    assert uvalues.tolist() == numpy.array([-1.0, 0.12, 0.13, 0.5], dtype=numpy.float32).tolist()


def test_round_to_cents_is_numpy_round() -> None:
    values = numpy.linspace(-3, 3, 1001).astype(numpy.float32)
    assert numpy.array_equal(round_to_cents(values), numpy.round(values, 2))
    assert round_to_cents(numpy.array([1, 2])).tolist() == [1, 2]


def test_uniform_grid() -> None:
    assert is_uniform_grid(numpy.array([0.0, 0.25, 0.75, 1.0]), 2)
    assert not is_uniform_grid(numpy.array([0.0, 0.25, 0.75, 1.0, 1.25]), 2)  # more than 2**2 values
    assert not is_uniform_grid(numpy.array([0.5]), 4)
    assert not is_uniform_grid(numpy.array([0.0, 0.1, 0.35]), 4)


# -- dtype rules of the reference (numpy 1.24 value-based casting)
def test_float32_arrays_are_quantized_in_float32() -> None:
    values = numpy.linspace(-1, 1, 10001, dtype=numpy.float32)
    scale = numpy.float64(0.1) / 3
    in_float32 = numpy.rint(values / numpy.float32(scale) + numpy.float32(7)).astype(numpy.int64)
    in_float64 = numpy.rint(values.astype(numpy.float64) / scale + 7).astype(numpy.int64)
    assert (in_float32 != in_float64).any()  # the precision shows on some values
    assert numpy.array_equal(quantize(values, scale, numpy.int64(7), None), in_float32)


def test_large_zero_points_add_in_float64() -> None:
    # numpy 1.24: float32 array + int64 scalar 70000 runs in float64 (70000 needs uint32).
    values = numpy.array([0.3], dtype=numpy.float32)
    quotient = values / numpy.float32(1e-3)
    expected = numpy.rint(quotient.astype(numpy.float64) + 70000.5 - 0.5)
    assert quantize(values, numpy.float64(1e-3), numpy.int64(70000), None)[0] == expected[0]


def test_scalars_give_scalars() -> None:
    code = quantize(numpy.asarray(as_real_array(1.0, "x")), numpy.float64(0.5), 0, (0, 7))
    assert type(code) is numpy.int64 and code == 2
    assert type(quantize(as_real_array(1.0, "x"), 0.5, 0, None)) is numpy.int64


def test_clipping_stays_exact_for_float16() -> None:
    # 4095 is not a float16; the codes must still stop at 4095.
    values = numpy.array([60000.0], dtype=numpy.float16)
    assert quantize(values, numpy.float64(1.0), 0, (-4096, 4095)).tolist() == [4095]


# -- errors
def test_nan_cannot_be_quantized() -> None:
    with pytest.raises(InvalidValueError, match="cannot quantize NaN"):
        quantize(numpy.array([1.0, numpy.nan]), 1.0, 0, (0, 255))


def test_codes_beyond_int64_without_clipping() -> None:
    with pytest.raises(InvalidValueError, match="beyond int64"):
        quantize(numpy.array([1e30]), 1.0, 0, None)
    with pytest.raises(InvalidValueError, match="beyond int64"):
        quantize(numpy.array([numpy.inf]), 1.0, 0, None)


def test_a_scale_that_underflows_in_float16_is_refused() -> None:
    # numpy 1.24 divides float16 values by the scale cast to float16: 2e-8 becomes 0, and 0/0 is
    # NaN, which the reference turns into the code -2**63. intquant refuses instead.
    values = numpy.array([1e-5, 0.0], dtype=numpy.float16)
    with pytest.raises(InvalidValueError, match="a NaN also arises when the scale underflows"):
        quantize(values, numpy.float64(1e-5 / 511), numpy.int64(0), (0, 511))


def test_infinite_values_clip() -> None:
    assert quantize(numpy.array([-numpy.inf, numpy.inf]), 1.0, 0, (0, 3)).tolist() == [0, 3]


def test_one_bit_symmetric_has_no_scale() -> None:
    with pytest.raises(InvalidValueError, match="no level above zero"):
        _parameters(-1.0, 1.0, 1, is_signed=True, is_symmetric=True)


def test_non_finite_scale() -> None:
    with pytest.raises(InvalidValueError, match="not finite"):
        _parameters(numpy.float16(-60000), numpy.float16(60000), 4)


def test_non_numeric_values() -> None:
    with pytest.raises(InvalidTypeError, match="must be real numbers"):
        as_real_array(numpy.array(["a"]), "values")
    with pytest.raises(InvalidTypeError, match="complex128"):
        as_real_array(numpy.array([1j]), "values")


# -- properties
finite_floats = st.floats(-1e6, 1e6, allow_nan=False, width=64)
value_arrays = hnp.arrays(numpy.float64, hnp.array_shapes(max_dims=2, max_side=20), elements=finite_floats)


@settings(max_examples=200, deadline=None)
@given(values=value_arrays, n_bits=st.integers(1, 16), signed=st.booleans())
def test_codes_stay_within_bounds(values: numpy.ndarray, n_bits: int, signed: bool) -> None:
    rmin, rmax, _ = minmax_statistics(values)
    scale, zero_point, offset = _parameters(rmin, rmax, n_bits, is_signed=signed)
    low, high = integer_bounds(n_bits, offset, False)
    codes = quantize(values * 3 - 1, scale, zero_point, (low, high))
    assert codes.dtype == numpy.int64
    assert ((codes >= low) & (codes <= high)).all()


@settings(max_examples=200, deadline=None)
@given(values=value_arrays, n_bits=st.integers(2, 16), signed=st.booleans())
def test_in_range_error_is_at_most_half_a_step(values: numpy.ndarray, n_bits: int, signed: bool) -> None:
    rmin, rmax, _ = minmax_statistics(values)
    scale, zero_point, offset = _parameters(rmin, rmax, n_bits, is_signed=signed)
    if numpy.float64(rmax - rmin) < 1e-6:
        return  # a single value: the scale is the value itself, not a step
    codes = quantize(values, scale, zero_point, integer_bounds(n_bits, offset, False))
    restored = dequantize(codes, scale, zero_point)
    # The zero point is rounded, so the grid can sit up to half a step off the range's ends.
    inside = (restored.min() <= values) & (values <= restored.max())
    tolerance = scale / 2 * (1 + 1e-9) + 1e-9 * numpy.abs(values)
    assert (numpy.abs(restored - values)[inside] <= tolerance[inside]).all()


@settings(max_examples=200, deadline=None)
@given(values=value_arrays, n_bits=st.integers(1, 16))
def test_quantize_dequantize_quantize_is_stable(values: numpy.ndarray, n_bits: int) -> None:
    rmin, rmax, _ = minmax_statistics(values)
    scale, zero_point, offset = _parameters(rmin, rmax, n_bits)
    bounds = integer_bounds(n_bits, offset, False)
    codes = quantize(values, scale, zero_point, bounds)
    assert numpy.array_equal(quantize(dequantize(codes, scale, zero_point), scale, zero_point, bounds), codes)


def test_equal_zero_points_of_other_types_are_not_confused() -> None:
    # numpy 1.24 adds int64(70000) to float32 values in float64, but float32(70000.0) in
    # float32. The cached dtype plans must tell these equal keys apart.
    values = numpy.random.default_rng(0).uniform(-1, 1, 10001).astype(numpy.float32)
    scale = numpy.float64(1e-3)
    quotient = values / numpy.float32(scale)
    in_float32 = numpy.rint(quotient + numpy.float32(70000)).astype(numpy.int64)
    in_float64 = numpy.rint(quotient.astype(numpy.float64) + 70000).astype(numpy.int64)
    assert not numpy.array_equal(in_float32, in_float64)  # the dtype shows
    assert numpy.array_equal(quantize(values, scale, numpy.int64(70000), None), in_float64)
    assert numpy.array_equal(quantize(values, scale, numpy.float32(70000), None), in_float32)
    assert numpy.array_equal(quantize(values, scale, numpy.int64(70000), None), in_float64)


def test_integer_values_with_an_integer_scale() -> None:
    # numpy divides integers by integers in float64, then adds the zero point in float64.
    codes = quantize(numpy.array([1, 2, 3, 7]), numpy.int64(2), numpy.int64(1), (0, 3))
    assert codes.tolist() == [2, 2, 2, 3]  # rint([1.5, 2, 2.5, 4.5]) clipped to 3

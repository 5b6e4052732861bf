"""UniformQuantizer: quant/dequant, its members, errors that change nothing."""

from __future__ import annotations

import numpy
import pytest

from intquant import (
    MinMaxQuantizationStats,
    QuantizationOptions,
    UniformQuantizationParameters,
    UniformQuantizer,
)
from intquant.errors import InvalidDtypeError, MissingParameterError


def _quantizer(no_clipping: bool = False) -> UniformQuantizer:
    return UniformQuantizer(
        QuantizationOptions(3), None, UniformQuantizationParameters(0.5, 2, 0), no_clipping=no_clipping
    )


def test_scale_becomes_float64() -> None:
    quantizer = _quantizer()
    assert type(quantizer.scale) is numpy.float64


def test_quant_and_dequant() -> None:
    quantizer = _quantizer()
    codes = quantizer.quant(numpy.array([-1.0, 0.4, 9.0]))
    assert codes.tolist() == [0, 3, 7]
    assert quantizer.dequant(codes).tolist() == [-1.0, 0.5, 2.5]


def test_no_clipping() -> None:
    assert _quantizer(no_clipping=True).quant(numpy.array([9.0, -3.0])).tolist() == [20, -4]


def test_inferred_qat_parameters_do_not_clip() -> None:
    options = QuantizationOptions(2, is_qat=True)
    quantizer = UniformQuantizer(options, None, UniformQuantizationParameters(1.0, 0, 0))
    assert quantizer.quant(numpy.array([7.0])).tolist() == [7]
    options.is_precomputed_qat = True
    assert UniformQuantizer(options, None, UniformQuantizationParameters(1.0, 0, 0)).quant(
        numpy.array([7.0])
    ).tolist() == [3]


def test_narrow_range() -> None:
    options = QuantizationOptions(3, is_signed=True)
    options.is_narrow = True
    quantizer = UniformQuantizer(options, None, UniformQuantizationParameters(1.0, 0, 4))
    assert quantizer.quant(numpy.array([-9.0, 9.0])).tolist() == [-3, 3]


def test_members_without_options() -> None:
    quantizer = UniformQuantizer()
    assert not hasattr(quantizer, "n_bits")
    assert quantizer.is_signed is False and quantizer.rmax is None and quantizer.scale is None
    assert "n_bits" not in quantizer.dump_dict()


def test_calibrate_then_quantize() -> None:
    quantizer = UniformQuantizer(QuantizationOptions(8, is_signed=True))
    values = numpy.linspace(-1, 3, 50)
    quantizer.compute_quantization_stats(values)
    quantizer.compute_quantization_parameters(quantizer.quant_options, quantizer.quant_stats)
    codes = quantizer.quant(values)
    assert codes.min() == -128 and codes.max() == 127
    assert quantizer.quant_stats == MinMaxQuantizationStats(quantizer.rmax, quantizer.rmin, quantizer.uvalues)


def test_quant_needs_parameters() -> None:
    with pytest.raises(MissingParameterError, match="the quantizer has no scale, zero_point, offset yet"):
        UniformQuantizer(QuantizationOptions(4)).quant(numpy.array([1.0]))


def test_clipping_needs_n_bits() -> None:
    quantizer = UniformQuantizer(None, None, UniformQuantizationParameters(1.0, 0, 0))
    with pytest.raises(MissingParameterError, match="the quantizer has no options \\(n_bits\\)"):
        quantizer.quant(numpy.array([1.0]))


@pytest.mark.parametrize("scale", [0.0, float("nan"), float("inf")])
def test_scale_must_be_finite_and_non_zero(scale: float) -> None:
    quantizer = UniformQuantizer(QuantizationOptions(4), None, UniformQuantizationParameters(scale, 0, 0))
    with pytest.raises(ValueError, match="the scale must be finite and non-zero"):
        quantizer.quant(numpy.array([1.0]))


def test_quant_does_not_change_its_input() -> None:
    values = numpy.array([0.3, 0.7], dtype=numpy.float32)
    before = values.copy()
    _quantizer().quant(values)
    assert numpy.array_equal(values, before)


def test_non_contiguous_and_zero_d_inputs() -> None:
    quantizer = _quantizer()
    values = numpy.arange(12.0).reshape(3, 4)[:, ::2] / 10
    assert numpy.array_equal(quantizer.quant(values), quantizer.quant(numpy.ascontiguousarray(values)))
    assert type(quantizer.quant(numpy.array(0.5))) is numpy.int64
    assert type(quantizer.quant(0.5)) is numpy.int64


def test_dequant_needs_a_float_scale() -> None:
    quantizer = _quantizer()
    quantizer.scale = numpy.array([1, 2])
    with pytest.raises(InvalidDtypeError, match="the scale must be a float or a float64 array"):
        quantizer.dequant(numpy.array([1, 2]))
    with pytest.raises(AssertionError):
        quantizer.dequant(numpy.array([1, 2]))


def test_equality() -> None:
    assert _quantizer() == _quantizer()
    assert _quantizer() != _quantizer(no_clipping=True)
    other = _quantizer()
    other.uvalues = numpy.array([1.0])
    assert _quantizer() != other


def test_load_dict_refuses_unknown_keys() -> None:
    metadata = _quantizer().dump_dict()
    metadata["surprise"] = 1
    with pytest.raises(ValueError, match="unknown keys \\['surprise'\\]"):
        UniformQuantizer.load_dict(metadata)

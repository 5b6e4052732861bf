"""Concrete ML 1.8/1.9's behaviour, selected with ``intquant.compat.v1_9``: each difference from
1.7 by a hand-written case, texts byte for byte, loading 1.7/1.9 texts into the right convention,
the errors where 1.9 returns garbage, both conventions in one process, and the choice of numpy
1.24's float32 sort for 1.7's ``uvalues``.

The exact agreement with a real Concrete ML 1.9.0 is ``tests/test_golden_v1_9.py``'s.
"""

from __future__ import annotations

import copy
import io
import pickle
import re
import threading

import numpy
import pytest

import intquant
from intquant import quantizers as seed
from intquant._core import codec, plan
from intquant._core.formulas import rounded_uniques
from intquant._numpy124.introsort import reference_unique
from intquant.calibration import PercentileStats
from intquant.compat import v1_9
from intquant.errors import InvalidDtypeError, MissingParameterError, SerializationError

F64 = '{"type_name": "numpy_float", "serialized_value": %s, "dtype": "float64"}'


def _float(value: float) -> str:
    return F64 % repr(value)


def _qat_quantizer(module: object, n_bits: int = 3) -> object:
    """A custom-QAT quantizer (``is_qat`` without ``is_precomputed_qat``) calibrated on values
    that lie on a grid of step 0.5."""
    quantizer = module.UniformQuantizer(module.QuantizationOptions(n_bits, is_qat=True))
    quantizer.compute_quantization_stats(numpy.array([0.0, 0.5, 1.0, 1.5]))
    quantizer.compute_quantization_parameters(quantizer.quant_options, quantizer.quant_stats)
    return quantizer


def _symmetric_quantizer(**kwargs: object) -> v1_9.UniformQuantizer:
    """4-bit signed symmetric quantizer on [-1, 1]: scale 1/7, zero point 0, codes in [-8, 7]."""
    quantizer = v1_9.UniformQuantizer(
        v1_9.QuantizationOptions(4, is_signed=True, is_symmetric=True),
        **kwargs,
    )
    quantizer.compute_quantization_stats(numpy.array([-1.0, 1.0]))
    quantizer.compute_quantization_parameters(quantizer.quant_options, quantizer.quant_stats)
    return quantizer


def _params_quantizer(
    n_bits: int, scale: float, zero_point: int, offset: int, **kwargs: object
) -> v1_9.UniformQuantizer:
    return v1_9.UniformQuantizer(
        v1_9.QuantizationOptions(n_bits),
        params=v1_9.UniformQuantizationParameters(scale, zero_point, offset),
        **kwargs,
    )


def _bits(values: object) -> list[tuple[float, bool]]:
    """Values with the sign bit of each (tells -0.0 from 0.0)."""
    array = numpy.atleast_1d(numpy.asarray(values))
    return list(zip(array.tolist(), numpy.signbit(array).tolist(), strict=True))


# -- conventions


def test_the_conventions_are_values_of_the_plan() -> None:
    assert plan.CONVENTIONS == ("concrete-ml-1.7", "concrete-ml-1.9")
    assert plan.CONCRETE_ML_1_9 == "concrete-ml-1.9"
    # The codec knows them as strings (it imports no intquant module but errors).
    assert codec.SEED_CONVENTION == plan.CONCRETE_ML_1_7
    assert (codec.SEED_CONVENTION, *codec.CONVENTION_MODULES) == plan.CONVENTIONS
    assert plan.CLIPS_INFERRED_QAT == {"concrete-ml-1.7": False, "concrete-ml-1.9": True}


def test_each_object_knows_its_convention() -> None:
    values = numpy.array([0.0, 0.5])
    for module, convention in ((seed, "concrete-ml-1.7"), (v1_9, "concrete-ml-1.9")):
        array = module.QuantizedArray(3, values)
        objects = [
            module.QuantizationOptions(3),
            module.MinMaxQuantizationStats(),
            module.UniformQuantizationParameters(),
            module.UniformQuantizer(),
            array,
            array.quantizer,
            array.quantizer.quant_options,
            array.quantizer.quant_stats,
            array.quantizer.quant_params,
            array.quantizer.quant_options.quant_options,
        ]
        assert [obj.convention for obj in objects] == [convention] * len(objects)
        assert array.quantizer.quant_plan(numpy.float64, (2,)).convention == convention


def test_the_names_and_signatures_are_1_9s() -> None:
    assert v1_9.__all__ == [*seed.__all__, "dumps", "dump", "loads", "load"]
    assert v1_9.STABILITY_CONST == seed.STABILITY_CONST == 10**-6
    with pytest.raises(TypeError):
        v1_9.MinMaxQuantizationStats(1.0, 0.0, numpy.array([0.0, 1.0]))
    with pytest.raises(TypeError):
        v1_9.fill_from_kwargs(None, v1_9.UniformQuantizationParameters, scale=1.0)
    assert (
        _symmetric_quantizer().quant(numpy.array([0.5]), numpy.int32).dtype == numpy.int32
    )  # dtype by position


# -- statistics: no uvalues


@pytest.mark.parametrize("name", ["uvalues", "check_is_uniform_quantized", "float32_sort"])
def test_1_9_objects_have_no_uvalues(name: str) -> None:
    stats = v1_9.MinMaxQuantizationStats()
    stats.compute_quantization_stats(numpy.array([0.5, -1.0, 0.254]))
    quantizer = v1_9.QuantizedArray(4, numpy.array([0.5, -1.0])).quantizer
    for obj in (stats, quantizer, quantizer.quant_stats, v1_9.UniformQuantizer()):
        assert not hasattr(obj, name)
        with pytest.raises(AttributeError, match=f"object has no attribute '{name}'"):
            getattr(obj, name)
    # The seed's objects keep them.
    assert hasattr(seed.MinMaxQuantizationStats(), name) and hasattr(seed.UniformQuantizer(), name)


def test_statistics_are_the_range_only() -> None:
    values = numpy.array([0.5, -1.0, 0.254], dtype=numpy.float32)
    stats = v1_9.MinMaxQuantizationStats()
    stats.compute_quantization_stats(values)
    assert (stats.rmin, stats.rmax) == (numpy.float32(-1.0), numpy.float32(0.5))
    assert type(stats.rmin) is numpy.float32
    assert stats.__dict__ == {"rmax": stats.rmax, "rmin": stats.rmin}  # nothing kept of the values
    assert (
        repr(stats) == f"MinMaxQuantizationStats(rmax={numpy.float32(0.5)!r}, rmin={numpy.float32(-1.0)!r})"
    )
    per_axis = v1_9.MinMaxQuantizationStats()
    per_axis.compute_quantization_stats(numpy.array([[1.0, -2.0], [3.0, 0.5]]), axis=0)
    assert per_axis.rmin.tolist() == [[-2.0], [0.5]] and per_axis.rmax.tolist() == [[1.0], [3.0]]


def test_statistics_update_and_merge_fold_the_range() -> None:
    stats = v1_9.MinMaxQuantizationStats()
    stats.update(numpy.array([0.25, 1.0]))
    stats.update(numpy.array([-3.0, 0.5]))
    assert (stats.rmin, stats.rmax) == (-3.0, 1.0)
    other = seed.MinMaxQuantizationStats()
    other.compute_quantization_stats(numpy.array([-4.0, 0.0]))
    stats.merge(other)  # a 1.7 object: its range is folded in, its uvalues ignored
    assert (stats.rmin, stats.rmax) == (-4.0, 1.0) and not hasattr(stats, "uvalues")
    with pytest.raises(TypeError, match="Merge it into another PercentileStats"):
        stats.merge(PercentileStats(99.0))
    # A 1.7 object merging 1.9 statistics: their range, and uvalues become unknown.
    other.merge(stats)
    assert (other.rmin, other.rmax, other.uvalues) == (-4.0, 1.0, None)


def test_statistics_equality_compares_the_range() -> None:
    assert v1_9.MinMaxQuantizationStats(1.0, 0.0) == v1_9.MinMaxQuantizationStats(1.0, 0.0)
    assert v1_9.MinMaxQuantizationStats(1.0, 0.0) != v1_9.MinMaxQuantizationStats(1.0, -0.5)
    # 1.9 statistics are 1.7 statistics whose uvalues are None.
    assert v1_9.MinMaxQuantizationStats(1.0, 0.0) == seed.MinMaxQuantizationStats(1.0, 0.0)
    assert seed.MinMaxQuantizationStats(1.0, 0.0) == v1_9.MinMaxQuantizationStats(1.0, 0.0)
    computed = seed.MinMaxQuantizationStats()
    computed.compute_quantization_stats(numpy.array([0.0, 1.0]))
    assert computed != v1_9.MinMaxQuantizationStats(1.0, 0.0)
    assert v1_9.MinMaxQuantizationStats(1.0, 0.0) != computed


def test_copy_stats_moves_the_range_between_conventions() -> None:
    computed = seed.MinMaxQuantizationStats()
    computed.compute_quantization_stats(numpy.array([0.0, 1.0]))
    quantizer = v1_9.UniformQuantizer(v1_9.QuantizationOptions(2), computed)
    assert (quantizer.rmin, quantizer.rmax) == (0.0, 1.0) and "uvalues" not in quantizer.__dict__
    back = seed.UniformQuantizer(seed.QuantizationOptions(2), v1_9.MinMaxQuantizationStats(2.0, -1.0))
    assert (back.rmin, back.rmax, back.uvalues) == (-1.0, 2.0, None)


# -- parameters: no QAT scale inferred


def test_qat_scale_is_not_inferred_from_uvalues() -> None:
    # Values on a grid of step 0.5: 1.7 infers that step as the scale, 1.9 takes the range.
    assert _qat_quantizer(seed).scale == 0.5
    quantizer = _qat_quantizer(v1_9)
    assert quantizer.scale == (1.5 - 0.0) / 7 and (quantizer.zero_point, quantizer.offset) == (0, 0)
    params = v1_9.UniformQuantizationParameters()
    seed_stats = seed.MinMaxQuantizationStats()
    seed_stats.compute_quantization_stats(numpy.array([0.0, 0.5, 1.0, 1.5]))
    params.compute_quantization_parameters(v1_9.QuantizationOptions(3, is_qat=True), seed_stats)
    assert params.scale == 1.5 / 7  # 1.7 statistics' uvalues are not read either
    # A scale set before is kept, as in both versions.
    preset = v1_9.UniformQuantizationParameters(scale=0.25)
    preset.compute_quantization_parameters(v1_9.QuantizationOptions(3, is_qat=True), seed_stats)
    assert (preset.scale, preset.zero_point) == (0.25, 0)


def test_1_7_parameters_of_1_9_statistics_infer_nothing() -> None:
    params = seed.UniformQuantizationParameters()
    params.compute_quantization_parameters(
        seed.QuantizationOptions(3, is_qat=True), v1_9.MinMaxQuantizationStats(1.5, 0.0)
    )
    assert params.scale == 1.5 / 7  # as 1.7 does for statistics whose uvalues are None


# -- quantization: clipping and dtypes


def test_qat_codes_are_clipped_unless_no_clipping() -> None:
    values = numpy.array([0.5, 10.0, -2.0])
    assert _qat_quantizer(seed).quant(values).tolist() == [1, 20, -4]  # 1.7: never clipped
    quantizer = _qat_quantizer(v1_9)
    step = 1.5 / 7
    assert quantizer.quant(values).tolist() == [round(0.5 / step), 7, 0]
    assert quantizer.quant_plan(numpy.float64, (3,)).unclipped is None
    quantizer.no_clipping = True
    assert quantizer.quant(values).tolist() == [2, 47, -9]
    assert quantizer.quant_plan(numpy.float64, (3,)).unclipped == plan.NO_CLIPPING


def test_precomputed_qat_and_ptq_are_clipped_in_both() -> None:
    for module in (seed, v1_9):
        options = module.QuantizationOptions(2, is_qat=True)
        options.is_precomputed_qat = True
        quantizer = module.UniformQuantizer(options, params=module.UniformQuantizationParameters(1.0, 0, 0))
        assert quantizer.quant(numpy.array([-1.0, 5.0])).tolist() == [0, 3]


def test_float_codes_keep_the_sign_of_zero_where_1_9_does() -> None:
    values = numpy.array([-0.01, 0.01, -0.0, -5.0, 5.0])
    quantizer = _symmetric_quantizer()  # codes in [-8, 7]: -0.0 survives clipping
    for dtype in (numpy.float64, numpy.float32):
        codes = quantizer.quant(values, dtype)
        assert codes.dtype == dtype
        # rint(-0.07) = -0.0; -0.0 / scale + 0 = 0.0 (a zero point 0 added as +0.0)
        assert _bits(codes) == [(-0.0, True), (0.0, False), (0.0, False), (-8.0, True), (7.0, False)]
    assert numpy.signbit(quantizer.quant(values)).tolist() == [False, False, False, True, False]  # int64
    # Unsigned codes in [0, 15]: numpy 1.24-1.26's clip gives max(-0.0, 0) = 0 (numpy 2 would
    # keep -0.0: intquant emulates the former).
    unsigned = _params_quantizer(4, 0.1, 0, 0)
    assert _bits(unsigned.quant(numpy.array([-0.01, -1.0]), numpy.float64)) == [(0.0, False), (0.0, False)]
    # Without clipping -0.0 stays.
    unclipped = _params_quantizer(4, 0.1, 0, 0, no_clipping=True)
    assert _bits(unclipped.quant(numpy.array([-0.01, -1.0]), numpy.float64)) == [(-0.0, True), (-10.0, True)]
    # 1-bit signed codes in [-1, 0]: min(-0.0, 0) = 0.
    one_bit = v1_9.UniformQuantizer(
        v1_9.QuantizationOptions(1, is_signed=True), params=v1_9.UniformQuantizationParameters(1.0, 0, 1)
    )
    assert _bits(one_bit.quant(numpy.array([-0.2]), numpy.float32)) == [(0.0, False)]


def test_float_codes_of_a_scalar_and_into_out() -> None:
    quantizer = _symmetric_quantizer()
    code = quantizer.quant(numpy.float64(-0.01), numpy.float32)
    assert type(code) is numpy.float32 and numpy.signbit(code)
    out = numpy.full(3, 99.0, dtype=numpy.float32)
    assert quantizer.quant(numpy.array([-0.01, 0.3, 9.0]), out=out) is out
    assert _bits(out) == [(-0.0, True), (2.0, False), (7.0, False)]
    with pytest.raises(
        ValueError, match=re.escape("dtype=<class 'numpy.float64'> and out's dtype float32 differ")
    ):
        quantizer.quant(numpy.array([0.1, 0.2, 0.3]), numpy.float64, out=out)
    with pytest.raises(ValueError, match="out has shape"):
        quantizer.quant(numpy.array([0.1, 0.2]), out=out)
    assert _bits(out) == [(-0.0, True), (2.0, False), (7.0, False)]  # untouched by the refusals


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (None, numpy.int64),
        (numpy.int64, numpy.int64),
        (numpy.dtype("int64"), numpy.int64),
        (numpy.int32, numpy.int32),
        (numpy.dtype("int32"), numpy.int32),
        (numpy.float32, numpy.float32),
        (numpy.dtype("float32"), numpy.float32),
        (numpy.float64, numpy.float64),
    ],
)
def test_dtype_spellings(dtype: object, expected: type) -> None:
    codes = _symmetric_quantizer().quant(numpy.array([-1.0, 0.5, 2.0]), dtype)
    assert codes.dtype == expected and codes.tolist() == [-7, 4, 7]


@pytest.mark.parametrize(
    "dtype",
    [
        numpy.complex64,
        "bogus",
        numpy.float16,
        object,
        "int64",
        int,
        float,
        numpy.int8,
        numpy.uint32,
        "smallest",
    ],
)
def test_dtypes_1_9_does_not_take_are_refused_as_1_9_asserts(dtype: object) -> None:
    refusal = r"Concrete ML 1\.9's quant takes dtype numpy\.int64"
    with pytest.raises(InvalidDtypeError, match=refusal) as caught:
        _symmetric_quantizer().quant(numpy.array([0.5]), dtype)
    assert isinstance(caught.value, AssertionError) and isinstance(caught.value, TypeError)


def test_codes_that_do_not_fit_the_dtype_are_refused() -> None:
    wide = _params_quantizer(32, 1.0, 0, 0)  # codes in [0, 2**32 - 1]
    # Concrete ML 1.9 wraps 3e9 to -1294967296 in int32.
    with pytest.raises(ValueError, match=r"codes from 0\.0 to 3000000000\.0 do not fit int32"):
        wide.quant(numpy.array([0.0, 3e9]), numpy.int32)
    # Codes that fit are 1.9's result, although the clipping range does not fit int32 (the
    # seed's quant refuses the range up front).
    assert wide.quant(numpy.array([5.0, 7.0]), numpy.int32).tolist() == [5, 7]
    seed_wide = seed.UniformQuantizer(
        seed.QuantizationOptions(32), params=seed.UniformQuantizationParameters(1.0, 0, 0)
    )
    with pytest.raises(ValueError, match="not all exactly representable as int32"):
        seed_wide.quant(numpy.array([5.0]), dtype=numpy.int32)
    # float32 holds 2**25 but not 2**24 + 1 (1.9 rounds it to 2**24).
    assert wide.quant(numpy.array([2.0**25]), numpy.float32).tolist() == [2.0**25]
    with pytest.raises(ValueError, match=r"the code 16777217\.0 is not exactly representable as float32"):
        wide.quant(numpy.array([2.0**24 + 1]), numpy.float32)
    unclipped = _params_quantizer(8, 1.0, 0, 0, no_clipping=True)
    with pytest.raises(ValueError, match="do not fit int32"):
        unclipped.quant(numpy.array([-3e9]), numpy.int32)
    with pytest.raises(ValueError, match="not exactly representable as float32"):
        unclipped.quant(numpy.array([2.0**30 + 1]), numpy.float32)


def test_unclipped_codes_beyond_int64() -> None:
    unclipped = _params_quantizer(8, 1e-9, 0, 0, no_clipping=True)
    values = numpy.array([1e12, -1.0])
    # int64 codes: no integer stands for 1e21 (1.9 returns -2**63).
    with pytest.raises(ValueError, match="beyond int64"):
        unclipped.quant(values)
    # float64 codes: 1.9's floats, exactly.
    assert unclipped.quant(values, numpy.float64).tolist() == [numpy.rint(1e12 / 1e-9), -1e9]
    with pytest.raises(ValueError, match="some codes are infinite"):
        unclipped.quant(numpy.array([1e300]), numpy.float64)


@pytest.mark.parametrize("dtype", [numpy.int64, numpy.int32, numpy.float32, numpy.float64])
def test_garbage_inputs_raise_as_for_1_7(dtype: type) -> None:
    quantizer = _symmetric_quantizer()
    with pytest.raises(ValueError, match="cannot quantize NaN"):
        quantizer.quant(numpy.array([0.1, numpy.nan]), dtype)
    zero_scale = _params_quantizer(8, 0.0, 0, 0)
    with pytest.raises(ValueError, match="scale"):
        zero_scale.quant(numpy.array([0.1]), dtype)


def test_non_finite_parameters_raise_as_for_1_7() -> None:
    params = v1_9.UniformQuantizationParameters()
    with pytest.raises(ValueError, match="would be infinite"):  # 1.9 divides by zero here
        params.compute_quantization_parameters(
            v1_9.QuantizationOptions(1, is_signed=True, is_symmetric=True),
            v1_9.MinMaxQuantizationStats(1.0, -1.0),
        )
    with pytest.raises(ValueError, match="not finite"):
        params.compute_quantization_parameters(
            v1_9.QuantizationOptions(8),
            v1_9.MinMaxQuantizationStats(numpy.float32(3e38), numpy.float32(-3e38)),
        )


def test_extra_options_work_under_1_9() -> None:
    values = numpy.array([[0.0, 1.0], [-2.0, 4.0], [0.5, 3.0]])
    array = v1_9.QuantizedArray(4, values, is_qat=True, axis=1, rounding="floor")
    quantizer = array.quantizer
    assert quantizer.scale.shape == (1, 2) and quantizer.convention == "concrete-ml-1.9"
    assert (
        array.qvalues.tolist()
        == numpy.clip(numpy.floor(values / quantizer.scale), 0, 15).astype(int).tolist()
    )
    assert quantizer.quant(values, numpy.float32).tolist() == array.qvalues.astype(numpy.float32).tolist()
    text = v1_9.dumps(quantizer)
    assert text.startswith('{"type_name": "intquant.UniformQuantizer", "format_version": 1,')
    assert '"uvalues"' not in text and '"axis": 1' in text and '"rounding": "floor"' in text
    loaded = intquant.loads(text)
    assert type(loaded) is v1_9.UniformQuantizer and loaded == quantizer and v1_9.dumps(loaded) == text


# -- fill_from_kwargs and QuantizedArray


def test_fill_from_kwargs_accept_missing() -> None:
    stats, rest = v1_9.fill_from_kwargs(
        v1_9.MinMaxQuantizationStats(), v1_9.MinMaxQuantizationStats, True, other=1
    )
    assert (stats.rmax, stats.rmin, rest) == (None, None, {"other": 1})
    assert v1_9.fill_from_kwargs(None, v1_9.MinMaxQuantizationStats, True) == (None, {})
    params, _ = v1_9.fill_from_kwargs(
        None, v1_9.UniformQuantizationParameters, False, scale=0.5, zero_point=1, offset=0
    )
    assert (params.scale, params.zero_point, params.offset) == (0.5, 1, 0)


@pytest.mark.parametrize(
    ("obj", "klass", "accept_missing", "kwargs", "message"),
    [
        (None, v1_9.MinMaxQuantizationStats, True, {"rmax": 1.0},
         "Missing quantizer parameter rmin, but rmax were given; "
         "MinMaxQuantizationStats needs all of rmax, rmin, or none of them."),
        (None, v1_9.UniformQuantizationParameters, False, {"scale": 1.0},
         "Missing quantizer parameter zero_point,offset, but scale were given; "
         "UniformQuantizationParameters needs all of scale, zero_point, offset."),
        (v1_9.MinMaxQuantizationStats(), v1_9.MinMaxQuantizationStats, False, {},
         "Missing quantizer parameter rmax,rmin, but  were given; "
         "MinMaxQuantizationStats needs all of rmax, rmin."),
    ],
)  # fmt: skip
def test_fill_from_kwargs_messages(
    obj: object, klass: type, accept_missing: bool, kwargs: dict[str, object], message: str
) -> None:
    before = copy.deepcopy(obj)
    with pytest.raises(TypeError) as caught:
        v1_9.fill_from_kwargs(obj, klass, accept_missing, **kwargs)
    assert str(caught.value) == message
    assert obj == before  # nothing changed
    # 1.7's message names the first missing member only.
    with pytest.raises(TypeError, match=r"^Missing quantizer parameter rmin: MinMaxQuantizationStats needs"):
        seed.fill_from_kwargs(None, seed.MinMaxQuantizationStats, rmax=1.0, uvalues=numpy.zeros(1))


def test_fill_from_kwargs_cannot_create_options_without_n_bits() -> None:
    with pytest.raises(TypeError, match="cannot create QuantizationOptions from keyword arguments alone"):
        v1_9.fill_from_kwargs(None, v1_9.QuantizationOptions, False, is_signed=True)


def test_quantized_array_statistics_are_optional() -> None:
    values = numpy.array([0.0, 0.3, 0.6, 0.9])
    array = v1_9.QuantizedArray(
        2, values, stats=v1_9.MinMaxQuantizationStats(), scale=0.3, zero_point=0, offset=0
    )
    assert array.qvalues.tolist() == [0, 1, 2, 3] and array.quantizer.rmin is None
    # Given, empty statistics are not computed: parameters are then needed (1.9 asserts).
    with pytest.raises(MissingParameterError, match="the statistics have no rmin/rmax yet") as caught:
        v1_9.QuantizedArray(2, values, stats=v1_9.MinMaxQuantizationStats())
    assert isinstance(caught.value, AssertionError)
    with pytest.raises(TypeError, match="Missing quantizer parameter rmin, but rmax were given"):
        v1_9.QuantizedArray(2, values, rmax=1.0)
    with pytest.raises(
        TypeError, match="Missing quantizer parameter offset, but scale,zero_point were given"
    ):
        v1_9.QuantizedArray(2, values, scale=0.3, zero_point=0)
    with pytest.raises(TypeError, match="Unexpected keyword arguments 'uvalues'"):
        v1_9.QuantizedArray(2, values, uvalues=values)
    # 1.7 still requires complete statistics when any member is given.
    with pytest.raises(TypeError, match="Missing quantizer parameter uvalues"):
        seed.QuantizedArray(2, values, rmax=0.9, rmin=0.0)


def test_calibration_objects_work_under_1_9() -> None:
    values = numpy.linspace(-1.0, 1.0, 201)
    array = v1_9.QuantizedArray(8, values, stats=PercentileStats(90.0))
    calibration = PercentileStats(90.0)
    calibration.compute_quantization_stats(values)
    quantizer = array.quantizer
    assert (quantizer.rmin, quantizer.rmax) == calibration.range_for(v1_9.QuantizationOptions(8))
    assert -1.0 < quantizer.rmin < quantizer.rmax < 1.0  # clipped: the values' tails saturate
    assert "uvalues" not in quantizer.__dict__ and array.qvalues.tolist()[:3] == [0, 0, 0]


def test_quantized_array_builds_1_9_parts() -> None:
    array = v1_9.QuantizedArray(3, numpy.array([0.0, 0.5, 1.0, 1.5]), is_qat=True)
    assert type(array.quantizer) is v1_9.UniformQuantizer
    assert array.quantizer.scale == 1.5 / 7
    assert array.update_values(numpy.array([0.5, 40.0])).tolist() == [2, 7]
    assert array == copy.deepcopy(array) and array == pickle.loads(pickle.dumps(array))
    assert array != seed.QuantizedArray(3, numpy.array([0.0, 0.5, 1.0, 1.5]), is_qat=True)


# -- serialization


def test_1_9_texts_byte_for_byte() -> None:
    quantizer = v1_9.UniformQuantizer(
        v1_9.QuantizationOptions(2),
        v1_9.MinMaxQuantizationStats(rmax=1.5, rmin=0.0),
        v1_9.UniformQuantizationParameters(0.5, 0, 0),
    )
    expected = (
        '{"type_name": "UniformQuantizer", "serialized_value": {"n_bits": 2, "is_signed": false, '
        '"is_symmetric": false, "is_qat": false, "is_narrow": false, "is_precomputed_qat": false, '
        f'"rmax": 1.5, "rmin": 0.0, "scale": {_float(0.5)}, "zero_point": 0, "offset": 0, '
        '"no_clipping": false}}'
    )
    assert v1_9.dumps(quantizer) == intquant.dumps(quantizer) == expected
    buffer = io.StringIO()
    v1_9.dump(quantizer, buffer)
    assert buffer.getvalue() == expected
    assert v1_9.dumps(v1_9.MinMaxQuantizationStats(rmax=1.5, rmin=0.0)) == (
        '{"type_name": "MinMaxQuantizationStats", "serialized_value": {"rmax": 1.5, "rmin": 0.0}}'
    )
    assert v1_9.dumps(v1_9.UniformQuantizer()) == (
        '{"type_name": "UniformQuantizer", "serialized_value": {"is_signed": false, "is_symmetric": false, '
        '"is_qat": false, "is_narrow": false, "is_precomputed_qat": false, "rmax": null, "rmin": null, '
        '"scale": null, "zero_point": null, "offset": null, "no_clipping": false}}'
    )


def _texts(module: object) -> dict[str, str]:
    """Texts of every seed class, as ``module``'s objects write them."""
    module = intquant if module is seed else module  # the seed's names with dumps
    array = module.QuantizedArray(3, numpy.array([0.0, 0.5, 1.0]), is_signed=True)
    quantizer = array.quantizer
    return {
        "QuantizationOptions": module.dumps(quantizer.quant_options),
        "MinMaxQuantizationStats": module.dumps(quantizer.quant_stats),
        "UniformQuantizationParameters": module.dumps(quantizer.quant_params),
        "UniformQuantizer": module.dumps(quantizer),
        "QuantizedArray": module.dumps(array),
    }


def test_loads_gives_the_convention_the_text_shows() -> None:
    texts_1_7, texts_1_9 = _texts(seed), _texts(v1_9)
    # Options and parameters read the same in both: the seed's classes.
    alike = ("QuantizationOptions", "UniformQuantizationParameters")
    assert [name for name in texts_1_7 if texts_1_7[name] == texts_1_9[name]] == list(alike)
    for name in texts_1_7:
        old, new = intquant.loads(texts_1_7[name]), intquant.loads(texts_1_9[name])
        assert type(old) is getattr(seed, name)
        assert type(new) is getattr(seed if name in alike else v1_9, name)
        assert intquant.dumps(old) == texts_1_7[name] and intquant.dumps(new) == texts_1_9[name]
    assert '"uvalues"' in texts_1_7["UniformQuantizer"] and '"uvalues"' not in texts_1_9["UniformQuantizer"]


def test_v1_9_loads_gives_1_9_objects_from_any_text() -> None:
    texts_1_7, texts_1_9 = _texts(seed), _texts(v1_9)
    for name in texts_1_7:
        from_old, from_new = v1_9.loads(texts_1_7[name]), v1_9.load(io.StringIO(texts_1_9[name]))
        assert type(from_old) is type(from_new) is getattr(v1_9, name)
        # 1.9 reads a 1.7 text as its own, uvalues dropped (1.9 ignores them): 1.9's text.
        assert v1_9.dumps(from_old) == v1_9.dumps(from_new) == texts_1_9[name]
    array = v1_9.loads(texts_1_7["QuantizedArray"])
    assert type(array.quantizer) is v1_9.UniformQuantizer and "uvalues" not in array.quantizer.__dict__


def test_1_7_uvalues_are_still_checked_when_dropped() -> None:
    text = (
        '{"type_name": "MinMaxQuantizationStats", "serialized_value": {"rmax": 1.0, "rmin": 0.0, '
        '"uvalues": "oops"}}'
    )
    for loads in (intquant.loads, v1_9.loads):
        with pytest.raises(SerializationError, match="MinMaxQuantizationStats field 'uvalues'"):
            loads(text)
    with pytest.raises(SerializationError, match="expects the keys rmax, rmin; missing: \\['rmin'\\]"):
        intquant.loads('{"type_name": "MinMaxQuantizationStats", "serialized_value": {"rmax": 1.0}}')
    with pytest.raises(SerializationError, match="unknown: \\['extra'\\]"):
        v1_9.loads(
            '{"type_name": "MinMaxQuantizationStats", "serialized_value": '
            '{"rmax": 1.0, "rmin": 0.0, "extra": 1}}'
        )


def test_a_quantized_array_follows_its_quantizer() -> None:
    array = v1_9.QuantizedArray(3, numpy.array([0.0, 1.0]))
    metadata = array.dump_dict()
    with pytest.raises(
        SerializationError,
        match=re.escape("a concrete-ml-1.7 QuantizedArray needs a concrete-ml-1.7 quantizer"),
    ):
        seed.QuantizedArray.load_dict(metadata)
    metadata["quantizer"] = seed.QuantizedArray(3, numpy.array([0.0, 1.0])).quantizer
    with pytest.raises(
        SerializationError,
        match=re.escape("a concrete-ml-1.9 QuantizedArray needs a concrete-ml-1.9 quantizer"),
    ):
        v1_9.QuantizedArray.load_dict(metadata)
    assert type(seed.QuantizedArray.load_dict(metadata)) is seed.QuantizedArray


def test_per_axis_statistics_texts_load_as_their_convention() -> None:
    values = numpy.array([[1.0, -2.0], [3.0, 0.5]])
    for module in (seed, v1_9):
        stats = module.MinMaxQuantizationStats()
        stats.compute_quantization_stats(values, axis=0)
        text = intquant.dumps(stats)
        assert text.startswith('{"type_name": "intquant.MinMaxQuantizationStats", "format_version": 1,')
        loaded = intquant.loads(text)
        assert type(loaded) is module.MinMaxQuantizationStats and intquant.dumps(loaded) == text
        assert type(v1_9.loads(text)) is v1_9.MinMaxQuantizationStats


def test_calibration_states_load_alike() -> None:
    state = PercentileStats(99.0)
    state.compute_quantization_stats(numpy.linspace(-1.0, 1.0, 101))
    text = intquant.dumps(state)
    assert type(v1_9.loads(text)) is type(intquant.loads(text)) is PercentileStats


def test_loads_as_refuses_an_unknown_convention() -> None:
    with pytest.raises(ValueError, match=re.escape("unknown convention 'concrete-ml-2.0'")):
        codec.loads_as("{}", "concrete-ml-2.0")


# -- both conventions in one process


def test_both_conventions_in_threads() -> None:
    values = numpy.linspace(-0.5, 12.0, 64)
    expected = {module: _qat_quantizer(module).quant(values).tolist() for module in (seed, v1_9)}
    assert expected[seed] != expected[v1_9]  # 1.7 leaves QAT codes unclipped, 1.9 clips them
    failures: list[str] = []

    def work(module: object) -> None:
        for _ in range(40):
            quantizer = _qat_quantizer(module)
            if quantizer.quant(values).tolist() != expected[module]:
                failures.append(module.__name__)

    threads = [threading.Thread(target=work, args=(module,)) for module in (seed, v1_9) * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


# -- the sort behind 1.7's uvalues zero sign


def _both_zeros_float32(size: int, seed_value: int) -> numpy.ndarray:
    rng = numpy.random.default_rng(seed_value)
    values = numpy.round(rng.normal(0.0, 0.01, size), 2).astype(numpy.float32)
    values[rng.random(size) < 0.3] *= -1  # zeros of both signs
    return values


_NUMPY_1_24 = numpy.lib.NumpyVersion(numpy.__version__) < "1.25.0"


def _has_avx512_skx() -> bool:
    """Whether numpy 1.24 found AVX512_SKX on this CPU (then it sorts float32 with AVX-512)."""
    from numpy.core._multiarray_umath import __cpu_features__  # numpy 1.24's, read only there

    return bool(__cpu_features__.get("AVX512_SKX", False))


def _zero_sign(uvalues: numpy.ndarray) -> bool:
    return bool(numpy.signbit(uvalues[uvalues == 0])[0])


@pytest.mark.parametrize("size", [38, 5000, 60_000])  # 60_000: the compiled loops, if installed
def test_introsort_keeps_the_zero_numpy_1_24_keeps_without_avx512(size: int) -> None:
    # numpy 1.24 sorts float64 with its introsort on every CPU, and float32 with it on CPUs
    # without AVX-512: the same comparisons, so the same zero for the same values.
    differing = 0
    for seed_value in range(12):
        values = _both_zeros_float32(size, seed_value)
        introsort = reference_unique(values, "introsort")
        assert _zero_sign(introsort) == _zero_sign(reference_unique(values.astype(numpy.float64)))
        if _NUMPY_1_24:  # numpy 1.24 itself: float64 on any CPU, float32 on this one
            assert _zero_sign(introsort) == _zero_sign(numpy.unique(values.astype(numpy.float64)))
            this_machine = "avx512" if _has_avx512_skx() else "introsort"
            assert _zero_sign(numpy.unique(values)) == _zero_sign(reference_unique(values, this_machine))
        big = rounded_uniques(values, values.min(), values.max(), "introsort")
        assert _zero_sign(big) == _zero_sign(introsort)
        differing += _zero_sign(introsort) != _zero_sign(reference_unique(values, "avx512"))
    assert differing, "the two machines should keep different zeros for some of these arrays"


#: Float32 values whose rounded zeros of both signs the two sorts order differently (the AVX-512
#: quicksort keeps 0.0, the introsort -0.0; checked below).
_DIFFERING = _both_zeros_float32(5000, 6)


def test_the_float32_sort_is_chosen_on_the_statistics() -> None:
    values = _DIFFERING
    assert not _zero_sign(reference_unique(values, "avx512"))
    introsort = _zero_sign(reference_unique(values, "introsort"))
    assert introsort and introsort == _zero_sign(reference_unique(values.astype(numpy.float64)))
    default, chosen = seed.MinMaxQuantizationStats(), seed.MinMaxQuantizationStats(float32_sort="introsort")
    for stats in (default, chosen):
        stats.compute_quantization_stats(values)
    assert (_zero_sign(default.uvalues), _zero_sign(chosen.uvalues)) == (False, True)
    assert intquant.dumps(default) != intquant.dumps(chosen)  # the data differ ...
    assert '"float32_sort"' not in intquant.dumps(chosen)  # ... the choice is not written
    updated = seed.MinMaxQuantizationStats(float32_sort="introsort")
    updated.update(values)
    assert _zero_sign(updated.uvalues)
    per_block = seed.MinMaxQuantizationStats(float32_sort="introsort")
    per_block.compute_quantization_stats(numpy.stack([values, values]), block_size=(1, 5000))
    assert [_zero_sign(block) for block in per_block.uvalues] == [True, True]


def test_quantizers_and_quantized_arrays_honour_the_float32_sort() -> None:
    values = _DIFFERING
    chosen = seed.MinMaxQuantizationStats(float32_sort="introsort")
    array = seed.QuantizedArray(8, values, stats=chosen)  # empty: computed from the values
    assert _zero_sign(array.quantizer.uvalues) and array.quantizer.float32_sort == "introsort"
    assert _zero_sign(array.quantizer.quant_stats.uvalues)
    assert not _zero_sign(seed.QuantizedArray(8, values).quantizer.uvalues)
    assert chosen.rmin is None  # the caller's statistics are not changed
    chosen.compute_quantization_stats(values)
    quantizer = seed.UniformQuantizer(seed.QuantizationOptions(8), chosen)
    assert quantizer.float32_sort == "introsort" and _zero_sign(quantizer.uvalues)
    quantizer.compute_quantization_stats(values)  # its own computation follows its choice
    assert _zero_sign(quantizer.uvalues)
    computed_array = seed.QuantizedArray(8, values, stats=chosen)
    assert _zero_sign(computed_array.quantizer.uvalues)


def test_the_float32_sort_is_checked() -> None:
    with pytest.raises(ValueError, match="'float32_sort' must be 'avx512'"):
        seed.MinMaxQuantizationStats(float32_sort="quicksort")
    with pytest.raises(TypeError):
        v1_9.MinMaxQuantizationStats(float32_sort="introsort")


def test_empty_default_statistics_are_computed_by_quantized_array() -> None:
    values = numpy.array([0.0, 0.5, 1.0])
    assert seed.QuantizedArray(2, values, stats=seed.MinMaxQuantizationStats()) == seed.QuantizedArray(
        2, values
    )

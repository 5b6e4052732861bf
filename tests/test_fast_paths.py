"""Shortcuts taken for speed give exactly what the general code gives."""

from __future__ import annotations

import math
from typing import Any

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intquant._core import formulas
from intquant.errors import InvalidValueError

_FLOATS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-10, 10, allow_nan=False),
    st.sampled_from([0.0, -0.0, 1e-7, -1e-7, 5e-7, 1e308, -1e308, 0.5, -0.5, 127.5, 3e38, -3e38, 1.7e38]),
)


def _chosen(general: bool, monkeypatch: pytest.MonkeyPatch, *args: Any, **kwargs: Any) -> Any:
    with monkeypatch.context() as patch:
        if general:
            patch.setattr(formulas, "_SHORTCUT_TYPES", {})  # no type takes the shortcut
        try:
            return formulas.choose_uniform_parameters(*args, **kwargs)
        except InvalidValueError as error:
            return str(error)


@settings(max_examples=400, deadline=None)
@given(
    first=_FLOATS,
    second=_FLOATS,
    n_bits=st.integers(1, 60),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    kind=st.sampled_from(["python", "float64", "float32"]),
)
def test_float64_parameters_equal_the_general_formulas(
    first: float, second: float, n_bits: int, flags: tuple[bool, bool, bool], kind: str
) -> None:
    monkeypatch = pytest.MonkeyPatch()
    low, high = min(first, second), max(first, second)
    is_signed, is_symmetric, is_qat = flags
    if is_symmetric and is_qat:
        is_qat = False
    if kind == "float32":
        with numpy.errstate(over="ignore"):
            low32, high32 = numpy.float32(low), numpy.float32(high)
        if not (numpy.isfinite(low32) and numpy.isfinite(high32)):
            return
        bounds: tuple[Any, Any] = (low32, high32)
    else:
        bounds = (low, high) if kind == "python" else (numpy.float64(low), numpy.float64(high))
    options = dict(
        is_signed=is_signed, is_symmetric=is_symmetric, is_qat=is_qat, is_precomputed_qat=False,
        uvalues=None, scale=None,
    )  # fmt: skip
    fast = _chosen(False, monkeypatch, *bounds, n_bits, **options)
    general = _chosen(True, monkeypatch, *bounds, n_bits, **options)
    if isinstance(general, str):
        assert fast == general
        return
    assert [type(item) for item in fast] == [type(item) for item in general]
    for mine, theirs in zip(fast, general, strict=True):
        assert mine == theirs and math.copysign(1, mine) == math.copysign(1, theirs)

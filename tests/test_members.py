"""fill_from_kwargs: filling parameter sets from keyword arguments."""

from __future__ import annotations

import pytest

from intquant import (
    MinMaxQuantizationStats,
    QuantizationOptions,
    UniformQuantizationParameters,
    fill_from_kwargs,
)


def test_members_are_set_and_removed() -> None:
    params, rest = fill_from_kwargs(
        None, UniformQuantizationParameters, scale=0.5, zero_point=3, offset=0, other=1
    )
    assert (params.scale, params.zero_point, params.offset, rest) == (0.5, 3, 0, {"other": 1})


def test_nothing_to_fill_returns_the_object_unchanged() -> None:
    assert fill_from_kwargs(None, MinMaxQuantizationStats, other=1) == (None, {"other": 1})
    options = QuantizationOptions(3)
    assert fill_from_kwargs(options, QuantizationOptions)[0] is options


def test_an_existing_object_is_filled() -> None:
    options, _ = fill_from_kwargs(QuantizationOptions(3), QuantizationOptions, is_signed=True, n_bits=5)
    assert (options.n_bits, options.is_signed) == (5, True)


def test_missing_member() -> None:
    params = UniformQuantizationParameters()
    with pytest.raises(
        TypeError, match="Missing quantizer parameter offset: UniformQuantizationParameters needs"
    ):
        fill_from_kwargs(params, UniformQuantizationParameters, scale=0.5, zero_point=3)
    assert params.scale is None  # nothing was set


def test_options_cannot_be_created_from_keywords() -> None:
    with pytest.raises(TypeError, match="cannot create QuantizationOptions from keyword arguments alone"):
        fill_from_kwargs(None, QuantizationOptions, n_bits=3)

"""The pure kernels of uniform quantization, under their 0.1 import path.

Statistics, parameters, bounds and code dtypes live in :mod:`intquant._core.formulas`;
quantization and dequantization with parameters given directly in
:mod:`intquant._core.execute`. This module re-exports them (see docs/versioning.md).
"""

from __future__ import annotations

from intquant._core.execute import ROUNDERS, dequantize, quantize
from intquant._core.formulas import (
    CODE_DTYPES,
    STABILITY_CONST,
    adjust_parameters_to_power_of_two,
    choose_uniform_parameters,
    convert_codes,
    integer_bounds,
    is_uniform_grid,
    merge_uniques,
    minmax_statistics,
    range_including_zero,
    round_to_cents,
    smallest_step,
)

__all__ = [
    "CODE_DTYPES",
    "ROUNDERS",
    "STABILITY_CONST",
    "adjust_parameters_to_power_of_two",
    "choose_uniform_parameters",
    "convert_codes",
    "dequantize",
    "integer_bounds",
    "is_uniform_grid",
    "merge_uniques",
    "minmax_statistics",
    "quantize",
    "range_including_zero",
    "round_to_cents",
    "smallest_step",
]

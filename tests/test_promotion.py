"""numpy 1.24's value-based promotion, reproduced on any numpy (tests/data from numpy 1.24)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy
import pytest

from intquant._numpy124.promotion import as_numpy_operand, legacy_result_type

ROWS = json.loads((Path(__file__).parent / "data" / "legacy_promotion.json").read_text())


def _scalar(row: dict[str, Any]) -> Any:
    if row["scalar_type"] == "python":
        return row["value"]
    with numpy.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return numpy.array(row["value"]).astype(row["scalar_type"])[()]


def test_table_covers_value_based_cases() -> None:
    assert len(ROWS) > 1000
    assert {"array": "float32", "scalar_type": "int64", "value": 65536, "result": "float64"} in ROWS
    assert {"array": "float16", "scalar_type": "float64", "value": 100000.0, "result": "float32"} in ROWS


@pytest.mark.parametrize("order", ["array first", "scalar first"])
def test_result_types_match_numpy_1_24(order: str) -> None:
    mismatches = []
    for row in ROWS:
        array = numpy.ones(3, dtype=row["array"])
        scalar = as_numpy_operand(_scalar(row))
        operands = (array, scalar) if order == "array first" else (scalar, array)
        got = legacy_result_type(*operands)
        if str(got) != row["result"]:
            mismatches.append((row, str(got)))
    assert mismatches == []


def test_python_scalars_are_typed_as_numpy_1_24_types_them() -> None:
    assert type(as_numpy_operand(3)) is numpy.int64
    assert type(as_numpy_operand(3.0)) is numpy.float64
    assert type(as_numpy_operand(True)) is numpy.bool_
    assert as_numpy_operand([1, 2]).dtype == numpy.int64


def test_two_scalars_or_two_arrays_promote_by_dtype() -> None:
    assert legacy_result_type(numpy.float32(1), numpy.float64(1)) == numpy.float64
    assert legacy_result_type(numpy.ones(2, numpy.float32), numpy.ones(2)) == numpy.float64
    # A 0-d array is a scalar for numpy 1.24.
    assert legacy_result_type(numpy.ones(2, numpy.float32), numpy.array(2.0)) == numpy.float32

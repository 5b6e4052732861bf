"""Exact agreement with results of the reference (Concrete ML 1.7.0 on numpy 1.24.2).

tests/data/golden_public.jsonl is a copy of the shared golden data; tests/golden/recipes.py is
the recipe interpreter that produced it (kept verbatim). Arrays and scalars compare by dtype and
raw bytes, objects by their serialized text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import intquant
from intquant import quantizers
from tests.golden import recipes

GOLDEN_FILE = Path(__file__).parent / "data" / "golden_public.jsonl"
CASES = [json.loads(line) for line in GOLDEN_FILE.read_text().splitlines()]
API = recipes.api_from_module(quantizers, intquant.dumps, intquant.loads)


def _matches(expect: dict[str, Any], got: dict[str, Any]) -> bool:
    if "error" in expect:
        # An error must be one that code written for the reference would catch.
        return "error" in got and expect["error"] in got["mro"]
    return expect == got


def test_the_golden_file_is_complete() -> None:
    assert len(CASES) == 1801


@pytest.mark.parametrize("case", CASES, ids=[case["recipe"]["id"] for case in CASES])
def test_golden_case(case: dict[str, Any]) -> None:
    got = recipes.run(case["recipe"], API)
    assert _matches(case["expect"], got), (case["expect"], got)


def test_deviations_raise_value_errors() -> None:
    deviations = [case for case in CASES if "deviation" in case["expect"]]
    assert deviations, "the golden file marks cases where intquant must raise instead of return garbage"
    for case in deviations:
        got = recipes.run(case["recipe"], API)
        assert "ValueError" in got.get("mro", []), case["recipe"]["id"]

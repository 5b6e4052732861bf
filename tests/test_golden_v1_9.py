"""Exact agreement of ``intquant.compat.v1_9`` with Concrete ML 1.9.0 (on numpy 1.26.4).

tests/data/golden_cml19.jsonl was written by ``tools/make_cml19_golden.py`` running a real
Concrete ML 1.9.0 (its docstring says how, and what the file holds); tests/golden/recipes_v1_9.py
interprets its recipes. Arrays and scalars compare by dtype and raw bytes, objects by their
serialized text. Cases marked ``deviation`` are ones where Concrete ML 1.9 returns garbage
(a non-finite scale, codes beyond int64, int32 codes that wrapped, float32 codes that were
rounded): intquant must raise ValueError there.
"""

from __future__ import annotations

import collections
import importlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.golden import recipes_v1_9

GOLDEN_FILE = Path(__file__).parent / "data" / "golden_cml19.jsonl"
CASES = [json.loads(line) for line in GOLDEN_FILE.read_text().splitlines()]


@pytest.fixture(scope="module")
def api() -> SimpleNamespace:
    # Imported here, not at the top: until the module exists, each case fails on its own
    # (ModuleNotFoundError) instead of the whole suite failing to collect.
    module = importlib.import_module("intquant.compat.v1_9")
    return recipes_v1_9.api_from_module(module)


def _matches(expect: dict[str, Any], got: dict[str, Any]) -> bool:
    if "error" in expect:
        # An error must be one that code written for Concrete ML 1.9 would catch.
        return "error" in got and expect["error"] in got["mro"]
    return expect == got


def test_the_golden_file_is_complete() -> None:
    assert len(CASES) == 2489
    ids = [case["recipe"]["id"] for case in CASES]
    assert len(set(ids)) == len(ids)
    families = collections.Counter(i.split("-")[1] if i.startswith("cml19-") else "public" for i in ids)
    assert families == {
        "public": 1801,
        "dtype": 224,
        "qat": 90,
        "fill": 90,
        "qa_stats": 80,
        "loads17": 56,
        "rt19": 98,
        "loads19": 50,
    }


def test_the_golden_file_has_each_deviation() -> None:
    reasons = collections.Counter(c["expect"]["deviation"] for c in CASES if "deviation" in c["expect"])
    assert reasons == {
        "non-finite scale": 5,
        "float32 codes rounded": 22,
        "int32 codes wrapped": 23,
        "integer out of int64 range": 3,
    }


@pytest.mark.parametrize("case", CASES, ids=[case["recipe"]["id"] for case in CASES])
def test_golden_case(case: dict[str, Any], api: SimpleNamespace) -> None:
    got = recipes_v1_9.run(case["recipe"], api)
    assert _matches(case["expect"], got), (case["expect"], got)


def test_deviations_raise_value_errors(api: SimpleNamespace) -> None:
    deviations = [case for case in CASES if "deviation" in case["expect"]]
    assert deviations, "the golden file marks cases where intquant must raise instead of return garbage"
    for case in deviations:
        got = recipes_v1_9.run(case["recipe"], api)
        assert "ValueError" in got.get("mro", []), (case["recipe"]["id"], case["expect"]["deviation"], got)

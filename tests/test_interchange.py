"""The committed Concrete ML interchange table still describes what intquant writes.

``tests/data/concrete_ml_interchange.json`` records, for every text intquant writes (the cases of
``tools/interchange_cases.py``), its SHA-256 and what real Concrete ML 1.7.0 and 1.9.0 did with it
(``tools/check_concrete_ml_interchange.py``, run by hand: CI has no Concrete ML). Here, without
Concrete ML: each case's text is written again and must hash as recorded (a change in what
intquant writes fails until the tool is rerun), and no recorded verdict may be a misread other
than Concrete ML's own difference between its versions.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy
import pytest

import intquant
from intquant._core.extras import EXTRA_OPTIONS, needs_intquant_tag, statistics_need_intquant_tag

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "tests" / "data" / "concrete_ml_interchange.json"
VERSIONS = ("1.7.0", "1.9.0")
#: The Concrete ML version whose text each convention's cases are.
CONVENTION_VERSIONS = {"1.7": "1.7.0", "1.9": "1.9.0"}
RERUN = (
    "rerun `.venv/bin/python tools/check_concrete_ml_interchange.py --venv 1.7.0=PATH "
    "--venv 1.9.0=PATH` (docs/interchange.md) and commit its output"
)


def _cases_module() -> ModuleType:
    name = "interchange_cases"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / "interchange_cases.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


ic = _cases_module()
RECORDED: dict[str, Any] = json.loads(RECORD.read_text())
CASES = {case.name: case for case in ic.all_cases()}


def _recorded(name: str) -> dict[str, Any]:
    return next(record for record in RECORDED["cases"] if record["name"] == name)


def test_the_record_lists_every_case_once() -> None:
    recorded = [record["name"] for record in RECORDED["cases"]]
    assert len(recorded) == len(set(recorded))
    missing = sorted(set(CASES) - set(recorded))
    stale = sorted(set(recorded) - set(CASES))
    assert not missing and not stale, f"cases not recorded: {missing}; recorded but gone: {stale}; {RERUN}"
    assert set(RECORDED["concrete_ml"]) == set(VERSIONS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_intquant_writes_the_recorded_text(name: str) -> None:
    text = ic.make_text(CASES[name])
    record = _recorded(name)
    assert ic.text_hash(text) == record["sha256"], f"intquant now writes another {name} text; {RERUN}"
    assert ic.tags_of(text) == record["tag"]


def test_no_text_is_misread() -> None:
    misread = []
    for record in RECORDED["cases"]:
        for version in VERSIONS:
            verdict = record["concrete_ml"][version]
            assert verdict["verdict"] in ("identical", "refused", "MISREAD"), verdict
            if verdict["verdict"] == "MISREAD" and not verdict.get("cml_own"):
                misread.append(f"{record['name']} ({version}): {verdict['detail']}")
    assert not misread, "Concrete ML misreads:\n" + "\n".join(misread)


def test_concrete_ml_s_own_differences_are_between_its_versions() -> None:
    """A misread is excused only when another version reads the text identically."""
    for record in RECORDED["cases"]:
        for version in VERSIONS:
            if record["concrete_ml"][version].get("cml_own"):
                others = [other for other in VERSIONS if other != version]
                assert any(record["concrete_ml"][other]["verdict"] == "identical" for other in others)


def test_refused_exactly_when_an_intquant_tag_is_written() -> None:
    """Concrete ML refuses intquant's tags, and the version whose convention a text follows reads
    it (another version may refuse it: Concrete ML 1.7 cannot load 1.9's statistics)."""
    for record in RECORDED["cases"]:
        intquant_tag = "intquant." in record["tag"]
        case = CASES.get(record["name"])
        for version in VERSIONS:
            refused = record["concrete_ml"][version]["verdict"] == "refused"
            if intquant_tag or (case is not None and CONVENTION_VERSIONS[case.convention] == version):
                assert refused == intquant_tag, (record["name"], version, record["tag"])


def test_the_seed_s_texts_are_concrete_ml_s_own() -> None:
    """Concrete ML made every seed case from the same recipe, and wrote the same text."""
    checked = 0
    for name, case in CASES.items():
        if case.cml_buildable:
            verdict = _recorded(name)["concrete_ml"][CONVENTION_VERSIONS[case.convention]]
            assert verdict.get("same_text") is True, (name, verdict)
            checked += 1
    assert checked >= 60


def test_the_docs_show_the_recorded_tables() -> None:
    text = (ROOT / "docs" / "interchange.md").read_text()
    start, end = text.index(ic.TABLE_START) + len(ic.TABLE_START), text.index(ic.TABLE_END)
    assert text[start:end].strip() == ic.markdown_tables(RECORDED).strip(), RERUN


def test_the_cases_cover_what_intquant_writes() -> None:
    kinds = {(case.kind, case.group) for case in CASES.values()}
    for kind in ("options", "stats", "params", "quantizer", "quantized_array"):
        assert (kind, "seed") in kinds and (kind, "extra") in kinds
    assert ("calibration", "calibration") in kinds and ("quantizer", "cli") in kinds
    extras = {name for case in CASES.values() for name in case.recipe.get("extras", {})}
    assert extras == set(EXTRA_OPTIONS)
    if ic.v1_9_available():
        assert any(case.group == "v1_9" for case in CASES.values())


# -- the tag rules of intquant._core.extras, on objects


VALUES = numpy.linspace(0.5, 3.0, 24).reshape(4, 6)  # 0 not in range: zero_in_range matters


@pytest.mark.parametrize("option", [{"zero_in_range": True}, {"power_of_two_scale": True}])
def test_options_that_change_the_parameters_tag_what_is_not_calibrated(option: dict[str, bool]) -> None:
    options = intquant.QuantizationOptions(4, **option)
    assert needs_intquant_tag(options)
    text = intquant.dumps(options)
    assert json.loads(text)["type_name"] == "intquant.QuantizationOptions"
    assert intquant.loads(text) == options
    quantizer = intquant.UniformQuantizer(options)
    assert json.loads(intquant.dumps(quantizer))["type_name"] == "intquant.UniformQuantizer"
    # Calibrated, its parameters are written and are all Concrete ML's quant/dequant read.
    quantizer.compute_quantization_stats(VALUES)
    quantizer.compute_quantization_parameters(options, quantizer.quant_stats)
    assert not needs_intquant_tag(quantizer)
    text = intquant.dumps(quantizer)
    assert json.loads(text)["type_name"] == "UniformQuantizer"
    assert json.loads(text)["serialized_value"][next(iter(option))] is True
    assert intquant.loads(text) == quantizer


def test_a_quantizer_missing_one_parameter_is_tagged() -> None:
    quantizer = intquant.QuantizedArray(4, VALUES, zero_in_range=True).quantizer
    quantizer.offset = None
    assert needs_intquant_tag(quantizer)


def test_the_seed_s_options_keep_the_seed_s_tags() -> None:
    options = intquant.QuantizationOptions(4, is_signed=True)
    options.is_narrow = True
    assert not needs_intquant_tag(options)
    assert not needs_intquant_tag(intquant.UniformQuantizer(options))
    assert json.loads(intquant.dumps(options))["type_name"] == "QuantizationOptions"


def test_statistics_per_axis_or_block_need_an_intquant_tag() -> None:
    stats = intquant.MinMaxQuantizationStats()
    stats.compute_quantization_stats(VALUES)
    assert not statistics_need_intquant_tag(stats)
    for granularity in ({"axis": 0}, {"block_size": (2, 3)}):
        stats.compute_quantization_stats(VALUES, **granularity)
        assert statistics_need_intquant_tag(stats)
    assert not statistics_need_intquant_tag(intquant.MinMaxQuantizationStats())

"""Check that Concrete ML reads every text intquant writes identically, or refuses it.

For every case of ``tools/interchange_cases.py`` (the seed's classes with every combination of
the seed's options, each extra option alone and together, quantized arrays, calibration states,
what ``intquant calibrate`` writes, and Concrete ML 1.9's convention when
``intquant.compat.v1_9`` exists), the text intquant writes is loaded

* by intquant, which runs the case's use (``quant``/``dequant`` on probe data, after calibrating
  options and statistics): the expected results;
* by each real Concrete ML given (``--venv VERSION=PATH``: a virtual environment with
  ``concrete-ml==VERSION`` installed), in a subprocess running this file with that venv's python,
  with ``concrete.ml.common.serialization.loaders.loads``; if it loads, the same use runs with
  Concrete ML's classes and every result is compared with intquant's, values, dtypes and types,
  byte for byte.

Verdict per case and version: ``identical``, ``refused`` (the exception Concrete ML raised when
loading) or ``MISREAD`` (it loads, but some result differs or a later step raises). A misread of
a text that another Concrete ML version writes byte for byte itself, and reads identically, is
Concrete ML's own difference between its versions (``cml_own``). Also recorded: whether
Concrete ML makes the same text from the same recipe (the seed's cases), and what a round trip
intquant -> Concrete ML -> intquant keeps.

Run it (it takes a minute; Concrete ML venvs of several GB, built under /tmp)::

    python3 -m venv /tmp/venv-cml17 && /tmp/venv-cml17/bin/pip install concrete-ml==1.7.0
    python3 -m venv /tmp/venv-cml19 && /tmp/venv-cml19/bin/pip install concrete-ml==1.9.0
    .venv/bin/python tools/check_concrete_ml_interchange.py \\
        --venv 1.7.0=/tmp/venv-cml17 --venv 1.9.0=/tmp/venv-cml19 --docs docs/interchange.md

It writes ``tests/data/concrete_ml_interchange.json`` (deterministic; committed, and read by
``tests/test_interchange.py``) and the tables of ``docs/interchange.md``; the exit status
is 1 when some case is misread (Concrete ML's own differences aside).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import interchange_cases as ic

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "tests" / "data" / "concrete_ml_interchange.json"
#: The convention each Concrete ML version follows (a case is compared as text with the version
#: of its convention).
CONVENTIONS = {"1.7.0": "1.7", "1.9.0": "1.9"}


# -- the worker, run by a Concrete ML venv's python


def worker(request_path: str, response_path: str) -> None:
    """Load every case's text with Concrete ML, use it, dump it again, and make the seed's
    objects from their recipes; write the results as JSON."""
    from importlib.metadata import version

    import numpy
    from concrete.ml.common.serialization.dumpers import dumps
    from concrete.ml.common.serialization.loaders import loads
    from concrete.ml.quantization import quantizers

    lib = SimpleNamespace(
        name="Concrete ML",
        QuantizationOptions=quantizers.QuantizationOptions,
        MinMaxQuantizationStats=quantizers.MinMaxQuantizationStats,
        UniformQuantizationParameters=quantizers.UniformQuantizationParameters,
        UniformQuantizer=quantizers.UniformQuantizer,
        QuantizedArray=quantizers.QuantizedArray,
        loads=loads,
        dumps=dumps,
        extras=False,
    )
    request = json.loads(Path(request_path).read_text())
    response: dict[str, Any] = {
        "version": version("concrete-ml"),
        "environment": f"numpy {numpy.__version__}",
        "cases": {},
    }
    for raw in request["cases"]:
        case = ic.case_from_json(raw["case"])
        text = raw["text"]
        entry: dict[str, Any] = {}
        loaded = ic.attempt(lambda t=text: loads(t))
        if isinstance(loaded, ic.Failure):
            entry["load"] = ic.encode_result(loaded)
        else:
            round_trip = ic.attempt(lambda t=text: dumps(loads(t)))
            entry["round_trip"] = round_trip if isinstance(round_trip, str) else ic.encode_result(round_trip)
            entry["results"] = ic.encode_results(ic.use(lib, loads(text), case))
            entry["recalibration"] = ic.encode_results(ic.recalibration(lib, loads(text), case))
        if case.cml_buildable and raw.get("build", True):
            recipe = case.recipe.get("seed", case.recipe)
            built = ic.attempt(lambda r=recipe: dumps(ic.build(lib, r)))
            entry["built"] = built if isinstance(built, str) else ic.encode_result(built)
        response["cases"][raw.get("key", case.name)] = entry
    Path(response_path).write_text(json.dumps(response))


# -- the driver, run by intquant's venv


def intquant_side(cases: list[ic.Case], texts: dict[str, str]) -> dict[str, dict[str, Any]]:
    """intquant's own results for each case's text (read back with ``intquant.loads``)."""
    expected = {}
    for case in cases:
        lib = ic.intquant_library(case.convention)
        obj = lib.loads(texts[case.name])
        expected[case.name] = {
            "results": ic.encode_results(ic.use(lib, obj, case)),
            "recalibration": ic.encode_results(ic.recalibration(lib, lib.loads(texts[case.name]), case)),
        }
    return expected


def run_worker(python: Path, items: list[dict[str, Any]]) -> dict[str, Any]:
    """Run :func:`worker` with ``python`` (a Concrete ML venv's) on ``items``: each a ``case``,
    the ``text`` to read, optionally a ``key`` for its results (default: the case's name) and
    ``build`` (whether to make the seed's object from the recipe too; default True)."""
    request = {"cases": [{**item, "case": dataclasses.asdict(item["case"])} for item in items]}
    with tempfile.TemporaryDirectory() as folder:
        request_path, response_path = Path(folder) / "request.json", Path(folder) / "response.json"
        request_path.write_text(json.dumps(request))
        command = [
            str(python),
            str(Path(__file__).resolve()),
            "--worker",
            str(request_path),
            str(response_path),
        ]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
        if completed.returncode != 0:
            raise RuntimeError(f"the worker {' '.join(command)} failed:\n{completed.stderr[-3000:]}")
        return dict(json.loads(response_path.read_text()))


def describe_failure(encoded: dict[str, Any]) -> str:
    return f"{encoded['error']}: {encoded['message']}" if encoded.get("message") else encoded["error"]


def compare(expected: list[list[Any]], actual: list[list[Any]]) -> list[str]:
    """What differs between intquant's results and another reader's, one line per result."""
    import numpy

    mine_labels, their_labels = [label for label, _ in expected], [label for label, _ in actual]
    if mine_labels != their_labels:  # a step failed there, so the steps after it never ran
        failed = [
            f"{label}: raises {describe_failure(result)}" for label, result in actual if "error" in result
        ]
        return failed or [f"other steps: {their_labels[:3]}... instead of {mine_labels[:3]}..."]
    differences = []
    for (label, mine), (_, theirs) in zip(expected, actual, strict=True):
        if mine == theirs:
            continue
        if "error" in theirs and "error" not in mine:
            differences.append(f"{label}: raises {describe_failure(theirs)}")
        elif "error" in mine and "error" not in theirs:
            differences.append(f"{label}: computes what intquant refuses ({describe_failure(mine)})")
        elif "error" in mine:
            continue  # both refuse that input
        elif mine.get("dtype") != theirs.get("dtype") or mine.get("shape") != theirs.get("shape"):
            differences.append(
                f"{label}: {theirs.get('type')} {theirs.get('dtype')} {theirs.get('shape')} instead of "
                f"{mine.get('type')} {mine.get('dtype')} {mine.get('shape')}"
            )
        elif mine.get("type") != theirs.get("type"):
            differences.append(f"{label}: a {theirs.get('type')} instead of a {mine.get('type')}")
        else:
            width = numpy.dtype(mine["dtype"]).itemsize
            first = numpy.frombuffer(bytes.fromhex(mine["bytes"]), numpy.uint8).reshape(-1, width)
            second = numpy.frombuffer(bytes.fromhex(theirs["bytes"]), numpy.uint8).reshape(-1, width)
            count = int((first != second).any(axis=1).sum())
            differences.append(f"{label}: {count} of {len(first)} values differ")
    return differences


def json_differences(first: Any, second: Any, path: str = "") -> list[str]:
    """Where two JSON values differ: keys dropped or added, values changed."""
    if isinstance(first, dict) and isinstance(second, dict):
        found = [f"dropped {path}{key}" for key in first if key not in second]
        found += [f"added {path}{key}" for key in second if key not in first]
        for key in first:
            if key in second:
                found += json_differences(first[key], second[key], f"{path}{key}.")
        return found
    if isinstance(first, list) and isinstance(second, list) and len(first) == len(second):
        found = []
        for index, (one, two) in enumerate(zip(first, second, strict=True)):
            found += json_differences(one, two, f"{path}{index}.")
        return found
    return [] if first == second else [f"changed {path.rstrip('.')}"]


def round_trip_note(case: ic.Case, text: str, entry: dict[str, Any], expected: dict[str, Any]) -> str:
    """What intquant -> Concrete ML -> intquant keeps."""
    written = entry.get("round_trip")
    if written is None:
        return ""
    if isinstance(written, dict):
        return f"Concrete ML cannot write it back: {describe_failure(written)}"
    if written == text:
        return "same text"
    lost = json_differences(json.loads(text), json.loads(written))
    lost_text = "; ".join(item.replace("serialized_value.", "") for item in lost[:4])
    lib = ic.intquant_library(case.convention)
    loaded = ic.attempt(lambda: lib.loads(written))
    if isinstance(loaded, ic.Failure):
        return f"text changed ({lost_text}); intquant refuses it: {loaded.error}"
    results = ic.encode_results(ic.use(lib, loaded, case))
    same = "same results" if results == expected["results"] else "DIFFERENT results"
    return f"text changed ({lost_text}); read back by intquant: {same}"


def verdicts(
    cases: list[ic.Case],
    texts: dict[str, str],
    expected: dict[str, dict[str, Any]],
    responses: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """Each case with its text's hash and its verdict per Concrete ML version."""
    records = []
    for case in cases:
        text = texts[case.name]
        per_version: dict[str, dict[str, Any]] = {}
        for version, response in responses.items():
            entry = response["cases"][case.name]
            same_text = None
            if case.cml_buildable and CONVENTIONS.get(version) == case.convention:
                same_text = entry.get("built") == text
            if "load" in entry:
                record = {"verdict": "refused", "detail": describe_failure(entry["load"])}
            else:
                differences = compare(expected[case.name]["results"], entry["results"])
                if differences:
                    record = {"verdict": "MISREAD", "detail": "; ".join(differences[:3])}
                else:
                    count = len(entry["results"])
                    refused = sum("error" in result for _, result in entry["results"])
                    detail = f"{count} results identical" + (
                        f" ({refused} refused by both)" if refused else ""
                    )
                    record = {"verdict": "identical", "detail": detail}
                mine, theirs = expected[case.name]["recalibration"], entry["recalibration"]
                if mine or theirs:
                    changes = compare(mine, theirs)
                    record["recalibration"] = "same" if not changes else "differs: " + changes[0]
                record["round_trip"] = round_trip_note(case, text, entry, expected[case.name])
            if same_text is not None:
                record["same_text"] = same_text
            per_version[version] = record
        records.append(
            {
                "name": case.name,
                "kind": case.kind,
                "group": case.group,
                "description": case.description,
                "tag": ic.tags_of(text),
                "sha256": ic.text_hash(text),
                "concrete_ml": per_version,
            }
        )
    return records


def confirm_cml_own(
    records: list[dict[str, Any]],
    cases: list[ic.Case],
    texts: dict[str, str],
    responses: dict[str, dict[str, Any]],
    venvs: dict[str, Path],
) -> None:
    """Mark the misreads that are Concrete ML's own differences between its versions: version
    V misreads a text that version W reads identically, and V reads the text W writes back
    itself (its own text, after reading ours) with the very same results. intquant cannot
    write anything W reads as W does that V would read otherwise."""
    by_name = {case.name: case for case in cases}
    asks: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        for version, verdict in record["concrete_ml"].items():
            if verdict["verdict"] != "MISREAD":
                continue
            for other, other_verdict in record["concrete_ml"].items():
                written = responses[other]["cases"][record["name"]].get("round_trip")
                if other != version and other_verdict["verdict"] == "identical" and isinstance(written, str):
                    key = f"{record['name']} as written by {other}"
                    case = by_name[record["name"]]
                    asks.setdefault(version, []).append(
                        {"key": key, "case": case, "text": written, "build": False}
                    )
    for version, items in asks.items():
        answers = run_worker(venvs[version], items)["cases"]
        for item in items:
            record = next(r for r in records if r["name"] == item["case"].name)
            verdict = record["concrete_ml"][version]
            other = item["key"].rsplit(" as written by ", 1)[1]
            mine = responses[version]["cases"][record["name"]]["results"]
            if "cml_own" not in verdict and answers[item["key"]].get("results") == mine:
                same = item["text"] == texts[record["name"]]
                verdict["cml_own"] = (
                    f"Concrete ML {other} reads it identically and writes it back as "
                    f"{'the same text' if same else 'its own text'}; {version} reads that text "
                    f"with the same results"
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--venv", action="append", default=[], metavar="VERSION=PATH", help="a Concrete ML venv"
    )
    parser.add_argument("--output", type=Path, default=OUTPUT, help="the JSON record to write")
    parser.add_argument(
        "--docs", type=Path, help="replace the tables between the markers of this Markdown file"
    )
    parser.add_argument("--worker", nargs=2, metavar=("REQUEST", "RESPONSE"), help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.worker:
        worker(*arguments.worker)
        return 0
    if not arguments.venv:
        parser.error("give at least one --venv VERSION=PATH")
    venvs = {}
    for item in arguments.venv:
        version, _, path = item.partition("=")
        python = Path(path) / "bin" / "python"
        if not python.is_file():
            parser.error(f"--venv {item}: no {python}")
        venvs[version] = python
    cases = ic.all_cases()
    texts = {case.name: ic.make_text(case) for case in cases}
    expected = intquant_side(cases, texts)
    responses = {}
    for version, python in venvs.items():
        response = run_worker(python, [{"case": case, "text": texts[case.name]} for case in cases])
        if response["version"] != version:
            raise SystemExit(f"{python} has Concrete ML {response['version']}, not {version}")
        responses[version] = response
    records = verdicts(cases, texts, expected, responses)
    confirm_cml_own(records, cases, texts, responses, venvs)
    document = {
        "about": (
            "What Concrete ML does with each text intquant writes; generated by "
            "tools/check_concrete_ml_interchange.py, checked by tests/test_interchange.py."
        ),
        "command": "tools/check_concrete_ml_interchange.py " + " ".join(f"--venv {v}=PATH" for v in venvs),
        "concrete_ml": {version: response["environment"] for version, response in responses.items()},
        "v1_9_cases": any(case.group == "v1_9" for case in cases),
        "cases": records,
    }
    arguments.output.write_text(json.dumps(document, indent=1) + "\n")
    tables = ic.markdown_tables(document)
    if arguments.docs:
        text = arguments.docs.read_text()
        start, end = text.find(ic.TABLE_START), text.find(ic.TABLE_END)
        if start < 0 or end < start:
            raise SystemExit(f"{arguments.docs} has no {ic.TABLE_START} ... {ic.TABLE_END} markers")
        arguments.docs.write_text(text[: start + len(ic.TABLE_START)] + "\n" + tables + text[end:])
    print(tables)
    print(ic.summary(document))
    misread = [
        f"{record['name']} ({version}): {verdict['detail']}"
        for record in records
        for version, verdict in record["concrete_ml"].items()
        if verdict["verdict"] == "MISREAD" and not verdict.get("cml_own")
    ]
    for line in misread:
        print("MISREAD", line, file=sys.stderr)
    return 1 if misread else 0


if __name__ == "__main__":
    sys.exit(main())

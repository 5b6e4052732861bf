"""The intquant command, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy
import pytest

from intquant import UniformQuantizer, loads
from intquant.cli import load_sample, main, write_text_atomically


def _run(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "intquant", *arguments], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_demo_prints_a_table_and_writes_the_quantizer(tmp_path: Path) -> None:
    result = _run("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "4096 float32 values of shape (64, 64)" in lines[0]
    rows = [line.split() for line in lines if line.split() and line.split()[0].isdigit()]
    assert [int(row[0]) for row in rows] == [2, 3, 4, 6, 8]
    sqnr = [float(row[4]) for row in rows]
    assert sqnr == sorted(sqnr)  # more bits, less noise
    quantizer = loads((tmp_path / "intquant-demo-quantizer.json").read_text())
    assert isinstance(quantizer, UniformQuantizer) and quantizer.n_bits == 8
    codes = quantizer.quant(load_sample())
    assert codes.min() == 0 and codes.max() == 255


def test_demo_options(tmp_path: Path) -> None:
    output = tmp_path / "q.json"
    assert main(["demo", "--bits", "4", "--symmetric", "-o", str(output)]) == 0
    quantizer = loads(output.read_text())
    assert (quantizer.n_bits, quantizer.is_symmetric, quantizer.is_signed) == (4, True, True)


def test_bad_bits_are_a_usage_error(tmp_path: Path) -> None:
    result = _run("demo", "--bits", "0,4", cwd=tmp_path)
    assert result.returncode == 2
    assert "each bit width must be 1 to 32" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unwritable_output_is_a_one_line_error(tmp_path: Path) -> None:
    result = _run("demo", "-o", str(tmp_path / "missing" / "q.json"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("intquant: error:") and "Traceback" not in result.stderr


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomically(target, "\u00e9")  # not ASCII: the write fails
    assert target.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["out.json"]


def test_sample_is_float32_weights() -> None:
    sample = load_sample()
    assert sample.shape == (64, 64) and sample.dtype == numpy.float32

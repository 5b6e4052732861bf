"""Whole checkpoints on the command line: every array of an ``.npz`` or ``.safetensors`` file
calibrated into one quantizers file, quantized and dequantized in one command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy
import pytest

import intquant
from intquant import QuantizedArray, loads
from tests.test_cli import fails, ok

FORMATS = [".npz", ".safetensors"]


def _weights() -> dict[str, numpy.ndarray]:
    rng = numpy.random.default_rng(3)
    return {
        "layer.0.weight": rng.normal(size=(16, 8)).astype(numpy.float32),
        "layer.0.bias": rng.normal(size=(16,)).astype(numpy.float32),
        "layer.1.weight": rng.normal(size=(4, 16)).astype(numpy.float64),
        "steps": numpy.arange(3, dtype=numpy.int64),
    }


def _save(path: Path, arrays: dict[str, numpy.ndarray]) -> None:
    if path.suffix == ".npz":
        numpy.savez(path, **arrays)
    else:
        safetensors_numpy = pytest.importorskip(
            "safetensors.numpy",
            reason="SAFETENSORS IS NOT INSTALLED: .safetensors checkpoints are NOT tested",
        )
        safetensors_numpy.save_file(arrays, str(path))


def _load(path: Path) -> dict[str, numpy.ndarray]:
    if path.suffix == ".npz":
        with numpy.load(path) as archive:
            return {name: archive[name] for name in archive.files}
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    return dict(safetensors_numpy.load_file(str(path)))


@pytest.fixture(params=FORMATS)
def model(request: Any, tmp_path: Path) -> tuple[str, dict[str, numpy.ndarray]]:
    arrays = _weights()
    name = f"model{request.param}"
    _save(tmp_path / name, arrays)
    return name, arrays


def test_calibrate_quantize_dequantize_a_checkpoint(
    tmp_path: Path, model: tuple[str, dict[str, Any]]
) -> None:
    name, arrays = model
    output = ok(
        "calibrate",
        name,
        "-o",
        "quantizers.json",
        "--n-bits",
        "4",
        "--signed",
        "--exclude",
        "steps",
        cwd=tmp_path,
    )
    assert output == f"wrote 3 4-bit minmax quantizers, one per array of {name}\nto quantizers.json\n"
    text = (tmp_path / "quantizers.json").read_text()
    # The format: a JSON object of array name -> the quantizer's own text; intquant.loads reads it.
    quantizers = loads(text)
    assert sorted(quantizers) == sorted(key for key in arrays if key != "steps")
    raw = json.loads(text)
    for key, quantizer in quantizers.items():
        expected = QuantizedArray(4, arrays[key], is_signed=True).quantizer
        assert quantizer == expected
        assert json.dumps(raw[key]) == intquant.dumps(expected)  # each entry: Concrete ML's text
    # Codes: arrays with a quantizer quantized (smallest dtype), the others copied unchanged.
    output = ok("quantize", name, "quantizers.json", "-o", f"codes{Path(name).suffix}", cwd=tmp_path)
    assert "copied 1 arrays without a quantizer unchanged: steps" in output
    codes = _load(tmp_path / f"codes{Path(name).suffix}")
    assert sorted(codes) == sorted(arrays)
    assert numpy.array_equal(codes["steps"], arrays["steps"]) and codes["steps"].dtype == numpy.int64
    for key, quantizer in quantizers.items():
        assert codes[key].dtype == numpy.int8 and numpy.array_equal(codes[key], quantizer.quant(arrays[key]))
    # Values back, each in the dtype its array was calibrated on.
    ok("dequantize", f"codes{Path(name).suffix}", "quantizers.json", "-o", "restored.npz", cwd=tmp_path)
    restored = _load(tmp_path / "restored.npz")
    for key, quantizer in quantizers.items():
        assert restored[key].dtype == arrays[key].dtype
        assert numpy.array_equal(restored[key], quantizer.dequant(codes[key]).astype(arrays[key].dtype))
    # One array of a checkpoint, with its entry of the quantizers file.
    ok("quantize", f"{name}:layer.0.bias", "quantizers.json", "-o", "bias.npy", cwd=tmp_path)
    bias = numpy.load(tmp_path / "bias.npy")
    assert numpy.array_equal(bias, quantizers["layer.0.bias"].quant(arrays["layer.0.bias"]))


def test_checkpoint_options_and_methods(tmp_path: Path) -> None:
    arrays = _weights()
    del arrays["steps"], arrays["layer.0.bias"]
    numpy.savez(tmp_path / "m.npz", **arrays)
    ok(
        "calibrate",
        "m.npz",
        "-o",
        "q.json",
        "--axis",
        "0",
        "--symmetric",
        "--method",
        "mse",
        "--n-bits",
        "3",
        cwd=tmp_path,
    )
    quantizers = loads((tmp_path / "q.json").read_text())
    for key, values in arrays.items():
        expected = QuantizedArray(
            3, values, is_signed=True, is_symmetric=True, axis=0, stats=intquant.calibration.MSEStats()
        ).quantizer
        assert numpy.array_equal(quantizers[key].scale, expected.scale), key
    ok("quantize", "m.npz", "q.json", "-o", "c.npz", "--dtype", "int16", cwd=tmp_path)
    codes = _load(tmp_path / "c.npz")
    assert all(codes[key].dtype == numpy.int16 for key in arrays)
    ok("dequantize", "c.npz", "q.json", "-o", "r.npz", "--dtype", "float64", cwd=tmp_path)
    assert all(array.dtype == numpy.float64 for array in _load(tmp_path / "r.npz").values())


def test_safetensors_written_without_the_library_reads_back(tmp_path: Path) -> None:
    pytest.importorskip(
        "safetensors", reason="SAFETENSORS IS NOT INSTALLED: .safetensors output is NOT checked"
    )
    arrays = _weights()
    numpy.savez(tmp_path / "m.npz", **arrays)
    ok("calibrate", "m.npz", "-o", "q.json", "--exclude", "steps", cwd=tmp_path)
    ok("quantize", "m.npz", "q.json", "-o", "codes.SAFETENSORS", cwd=tmp_path)
    import safetensors.numpy

    codes = safetensors.numpy.load_file(str(tmp_path / "codes.SAFETENSORS"))
    assert sorted(codes) == sorted(arrays)
    assert numpy.array_equal(codes["steps"], arrays["steps"])
    assert codes["layer.0.weight"].dtype == numpy.uint8


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            ["quantize", "m.npz", "one.json", "-o", "c.npz"],
            "one.json holds one quantizer, but m.npz is a checkpoint: calibrate it as a whole (intquant "
            "calibrate m.npz -o quantizers.json) for a quantizer per array, or name one array as m.npz:NAME",
        ),
        (
            ["quantize", "m.npz", "other.json", "-o", "c.npz"],
            "other.json holds quantizers for 'gone', which m.npz does not hold (it holds a, b); use the "
            "quantizers calibrated on this checkpoint",
        ),
        (
            ["quantize", "a.npy", "all.json", "-o", "c.npy"],
            "all.json holds quantizers for the arrays of a checkpoint (a, b); apply it to the checkpoint, "
            "or to one of its arrays as FILE.npz:NAME",
        ),
        (["quantize", "m.npz:c", "all.json", "-o", "c.npy"], "m.npz has no array 'c'; it holds a, b"),
        (
            ["quantize", "other.npz", "axis.json", "-o", "c.npz"],
            "other.npz:a: the quantizer holds parameters for a block grid of shape (2, 1), but values "
            "of shape (3, 3) make a grid of shape (3, 1)",
        ),
        (
            ["quantize", "m.npz", "all.json", "-o", "c.npy"],
            "c.npy: a checkpoint's codes are written as .npz or .safetensors; got '.npy'. Name the "
            "output *.npz",
        ),
        (
            ["quantize", "m.npz:a", "all.json", "-o", "c.npz"],
            "c.npz: codes are written as .npy or .csv; got '.npz'. Name the output *.npy",
        ),
        (
            ["calibrate", "m.npz", "-o", "x.json", "--exclude", "z*"],
            "--exclude 'z*' matches no array of m.npz; it holds a, b",
        ),
        (
            ["calibrate", "m.npz", "-o", "x.json", "--exclude", "*"],
            "--exclude leaves no array of m.npz to calibrate",
        ),
        (
            ["calibrate", "m.npz", "-o", "x.json", "--axis", "1"],
            "--axis 1 is out of range for m.npz:b of shape (3,); use -1 to 0",
        ),
        (
            ["report", "m.npz", "--bits", "4"],
            "m.npz is a checkpoint of 2 arrays (a, b); this takes one array: name it as m.npz:NAME",
        ),
        (
            ["calibrate", "tagged.npz", "-o", "x.json"],
            "an array named 'type_name' cannot have its quantizer in a quantizers file",
        ),
        (
            ["quantize", "m.npz", "bad.json", "-o", "c.npz"],
            "bad.json: the quantizer of 'a' is not a serialized quantizer",
        ),
        (
            ["quantize", "m.npz", "empty.json", "-o", "c.npz"],
            "empty.json holds an empty object, not a quantizer nor quantizers by array name",
        ),
        (
            ["quantize", "m.npz", "offset.json", "-o", "c.npz"],
            "offset.json: the quantizer of 'a': UniformQuantizer field 'offset'",
        ),
    ],
)
def test_checkpoint_refusals(tmp_path: Path, arguments: list[str], message: str) -> None:
    numpy.savez(tmp_path / "m.npz", a=numpy.linspace(-1, 1, 6).reshape(2, 3), b=numpy.arange(3.0))
    numpy.savez(tmp_path / "tagged.npz", type_name=numpy.arange(3.0))
    numpy.save(tmp_path / "a.npy", numpy.linspace(-1, 1, 6).reshape(2, 3))
    ok("calibrate", "a.npy", "-o", "one.json", cwd=tmp_path)
    ok("calibrate", "m.npz", "-o", "all.json", cwd=tmp_path)
    ok("calibrate", "m.npz", "-o", "axis.json", "--axis", "0", cwd=tmp_path)
    numpy.savez(tmp_path / "other.npz", a=numpy.ones((3, 3)), b=numpy.arange(3.0))
    entries = json.loads((tmp_path / "all.json").read_text())
    (tmp_path / "other.json").write_text(json.dumps({"gone": entries["a"]}))
    (tmp_path / "bad.json").write_text(json.dumps({"a": [1, 2]}))
    (tmp_path / "empty.json").write_text("{}")
    entries["a"]["serialized_value"]["offset"] = -5
    (tmp_path / "offset.json").write_text(json.dumps(entries))
    before = sorted(path.name for path in tmp_path.iterdir())
    assert fails(*arguments, cwd=tmp_path).startswith(message)
    assert sorted(path.name for path in tmp_path.iterdir()) == before


def test_safetensors_needs_its_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "m.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    monkeypatch.setitem(sys.modules, "safetensors", None)  # as if not installed
    assert fails("calibrate", "m.safetensors", "-o", "q.json", cwd=tmp_path) == (
        "m.safetensors: reading .safetensors files needs the safetensors package: "
        'pip install "intquant[safetensors]"'
    )


def test_corrupt_safetensors_is_a_one_line_error(tmp_path: Path) -> None:
    pytest.importorskip("safetensors", reason="SAFETENSORS IS NOT INSTALLED: its errors are NOT tested")
    (tmp_path / "m.safetensors").write_bytes(b"\xff\x00\x00\x00\x00\x00\x00\x00{not json")
    assert fails("calibrate", "m.safetensors", "-o", "q.json", cwd=tmp_path).startswith(
        "m.safetensors: not a valid .safetensors file"
    )

"""The intquant command, run as a user runs it (a subprocess per call)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy
import pytest

from intquant import QuantizationOptions, UniformQuantizer, loads
from intquant.cli.files import write_text
from intquant.statistics import MinMaxQuantizationStats

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "intquant", *arguments], cwd=cwd, capture_output=True, text=True, check=False
    )


def ok(*arguments: str, cwd: Path) -> str:
    result = run(*arguments, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def fails(*arguments: str, cwd: Path) -> str:
    result = run(*arguments, cwd=cwd)
    assert result.returncode == 2, result
    assert result.stderr.startswith("intquant: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


@pytest.fixture
def data(tmp_path: Path) -> numpy.ndarray:
    values = numpy.random.default_rng(0).normal(size=(300, 40)).astype(numpy.float32)
    numpy.save(tmp_path / "w.npy", values)
    return values


def test_calibrate_quantize_dequantize_match_the_library(tmp_path: Path, data: numpy.ndarray) -> None:
    # --chunk-size 1000 makes the memory-mapped input 12 chunks.
    ok(
        "calibrate",
        "w.npy",
        "-o",
        "q.json",
        "--n-bits",
        "5",
        "--signed",
        "--chunk-size",
        "1000",
        cwd=tmp_path,
    )
    quantizer = loads((tmp_path / "q.json").read_text())
    streamed = MinMaxQuantizationStats()
    for start in range(0, 300, 25):
        streamed.update(data[start : start + 25])
    expected = UniformQuantizer(QuantizationOptions(5, is_signed=True), streamed)
    expected.compute_quantization_parameters(expected.quant_options, streamed)
    assert quantizer == expected
    ok("quantize", "w.npy", "q.json", "-o", "codes.npy", "--chunk-size", "1000", cwd=tmp_path)
    codes = numpy.load(tmp_path / "codes.npy")
    assert codes.dtype == numpy.int64 and numpy.array_equal(codes, quantizer.quant(data))
    ok("dequantize", "codes.npy", "q.json", "-o", "back.npy", "--chunk-size", "700", cwd=tmp_path)
    assert numpy.array_equal(numpy.load(tmp_path / "back.npy"), quantizer.dequant(codes))


def test_per_axis_and_per_block_in_chunks(tmp_path: Path, data: numpy.ndarray) -> None:
    for flags in (["--axis", "0"], ["--axis", "1"], ["--block-size", "20,8"]):
        ok(
            "calibrate",
            "w.npy",
            "-o",
            "q.json",
            "--symmetric",
            "--force",
            "--chunk-size",
            "999",
            *flags,
            cwd=tmp_path,
        )
        ok("calibrate", "w.npy", "-o", "whole.json", "--symmetric", "--force", *flags, cwd=tmp_path)
        chunked, whole = (loads((tmp_path / name).read_text()) for name in ("q.json", "whole.json"))
        assert numpy.array_equal(chunked.scale, whole.scale) and numpy.array_equal(chunked.rmin, whole.rmin)
        ok(
            "quantize",
            "w.npy",
            "q.json",
            "-o",
            "codes.npy",
            "--force",
            "--chunk-size",
            "999",
            *[],
            cwd=tmp_path,
        )
        assert numpy.array_equal(numpy.load(tmp_path / "codes.npy"), whole.quant(data)), flags


@pytest.mark.parametrize("method", ["percentile", "mse", "entropy"])
def test_calibration_methods(tmp_path: Path, data: numpy.ndarray, method: str) -> None:
    ok("calibrate", "w.npy", "-o", "q.json", "--n-bits", "4", "--method", method, cwd=tmp_path)
    quantizer = loads((tmp_path / "q.json").read_text())
    assert quantizer.rmax < data.max() and quantizer.rmin > data.min()  # clipped ranges


def test_npz_and_csv_inputs(tmp_path: Path) -> None:
    numpy.savez(tmp_path / "one.npz", weights=numpy.linspace(-1, 1, 9))
    numpy.savez(tmp_path / "two.npz", a=numpy.ones(3), b=numpy.linspace(0, 1, 5))
    numpy.savetxt(tmp_path / "x.csv", numpy.linspace(0, 1, 6).reshape(2, 3), delimiter=",")
    ok("calibrate", "one.npz", "-o", "a.json", cwd=tmp_path)
    ok("calibrate", "two.npz:b", "-o", "b.json", cwd=tmp_path)
    ok("calibrate", "x.csv", "-o", "c.json", cwd=tmp_path)
    assert loads((tmp_path / "b.json").read_text()).rmax == 1.0
    assert "two.npz holds 2 arrays (a, b); pick one as two.npz:NAME" in fails(
        "calibrate", "two.npz", "-o", "d.json", cwd=tmp_path
    )
    assert "has no array 'c'" in fails("calibrate", "two.npz:c", "-o", "d.json", cwd=tmp_path)


def test_report_table_json_and_plot(tmp_path: Path, data: numpy.ndarray) -> None:
    table = ok("report", "w.npy", "--bits", "2-4", "--method", "minmax,mse", cwd=tmp_path)
    assert table.splitlines()[0].split() == ["method", "bits", "MSE", "SQNR", "dB", "max", "error"]
    assert len(table.splitlines()) == 1 + 6
    rows = json.loads(ok("report", "w.npy", "--bits", "2,8", "--json", cwd=tmp_path))
    assert [(row["method"], row["n_bits"]) for row in rows] == [("minmax", 2), ("minmax", 8)]
    assert rows[1]["sqnr_db"] > rows[0]["sqnr_db"] > 0
    ok("report", "w.npy", "--bits", "2-5", "--method", "minmax,entropy", "--plot", "r.png", cwd=tmp_path)
    assert (tmp_path / "r.png").read_bytes()[:8] == PNG_SIGNATURE


def test_nothing_is_lost(tmp_path: Path, data: numpy.ndarray) -> None:
    ok("calibrate", "w.npy", "-o", "q.json", cwd=tmp_path)
    before = (tmp_path / "q.json").read_bytes()
    assert "q.json exists; pass --force to replace it" in fails(
        "calibrate", "w.npy", "-o", "q.json", cwd=tmp_path
    )
    assert (tmp_path / "q.json").read_bytes() == before
    message = fails("quantize", "w.npy", "q.json", "-o", "w.npy", "--force", cwd=tmp_path)
    assert "refusing to write the output over the input w.npy" in message
    assert numpy.array_equal(numpy.load(tmp_path / "w.npy"), data)
    # A failing write (codes that do not fit) leaves no partial output and no temporary file.
    (tmp_path / "bad.json").write_text(
        (tmp_path / "q.json").read_text().replace('"no_clipping": false', '"no_clipping": true')
    )
    numpy.save(tmp_path / "nan.npy", numpy.array([1.0, numpy.nan]))
    assert "cannot quantize NaN" in fails("quantize", "nan.npy", "q.json", "-o", "out.npy", cwd=tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bad.json", "nan.npy", "q.json", "w.npy"]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["calibrate", "missing.npy", "-o", "q.json"], "no such input file: missing.npy"),
        (["calibrate", "w.npy", "-o", "q.json", "--n-bits", "0"], "'n_bits' must be an int in [1, 32]"),
        (["calibrate", "w.npy", "-o", "q.json", "--axis", "5"], "axis 5 is out of range"),
        (
            ["calibrate", "w.npy", "-o", "q.json", "--method", "mse", "--axis", "0"],
            "calibrates whole tensors",
        ),
        (["calibrate", "w.npy", "-o", "nowhere/q.json"], "does not exist"),
        (["calibrate", "w.npy"], "the following arguments are required: -o/--output"),
        (["report", "w.npy", "--bits", "0-3"], "bit widths must be 1 to 32"),
        (["report", "w.npy", "--method", "best"], "unknown method 'best'"),
        (["quantize", "w.npy", "w.npy", "-o", "out.npy"], "not valid JSON"),
        (["calibrate", "notes.txt", "-o", "q.json"], "unknown input type '.txt'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_is_a_one_line_error(
    tmp_path: Path, data: numpy.ndarray, arguments: list[str], message: str
) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    assert message in fails(*arguments, cwd=tmp_path)


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        write_text(target, "\u00e9")  # not ASCII: the write fails
    assert target.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["out.json"]


def test_demo(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    (tmp_path / "intquant-demo.png").write_bytes(b"the plot of a previous run")  # make demo, twice
    output = ok("demo", "--quiet", cwd=tmp_path)
    lines = output.splitlines()
    assert any(line.startswith("float model (float64): test accuracy 0.9") for line in lines)
    rows = [line.split() for line in lines if line.split() and line.split()[0].isdigit()]
    assert [int(row[0]) for row in rows] == [2, 3, 4, 5, 6, 7, 8]
    assert all(0.9 < float(accuracy) <= 1.0 for accuracy in rows[-1][1:])  # 8 bits: near the float model
    assert (tmp_path / "intquant-demo.png").read_bytes()[:8] == PNG_SIGNATURE
    assert [path.name for path in tmp_path.iterdir()] == ["intquant-demo.png"]


def _npy_header(shape: tuple[int, ...]) -> bytes:
    header = io.BytesIO()
    numpy.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return header.getvalue()


def _bad_inputs(folder: Path) -> None:
    """Files that used to end the command line with a traceback (exit status 1)."""
    (folder / "garbage.npz").write_bytes(b"PK\x03\x04 not a zip archive")
    numpy.savez(folder / "whole.npz", a=numpy.linspace(0, 1, 1000))
    data = (folder / "whole.npz").read_bytes()
    (folder / "truncated.npz").write_bytes(data[: len(data) // 2])
    # A member whose header claims 10**12 values (8 TB) but holds 64 bytes.
    with zipfile.ZipFile(folder / "huge.npz", "w") as archive:
        archive.writestr("a.npy", _npy_header((10**12,)) + bytes(64))
    # A zip bomb: 80 MiB of zeros deflated to ~80 KB (honest sizes, absurd ratio).
    with (
        zipfile.ZipFile(folder / "bomb.npz", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open("a.npy", "w", force_zip64=True) as member,
    ):
        member.write(_npy_header((10 << 20,)))
        for _ in range(80):
            member.write(bytes(1 << 20))
    # A .npy header cut in the middle of a literal, padded to its declared length.
    text = "{'descr': '<f8', 'fortran_order': False, 'shape': (10"
    text = text.ljust(117) + "\n"
    (folder / "cut.npy").write_bytes(
        numpy.lib.format.MAGIC_PREFIX
        + b"\x01\x00"
        + len(text).to_bytes(2, "little")
        + text.encode()
        + bytes(80)
    )


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["calibrate", "garbage.npz", "-o", "q.json"], "garbage.npz: not a valid .npz file"),
        (["calibrate", "truncated.npz", "-o", "q.json"], "truncated.npz: not a valid .npz file"),
        (["calibrate", "huge.npz", "-o", "q.json"], "huge.npz:a: its header claims (1000000000000,)"),
        (["calibrate", "bomb.npz", "-o", "q.json"], "bomb.npz:a: refusing to inflate 83886208 bytes"),
        (["calibrate", "cut.npy", "-o", "q.json"], "cut.npy: not a valid .npy file"),
        (["report", "w.npy", "--bits", "1-10000000000"], "bit widths must be 1 to 32"),
    ],
)
def test_corrupt_and_hostile_inputs_are_one_line_errors(
    tmp_path: Path, data: numpy.ndarray, arguments: list[str], message: str
) -> None:
    _bad_inputs(tmp_path)
    assert message in fails(*arguments, cwd=tmp_path)
    assert not (tmp_path / "q.json").exists()


def test_compressed_npz_still_loads(tmp_path: Path) -> None:
    numpy.savez_compressed(tmp_path / "small.npz", x=numpy.linspace(-1, 1, 100).reshape(10, 10))
    numpy.savez_compressed(tmp_path / "zeros.npz", x=numpy.zeros(1 << 20))  # 8 MiB: under the floor
    ok("calibrate", "small.npz", "-o", "q.json", cwd=tmp_path)
    assert loads((tmp_path / "q.json").read_text()).rmin == -1.0
    ok("calibrate", "zeros.npz:x", "-o", "z.json", cwd=tmp_path)

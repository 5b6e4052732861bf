"""The intquant command line: results against the Python API, options, refusals.

Most commands run in this process (``intquant.cli.main``, stdout and stderr captured), a few as a
user runs them (a subprocess) to check the process itself: exit status, one line on stderr.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy
import pytest

import intquant
from intquant import QuantizationOptions, QuantizedArray, UniformQuantizer, loads
from intquant.calibration import EntropyStats, MSEStats, PercentileStats
from intquant.cli import main
from intquant.cli.files import write_text
from intquant.metrics import quantization_error
from intquant.statistics import MinMaxQuantizationStats

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
CALIBRATORS: dict[str, Any] = {"percentile": PercentileStats, "mse": MSEStats, "entropy": EntropyStats}


@contextlib.contextmanager
def working_directory(folder: Path) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def cli(*arguments: str, cwd: Path) -> tuple[int, str, str]:
    """``intquant ARGUMENTS`` in this process, in ``cwd``: (status, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with working_directory(cwd), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            status = main(list(arguments))
        except SystemExit as exit:  # argparse's errors, --help and --version
            status = int(exit.code or 0)
    return status, stdout.getvalue(), stderr.getvalue()


def ok(*arguments: str, cwd: Path) -> str:
    status, stdout, stderr = cli(*arguments, cwd=cwd)
    assert status == 0, stderr
    return stdout


def fails(*arguments: str, cwd: Path) -> str:
    """The one-line error of a command that must fail with status 2 (the ``intquant: error: ``
    prefix removed)."""
    status, stdout, stderr = cli(*arguments, cwd=cwd)
    assert status == 2, (status, stdout, stderr)
    assert stderr.startswith("intquant: error: ") and stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    return stderr.removeprefix("intquant: error: ").rstrip("\n")


def run(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``intquant ARGUMENTS`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "intquant", *arguments], cwd=cwd, capture_output=True, text=True, check=False
    )


def chunked(values: numpy.ndarray, rows: int) -> list[numpy.ndarray]:
    return [values[start : start + rows] for start in range(0, len(values), rows)]


@pytest.fixture
def data(tmp_path: Path) -> numpy.ndarray:
    values = numpy.random.default_rng(0).normal(size=(300, 40)).astype(numpy.float32)
    numpy.save(tmp_path / "w.npy", values)
    return values


# -- results against the Python API


def test_calibrate_quantize_dequantize_match_the_library(tmp_path: Path, data: numpy.ndarray) -> None:
    # --chunk-size 1000 makes the memory-mapped input 12 chunks of 25 rows.
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
    for part in chunked(data, 25):
        streamed.update(part)
    expected = UniformQuantizer(QuantizationOptions(5, is_signed=True), streamed)
    expected.compute_quantization_parameters(expected.quant_options, streamed)
    assert quantizer == expected
    assert quantizer == QuantizedArray(5, data, is_signed=True).quantizer  # and the in-memory one
    # Codes: by default the smallest integer dtype holding [-16, 15].
    ok("quantize", "w.npy", "q.json", "-o", "codes.npy", "--chunk-size", "1000", cwd=tmp_path)
    codes = numpy.load(tmp_path / "codes.npy")
    assert codes.dtype == numpy.int8 and numpy.array_equal(codes, quantizer.quant(data))
    # Values back: by default in float32, the dtype the quantizer was calibrated on.
    ok("dequantize", "codes.npy", "q.json", "-o", "back.npy", "--chunk-size", "700", cwd=tmp_path)
    back = numpy.load(tmp_path / "back.npy")
    assert back.dtype == numpy.float32 and numpy.array_equal(back, quantizer.dequant(codes, numpy.float32))


@pytest.mark.parametrize(
    "flags", [["--axis", "0"], ["--axis", "1"], ["--axis", "-1"], ["--block-size", "20,8"]]
)
def test_per_axis_and_per_block_in_chunks(tmp_path: Path, data: numpy.ndarray, flags: list[str]) -> None:
    ok("calibrate", "w.npy", "-o", "q.json", "--symmetric", "--chunk-size", "999", *flags, cwd=tmp_path)
    quantizer = loads((tmp_path / "q.json").read_text())
    granularity = {"axis": int(flags[1])} if flags[0] == "--axis" else {"block_size": (20, 8)}
    expected = QuantizedArray(8, data, is_signed=True, is_symmetric=True, **granularity).quantizer
    assert numpy.array_equal(quantizer.scale, expected.scale) and numpy.array_equal(
        quantizer.rmin, expected.rmin
    )
    ok("quantize", "w.npy", "q.json", "-o", "codes.npy", "--chunk-size", "999", cwd=tmp_path)
    assert numpy.array_equal(numpy.load(tmp_path / "codes.npy"), expected.quant(data))


@pytest.mark.parametrize("method", ["percentile", "mse", "entropy"])
def test_calibration_methods_match_the_library(tmp_path: Path, data: numpy.ndarray, method: str) -> None:
    extra = ["--percentile", "99.5"] if method == "percentile" else []
    configuration = {"percentile": 99.5} if method == "percentile" else {}
    options = QuantizationOptions(4, is_signed=True)
    # One chunk: the quantizer QuantizedArray computes from the whole array.
    ok(
        "calibrate",
        "w.npy",
        "-o",
        "one.json",
        "--n-bits",
        "4",
        "--signed",
        "--method",
        method,
        *extra,
        cwd=tmp_path,
    )
    quantizer = loads((tmp_path / "one.json").read_text())
    expected = QuantizedArray(4, data, is_signed=True, stats=CALIBRATORS[method](**configuration)).quantizer
    assert (quantizer.scale, quantizer.zero_point, quantizer.offset) == (
        expected.scale,
        expected.zero_point,
        expected.offset,
    )
    # The range is written in the data's dtype (how dequantize knows to restore float32).
    assert type(quantizer.rmin) is numpy.float32 and quantizer.rmin == numpy.float32(expected.rmin)
    assert quantizer.rmax < data.max() and quantizer.rmin > data.min()  # clipped ranges
    # Chunks: the calibrator updated chunk by chunk, as the Python API's update does.
    ok(
        "calibrate", "w.npy", "-o", "chunks.json", "--n-bits", "4", "--signed", "--method", method,
        "--chunk-size", "4000", *extra, cwd=tmp_path,
    )  # fmt: skip
    calibrator = CALIBRATORS[method](**configuration)
    for part in chunked(data, 100):
        calibrator.update(part)
    expected = UniformQuantizer(options, calibrator)
    expected.compute_quantization_parameters(options, calibrator)
    assert loads((tmp_path / "chunks.json").read_text()).scale == expected.scale


@pytest.mark.parametrize("method", ["percentile", "mse", "entropy"])
@pytest.mark.parametrize("flags", [["--axis", "0"], ["--axis", "1"], ["--block-size", "20,8"]])
def test_calibration_methods_per_axis_and_block(
    tmp_path: Path, data: numpy.ndarray, method: str, flags: list[str]
) -> None:
    if not _per_block(CALIBRATORS[method]):
        pytest.skip(
            f"intquant.calibration's {method} does not calibrate per axis: the refusal is tested below"
        )
    granularity = {"axis": int(flags[1])} if flags[0] == "--axis" else {"block_size": (20, 8)}
    # Chunks of 20 rows: per row and per block of 20 rows, each chunk holds whole blocks, and the
    # ranges are those of one pass; per column, every chunk updates every block.
    ok(
        "calibrate",
        "w.npy",
        "-o",
        "q.json",
        "--n-bits",
        "4",
        "--method",
        method,
        "--chunk-size",
        "800",
        *flags,
        cwd=tmp_path,
    )
    quantizer = loads((tmp_path / "q.json").read_text())
    calibrator = CALIBRATORS[method]()
    if granularity.get("axis") == 1:
        for part in chunked(data, 20):
            calibrator.update(part, **granularity)
        expected = UniformQuantizer(QuantizationOptions(4, **granularity), calibrator)
        expected.compute_quantization_parameters(expected.quant_options, calibrator)
    else:
        expected = QuantizedArray(4, data, stats=calibrator, **granularity).quantizer
    assert numpy.array_equal(quantizer.scale, expected.scale) and quantizer.rmin.dtype == numpy.float32
    rows = json.loads(
        ok(
            "report",
            "w.npy",
            "--bits",
            "4",
            "--method",
            method,
            "--json",
            "--chunk-size",
            "800",
            *flags,
            cwd=tmp_path,
        )
    )
    assert rows[0]["max_abs_error"] == quantization_error(data, expected)["max_abs_error"]


def _per_block(klass: Any) -> bool:
    import inspect

    return {"axis", "block_size"} <= set(inspect.signature(klass.update).parameters)


def test_a_method_that_calibrates_whole_tensors_only_is_refused_per_axis(
    tmp_path: Path, data: numpy.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    from intquant.cli import collect

    class WholeTensors(MSEStats):
        def update(self, values: Any) -> None:  # type: ignore[override]  # no axis, no block_size
            super().update(values)

    monkeypatch.setitem(collect._CALIBRATORS, "mse", WholeTensors)
    message = (
        "--method mse calibrates whole tensors only in this intquant; use --method minmax with "
        "--axis, or leave --axis out"
    )
    assert (
        fails("calibrate", "w.npy", "-o", "q.json", "--method", "mse", "--axis", "0", cwd=tmp_path) == message
    )
    assert fails("report", "w.npy", "--method", "minmax,mse", "--axis", "0", cwd=tmp_path) == message
    ok("report", "w.npy", "--method", "minmax,mse", "--bits", "4", cwd=tmp_path)  # per tensor: fine


def test_report_matches_the_library(tmp_path: Path, data: numpy.ndarray) -> None:
    rows = json.loads(
        ok(
            "report",
            "w.npy",
            "--bits",
            "2,3,8",
            "--method",
            "minmax,percentile,mse,entropy",
            "--json",
            cwd=tmp_path,
        )
    )
    assert [(row["method"], row["n_bits"]) for row in rows] == [
        (method, bits) for method in ("minmax", "percentile", "mse", "entropy") for bits in (2, 3, 8)
    ]
    for row in rows:
        stats = None if row["method"] == "minmax" else CALIBRATORS[row["method"]]()
        expected = quantization_error(data, QuantizedArray(row["n_bits"], data, stats=stats).quantizer)
        assert row["max_abs_error"] == expected["max_abs_error"], row
        assert row["mse"] == pytest.approx(expected["mse"], rel=1e-12), row  # sums in another order
        assert row["sqnr_db"] == pytest.approx(expected["sqnr_db"], rel=1e-12), row


@pytest.mark.parametrize(
    "flags, options",
    [
        (["--axis", "0", "--symmetric"], {"axis": 0, "is_signed": True, "is_symmetric": True}),
        (["--block-size", "30,8", "--narrow", "--signed"], {"block_size": (30, 8), "is_signed": True}),
        (["--zero-in-range", "--power-of-two-scale"], {"zero_in_range": True, "power_of_two_scale": True}),
        (["--rounding", "half_up"], {"rounding": "half_up"}),
    ],
)
def test_report_options_match_the_library(
    tmp_path: Path, data: numpy.ndarray, flags: list[str], options: dict[str, Any]
) -> None:
    shifted = data + 1.5  # all positive: --zero-in-range widens the range
    numpy.save(tmp_path / "s.npy", shifted)
    rows = json.loads(
        ok("report", "s.npy", "--bits", "3,6", "--json", "--chunk-size", "1000", *flags, cwd=tmp_path)
    )
    for row in rows:
        quantizer = QuantizedArray(row["n_bits"], shifted, **options).quantizer
        quantizer.is_narrow = "--narrow" in flags  # set after construction, as in the seed
        expected = quantization_error(shifted, quantizer)
        assert row["max_abs_error"] == expected["max_abs_error"]
        assert row["mse"] == pytest.approx(expected["mse"], rel=1e-12)


def test_report_table_and_plots(tmp_path: Path, data: numpy.ndarray) -> None:
    pytest.importorskip("matplotlib")
    table = ok("report", "w.npy", "--bits", "2-4", "--method", "minmax,mse", cwd=tmp_path)
    assert table.splitlines()[0].split() == ["method", "bits", "MSE", "SQNR", "dB", "max", "error"]
    assert len(table.splitlines()) == 1 + 6
    # The extension, in any case, says the format: err.jpg used to get PNG contents.
    ok("report", "w.npy", "--bits", "2-5", "--plot", "r.png", cwd=tmp_path)
    ok("report", "w.npy", "--bits", "2-5", "--plot", "r.JPG", cwd=tmp_path)
    ok("report", "w.npy", "--bits", "2-5", "--plot", "r.svg", cwd=tmp_path)
    assert (tmp_path / "r.png").read_bytes()[:8] == PNG_SIGNATURE
    assert (tmp_path / "r.JPG").read_bytes()[:3] == JPEG_SIGNATURE
    assert b"<svg" in (tmp_path / "r.svg").read_bytes()[:1000]


# -- dtypes


def test_codes_dtype(tmp_path: Path, data: numpy.ndarray) -> None:
    ok("calibrate", "w.npy", "-o", "q.json", "--n-bits", "12", cwd=tmp_path)  # codes 0..4095
    quantizer = loads((tmp_path / "q.json").read_text())
    for flags, dtype in (
        ([], numpy.int16),
        (["--dtype", "uint16"], numpy.uint16),
        (["--dtype", "float32"], numpy.float32),
    ):
        ok("quantize", "w.npy", "q.json", "-o", "c.npy", "--force", *flags, cwd=tmp_path)
        codes = numpy.load(tmp_path / "c.npy")
        assert codes.dtype == dtype and numpy.array_equal(codes, quantizer.quant(data)), flags
    assert fails("quantize", "w.npy", "q.json", "-o", "c8.npy", "--dtype", "uint8", cwd=tmp_path) == (
        "--dtype uint8 cannot hold this quantizer's codes, 0 to 4095; use --dtype int16 or wider, or "
        "leave --dtype out (the smallest that holds them)"
    )
    assert not (tmp_path / "c8.npy").exists()


@pytest.mark.parametrize(
    "dtype, restored",
    [(numpy.float16, numpy.float16), (numpy.float64, numpy.float64), (numpy.int32, numpy.float64)],
)
def test_restored_dtype_is_the_calibration_dtype(tmp_path: Path, dtype: Any, restored: Any) -> None:
    values = (numpy.arange(60).reshape(6, 10) - 25).astype(dtype)
    numpy.save(tmp_path / "v.npy", values)
    ok("calibrate", "v.npy", "-o", "q.json", "--n-bits", "6", cwd=tmp_path)
    ok("quantize", "v.npy", "q.json", "-o", "c.npy", cwd=tmp_path)
    ok("dequantize", "c.npy", "q.json", "-o", "back.npy", cwd=tmp_path)
    back = numpy.load(tmp_path / "back.npy")
    quantizer = loads((tmp_path / "q.json").read_text())
    assert back.dtype == restored
    assert numpy.array_equal(back, quantizer.dequant(numpy.load(tmp_path / "c.npy")).astype(restored))
    ok("dequantize", "c.npy", "q.json", "-o", "b64.npy", "--dtype", "float64", cwd=tmp_path)
    assert numpy.load(tmp_path / "b64.npy").dtype == numpy.float64


def test_float16_overflow_is_refused(tmp_path: Path) -> None:
    numpy.save(tmp_path / "v.npy", numpy.array([0.0, 60000.0, 65504.0], dtype=numpy.float64))
    ok("calibrate", "v.npy", "-o", "q.json", "--n-bits", "2", cwd=tmp_path)  # scale 21834.7: 3 -> 65504.0
    numpy.save(tmp_path / "c.npy", numpy.array([0, 3, 3], dtype=numpy.int8))
    ok("dequantize", "c.npy", "q.json", "-o", "ok.npy", "--dtype", "float16", cwd=tmp_path)
    numpy.save(tmp_path / "far.npy", numpy.array([0, 4, 7], dtype=numpy.int8))  # 7 * 21834.7 > 65504
    assert fails("dequantize", "far.npy", "q.json", "-o", "h.npy", "--dtype", "float16", cwd=tmp_path) == (
        "restored values exceed float16's range (+-65504); use --dtype float32 or float64"
    )


# -- options


def test_seed_makes_stochastic_rounding_reproducible(tmp_path: Path, data: numpy.ndarray) -> None:
    ok("calibrate", "w.npy", "-o", "q.json", "--n-bits", "3", "--rounding", "stochastic", cwd=tmp_path)
    runs = {}
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        ok(
            "quantize",
            "w.npy",
            "q.json",
            "-o",
            f"{name}.npy",
            "--seed",
            seed,
            "--chunk-size",
            "2000",
            cwd=tmp_path,
        )
        runs[name] = numpy.load(tmp_path / f"{name}.npy")
    assert numpy.array_equal(runs["a"], runs["b"]) and not numpy.array_equal(runs["a"], runs["c"])
    # The seed can be calibrated into the quantizer, too: the same codes as the Python API's.
    ok(
        "calibrate",
        "w.npy",
        "-o",
        "s.json",
        "--n-bits",
        "3",
        "--rounding",
        "stochastic",
        "--seed",
        "7",
        cwd=tmp_path,
    )
    quantizer = loads((tmp_path / "s.json").read_text())
    assert quantizer.seed == 7
    ok("quantize", "w.npy", "s.json", "-o", "s.npy", cwd=tmp_path)
    assert numpy.array_equal(numpy.load(tmp_path / "s.npy"), quantizer.quant(data))


@pytest.mark.parametrize(
    "flags, options",
    [
        (["--zero-in-range"], {"zero_in_range": True}),
        (["--power-of-two-scale"], {"power_of_two_scale": True}),
        (
            ["--signed", "--symmetric", "--power-of-two-scale"],
            {"is_signed": True, "is_symmetric": True, "power_of_two_scale": True},
        ),
    ],
)
def test_parameter_options_match_the_library(
    tmp_path: Path, flags: list[str], options: dict[str, Any]
) -> None:
    values = numpy.linspace(0.3, 2.9, 50).reshape(5, 10)  # all positive: zero_in_range widens it
    numpy.save(tmp_path / "v.npy", values)
    ok("calibrate", "v.npy", "-o", "q.json", "--n-bits", "5", *flags, cwd=tmp_path)
    text = (tmp_path / "q.json").read_text()
    expected = QuantizedArray(5, values, **options).quantizer
    assert loads(text) == expected and text == intquant.dumps(expected)


def test_version_commands_and_help(tmp_path: Path) -> None:
    assert ok("--version", cwd=tmp_path) == f"intquant {intquant.__version__}\n"
    status, stdout, _ = cli(cwd=tmp_path)  # as git does: the commands, and status 2
    assert status == 2
    assert all(command in stdout for command in ("calibrate", "quantize", "dequantize", "report", "demo"))
    help_text = " ".join(ok("calibrate", "--help", cwd=tmp_path).split())
    assert "bits per code, 1 to 32 (default: 8)" in help_text
    assert "(default: 99.99)" in help_text and "(default: 1048576)" in help_text
    help_text = " ".join(ok("dequantize", "--help", cwd=tmp_path).split())
    assert "the float dtype of the data the quantizer was calibrated on" in help_text
    help_text = " ".join(ok("quantize", "--help", cwd=tmp_path).split())
    assert "the smallest integer type that holds the quantizer's clipping range" in help_text


def test_the_process(tmp_path: Path, data: numpy.ndarray) -> None:
    """As a user runs it: exit statuses, one line on stderr, nothing on stdout on failure."""
    result = run("calibrate", "w.npy", "-o", "q.json", "--quiet", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout == "wrote a 8-bit minmax quantizer for (300, 40) float32 values\nto q.json\n"
    result = run("calibrate", "w.npy", "-o", "q.json", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "intquant: error: q.json exists; pass --force to replace it\n"
    result = run(cwd=tmp_path)
    assert result.returncode == 2 and "calibrate" in result.stdout


# -- inputs and outputs


def test_npz_members_and_extensions_in_any_case(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "MLP.NPZ", "w") as archive:  # numpy.savez would add .npz
        for name, values in (("w1", numpy.linspace(-1, 1, 12).reshape(3, 4)), ("b1", numpy.ones(4))):
            with archive.open(f"{name}.npy", "w") as member:
                numpy.lib.format.write_array(member, values)
    ok("calibrate", "MLP.NPZ:w1", "-o", "W1.JSON", cwd=tmp_path)
    assert loads((tmp_path / "W1.JSON").read_text()).rmin == -1.0
    ok("quantize", "MLP.NPZ:w1", "W1.JSON", "-o", "CODES.NPY", cwd=tmp_path)
    assert numpy.load(tmp_path / "CODES.NPY").shape == (3, 4)
    assert (
        fails("calibrate", "MLP.NPZ:w2", "-o", "x.json", cwd=tmp_path)
        == "MLP.NPZ has no array 'w2'; it holds w1, b1"
    )
    assert fails("calibrate", "MLP.NPZ:", "-o", "x.json", cwd=tmp_path) == (
        "MLP.NPZ:: name an array after the colon, as MLP.NPZ:NAME"
    )


def test_csv_header_lines(tmp_path: Path) -> None:
    (tmp_path / "named.csv").write_text("\ufeffa,b,c\n1,2,3\n4,5,6.5\n")
    (tmp_path / "quoted.csv").write_text('"x","y"\n0.5,1\n')
    (tmp_path / "plain.csv").write_text("1,2,3\n4,5,6.5\n")
    (tmp_path / "mixed.csv").write_text("a,2,3\n4,5,6\n")
    for name in ("named", "plain"):
        ok("calibrate", f"{name}.csv", "-o", f"{name}.json", cwd=tmp_path)
        assert (
            loads((tmp_path / f"{name}.json").read_text()).rmin,
            loads((tmp_path / f"{name}.json").read_text()).rmax,
        ) == (1.0, 6.5)
    ok("calibrate", "quoted.csv", "-o", "quoted.json", cwd=tmp_path)
    assert loads((tmp_path / "quoted.json").read_text()).rmax == 1.0
    assert fails("calibrate", "mixed.csv", "-o", "m.json", cwd=tmp_path) == (
        "mixed.csv: line 1 mixes numbers and text ('a'); a header line holds names only"
    )
    (tmp_path / "names.csv").write_text("a,b\n")
    assert fails("calibrate", "names.csv", "-o", "n.json", cwd=tmp_path) == (
        "names.csv: expected a non-empty array of numbers; got dtype float64, shape (0,)"
    )


def test_csv_outputs_read_back_exactly(tmp_path: Path, data: numpy.ndarray) -> None:
    ok("calibrate", "w.npy", "-o", "q.json", "--signed", cwd=tmp_path)
    quantizer = loads((tmp_path / "q.json").read_text())
    ok("quantize", "w.npy", "q.json", "-o", "codes.CSV", "--chunk-size", "1000", cwd=tmp_path)
    codes = numpy.loadtxt(tmp_path / "codes.CSV", delimiter=",", dtype=numpy.int64)
    assert numpy.array_equal(codes, quantizer.quant(data))
    ok("dequantize", "codes.CSV", "q.json", "-o", "back.csv", cwd=tmp_path)  # read as float64 codes
    back = numpy.loadtxt(tmp_path / "back.csv", delimiter=",", dtype=numpy.float32)
    assert numpy.array_equal(back, quantizer.dequant(codes, numpy.float32))
    numpy.save(tmp_path / "cube.npy", numpy.zeros((2, 3, 4)))
    ok("calibrate", "cube.npy", "-o", "cube.json", cwd=tmp_path)
    assert fails("quantize", "cube.npy", "cube.json", "-o", "cube.csv", cwd=tmp_path) == (
        "cube.csv: a CSV file holds at most 2 dimensions; got an array of shape (2, 3, 4). Write it as .npy"
    )


def test_nothing_is_lost(tmp_path: Path, data: numpy.ndarray) -> None:
    ok("calibrate", "w.npy", "-o", "q.json", cwd=tmp_path)
    before = (tmp_path / "q.json").read_bytes()
    assert (
        fails("calibrate", "w.npy", "-o", "q.json", cwd=tmp_path)
        == "q.json exists; pass --force to replace it"
    )
    assert (tmp_path / "q.json").read_bytes() == before
    message = fails("quantize", "w.npy", "q.json", "-o", "w.npy", "--force", cwd=tmp_path)
    assert message == "refusing to write the output over the input w.npy; choose another -o"
    assert numpy.array_equal(numpy.load(tmp_path / "w.npy"), data)
    # A failing write (NaN has no code) leaves no partial output and no temporary file.
    numpy.save(tmp_path / "nan.npy", numpy.array([1.0, numpy.nan]))
    assert fails("quantize", "nan.npy", "q.json", "-o", "out.npy", cwd=tmp_path).startswith(
        "cannot quantize NaN: no integer stands for it (values of shape (2,), dtype float64)."
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["nan.npy", "q.json", "w.npy"]


def test_atomic_write_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        write_text(target, "\u00e9")  # not ASCII: the write fails
    assert target.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["out.json"]


def test_demo(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    (tmp_path / "intquant-demo.png").write_bytes(b"the plot of a previous run")
    assert fails("demo", "--quiet", cwd=tmp_path) == "intquant-demo.png exists; pass --force to replace it"
    assert (tmp_path / "intquant-demo.png").read_bytes() == b"the plot of a previous run"
    output = ok("demo", "--quiet", "--force", cwd=tmp_path)  # what `make demo` runs, twice or more
    lines = output.splitlines()
    assert any(line.startswith("float model (float64): test accuracy 0.9") for line in lines)
    rows = [line.split() for line in lines if line.split() and line.split()[0].isdigit()]
    assert [int(row[0]) for row in rows] == [2, 3, 4, 5, 6, 7, 8]
    assert all(0.9 < float(accuracy) <= 1.0 for accuracy in rows[-1][1:])  # 8 bits: near the float model
    assert lines[-1] == "wrote the accuracy plot to intquant-demo.png"
    assert (tmp_path / "intquant-demo.png").read_bytes()[:8] == PNG_SIGNATURE
    assert [path.name for path in tmp_path.iterdir()] == ["intquant-demo.png"]
    assert fails("demo", "--plot", "accuracy.jpg", cwd=tmp_path) == (
        "accuracy.jpg: the demo's plot are written as .png; got '.jpg'. Name the output *.png"
    )


# -- refusals: one line each, in command-line terms


def _bad_inputs(folder: Path) -> None:
    (folder / "notes.txt").write_text("hello")
    numpy.save(folder / "narrow.npy", numpy.zeros((32, 10), dtype=numpy.float32))
    numpy.save(folder / "ints.npy", numpy.arange(10, dtype=numpy.int8))


@pytest.mark.parametrize(
    "arguments, message",
    [
        # per-axis and per-block quantizers on arrays their parameters do not fit (exit 0 before)
        (
            ["quantize", "narrow.npy", "axis0.json", "-o", "c.npy"],
            "the quantizer holds parameters for a block grid of shape (300, 1), but values of shape "
            "(32, 10) make a grid of shape (32, 1); quantize values shaped like the calibration data.",
        ),
        (
            ["quantize", "narrow.npy", "axis1.json", "-o", "c.npy"],
            "the quantizer holds parameters for a block grid of shape (1, 40), but values of shape "
            "(32, 10) make a grid of shape (1, 10); quantize values shaped like the calibration data.",
        ),
        (
            ["dequantize", "ints.npy", "block.json", "-o", "c.npy"],
            "--block-size (20, 8) must give one extent per dimension of the values (shape (10,)), each "
            "dividing that dimension.",
        ),
        (["quantize", "w.npy", "w.npy", "-o", "out.npy"], "w.npy: not valid JSON text"),
        (["quantize", "w.npy", "missing.json", "-o", "out.npy"], "no such quantizer file: missing.json"),
        # flags that would be ignored
        (
            ["calibrate", "w.npy", "-o", "q.json", "--percentile", "99"],
            "--percentile is for --method percentile; got --method minmax. Add the percentile method, "
            "or leave --percentile out",
        ),
        (
            ["report", "w.npy", "--method", "mse,entropy", "--percentile", "99"],
            "--percentile is for --method percentile; got --method mse,entropy. Add the percentile "
            "method, or leave --percentile out",
        ),
        (
            ["calibrate", "w.npy", "-o", "q.json", "--seed", "3"],
            "--seed seeds stochastic rounding; add --rounding stochastic, or leave --seed out",
        ),
        (
            ["quantize", "w.npy", "axis0.json", "-o", "c.npy", "--seed", "3"],
            "--seed seeds stochastic rounding, but the quantizer rounds half_even; calibrate with "
            "--rounding stochastic, or leave --seed out",
        ),
        (
            ["calibrate", "w.npy", "-o", "q.json", "--exclude", "b*"],
            "--exclude leaves arrays of a whole checkpoint out; w.npy is one array",
        ),
        # outputs whose extension says another format
        (
            ["quantize", "w.npy", "axis0.json", "-o", "codes.txt"],
            "codes.txt: codes are written as .npy or .csv; got '.txt'. Name the output *.npy",
        ),
        (
            ["dequantize", "w.npy", "axis0.json", "-o", "values"],
            "values: restored values are written as .npy or .csv; got no extension. Name the output *.npy",
        ),
        (
            ["calibrate", "w.npy", "-o", "q.npy"],
            "q.npy: quantizers are written as .json; got '.npy'. Name the output *.json",
        ),
        # options
        (
            ["calibrate", "w.npy", "-o", "q.json", "--n-bits", "0"],
            "argument --n-bits: bits must be 1 to 32; got 0",
        ),
        (
            ["calibrate", "w.npy", "-o", "q.json", "--n-bits", "1", "--symmetric"],
            "--symmetric needs --n-bits 2 or more: 1-bit symmetric codes have no level above zero",
        ),
        (
            ["report", "w.npy", "--bits", "1-4", "--symmetric"],
            "--symmetric needs --bits 2 or more: 1-bit symmetric codes have no level above zero",
        ),
        (
            ["calibrate", "w.npy", "-o", "q.json", "--axis", "5"],
            "--axis 5 is out of range for w.npy of shape (300, 40); use -2 to 1",
        ),
        (
            ["calibrate", "w.npy", "-o", "q.json", "--block-size", "7,8"],
            "--block-size 7,8 does not tile w.npy of shape (300, 40): give 2 extents, each dividing "
            "its dimension",
        ),
        (
            ["calibrate", "w.npy", "-o", "q.json", "--block-size", "0,8"],
            "argument --block-size: extents must be at least 1; got '0,8'",
        ),
        (
            ["calibrate", "w.npy", "-o", "q.json", "--axis", "0", "--block-size", "1,8"],
            "argument --block-size: not allowed with argument --axis",
        ),
        (
            ["calibrate", "w.npy", "-o", "q.json", "--method", "percentile", "--percentile", "30"],
            "argument --percentile: expected a share of values in (50, 100], such as 99.99; got '30'",
        ),
        (["calibrate", "w.npy", "-o", "nowhere/q.json"], "the folder of nowhere/q.json does not exist"),
        (["calibrate", "w.npy"], "the following arguments are required: -o/--output"),
        (["calibrate", "missing.npy", "-o", "q.json"], "no such input file: missing.npy"),
        (
            ["calibrate", "notes.txt", "-o", "q.json"],
            "notes.txt: unknown input type '.txt'; use .npy, .npz, .safetensors, .csv (in any case)",
        ),
        (["report", "w.npy", "--bits", "0-3"], "argument --bits: bit widths must be 1 to 32; got '0-3'"),
        (
            ["report", "w.npy", "--method", "best"],
            "argument --method: unknown method 'best'; choose from minmax, percentile, mse, entropy",
        ),
        (["report", "w.npy", "--plot", "err.xyz"], "err.xyz: plots are written as .png or "),
        (["dequantize", "w.npy", "axis0.json", "-o", "back.npy"], "w.npy holds "),
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_is_a_one_line_error(
    tmp_path: Path, data: numpy.ndarray, arguments: list[str], message: str
) -> None:
    if "--plot" in arguments:
        pytest.importorskip(
            "matplotlib", reason="MATPLOTLIB IS NOT INSTALLED: --plot's formats are NOT checked"
        )
    _bad_inputs(tmp_path)
    for name, flags in (
        ("axis0", ["--axis", "0"]),
        ("axis1", ["--axis", "1"]),
        ("block", ["--block-size", "20,8"]),
    ):
        ok("calibrate", "w.npy", "-o", f"{name}.json", *flags, cwd=tmp_path)
    before = sorted(path.name for path in tmp_path.iterdir())
    assert fails(*arguments, cwd=tmp_path).startswith(message)
    assert sorted(path.name for path in tmp_path.iterdir()) == before  # nothing written


def test_values_given_to_dequantize_are_refused(tmp_path: Path, data: numpy.ndarray) -> None:
    ok("calibrate", "w.npy", "-o", "q.json", cwd=tmp_path)
    message = fails("dequantize", "w.npy", "q.json", "-o", "back.npy", cwd=tmp_path)
    assert message == (
        f"w.npy holds {data.flat[0]}, which is not a whole number: dequantize takes the codes "
        f"'intquant quantize' writes, not the values themselves"
    )


def test_library_messages_are_put_in_command_line_terms() -> None:
    from intquant.cli.messages import command_line_message
    from intquant.errors import InvalidValueError

    def said(text: str) -> str:
        return command_line_message(InvalidValueError(text))

    assert said(
        "symmetric quantization on 1 bit(s) has no level above zero. Use n_bits >= 2, or asymmetric "
        "quantization (is_symmetric=False)."
    ) == (
        "symmetric quantization on 1 bit(s) has no level above zero. Use --n-bits 2 or more, or "
        "asymmetric quantization (without --symmetric)."
    )
    assert said(
        "the quantizer has no scale yet. Call compute_quantization_parameters(options, stats) first."
    ) == ("the quantizer has no scale yet.")
    assert said("'n_bits' must be an int in [1, 32]; got 40. Use between 1 and 32 bits.") == (
        "--n-bits must be an int in [1, 32]; got 40. Use between 1 and 32 bits."
    )
    assert (
        said(
            "cannot quantize NaN: no integer stands for it (values of shape (2,), dtype float64). Remove "
            "or replace NaN first, e.g. with numpy.nan_to_num; a NaN also arises when the scale underflows."
        )
        == "cannot quantize NaN: no integer stands for it (values of shape (2,), dtype float64)."
    )
    assert said("axis 3 is out of range for values of shape (2, 2); use 0 to 1.") == (
        "--axis 3 is out of range for values of shape (2, 2); use 0 to 1."
    )
    assert said("first line\nsecond line") == "first line"


def _npy_header(shape: tuple[int, ...]) -> bytes:
    header = io.BytesIO()
    numpy.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return header.getvalue()


def _hostile_inputs(folder: Path) -> None:
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
        (["calibrate", "garbage.npz:a", "-o", "q.json"], "garbage.npz: not a valid .npz file"),
        (["calibrate", "truncated.npz:a", "-o", "q.json"], "truncated.npz: not a valid .npz file"),
        (["calibrate", "huge.npz:a", "-o", "q.json"], "huge.npz:a: its header claims (1000000000000,)"),
        (["calibrate", "huge.npz", "-o", "q.json"], "huge.npz:a: its header claims (1000000000000,)"),
        (["calibrate", "bomb.npz:a", "-o", "q.json"], "bomb.npz:a: refusing to inflate 83886208 bytes"),
        (["calibrate", "cut.npy", "-o", "q.json"], "cut.npy: not a valid .npy file"),
        (["report", "w.npy", "--bits", "1-10000000000"], "argument --bits: bit widths must be 1 to 32"),
    ],
)
def test_corrupt_and_hostile_inputs_are_one_line_errors(
    tmp_path: Path, data: numpy.ndarray, arguments: list[str], message: str
) -> None:
    _hostile_inputs(tmp_path)
    assert fails(*arguments, cwd=tmp_path).startswith(message)
    assert not (tmp_path / "q.json").exists()


def test_compressed_npz_still_loads(tmp_path: Path) -> None:
    numpy.savez_compressed(tmp_path / "small.npz", x=numpy.linspace(-1, 1, 100).reshape(10, 10))
    numpy.savez_compressed(tmp_path / "zeros.npz", x=numpy.zeros(1 << 20))  # 8 MiB: under the floor
    ok("calibrate", "small.npz:x", "-o", "q.json", cwd=tmp_path)
    assert loads((tmp_path / "q.json").read_text()).rmin == -1.0
    ok("calibrate", "zeros.npz:x", "-o", "z.json", cwd=tmp_path)

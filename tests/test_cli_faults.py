"""Fault injection for the intquant command line: a full disk, signals, an output that appears
while it is being written, concurrent runs to one output.

Each fault is made for real where the machine allows it (a 1 MiB tmpfs, signals sent to a
subprocess, processes stopped and continued to force an interleaving); a test that cannot set up
its fault skips and says why. After every fault: one line on stderr, the documented exit status,
no temporary file left, an old output untouched.
"""

from __future__ import annotations

import errno
import importlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy
import pytest

from intquant import loads

cli = importlib.import_module("intquant.cli.main")  # the module; intquant.cli.main is also the function
commands = importlib.import_module("intquant.cli.commands")
report = importlib.import_module("intquant.cli.report")

TIMEOUT = 10.0  # seconds: any single wait of these tests


def command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "intquant", *arguments]


def _default_signals() -> None:
    """In the child: default dispositions, even if the test runner ignores SIGINT (a background
    job does) or SIGHUP (nohup); Python then installs its own SIGINT handler."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def start(*arguments: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(*arguments),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_signals,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"{process.args} did not finish in {TIMEOUT} s")
    return process.returncode, stdout, stderr


def temporaries(folder: Path, output: str = "out.npy") -> list[str]:
    """The hidden temporary files the command writes beside ``output``."""
    return sorted(name for name in os.listdir(folder) if name.startswith(f".{output}."))


def wait_for(condition: Callable[[], bool], what: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the command ended (status {process.returncode}) before any {what}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {what} after {TIMEOUT} s")
        time.sleep(0.002)


def calibrate(values: Path, quantizer: Path, *flags: str) -> None:
    """Write a quantizer JSON (in this process: quicker than a subprocess)."""
    assert cli.main(["calibrate", str(values), "-o", str(quantizer), "--quiet", *flags]) == 0


def one_error_line(stderr: str, message: str) -> None:
    assert stderr.count("\n") == 1 and stderr.startswith("intquant: error: "), stderr
    assert message in stderr and "Traceback" not in stderr, stderr


@pytest.fixture
def long_input(tmp_path: Path) -> numpy.ndarray:
    """400 000 rows of 10 values and its quantizer: with --chunk-size 10, 400 000 chunks of one
    row, some 15 s of writing, so a run is surely caught in the middle."""
    values = numpy.random.default_rng(1).normal(size=(400_000, 10)).astype(numpy.float32)
    numpy.save(tmp_path / "long.npy", values)
    calibrate(tmp_path / "long.npy", tmp_path / "q.json")
    return values


# -- a full disk
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs at tmp_path/disk (root only), unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("cannot make a full disk: no mount command to mount a 1 MiB tmpfs")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot make a full disk: mounting a 1 MiB tmpfs failed: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True, check=False)


def test_full_disk_is_an_error_not_a_crash(tmp_path: Path, small_disk: Path) -> None:
    # Used to die of SIGBUS (the output written through a memory map), leaving a temporary file
    # as large as the output that kept the disk full.
    values = numpy.random.default_rng(0).normal(size=(200, 1000)).astype(numpy.float32)
    numpy.save(tmp_path / "w.npy", values)
    calibrate(tmp_path / "w.npy", tmp_path / "q.json")
    old = bytes(range(256)) * 400  # 100 KiB of an old output, on the small disk
    (small_disk / "out.npy").write_bytes(old)
    result = subprocess.run(
        command(
            "quantize",
            "w.npy",
            "q.json",
            "-o",
            "disk/out.npy",
            "--force",
            "--chunk-size",
            "5000",
            "--dtype",
            "int64",  # 1.6 MB of codes: more than the disk holds
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result
    one_error_line(result.stderr, "No space left on device: 'disk/out.npy'")
    assert os.listdir(small_disk) == ["out.npy"] and (small_disk / "out.npy").read_bytes() == old
    # A JSON output on a disk already full.
    with open(small_disk / "filler", "wb", buffering=0) as filler, pytest.raises(OSError) as full:
        while True:
            filler.write(bytes(4096))
    assert full.value.errno == errno.ENOSPC
    result = subprocess.run(
        command("calibrate", "w.npy", "-o", "disk/q.json"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result
    one_error_line(result.stderr, "No space left on device")
    assert sorted(os.listdir(small_disk)) == ["filler", "out.npy"]


def _file_size_limit() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so that a write past the limit fails (EFBIG)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def test_file_size_limit_is_an_error_not_a_crash(tmp_path: Path) -> None:
    # The same fault without root: writes past RLIMIT_FSIZE fail with EFBIG.
    values = numpy.random.default_rng(0).normal(size=(200, 1000)).astype(numpy.float32)
    numpy.save(tmp_path / "w.npy", values)
    calibrate(tmp_path / "w.npy", tmp_path / "q.json")
    (tmp_path / "out.npy").write_bytes(b"old output")
    result = subprocess.run(
        command(
            "quantize",
            "w.npy",
            "q.json",
            "-o",
            "out.npy",
            "--force",
            "--chunk-size",
            "5000",
            "--dtype",
            "int64",  # 1.6 MB of codes: beyond the 1 MiB limit
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=_file_size_limit,
    )
    assert result.returncode == 2, result
    one_error_line(result.stderr, "File too large")
    assert (tmp_path / "out.npy").read_bytes() == b"old output" and temporaries(tmp_path) == []


# -- signals
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_removes_the_temporary_file_and_keeps_the_old_output(
    tmp_path: Path, long_input: numpy.ndarray, signum: signal.Signals
) -> None:
    # SIGTERM and SIGHUP used to kill the command, leaving a temporary file as large as the
    # output; SIGINT printed a traceback.
    old = b"an old output"
    (tmp_path / "out.npy").write_bytes(old)
    process = start(
        "quantize", "long.npy", "q.json", "-o", "out.npy", "--force", "--chunk-size", "10", cwd=tmp_path
    )
    wait_for(lambda: bool(temporaries(tmp_path)), "temporary file", process)
    time.sleep(0.05)  # some chunks written
    process.send_signal(signum)
    status, stdout, stderr = finish(process)
    assert status == 128 + signum, (status, stderr)
    assert stderr == f"intquant: interrupted by {signum.name}\n"
    assert stdout == "" and temporaries(tmp_path) == []
    assert (tmp_path / "out.npy").read_bytes() == old


def test_a_signal_in_process_returns_its_status_and_restores_the_handlers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    numpy.save(tmp_path / "w.npy", numpy.linspace(-1, 1, 1000).reshape(100, 10))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["calibrate", "w.npy", "-o", "q.json"]) == 0
    received: list[int] = []

    def keep(signum: int, frame: Any) -> None:  # the caller's handler: must come back afterwards
        received.append(signum)

    previous = signal.signal(signal.SIGTERM, keep)
    try:
        chunks = commands.row_chunks

        def signalled_chunks(*arguments: Any) -> Iterator[slice]:
            for number, part in enumerate(chunks(*arguments)):
                if number == 3:
                    os.kill(os.getpid(), signal.SIGTERM)
                yield part

        monkeypatch.setattr(commands, "row_chunks", signalled_chunks)
        capsys.readouterr()
        status = cli.main(["quantize", "w.npy", "q.json", "-o", "out.npy", "--chunk-size", "10"])
        assert (status, capsys.readouterr().err) == (
            128 + signal.SIGTERM,
            "intquant: interrupted by SIGTERM\n",
        )
        assert received == [] and signal.getsignal(signal.SIGTERM) is keep
        assert sorted(os.listdir(tmp_path)) == ["q.json", "w.npy"]
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- an output that appears while the command writes it
@pytest.mark.parametrize(
    "arguments",
    [
        ["calibrate", "w.npy", "-o", "out.json"],
        ["quantize", "w.npy", "q.json", "-o", "out.npy"],
        ["dequantize", "c.npy", "q.json", "-o", "out.npy"],
        ["report", "w.npy", "--bits", "4", "--plot", "out.png"],
    ],
    ids=lambda arguments: arguments[0],
)
@pytest.mark.parametrize("hard_links", [True, False], ids=["link", "no-hard-links"])
def test_an_output_that_appears_mid_run_is_not_replaced(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    hard_links: bool,
) -> None:
    # The existence check ran at the start and the rename at the end: a file that appeared in
    # between was replaced.
    if arguments[0] == "report":
        pytest.importorskip("matplotlib")
    output = tmp_path / arguments[arguments.index("-o" if "-o" in arguments else "--plot") + 1]
    numpy.save(tmp_path / "w.npy", numpy.linspace(-1, 1, 1000).reshape(100, 10))
    numpy.save(tmp_path / "c.npy", numpy.arange(1000, dtype=numpy.uint8).reshape(100, 10))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["calibrate", "w.npy", "-o", "q.json"]) == 0
    inputs = ["c.npy", "q.json", "w.npy"]
    if not hard_links:  # a file system without hard links (FAT, some network mounts)

        def no_link(source: Any, target: Any, **options: Any) -> None:
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_link)
    load_array = commands.load_array

    def load_while_another_writes(spec: Any) -> Any:  # after check_output, before the write
        output.write_bytes(b"another program's output")
        return load_array(spec)

    for module in (commands, report):
        monkeypatch.setattr(module, "load_array", load_while_another_writes)
    capsys.readouterr()
    assert cli.main(arguments) == 2
    one_error_line(
        capsys.readouterr().err, f"output {output.name} appeared while writing; not replaced (use --force)"
    )
    assert output.read_bytes() == b"another program's output"
    assert sorted(os.listdir(tmp_path)) == sorted([output.name, *inputs])
    # With --force it is replaced; without, a new output is written as before.
    assert cli.main([*arguments, "--force"]) == 0
    assert output.read_bytes() != b"another program's output"
    for module in (commands, report):
        monkeypatch.setattr(module, "load_array", load_array)
    output.unlink()
    assert cli.main(arguments) == 0
    assert output.stat().st_size > 0 and sorted(os.listdir(tmp_path)) == sorted([output.name, *inputs])
    assert output.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# -- concurrent runs to one output
def _overlapping_runs(folder: Path, first: list[str], second: list[str]) -> list[tuple[int, str, str]]:
    """Run two commands writing out.npy so that both are surely writing at once: the first is
    stopped once its temporary file exists, until the second's exists too (both have passed the
    start's existence check); then both run to the end."""
    processes = [start(*first, cwd=folder)]
    try:
        wait_for(lambda: len(temporaries(folder)) == 1, "temporary file of the first run", processes[0])
        processes[0].send_signal(signal.SIGSTOP)
        try:
            processes.append(start(*second, cwd=folder))
            wait_for(lambda: len(temporaries(folder)) == 2, "temporary file of the second run", processes[1])
        finally:
            processes[0].send_signal(signal.SIGCONT)
        return [finish(process) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()


@pytest.fixture
def medium_input(tmp_path: Path) -> numpy.ndarray:
    """10 000 rows of 10 values and two quantizers: with --chunk-size 10, 10 000 chunks of one row,
    under a second of writing."""
    values = numpy.random.default_rng(2).normal(size=(10_000, 10)).astype(numpy.float32)
    numpy.save(tmp_path / "m.npy", values)
    calibrate(tmp_path / "m.npy", tmp_path / "q.json")
    calibrate(tmp_path / "m.npy", tmp_path / "q4.json", "--n-bits", "4")
    return values


def test_concurrent_runs_without_force_one_wins(tmp_path: Path, medium_input: numpy.ndarray) -> None:
    # Both used to succeed, the second replacing the first's output.
    arguments = ["quantize", "m.npy", "q.json", "-o", "out.npy", "--chunk-size", "10"]
    results = _overlapping_runs(tmp_path, arguments, arguments)
    assert sorted(status for status, _, _ in results) == [0, 2], results
    (_, _, stderr) = next(result for result in results if result[0] == 2)
    one_error_line(stderr, "output out.npy appeared while writing; not replaced (use --force)")
    expected = loads((tmp_path / "q.json").read_text()).quant(medium_input)
    assert numpy.array_equal(numpy.load(tmp_path / "out.npy"), expected)
    assert temporaries(tmp_path) == []


def test_concurrent_runs_with_force_leave_one_complete_output(
    tmp_path: Path, medium_input: numpy.ndarray
) -> None:
    runs = [
        ["quantize", "m.npy", name, "-o", "out.npy", "--force", "--chunk-size", "10"]
        for name in ("q.json", "q4.json")
    ]
    results = _overlapping_runs(tmp_path, *runs)
    assert [status for status, _, _ in results] == [0, 0], results
    written = numpy.load(tmp_path / "out.npy")
    candidates = [loads((tmp_path / name).read_text()).quant(medium_input) for name in ("q.json", "q4.json")]
    assert sum(numpy.array_equal(written, codes) for codes in candidates) == 1  # one of them, whole
    assert temporaries(tmp_path) == []

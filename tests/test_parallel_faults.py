"""The compiled path under fork, Python threads, every numba threading layer and a read-only install.

Each scenario that could kill or hang its process runs in a subprocess with a timeout (its whole
process group is killed when the timeout passes), so a regression fails the test instead of
aborting or hanging the run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy
import pytest

import intquant
from intquant._core.execute import dequantize, quantize
from intquant._core.formulas import minmax_statistics
from intquant._numba import dispatch as _compiled
from intquant.errors import InvalidValueError

pytest.importorskip("numba")

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(intquant.__file__).resolve().parent
SIZE = 300_000  # above dispatch.PARALLEL_MIN_SIZE: the arrays are cut into slices run on threads
TIMEOUT = 120  # seconds a scenario may take (numba compiles in a fresh process without cache)


def _environment(**changes: str | None) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if name != "INTQUANT_PURE_NUMPY"}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")]))
    for name, value in changes.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return environment


def _run(script: str, environment: dict[str, str]) -> tuple[int, str]:
    """Exit code and output of ``python -c script``; its process group is killed after TIMEOUT."""
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
        cwd=ROOT,
        start_new_session=True,  # its own process group: forked children are killed with it
    )
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return -1, f"timed out after {TIMEOUT} s (hung)\n{output}"
    return process.returncode, output


def _workload(values: numpy.ndarray, quantizer: Any) -> tuple[Any, ...]:
    codes = quantizer.quant(values)
    stats = intquant.MinMaxQuantizationStats()
    stats.compute_quantization_stats(values.astype(numpy.float32))
    return codes, quantizer.dequant(codes), stats.rmin, stats.rmax, stats.uvalues


def _bits(result: tuple[Any, ...]) -> list[bytes]:
    return [numpy.asarray(item).tobytes() + numpy.asarray(item).dtype.str.encode() for item in result]


def concurrent_failures(threads: int = 8, rounds: int = 3) -> list[str]:
    """Run quant, dequant and the statistics of SIZE values on ``threads`` Python threads at once;
    list each result that differs from the single-threaded one (or the error raised)."""
    rng = numpy.random.default_rng(7)
    inputs = [rng.normal(size=SIZE) * (index + 1) for index in range(threads)]
    quantizer = intquant.QuantizedArray(8, inputs[-1]).quantizer
    expected = [_bits(_workload(values, quantizer)) for values in inputs]
    barrier = threading.Barrier(threads)
    failures: list[str] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=60)
            for _ in range(rounds):
                if _bits(_workload(inputs[index], quantizer)) != expected[index]:
                    failures.append(f"thread {index}: results differ from the single-threaded ones")
        except Exception as error:  # reported by the test
            failures.append(f"thread {index}: {error!r}")

    workers = [threading.Thread(target=run, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=TIMEOUT)
        if worker.is_alive():
            failures.append("a thread did not finish (hung)")
    return failures


def dask_failures() -> list[str]:
    """quant and dequant through intquant.dask on its threaded scheduler, against the numpy path."""
    try:
        import dask.array
    except ImportError:
        return []
    from intquant import dask as iqdask

    values = numpy.random.default_rng(8).normal(size=8 * SIZE)
    quantizer = intquant.QuantizedArray(8, values).quantizer
    array = dask.array.from_array(values, chunks=SIZE)
    codes = iqdask.quant(quantizer, array).compute(scheduler="threads", num_workers=8)
    restored = iqdask.dequant(quantizer, codes).compute(scheduler="threads", num_workers=8)
    failures = []
    if codes.tobytes() != quantizer.quant(values).tobytes():
        failures.append("dask codes differ")
    if restored.tobytes() != quantizer.dequant(codes).tobytes():
        failures.append("dask dequantized values differ")
    return failures


_FORK_SCRIPT = f"""
import multiprocessing, os, sys, time
import numpy, intquant

SIZE = {SIZE}

def codes(seed):
    return intquant.QuantizedArray(8, numpy.random.default_rng(seed).normal(size=SIZE)).qvalues

expected = {{seed: codes(seed) for seed in range(4)}}  # the compiled path, cut into slices

pid = os.fork()
if pid == 0:
    os._exit(0 if numpy.array_equal(codes(0), expected[0]) else 1)
deadline = time.monotonic() + 60
while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    if time.monotonic() > deadline:
        os.kill(pid, 9)
        sys.exit("the forked child hung")
    time.sleep(0.05)
code = os.waitstatus_to_exitcode(status)
if code != 0:
    sys.exit(f"the forked child failed: exit code {{code}}")

with multiprocessing.get_context("fork").Pool(2) as pool:
    try:
        results = pool.map_async(codes, range(4)).get(timeout=60)
    except multiprocessing.TimeoutError:
        sys.exit("multiprocessing.Pool.map hung")
if not all(numpy.array_equal(results[seed], expected[seed]) for seed in range(4)):
    sys.exit("the pool's results differ")

# The parent still works after the fork (its own threads untouched by the children).
assert numpy.array_equal(codes(3), expected[3])
print("ok")
"""


@pytest.mark.parametrize("threads", [2, 3, 7])
def test_any_number_of_slices_gives_the_plain_results(monkeypatch: pytest.MonkeyPatch, threads: int) -> None:
    # Every array is cut into `threads` uneven slices; statuses, counts and key marks combine.
    monkeypatch.setattr(_compiled, "MIN_SIZE", 1)
    monkeypatch.setattr(_compiled, "PARALLEL_MIN_SIZE", 1)
    monkeypatch.setattr(_compiled, "THREADS", threads)
    rng = numpy.random.default_rng(9)
    values = numpy.round(rng.normal(size=1001) * 0.02, 2)  # both signed zeros
    with_nan, with_inf = values.copy(), values.copy()
    with_nan[-1], with_inf[0] = numpy.nan, numpy.inf  # NaN in the last slice, inf in the first
    with_nan[0] = numpy.inf
    codes = rng.integers(-(2**40), 2**40, size=999)
    cases = [
        lambda: quantize(values, numpy.float64(0.003), numpy.int64(5), (0, 255)),
        lambda: quantize(values.astype(numpy.float32), numpy.float32(0.01), numpy.float32(3), None),
        lambda: quantize(with_nan, numpy.float64(0.5), numpy.int64(0), None),
        lambda: quantize(with_inf, numpy.float64(0.5), numpy.int64(0), None),
        lambda: dequantize(codes, numpy.float64(0.013), numpy.int64(7)),
        lambda: minmax_statistics(values),
        lambda: minmax_statistics(values.astype(numpy.float32)),
    ]
    for case in cases:
        results = []
        for disabled in (False, True):
            monkeypatch.setattr(_compiled, "disabled", disabled)
            try:
                result = case()
                results.append(_bits(result if isinstance(result, tuple) else (result,)))
            except InvalidValueError as error:
                results.append([str(error).encode()])
        assert results[0] == results[1]


def test_fork_after_the_compiled_path_ran() -> None:
    code, output = _run(_FORK_SCRIPT, _environment())
    assert code == 0, output


def test_concurrent_threads_give_the_single_threaded_results() -> None:
    assert concurrent_failures() == []


def test_concurrent_threads_under_the_workqueue_threading_layer() -> None:
    script = (
        "import sys\n"
        "from tests.test_parallel_faults import concurrent_failures, dask_failures\n"
        "failures = concurrent_failures() + dask_failures()\n"
        "sys.exit('\\n'.join(failures) if failures else 0)\n"
    )
    code, output = _run(script, _environment(NUMBA_THREADING_LAYER="workqueue"))
    assert code == 0, output


_READ_ONLY_SCRIPT = """
import os, sys
import numpy, intquant
from intquant._numba import dispatch as _compiled

assert intquant.__file__.startswith(os.environ["READ_ONLY_ROOT"]), intquant.__file__
values = numpy.random.default_rng(0).normal(size=100_000)
quantizer = intquant.UniformQuantizer(
    intquant.QuantizationOptions(8), None, intquant.UniformQuantizationParameters(0.02, 128, 0)
)
codes = quantizer.quant(values)
assert _compiled.worthwhile(values.size) and "numba" in sys.modules
_compiled.disabled = True
assert numpy.array_equal(codes, quantizer.quant(values)), "the compiled codes differ"
print("ok")
"""


def _mount(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *arguments], capture_output=True, text=True, check=False)


def test_a_read_only_install_falls_back_to_no_cache(tmp_path: Path) -> None:
    # Root ignores permission bits, so the package is copied to a tmpfs remounted read-only.
    root = tmp_path / "read-only"
    root.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("SKIPPED LOUDLY: no `mount` command to make a read-only file system")
    mounted = _mount("-t", "tmpfs", "-o", "size=64m", "tmpfs", str(root))
    if mounted.returncode != 0:
        pytest.skip(f"SKIPPED LOUDLY: cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        shutil.copytree(PACKAGE, root / "intquant", ignore=shutil.ignore_patterns("__pycache__"))
        remounted = _mount("-o", "remount,ro", str(root))
        if remounted.returncode != 0:
            pytest.skip(f"SKIPPED LOUDLY: cannot remount the tmpfs read-only: {remounted.stderr.strip()}")
        environment = _environment(
            PYTHONPATH=str(root),
            READ_ONLY_ROOT=str(root),
            NUMBA_CACHE_DIR=None,
            HOME=str(root / "home"),  # numba's user-wide cache (~/.cache/numba) is read-only too
            XDG_CACHE_HOME=str(root / "cache"),
        )
        code, output = _run(_READ_ONLY_SCRIPT, environment)
        assert code == 0, output
    finally:
        if subprocess.run(["umount", str(root)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(root)], check=False)

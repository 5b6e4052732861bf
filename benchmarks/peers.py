"""intquant against its peers, each comparison in one process: Concrete ML 1.7.0, PyTorch, ONNX Runtime.

1. Concrete ML 1.7.0's own ``concrete/ml/quantization/quantizers.py`` (numpy 1.24 only, where that
   release ran): ``QuantizedArray(7, x)``, the same followed by ``dumps()``, and
   ``quantizer.dequant(q)``. The wheel is downloaded with ``pip download --no-deps`` into the
   system temp dir (reused when present) and its few pure-Python modules are imported straight
   from the zip; the heavy packages they import but never use at run time (concrete-python,
   torch, onnx, scikit-learn, skorch, skops) are stubbed while they load. Nothing of Concrete ML
   is installed or copied into the repository.
2. PyTorch's observers (``torch.ao.quantization``, 2 threads) against
   ``MinMaxQuantizationStats`` and ``QuantizedArray(8, w, axis=0)``.
3. Narrow codes: 8-bit signed per-tensor ``quant`` against ONNX Runtime's
   ``QuantizeLinear``/``DequantizeLinear`` (2 threads), ``torch.quantize_per_tensor``/
   ``torch.dequantize`` and a numpy copy, all with intquant's scale and zero point.

Each cell warms every side up, then times the sides in turns (the order rotating every round) k
times, k chosen so that the cell takes about ``--budget`` seconds (at least 3 rounds); the tables
give the median and the best time of each side. Usage:
``python benchmarks/peers.py [--quick] [--sizes 1e3,1e4] [--sections 1,2,3] [--markdown PATH]``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
import types
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy

import intquant

CONCRETE_ML = "concrete-ml==1.7.0"
CONCRETE_ML_WHEEL = "concrete_ml-1.7.0-py3-none-any.whl"
FULL_SIZES = (1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000)
QUICK_MAX_SIZE = 1_000_000
DUMPS_MAX_SIZE = 1_000_000  # JSON of 1e7 values takes seconds on both sides
QUICK_DUMPS_MAX_SIZE = 100_000  # Concrete ML takes 5 s to write 1e6 values
DEQUANT_SIZES = (10_000, 10_000_000)  # the smallest and largest N of the dequant rows
LARGEST_SIZE_FOR_ALL_OPERATIONS = 10_000_000  # above it, QuantizedArray alone
MEMORY_LIMIT = 4 * 2**30  # per side, for the largest arrays
THREADS = 2


# -- timing


@dataclass(frozen=True)
class Timing:
    """Seconds per call: median and best of ``runs`` interleaved runs."""

    median: float
    best: float
    runs: int


def interleaved(
    sides: dict[str, Callable[[], Any]],
    budget: float,
    check: Callable[[dict[str, Any]], str] | None = None,
    min_runs: int = 3,
    max_runs: int = 20_000,
) -> tuple[dict[str, Timing], str]:
    """Time ``sides`` in turns after warming each up; return their timings and ``check``'s note.

    ``check`` gets the warm-up results by label (then dropped, so that large results do not stay
    in memory while timing). Rounds (each side once, the order rotating) go on until ``budget``
    seconds have passed, at least ``min_runs`` of them; calls shorter than a millisecond are
    timed in batches.
    """
    results = {}
    for label, function in sides.items():  # warm-up: lazy imports, caches, compiled loops
        results[label] = function()
    note = check(results) if check is not None else ""
    del results
    calls = 1
    begin = time.perf_counter()
    for function in sides.values():
        function()
    one_round = time.perf_counter() - begin
    if one_round < 1e-3 * len(sides):
        calls = max(1, int(1e-3 * len(sides) / max(one_round, 1e-9)))
    labels = list(sides)
    times: dict[str, list[float]] = {label: [] for label in labels}
    started = time.perf_counter()
    runs = 0
    while runs < min_runs or (runs < max_runs and time.perf_counter() - started < budget):
        turn = runs % len(labels)
        for label in labels[turn:] + labels[:turn]:
            function = sides[label]
            begin = time.perf_counter()
            for _ in range(calls):
                function()
            times[label].append((time.perf_counter() - begin) / calls)
        runs += 1
    timings = {
        label: Timing(float(numpy.median(measured)), min(measured), runs) for label, measured in times.items()
    }
    return timings, note


def peak_bytes(function: Callable[[], Any]) -> int:
    """Peak bytes allocated (tracemalloc: numpy reports its buffers) while ``function`` runs."""
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes (None where there is no such file)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


# -- tables


@dataclass
class Table:
    """A markdown table, printed row by row as it is measured (its title with the first row)."""

    title: str
    header: Sequence[str]
    notes: list[str] = field(default_factory=list)
    text_columns: Sequence[int] = (0, 1)  # left-aligned; the others are numbers, right-aligned
    rows: list[list[str]] = field(default_factory=list)
    started: bool = False

    def rule(self) -> str:
        return (
            "|"
            + "|".join("---" if index in self.text_columns else "---:" for index in range(len(self.header)))
            + "|"
        )

    def start(self) -> None:
        self.started = True
        print(f"\n### {self.title}\n", flush=True)
        for note in self.notes:
            print(f"{note}\n")
        print("| " + " | ".join(self.header) + " |")
        print(self.rule())

    def add(self, row: Sequence[str]) -> None:
        if not self.started:
            self.start()
        self.rows.append(list(row))
        print("| " + " | ".join(row) + " |", flush=True)


def milliseconds(seconds: float) -> str:
    """``seconds`` in ms, to 3 significant digits (no fraction from 100 ms)."""
    value = seconds * 1e3
    return f"{value:,.0f}" if value >= 100 else f"{value:#.3g}"


def size_label(n: int) -> str:
    """``1e6`` for a power of ten, else the number."""
    exponent = round(numpy.log10(n)) if n > 0 else 0
    return f"1e{exponent}" if 10**exponent == n else str(n)


def pair_row(first: Timing, second: Timing) -> list[str]:
    """Median and best of both sides, the ratios first/second, and the rounds."""
    return [
        milliseconds(first.median),
        milliseconds(first.best),
        milliseconds(second.median),
        milliseconds(second.best),
        f"{first.median / second.median:.2f}",
        f"{first.best / second.best:.2f}",
        str(first.runs),
    ]


# -- Concrete ML 1.7.0, loaded from its wheel with stubs for what it never runs

# Packages imported by the modules below that the quantizers never use at run time.
STUBBED_PACKAGES = frozenset({"concrete", "torch", "onnx", "sklearn", "skorch", "skops"})
# The modules run from the wheel, in import order; their packages' __init__ files are not run
# (they import the whole library), except for the two listed.
WHEEL_MODULES = (
    ("concrete.ml.common.debugging.custom_assert", "concrete/ml/common/debugging/custom_assert.py"),
    ("concrete.ml.common.debugging", "concrete/ml/common/debugging/__init__.py"),
    ("concrete.ml.common.serialization", "concrete/ml/common/serialization/__init__.py"),
    ("concrete.ml.common.serialization.encoder", "concrete/ml/common/serialization/encoder.py"),
    ("concrete.ml.common.serialization.dumpers", "concrete/ml/common/serialization/dumpers.py"),
    ("concrete.ml.quantization.quantizers", "concrete/ml/quantization/quantizers.py"),
)
WHEEL_PACKAGES = (
    "concrete.ml",
    "concrete.ml.common",
    "concrete.ml.common.debugging",
    "concrete.ml.common.serialization",
    "concrete.ml.quantization",
)
# concrete/ml/common/utils.py imports torch, onnx, scikit-learn and concrete-python at its top;
# the quantizers and the encoder need only these of its names, run from its own source.
UTILS_PATH = "concrete/ml/common/utils.py"
UTILS_NAMES = frozenset({"numpy", "Exactness", "QUANT_ROUND_LIKE_ROUND_PBS", "array_allclose_and_same_shape"})


class Placeholder(type):
    """A stand-in class whose every public attribute is another stand-in class.

    ``isinstance(x, Placeholder(...))`` is False for any real object, which is all the
    Concrete ML encoder and quantizers ask of the stubbed names (``Tracer``, ``fhe.Circuit``,
    ``onnx.ModelProto``, ``torch.device``, ...).
    """

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return Placeholder(name, (), {})


class StubModule(types.ModuleType):
    """A package whose every public attribute is a :class:`Placeholder`."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        placeholder = Placeholder(name, (), {})
        setattr(self, name, placeholder)
        return placeholder


class StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import any module of :data:`STUBBED_PACKAGES` (but ``concrete.ml``) as a :class:`StubModule`."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname.split(".")[0] not in STUBBED_PACKAGES or fullname.startswith("concrete.ml"):
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: Any) -> types.ModuleType:
        module = StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


@contextlib.contextmanager
def stubbed_packages() -> Iterator[None]:
    """Stub :data:`STUBBED_PACKAGES` while the block runs; then put back what was imported before.

    The ``concrete`` stubs stay (nothing real bears that name here, and the loaded modules'
    type hints are looked up through ``sys.modules``).
    """
    real = {
        name: sys.modules.pop(name)
        for name in list(sys.modules)
        if name.split(".")[0] in STUBBED_PACKAGES - {"concrete"}
    }
    finder = StubFinder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [name for name, module in sys.modules.items() if isinstance(module, StubModule)]:
            if name.split(".")[0] != "concrete":
                del sys.modules[name]
        sys.modules.update(real)


def concrete_ml_wheel(cache: Path) -> Path:
    """The Concrete ML 1.7.0 wheel, downloaded into ``cache`` unless already there."""
    wheel = cache / CONCRETE_ML_WHEEL
    if wheel.is_file():
        return wheel
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", CONCRETE_ML, "-d", str(cache)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if completed.returncode != 0 or not wheel.is_file():
        lines = (completed.stderr or completed.stdout).strip().splitlines()
        raise RuntimeError(f"`{' '.join(command)}` failed: {lines[-1] if lines else completed.returncode}")
    return wheel


def top_level_names(node: ast.stmt) -> set[str]:
    """The names a top-level statement binds (imports, assignments, definitions)."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        return {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.Assign):
        return {target.id for target in node.targets if isinstance(target, ast.Name)}
    return set()


def new_module(name: str, filename: str, is_package: bool) -> types.ModuleType:
    """An empty module registered in ``sys.modules``, with what relative imports need."""
    module = types.ModuleType(name)
    module.__file__ = filename
    module.__package__ = name if is_package else name.rpartition(".")[0]
    if is_package:
        module.__path__ = []
    sys.modules[name] = module
    return module


def load_concrete_ml(wheel: Path) -> types.ModuleType:
    """Concrete ML 1.7.0's ``concrete.ml.quantization.quantizers``, run from ``wheel``."""
    if "concrete.ml.quantization.quantizers" in sys.modules:
        return sys.modules["concrete.ml.quantization.quantizers"]
    with zipfile.ZipFile(wheel) as archive, stubbed_packages():
        importlib.import_module("concrete")  # the stub parent of concrete.ml
        for name in WHEEL_PACKAGES:
            new_module(name, f"{wheel}/{name.replace('.', '/')}/__init__.py", is_package=True)
        tree = ast.parse(archive.read(UTILS_PATH).decode(), filename=f"{wheel}/{UTILS_PATH}")
        tree.body = [node for node in tree.body if top_level_names(node) & UTILS_NAMES]
        utils = new_module("concrete.ml.common.utils", f"{wheel}/{UTILS_PATH}", is_package=False)
        utils.__doc__ = "Concrete ML's common/utils.py, only the names the quantizers and the encoder use."
        exec(compile(tree, utils.__file__, "exec"), utils.__dict__)
        sys.modules["concrete.ml.common"].utils = utils  # type: ignore[attr-defined]
        for name, path in WHEEL_MODULES:
            is_package = path.endswith("__init__.py")
            module = sys.modules[name] if is_package else new_module(name, f"{wheel}/{path}", is_package)
            exec(compile(archive.read(path).decode(), f"{wheel}/{path}", "exec"), module.__dict__)
    return sys.modules["concrete.ml.quantization.quantizers"]


# Where the sides differ only in the sign of a zero among ``uvalues`` (see ZERO_SIGN_NOTE).
OTHER_ZERO = "other sign of 0 in uvalues"
ZERO_SIGN_NOTE = (
    f"'{OTHER_ZERO}': `uvalues` keep whichever of -0.0 and 0.0 numpy 1.24's sort leaves first. "
    "intquant reproduces the reference's platform, an AVX-512 CPU (numpy's AVX-512 quicksort for "
    "float32); this CPU has no AVX512_SKX, so numpy 1.24 sorts float32 here with its introsort "
    "and Concrete ML keeps the other zero about half the time. Everything else is identical."
)


def has_avx512_skx() -> bool:
    """Whether this numpy dispatches to its AVX512_SKX kernels (numpy 1.24 sorts float32 so)."""
    with contextlib.suppress(Exception):
        from numpy.core._multiarray_umath import __cpu_features__  # type: ignore[attr-defined]

        return bool(__cpu_features__.get("AVX512_SKX", False))
    return False


def same_uniques(first: Any, second: Any) -> str:
    """``""`` for identical ``uvalues``, :data:`OTHER_ZERO`, or that they differ."""
    if numpy.array_equal(first, second):
        if numpy.array_equal(numpy.signbit(first), numpy.signbit(second)):
            return ""
        return OTHER_ZERO
    return "**uvalues differ**"


def same_quantized_arrays(results: dict[str, Any]) -> str:
    """Whether both sides' QuantizedArray hold the same codes, parameters and uvalues."""
    first, second = results["cml"], results["intquant"]
    same = (
        numpy.array_equal(first.qvalues, second.qvalues)
        and first.quantizer.scale == second.quantizer.scale
        and first.quantizer.zero_point == second.quantizer.zero_point
    )
    uniques = same_uniques(first.quantizer.uvalues, second.quantizer.uvalues)
    return ("same codes" if same else "**codes differ**") + (f"; {uniques}" if uniques else "")


def same_text(results: dict[str, Any]) -> str:
    """Whether both sides wrote the same JSON text (or the same values, but for signs of zeros)."""
    first, second = results["cml"], results["intquant"]
    if first == second:
        return "same text"
    # json.loads reads -0.0 and 0.0 as equal floats: equal values differ only in signs of zeros
    return (
        f"same text but the {OTHER_ZERO}" if json.loads(first) == json.loads(second) else "**texts differ**"
    )


def same_values(results: dict[str, Any]) -> str:
    """Whether both sides computed the same array, dtype included."""
    first, second = results["cml"], results["intquant"]
    same = first.dtype == second.dtype and numpy.array_equal(first, second)
    return "same values" if same else "**values differ**"


def largest_sizes_fit(cml: types.ModuleType, dtype: type, n: int) -> tuple[bool, str]:
    """Whether ``QuantizedArray(7, x)`` of ``n`` values fits the memory limit on both sides.

    Estimated from the peak allocation at 1e6 values (after a first call, which may allocate
    for one-time work), scaled to ``n``, plus the input.
    """
    probe = numpy.random.default_rng(1).standard_normal(1_000_000, dtype=dtype)
    sides = (
        lambda: cml.QuantizedArray(7, probe),
        lambda: intquant.QuantizedArray(7, probe).quantizer.uvalues,
    )
    for side in sides:
        side()
    peak = max(peak_bytes(side) for side in sides)
    per_side = peak * n / probe.size
    needed = per_side + n * numpy.dtype(dtype).itemsize
    available = available_memory()
    estimate = f"about {per_side / 2**30:.1f} GiB per side"
    if per_side > MEMORY_LIMIT:
        return False, f"{estimate}, over the {MEMORY_LIMIT / 2**30:.0f} GiB limit"
    if available is not None and needed > 0.8 * available:
        return False, f"{estimate} with {available / 2**30:.1f} GiB available"
    return True, estimate


def concrete_ml_cell(
    cml: types.ModuleType, kind: str, values: numpy.ndarray
) -> tuple[dict[str, Callable[[], Any]], Callable[[dict[str, Any]], str]]:
    """The sides of one cell of section 1 (``kind``: array, dumps or dequant) and their check."""
    if kind == "array":
        return {
            "cml": lambda: cml.QuantizedArray(7, values),
            "intquant": lambda: intquant.QuantizedArray(7, values),
            "and uvalues": lambda: intquant.QuantizedArray(7, values).quantizer.uvalues,
        }, same_quantized_arrays
    if kind == "dumps":
        return {
            "cml": lambda: cml.QuantizedArray(7, values).dumps(),
            "intquant": lambda: intquant.dumps(intquant.QuantizedArray(7, values)),
        }, same_text
    cml_quantizer = cml.QuantizedArray(7, values).quantizer
    array = intquant.QuantizedArray(7, values)
    quantizer, codes = array.quantizer, array.qvalues
    return {
        "cml": lambda: cml_quantizer.dequant(codes),
        "intquant": lambda: quantizer.dequant(codes),
    }, same_values


def concrete_ml_section(sizes: Sequence[int], budget: float, cache: Path, dumps_max: int) -> None:
    """Section 1: Concrete ML 1.7.0's quantizers against intquant, on numpy 1.24."""
    print("\n## 1. Concrete ML 1.7.0's quantizers.py against intquant\n")
    if not numpy.__version__.startswith("1.24"):
        print(
            f"Skipped: numpy {numpy.__version__}; Concrete ML 1.7.0 ran on numpy 1.24, run this script "
            f"with the numpy 1.24 venv (`make bench` does: .venv-oldest)."
        )
        return
    try:
        wheel = concrete_ml_wheel(cache)
        cml = load_concrete_ml(wheel)
    except Exception as error:
        print(f"Skipped: Concrete ML 1.7.0 could not be loaded: {type(error).__name__}: {error}")
        return
    print(f"Concrete ML 1.7.0 from `{wheel}`; ratio = Concrete ML time / intquant time.")
    if not has_avx512_skx():
        print(
            "\nThis CPU has no AVX512_SKX: float32 `uvalues` may keep the other sign of a zero than "
            "Concrete ML's (see the note below the tables)."
        )
    pair_header = ["dtype", "N", "Concrete ML median", "best", "intquant median", "best", "ratio"]
    pair_header.append("ratio best")
    header = [*pair_header, "rounds", "check"]
    array_header = [*pair_header, "and uvalues: median", "ratio", "rounds", "check"]
    tables = {
        "array": Table(
            "QuantizedArray(7, x), ms",
            array_header,
            [
                "'and uvalues': intquant's QuantizedArray then reading `quantizer.uvalues`, which it "
                "computes when first read (Concrete ML computes them in QuantizedArray)."
            ],
            text_columns=(0, 1, 11),
        ),
        "dumps": Table("QuantizedArray(7, x) then dumps(), ms", header, text_columns=(0, 1, 9)),
        "dequant": Table("quantizer.dequant(q) of the int64 codes, ms", header, text_columns=(0, 1, 9)),
    }
    rng = numpy.random.default_rng(0)
    for kind in ("array", "dumps", "dequant"):
        skipped: list[str] = []
        for dtype in (numpy.float32, numpy.float64):
            for n in sizes:
                if kind == "dumps" and n > dumps_max:
                    continue
                if kind == "dequant" and not DEQUANT_SIZES[0] <= n <= DEQUANT_SIZES[1]:
                    continue
                if n > LARGEST_SIZE_FOR_ALL_OPERATIONS:
                    if kind != "array":
                        continue
                    fits, estimate = largest_sizes_fit(cml, dtype, n)
                    if not fits:
                        skipped.append(f"{numpy.dtype(dtype)} N={size_label(n)} skipped: {estimate}.")
                        continue
                values = rng.standard_normal(n, dtype=dtype)
                row = [str(numpy.dtype(dtype)), size_label(n)]
                sides, check = concrete_ml_cell(cml, kind, values)
                timings, note = interleaved(sides, budget, check)
                del values, sides
                row += pair_row(timings["cml"], timings["intquant"])
                if kind == "array":
                    uniques = timings["and uvalues"]
                    ratio = timings["cml"].median / uniques.median
                    row[-1:-1] = [milliseconds(uniques.median), f"{ratio:.2f}"]
                tables[kind].add([*row, note])
        if any(OTHER_ZERO in row[-1] for row in tables[kind].rows):
            print(f"\n{ZERO_SIGN_NOTE}")
        if skipped:
            print("\n" + " ".join(skipped))


# -- PyTorch's observers


def torch_section(sizes: Sequence[int], budget: float) -> None:
    """Section 2: PyTorch's min/max observers against intquant's statistics and QuantizedArray.

    intquant computes ``uvalues`` (the distinct values rounded to 2 decimals) when first read, so
    a third side reads them after each call: what it costs when they are used.
    """
    print("\n## 2. PyTorch's observers against intquant\n")
    try:
        import torch
        from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver
    except ImportError as error:
        print(f"Skipped: {error}")
        return
    warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*deprecated")
    torch.set_num_threads(THREADS)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; ratio = PyTorch time / "
        f"intquant time; 'and uvalues' = the intquant call then reading its `uvalues`."
    )
    header = ["input", "N / shape", "PyTorch median", "best", "intquant median", "best", "ratio"]
    header += ["ratio best", "and uvalues: median", "ratio", "rounds"]
    rng = numpy.random.default_rng(0)

    def statistics(values: numpy.ndarray, axis: int | None = None) -> intquant.MinMaxQuantizationStats:
        stats = intquant.MinMaxQuantizationStats()
        stats.compute_quantization_stats(values, axis=axis)
        return stats

    def three_sides(
        table: Table, row: list[str], torch_call: Callable[[], Any], call: Callable[[], Any]
    ) -> None:
        def and_uniques() -> Any:
            result = call()
            return getattr(result, "quantizer", result).uvalues

        sides = {"torch": torch_call, "intquant": call, "uniques": and_uniques}
        timings, _ = interleaved(sides, budget)
        uniques = timings["uniques"]
        ratio = timings["torch"].median / uniques.median
        pair = pair_row(timings["torch"], timings["intquant"])[:-1]
        table.add([*row, *pair, milliseconds(uniques.median), f"{ratio:.2f}", str(uniques.runs)])

    per_tensor = Table(
        "Per-tensor statistics: MinMaxObserver()(t) (a new observer per call) against "
        "MinMaxQuantizationStats().compute_quantization_stats(x), ms",
        header,
    )
    for dtype in (numpy.float32, numpy.float64):
        for n in sizes:
            values = rng.standard_normal(n, dtype=dtype)
            tensor = torch.from_numpy(values)
            three_sides(
                per_tensor,
                [str(numpy.dtype(dtype)), size_label(n)],
                lambda tensor=tensor: MinMaxObserver()(tensor),
                lambda values=values: statistics(values),
            )
            del values, tensor

    matrices = [rng.standard_normal(shape, dtype=numpy.float32) for shape in ((128, 64), (1024, 1024))]
    per_channel = Table(
        "Per-channel statistics (axis 0) of float32 matrices: PerChannelMinMaxObserver(ch_axis=0)(t) "
        "against MinMaxQuantizationStats().compute_quantization_stats(w, axis=0), ms",
        header,
    )
    for matrix in matrices:
        tensor = torch.from_numpy(matrix)
        three_sides(
            per_channel,
            ["float32", "x".join(map(str, matrix.shape))],
            lambda tensor=tensor: PerChannelMinMaxObserver(ch_axis=0)(tensor),
            lambda matrix=matrix: statistics(matrix, axis=0),
        )

    def observed_and_quantized(tensor: Any) -> Any:
        observer = PerChannelMinMaxObserver(ch_axis=0)
        observer(tensor)
        scales, zero_points = observer.calculate_qparams()
        return torch.quantize_per_channel(tensor, scales, zero_points, 0, torch.quint8)

    codes = Table(
        "Per-channel 8-bit codes of float32 matrices: PerChannelMinMaxObserver + calculate_qparams() "
        "+ torch.quantize_per_channel (quint8) against QuantizedArray(8, w, axis=0) (int64 codes), ms",
        header,
    )
    for matrix in matrices:
        tensor = torch.from_numpy(matrix)
        three_sides(
            codes,
            ["float32", "x".join(map(str, matrix.shape))],
            lambda tensor=tensor: observed_and_quantized(tensor),
            lambda matrix=matrix: intquant.QuantizedArray(8, matrix, axis=0),
        )


# -- narrow codes: ONNX Runtime and PyTorch


def onnx_runtime_session(operator: str, scale: float, zero_point: int) -> tuple[Any, int]:
    """An ONNX Runtime session of one ``operator`` node (float32 <-> int8), and its opset.

    Opset 21, or the highest of 21, 19, 13 this onnx and onnxruntime accept; 2 intra-op threads.
    """
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper

    float_type, code_type = (
        (TensorProto.FLOAT, TensorProto.INT8)
        if operator == "QuantizeLinear"
        else (TensorProto.INT8, TensorProto.FLOAT)
    )
    graph = helper.make_graph(
        [helper.make_node(operator, ["x", "scale", "zero_point"], ["y"])],
        operator,
        [helper.make_tensor_value_info("x", float_type, ["n"])],
        [helper.make_tensor_value_info("y", code_type, ["n"])],
        initializer=[
            helper.make_tensor("scale", TensorProto.FLOAT, [], [numpy.float32(scale)]),
            helper.make_tensor("zero_point", TensorProto.INT8, [], [zero_point]),
        ],
    )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    errors = []
    for opset in (21, 19, 13):
        if opset > onnx.defs.onnx_opset_version():
            continue
        opsets = [helper.make_opsetid("", opset)]
        model = helper.make_model(graph, opset_imports=opsets)
        model.ir_version = helper.find_min_ir_version_for(opsets)
        try:
            onnx.checker.check_model(model)
            session = onnxruntime.InferenceSession(
                model.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:
            errors.append(f"opset {opset}: {error}")
            continue
        return session, opset
    raise RuntimeError("; ".join(errors))


COPY = "numpy copy of x (float32)"
COPY_INTO = "numpy.copyto(buffer, x): no new memory"


def narrow_section(n: int, budget: float) -> None:
    """Section 3: 8-bit signed codes of ``n`` float32 values and back, against ONNX Runtime and torch."""
    print("\n## 3. Narrow codes: intquant against ONNX Runtime and PyTorch\n")
    values = numpy.random.default_rng(0).standard_normal(n, dtype=numpy.float32)
    quantizer = intquant.QuantizedArray(8, values, is_signed=True).quantizer
    scale, zero_point = float(quantizer.scale), int(quantizer.zero_point)
    print(
        f"{size_label(n)} float32 standard normal values; 8-bit signed per-tensor quantizer: "
        f"scale {scale!r}, zero point {zero_point} (float32 scale {float(numpy.float32(scale))!r} for "
        f"ONNX Runtime). 'x copy' = median / median of `x.copy()`, a new array whose first-touch "
        f"page faults are part of its cost, as they are of every result here (ONNX Runtime may reuse "
        f"its arena); `copyto` into a preallocated array is the memory traffic alone."
    )
    peers: dict[str, Callable[[], Any]] = {}
    notes = []
    try:
        quantizer.quant(values[:4], dtype=numpy.int8)
        narrow_label = "intquant quant(x, dtype=int8)"
        peers[narrow_label] = lambda: quantizer.quant(values, dtype=numpy.int8)
    except (TypeError, ValueError) as error:  # intquant's dtype errors derive from these
        narrow_label = "intquant quant(x, dtype='smallest') (int8)"
        notes.append(f"`quant(x, dtype=numpy.int8)` refused ({error}); timed `dtype='smallest'`.")
        peers[narrow_label] = lambda: quantizer.quant(values, dtype="smallest")
    peers["intquant quant(x) (int64)"] = lambda: quantizer.quant(values)
    codes = peers[narrow_label]()
    assert codes.dtype == numpy.int8, codes.dtype
    sessions: dict[str, Any] = {}
    try:
        import onnxruntime

        for operator in ("QuantizeLinear", "DequantizeLinear"):
            sessions[operator], opset = onnx_runtime_session(operator, scale, zero_point)
        ort_label = (
            f"ONNX Runtime {onnxruntime.__version__} QuantizeLinear (opset {opset}, {THREADS} threads)"
        )
        quantize_session = sessions["QuantizeLinear"]
        peers[ort_label] = lambda: quantize_session.run(None, {"x": values})[0]
    except Exception as error:
        notes.append(f"ONNX Runtime skipped: {type(error).__name__}: {error}")
    torch: Any = None
    try:
        import torch

        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*deprecated")
        torch.set_num_threads(THREADS)
        tensor = torch.from_numpy(values)
        torch_label = f"torch {torch.__version__} quantize_per_tensor (qint8, {THREADS} threads)"
        peers[torch_label] = lambda: torch.quantize_per_tensor(tensor, scale, zero_point, torch.qint8)
    except ImportError as error:
        notes.append(f"PyTorch skipped: {error}")
    buffer = numpy.empty_like(values)
    peers[COPY] = values.copy
    peers[COPY_INTO] = lambda: numpy.copyto(buffer, values)

    def agreement(results: dict[str, Any]) -> str:
        lines = []
        for label, result in results.items():
            if label.startswith("ONNX"):
                other = result
            elif label.startswith("torch"):
                other = result.int_repr().numpy()
            else:
                continue
            equal = numpy.count_nonzero(other == codes) / codes.size
            lines.append(f"codes equal to intquant's: {label.split()[0]} {100 * equal:.4f} %")
        return "; ".join(lines)

    quant_table = Table(
        f"float32 -> 8-bit codes, {size_label(n)} values, ms",
        ["implementation", "median", "best", "x copy", "rounds"],
        text_columns=(0,),
    )
    timings, note = interleaved(peers, budget, agreement)
    quant_table.notes = [*notes, *([note + "."] if note else [])]
    for label, timing in timings.items():
        copy = timings[COPY].median
        row = [
            milliseconds(timing.median),
            milliseconds(timing.best),
            f"{timing.median / copy:.2f}",
            str(timing.runs),
        ]
        quant_table.add([label, *row])

    backs: dict[str, Callable[[], Any]] = {}
    if "dtype" in inspect.signature(quantizer.dequant).parameters:
        backs["intquant dequant(q, dtype=float32)"] = lambda: quantizer.dequant(codes, dtype=numpy.float32)
    else:
        backs["intquant dequant(q) (float64 out)"] = lambda: quantizer.dequant(codes)
    if "DequantizeLinear" in sessions:
        dequantize_session = sessions["DequantizeLinear"]
        backs[f"ONNX Runtime DequantizeLinear (opset {opset})"] = lambda: dequantize_session.run(
            None, {"x": codes}
        )[0]
    if torch is not None:
        quantized = torch.quantize_per_tensor(tensor, scale, zero_point, torch.qint8)
        backs["torch dequantize (float32 out)"] = lambda: torch.dequantize(quantized)
    backs[COPY] = values.copy
    backs[COPY_INTO] = lambda: numpy.copyto(buffer, values)
    dequant_table = Table(
        f"8-bit codes -> float32, {size_label(n)} values, ms",
        ["implementation", "median", "best", "x copy", "rounds"],
        text_columns=(0,),
    )
    timings, _ = interleaved(backs, budget)
    for label, timing in timings.items():
        copy = timings[COPY].median
        row = [
            milliseconds(timing.median),
            milliseconds(timing.best),
            f"{timing.median / copy:.2f}",
            str(timing.runs),
        ]
        dequant_table.add([label, *row])


# -- the command line


class Tee:
    """A text stream writing to several (standard output and the ``--markdown`` file)."""

    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def machine_line() -> str:
    """What the numbers were measured on."""
    versions = [f"numpy {numpy.__version__}", f"intquant {intquant.__version__}"]
    for name in ("numba", "torch", "onnxruntime"):
        with contextlib.suppress(Exception):
            if importlib.util.find_spec(name) is not None:
                from importlib.metadata import version

                versions.append(f"{name} {version(name)}")
    pure = os.environ.get("INTQUANT_PURE_NUMPY")
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{', '.join(versions)}{', INTQUANT_PURE_NUMPY=' + pure if pure else ''}; "
        f"{time.strftime('%Y-%m-%d %H:%M')}"
    )


def parse_sizes(text: str) -> list[int]:
    """``1e3,1e4`` -> [1000, 10000]."""
    sizes = [int(float(item)) for item in text.split(",") if item.strip()]
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive numbers such as 1e3,1e6; got {text!r}")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="sizes up to 1e6 (dumps up to 1e5) and a shorter budget"
    )
    parser.add_argument("--sizes", type=parse_sizes, help="N of sections 1 and 2, e.g. 1e3,1e6")
    parser.add_argument("--narrow-n", type=float, help="N of section 3 (default 1e7, 1e6 with --quick)")
    parser.add_argument("--sections", default="1,2,3", help="which sections to run, e.g. 2,3")
    parser.add_argument("--budget", type=float, help="seconds per cell (default 1.5, 0.3 with --quick)")
    parser.add_argument("--markdown", type=Path, help="also write the output (markdown) to this file")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "intquant-bench-concrete-ml",
        help="where the Concrete ML wheel is downloaded (and reused)",
    )
    arguments = parser.parse_args()
    budget = arguments.budget or (0.3 if arguments.quick else 1.5)
    sizes = arguments.sizes or [n for n in FULL_SIZES if not arguments.quick or n <= QUICK_MAX_SIZE]
    torch_sizes = arguments.sizes or ([1_000_000] if arguments.quick else [1_000_000, 10_000_000])
    narrow_n = int(arguments.narrow_n or (1_000_000 if arguments.quick else 10_000_000))
    sections = {item.strip() for item in arguments.sections.split(",")}

    with contextlib.ExitStack() as stack:
        if arguments.markdown is not None:  # the output is markdown: copy it to the file
            markdown = stack.enter_context(arguments.markdown.open("w"))
            stack.enter_context(contextlib.redirect_stdout(Tee(sys.stdout, markdown)))
        print(f"# intquant against its peers\n\nMeasured on {machine_line()}.")
        if "1" in sections:
            dumps_max = QUICK_DUMPS_MAX_SIZE if arguments.quick else DUMPS_MAX_SIZE
            concrete_ml_section(sizes, budget, arguments.cache, dumps_max)
        if "2" in sections:
            torch_section(torch_sizes, budget)
        if "3" in sections:
            narrow_section(narrow_n, budget)
    if arguments.markdown is not None:
        print(f"\nwritten to {arguments.markdown}")


if __name__ == "__main__":
    main()

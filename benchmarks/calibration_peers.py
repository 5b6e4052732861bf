"""Calibration methods of intquant, PyTorch and ONNX Runtime on the same data, in one process.

For every data set, granularity (per tensor; per channel for the weight matrix), grid and bit
width, each method calibrates a clipping range on the same batches, the data are quantized and
dequantized with that library's own parameters, and the table gives

    SQNR = 10 log10( sum x**2 / sum (x - dequant(quant(x)))**2 )   (dB, higher is better)

and the calibration time (collecting the batches and computing the range, one run, so only a
rough figure on a shared machine; quantization is not timed).

* intquant: ``MinMaxQuantizationStats`` (``QuantizedArray``), ``PercentileStats``,
  ``MovingAverageMinMaxStats``, ``MSEStats``, ``EntropyStats``, on the unsigned asymmetric grid,
  the seed's signed symmetric grid (``2**n - 1`` levels) and, when the installed intquant has it,
  the ``full_range`` signed symmetric grid (all ``2**n`` levels, PyTorch's convention).
* PyTorch (``torch.ao.quantization``, 1 thread): ``MinMaxObserver``,
  ``MovingAverageMinMaxObserver``, ``HistogramObserver``; per channel ``PerChannelMinMaxObserver``
  and ``MovingAveragePerChannelMinMaxObserver``; ``quint8`` affine (``quant_min=0``,
  ``quant_max=2**n - 1``) and ``qint8`` symmetric (``-2**(n-1)``, ``2**(n-1) - 1``); quantized
  with ``torch.fake_quantize_per_tensor_affine``/``_per_channel_affine``.
* ONNX Runtime: ``MinMaxCalibrater`` (on an Identity model whose input is the data; also with
  ``moving_average``), and ``HistogramCollector`` -- the engine of ``EntropyCalibrater``,
  ``PercentileCalibrater`` and ``DistributionCalibrater`` -- fed the same batches directly;
  defaults and tuned settings. Ranges become QDQ parameters with ORT's ``compute_scale_zp`` (uint8
  ``[0, 2**n - 1]`` asymmetric; int8 symmetric ``[-(2**(n-1) - 1), 2**(n-1) - 1]``, ORT's
  symmetric int8 range), then ``QuantizeLinear``'s formula (round half to even, saturate).
  Per channel, ORT quantizes weights by per-channel min/max, which is the row given.

The data (fixed seeds): a Gaussian with 0.1% outliers, Student-t (3 degrees of freedom), uniform,
the ReLU hidden layer of an MLP trained on scikit-learn's digits, and that MLP's first weight
matrix (per tensor and per output channel).

The script then checks the targets of the calibration issue and prints PASS or MISS for each.
Usage: ``python benchmarks/calibration_peers.py [--quick] [--markdown FILE]``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import io
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy

from intquant import QuantizationOptions, QuantizedArray
from intquant.calibration import EntropyStats, MovingAverageMinMaxStats, MSEStats, PercentileStats
from intquant.extensions import EXTRA_OPTIONS
from intquant.statistics import MinMaxQuantizationStats

TABLE_BITS = (2, 4, 8)
ENTROPY_BITS = tuple(range(2, 9))  # the monotone check runs over every width
TOLERANCE_DB = 0.1
BATCHES = 4
HAS_FULL_RANGE = "full_range" in EXTRA_OPTIONS


def full_range_effective() -> bool:
    """Whether the full-range option changes the scale (``max|x| / 7.5`` instead of ``/ 7`` at 4 bits)."""
    if not HAS_FULL_RANGE:
        return False
    values = numpy.array([-1.0, 0.5, 1.0])
    scale = QuantizedArray(4, values, is_signed=True, is_symmetric=True, full_range=True).quantizer.scale
    return bool(numpy.isclose(scale, 1.0 / 7.5))


# -- data


@dataclass(frozen=True)
class DataSet:
    """A float32 array, the batches it is calibrated from, and its granularities."""

    name: str
    values: numpy.ndarray
    batches: tuple[numpy.ndarray, ...]
    per_channel: bool  # also calibrate per channel (axis 0)


def make_data(quick: bool) -> list[DataSet]:
    """The five data sets, with fixed seeds."""
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    size = 20_000 if quick else 1_000_000
    rng = numpy.random.default_rng(2026)
    gauss = rng.normal(size=size)
    outliers = rng.choice(size, size // 1000, replace=False)
    gauss[outliers] *= 10.0
    student = rng.standard_t(3, size=size)
    uniform = rng.uniform(-1.0, 1.0, size=size)

    digits = load_digits()
    inputs = digits.data / 16.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning in --quick
        mlp = MLPClassifier(hidden_layer_sizes=(128,), max_iter=40 if quick else 200, random_state=0)
        with threadpool_limits(1):  # BLAS threads fight the other processes of a shared machine
            mlp.fit(inputs, digits.target)
    rows = inputs[:300] if quick else inputs
    hidden = numpy.maximum(rows @ mlp.coefs_[0] + mlp.intercepts_[0], 0.0)
    weights = mlp.coefs_[0].T  # (out channels, in features), PyTorch's layout

    def data_set(name: str, values: numpy.ndarray, per_channel: bool = False) -> DataSet:
        values = numpy.ascontiguousarray(values, dtype=numpy.float32)
        parts = (values,) if per_channel else tuple(numpy.array_split(values, BATCHES))
        return DataSet(name, values, parts, per_channel)

    return [
        data_set("gaussian+outliers", gauss),
        data_set("student-t(3)", student),
        data_set("uniform", uniform),
        data_set("relu (digits MLP hidden)", hidden),
        data_set("weights (digits MLP, 128x64)", weights, per_channel=True),
    ]


# -- measurements


@dataclass
class Row:
    """One method's results at every width."""

    library: str
    method: str
    setting: str
    grid: str
    granularity: str
    sqnr: dict[int, float]
    seconds: dict[int, float]


def sqnr_db(values: numpy.ndarray, restored: numpy.ndarray) -> float:
    """10 log10 of the signal energy over the error energy (inf for an exact result)."""
    reference = values.astype(numpy.float64)
    error = float(numpy.sum((reference - numpy.asarray(restored, dtype=numpy.float64)) ** 2))
    signal = float(numpy.sum(reference**2))
    return math.inf if error == 0.0 else 10.0 * math.log10(signal / error)


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    """The result of ``function()`` and the seconds it took."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


# intquant


def collect(calibrator: Any, batches: tuple[numpy.ndarray, ...]) -> None:
    """Fold every batch into ``calibrator``."""
    for batch in batches:
        calibrator.update(batch)


INTQUANT_GRIDS: dict[str, dict[str, Any]] = {
    "uint asym": {"is_signed": False, "is_symmetric": False},
    "int sym": {"is_signed": True, "is_symmetric": True},
}
if HAS_FULL_RANGE:
    INTQUANT_GRIDS["int sym full"] = {"is_signed": True, "is_symmetric": True, "full_range": True}

INTQUANT_METHODS: list[tuple[str, str, Callable[[int | None], Any]]] = [
    ("percentile", "p=99.99 (default)", lambda axis: PercentileStats(99.99, axis=axis)),
    ("percentile", "p=99.999", lambda axis: PercentileStats(99.999, axis=axis)),
    ("percentile", "p=99.9", lambda axis: PercentileStats(99.9, axis=axis)),
    ("moving-average min/max", "c=0.01 (default)", lambda axis: MovingAverageMinMaxStats(axis=axis)),
    ("mse", "default", lambda axis: MSEStats(axis=axis)),
    ("entropy", "default", lambda axis: EntropyStats(axis=axis)),
]


def intquant_rows(data: DataSet, axis: int | None, granularity: str) -> list[Row]:
    """intquant's min/max and calibration methods on every grid."""
    rows = []
    x = data.values
    for grid, grid_options in INTQUANT_GRIDS.items():
        row = Row("intquant", "min/max", "QuantizedArray", grid, granularity, {}, {})
        for n_bits in TABLE_BITS:
            _, row.seconds[n_bits] = timed(
                lambda: MinMaxQuantizationStats().compute_quantization_stats(x, axis=axis)
            )
            qa = QuantizedArray(n_bits, x, axis=axis, **grid_options)
            row.sqnr[n_bits] = sqnr_db(x, qa.dequant())
        rows.append(row)
    for method, setting, make in INTQUANT_METHODS:
        calibrator = make(axis)
        _, collect_seconds = timed(functools.partial(collect, calibrator, data.batches))
        for grid, grid_options in INTQUANT_GRIDS.items():
            row = Row("intquant", method, setting, grid, granularity, {}, {})
            widths = ENTROPY_BITS if method == "entropy" else TABLE_BITS
            for n_bits in widths:
                options = QuantizationOptions(n_bits, axis=axis, **grid_options)
                if n_bits in TABLE_BITS:  # timed on a copy holding no range cached for another width
                    fresh = copy.deepcopy(calibrator)
                    _, range_seconds = timed(functools.partial(fresh.range_for, options))
                    row.seconds[n_bits] = collect_seconds + range_seconds
                qa = QuantizedArray(n_bits, x, axis=axis, stats=calibrator, **grid_options)
                row.sqnr[n_bits] = sqnr_db(x, qa.dequant())
            rows.append(row)
    return rows


# PyTorch


def torch_rows(data: DataSet, axis: int | None, granularity: str) -> list[Row]:
    """PyTorch's observers, quint8 affine and qint8 symmetric, at every width."""
    import torch
    from torch.ao import quantization as tq

    torch.set_num_threads(1)
    x = torch.from_numpy(data.values)
    batches = [torch.from_numpy(batch) for batch in data.batches]
    if axis is None:
        observers: list[tuple[str, Any, dict[str, Any]]] = [
            ("MinMaxObserver", tq.MinMaxObserver, {}),
            ("MovingAverageMinMaxObserver", tq.MovingAverageMinMaxObserver, {}),
            ("HistogramObserver", tq.HistogramObserver, {}),
        ]
        grids = {
            "uint asym": (torch.quint8, torch.per_tensor_affine),
            "int sym": (torch.qint8, torch.per_tensor_symmetric),
        }
    else:
        observers = [
            ("PerChannelMinMaxObserver", tq.PerChannelMinMaxObserver, {"ch_axis": axis}),
            (
                "MovingAveragePerChannelMinMaxObserver",
                tq.MovingAveragePerChannelMinMaxObserver,
                {"ch_axis": axis},
            ),
        ]
        grids = {
            "uint asym": (torch.quint8, torch.per_channel_affine),
            "int sym": (torch.qint8, torch.per_channel_symmetric),
        }
    rows = []
    for name, observer_class, keywords in observers:
        for grid, (dtype, qscheme) in grids.items():
            row = Row(
                "torch", name, "default", grid + " (2^n levels)" * (grid == "int sym"), granularity, {}, {}
            )
            for n_bits in TABLE_BITS:
                low, high = (
                    (0, 2**n_bits - 1)
                    if dtype == torch.quint8
                    else (-(2 ** (n_bits - 1)), 2 ** (n_bits - 1) - 1)
                )
                observer = observer_class(
                    dtype=dtype, qscheme=qscheme, quant_min=low, quant_max=high, **keywords
                )

                def calibrate(observer: Any = observer) -> Any:
                    for batch in batches:
                        observer(batch)
                    return observer.calculate_qparams()

                (scale, zero_point), row.seconds[n_bits] = timed(calibrate)
                if axis is None:
                    restored = torch.fake_quantize_per_tensor_affine(
                        x, float(scale), int(zero_point), low, high
                    )
                else:
                    restored = torch.fake_quantize_per_channel_affine(
                        x, scale.float(), zero_point.int(), axis, low, high
                    )
                row.sqnr[n_bits] = sqnr_db(data.values, restored.numpy())
            rows.append(row)
    return rows


# ONNX Runtime


def ort_grid(symmetric: bool, n_bits: int) -> tuple[int, int]:
    """ORT's code range: uint8 ``[0, 2**n - 1]``, symmetric int8 ``[-(2**(n-1) - 1), 2**(n-1) - 1]``."""
    return (-(2 ** (n_bits - 1) - 1), 2 ** (n_bits - 1) - 1) if symmetric else (0, 2**n_bits - 1)


def ort_restore(
    values: numpy.ndarray, low: Any, high: Any, symmetric: bool, n_bits: int, axis: int | None
) -> numpy.ndarray:
    """QuantizeLinear then DequantizeLinear with ``compute_scale_zp``'s parameters for ``(low, high)``."""
    from onnxruntime.quantization.quant_utils import compute_scale_zp

    qmin, qmax = ort_grid(symmetric, n_bits)
    lows = numpy.atleast_1d(numpy.asarray(low, dtype=numpy.float32))
    highs = numpy.atleast_1d(numpy.asarray(high, dtype=numpy.float32))
    pairs = [
        compute_scale_zp(
            lo, hi, numpy.array(qmin, dtype=numpy.int32), numpy.array(qmax, dtype=numpy.int32), symmetric
        )
        for lo, hi in zip(lows, highs, strict=True)
    ]
    zero_point = numpy.array([float(pair[0]) for pair in pairs], dtype=numpy.float32)
    scale = numpy.array([float(pair[1]) for pair in pairs], dtype=numpy.float32)
    if axis is not None:
        shape = [1] * values.ndim
        shape[axis] = -1
        zero_point, scale = zero_point.reshape(shape), scale.reshape(shape)
    codes = numpy.clip(numpy.rint(values / scale) + zero_point, qmin, qmax)
    return ((codes - zero_point) * scale).astype(numpy.float32)


def identity_model(path: str, shape: tuple[int, ...]) -> None:
    """An ONNX model whose only node is ``y = Identity(x)``, ``x`` float32 of ``shape`` (batch free)."""
    import onnx
    from onnx import TensorProto, helper

    dims: list[Any] = ["batch", *shape[1:]]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "calibration_input",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


class _Batches:
    """ORT's ``CalibrationDataReader`` protocol over the batches."""

    def __init__(self, batches: tuple[numpy.ndarray, ...]) -> None:
        self._batches: Iterator[numpy.ndarray] = iter(batches)

    def get_next(self) -> dict[str, numpy.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {"x": batch}


def ort_minmax_range(data: DataSet, moving_average: bool, directory: str) -> tuple[tuple[Any, Any], float]:
    """``MinMaxCalibrater``'s range for the model input and the seconds to collect and compute it."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    model = os.path.join(directory, "identity.onnx")
    identity_model(model, data.values.shape)
    calibrator = create_calibrator(
        model,
        ["Identity"],
        augmented_model_path=os.path.join(directory, "augmented.onnx"),
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"moving_average": moving_average},
    )

    def calibrate() -> Any:
        calibrator.collect_data(_Batches(data.batches))
        return calibrator.compute_data()["x"].range_value

    with contextlib.redirect_stdout(io.StringIO()):
        value_range, seconds = timed(calibrate)
    return value_range, seconds


def ort_histogram_range(
    data: DataSet, method: str, symmetric: bool, **settings: Any
) -> tuple[tuple[Any, Any], float]:
    """A ``HistogramCollector`` range (what ORT's calibrater of ``method`` computes) and its seconds."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    keywords = {
        "num_bins": 2048,
        "num_quantized_bins": 128,
        "percentile": 99.999,
        "scenario": "same",
    } | settings
    collector = HistogramCollector(method=method, symmetric=symmetric, **keywords)

    def calibrate() -> Any:
        for batch in data.batches:
            collector.collect({"x": batch})
        result = collector.compute_collection_result()["x"]
        return result.range_value if method == "distribution" else (result[0], result[1])

    with contextlib.redirect_stdout(io.StringIO()):
        value_range, seconds = timed(calibrate)
    return value_range, seconds


ORT_HISTOGRAM_SETTINGS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("EntropyCalibrater", "bins=128 (default)", "entropy", {"num_bins": 128}),
    ("EntropyCalibrater", "bins=2048", "entropy", {"num_bins": 2048}),
    ("PercentileCalibrater", "p=99.999 (default)", "percentile", {"percentile": 99.999}),
    ("PercentileCalibrater", "p=99.99", "percentile", {"percentile": 99.99}),
    ("PercentileCalibrater", "p=99.9", "percentile", {"percentile": 99.9}),
    ("DistributionCalibrater", "bins=2048", "distribution", {"num_bins": 2048}),
]


def ort_rows(data: DataSet, axis: int | None, granularity: str) -> list[Row]:
    """ONNX Runtime's calibrators per tensor; per channel, its weights' per-channel min/max."""
    rows = []
    x = data.values
    grids = {"uint asym": False, "int sym": True}
    if axis is not None:
        other = tuple(d for d in range(x.ndim) if d != axis)
        for grid, symmetric in grids.items():
            row = Row("ort", "per-channel min/max (weights)", "default", grid, granularity, {}, {})
            (lows, highs), seconds = timed(lambda: (x.min(axis=other), x.max(axis=other)))
            for n_bits in TABLE_BITS:
                row.seconds[n_bits] = seconds
                row.sqnr[n_bits] = sqnr_db(x, ort_restore(x, lows, highs, symmetric, n_bits, axis))
            rows.append(row)
        return rows
    with tempfile.TemporaryDirectory() as directory:
        for name, setting, moving in (
            ("MinMaxCalibrater", "default", False),
            ("MinMaxCalibrater", "moving_average", True),
        ):
            (low, high), seconds = ort_minmax_range(data, moving, directory)
            for grid, symmetric in grids.items():
                row = Row("ort", name, setting, grid, granularity, {}, {})
                for n_bits in TABLE_BITS:
                    row.seconds[n_bits] = seconds
                    row.sqnr[n_bits] = sqnr_db(x, ort_restore(x, low, high, symmetric, n_bits, None))
                rows.append(row)
    for name, setting, method, settings in ORT_HISTOGRAM_SETTINGS:
        ranges: dict[bool, tuple[tuple[Any, Any], float]] = {}
        for grid, symmetric in grids.items():
            row = Row("ort", name, setting, grid, granularity, {}, {})
            # Only the percentile histogram depends on `symmetric` (of |x| when set); the entropy and
            # distribution ranges are computed once and used by both grids.
            key = symmetric if method == "percentile" else False
            try:
                if key not in ranges:
                    ranges[key] = ort_histogram_range(data, method, symmetric, **settings)
                (low, high), seconds = ranges[key]
            except Exception as error:  # a setting ORT refuses is reported, not hidden
                print(
                    f"  ORT {name} {setting} {grid} failed: {type(error).__name__}: {error}", file=sys.stderr
                )
                continue
            for n_bits in TABLE_BITS:
                row.seconds[n_bits] = seconds
                row.sqnr[n_bits] = sqnr_db(x, ort_restore(x, low, high, symmetric, n_bits, None))
            rows.append(row)
    return rows


# -- targets and tables


def best(rows: list[Row], library: str, n_bits: int) -> Row | None:
    """The row of ``library`` with the highest SQNR at ``n_bits``."""
    candidates = [row for row in rows if row.library == library and n_bits in row.sqnr]
    return max(candidates, key=lambda row: row.sqnr[n_bits], default=None)


def label(row: Row | None, n_bits: int) -> str:
    """``SQNR method (setting, grid)`` of a row."""
    if row is None:
        return "-"
    return f"{row.sqnr[n_bits]:.2f} {row.method} ({row.setting}, {row.grid})"


@dataclass
class Verdict:
    """One target check."""

    target: str
    case: str
    passed: bool
    detail: str


def check_targets(results: dict[tuple[str, str], list[Row]]) -> list[Verdict]:
    """The three SQNR targets of the issue, per data set, granularity and width."""
    verdicts = []
    effective = full_range_effective()
    for (name, granularity), rows in results.items():
        for n_bits in TABLE_BITS:
            ours = best(rows, "intquant", n_bits)
            peers = [
                row for row in (best(rows, "torch", n_bits), best(rows, "ort", n_bits)) if row is not None
            ]
            peer = max(peers, key=lambda row: row.sqnr[n_bits])
            assert ours is not None
            margin = ours.sqnr[n_bits] - peer.sqnr[n_bits]
            verdicts.append(
                Verdict(
                    "best intquant >= best peer - 0.1 dB",
                    f"{name}, {granularity}, {n_bits} bits",
                    margin >= -TOLERANCE_DB,
                    f"{margin:+.2f} dB ({ours.method} vs {peer.library} {peer.method} "
                    f"{peer.setting}, {peer.grid})",
                )
            )
            if HAS_FULL_RANGE:
                full = next(
                    r
                    for r in rows
                    if r.library == "intquant" and r.method == "min/max" and r.grid == "int sym full"
                )
                torch_minmax = next(
                    r
                    for r in rows
                    if r.library == "torch"
                    and r.method in ("MinMaxObserver", "PerChannelMinMaxObserver")
                    and r.grid.startswith("int sym")
                )
                difference = full.sqnr[n_bits] - torch_minmax.sqnr[n_bits]
                verdicts.append(
                    Verdict(
                        "min/max full range >= torch symmetric min/max - 0.1 dB",
                        f"{name}, {granularity}, {n_bits} bits",
                        difference >= -TOLERANCE_DB,
                        f"{difference:+.2f} dB ({full.sqnr[n_bits]:.2f} vs {torch_minmax.sqnr[n_bits]:.2f})"
                        + ("" if effective else "; full_range has no effect on the scale in this build"),
                    )
                )
        for row in rows:
            if row.library != "intquant" or row.method != "entropy":
                continue
            drops = [
                (n, row.sqnr[n] - row.sqnr[n + 1])
                for n in ENTROPY_BITS[:-1]
                if row.sqnr[n + 1] < row.sqnr[n] - TOLERANCE_DB
            ]
            worst = min(row.sqnr[n + 1] - row.sqnr[n] for n in ENTROPY_BITS[:-1])
            verdicts.append(
                Verdict(
                    "entropy: one more bit never loses > 0.1 dB",
                    f"{name}, {granularity}, {row.grid}, bits 2-8",
                    not drops,
                    f"smallest gain {worst:+.2f} dB" + (f"; drops at {drops}" if drops else ""),
                )
            )
    return verdicts


def markdown(results: dict[tuple[str, str], list[Row]], verdicts: list[Verdict], header: str) -> str:
    """The summary and full tables, and the verdicts, as Markdown."""
    lines = [header, ""]
    for (name, granularity), rows in results.items():
        lines += [f"### {name}, {granularity}", ""]
        lines += ["| bits | best intquant (dB) | best PyTorch (dB) | best ONNX Runtime (dB) | margin (dB) |"]
        lines += ["| --- | --- | --- | --- | --- |"]
        for n_bits in TABLE_BITS:
            ours, torch_best, ort_best = (
                best(rows, library, n_bits) for library in ("intquant", "torch", "ort")
            )
            peer = max((r.sqnr[n_bits] for r in (torch_best, ort_best) if r is not None), default=math.nan)
            margin = ours.sqnr[n_bits] - peer if ours is not None else math.nan
            lines.append(
                f"| {n_bits} | {label(ours, n_bits)} | {label(torch_best, n_bits)} | "
                f"{label(ort_best, n_bits)} | {margin:+.2f} |"
            )
        lines += ["", "<details><summary>all rows</summary>", ""]
        columns = " | ".join(f"{n} bits dB" for n in TABLE_BITS)
        lines += [f"| library | method | setting | grid | {columns} | calibration ms (2/4/8 bits) |"]
        lines += ["| --- | --- | --- | --- | " + "--- | " * len(TABLE_BITS) + "--- |"]
        for row in rows:
            sqnrs = " | ".join(f"{row.sqnr[n]:.2f}" for n in TABLE_BITS)
            seconds = "/".join(f"{row.seconds[n] * 1e3:.1f}" for n in TABLE_BITS)
            lines.append(
                f"| {row.library} | {row.method} | {row.setting} | {row.grid} | {sqnrs} | {seconds} |"
            )
        entropy = [row for row in rows if row.library == "intquant" and row.method == "entropy"]
        if entropy:
            lines += [
                "",
                "intquant entropy at every width (dB): "
                + "; ".join(
                    f"{row.grid}: " + ", ".join(f"{n}: {row.sqnr[n]:.2f}" for n in ENTROPY_BITS)
                    for row in entropy
                ),
            ]
        lines += ["", "</details>", ""]
    lines += ["### Target checks", "", "| target | case | verdict | detail |", "| --- | --- | --- | --- |"]
    for verdict in verdicts:
        lines.append(
            f"| {verdict.target} | {verdict.case} | {'PASS' if verdict.passed else 'MISS'} | "
            f"{verdict.detail} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run every method on every data set, print the tables and the target verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data (about 30 s)")
    parser.add_argument("--markdown", metavar="FILE", help="also write the tables to FILE")
    args = parser.parse_args(argv)

    import onnxruntime
    import sklearn
    import torch

    import intquant

    start = time.perf_counter()
    # A pass over small arrays first, results discarded: no first-call cost (imports, numba
    # compilation, thread pools) lands in a timed row.
    warm = numpy.random.default_rng(0).normal(size=(64, 64)).astype(numpy.float32)
    # Compiled kernels are specialized by the number of dimensions, and intquant switches to its
    # parallel kernels above about 1e5 values: warm those up too.
    flat = numpy.random.default_rng(1).normal(size=2**18).astype(numpy.float32)
    warm_ups = [(DataSet("", flat, tuple(numpy.array_split(flat, BATCHES)), False), None)]
    warm_ups += [(DataSet("", warm, (warm,), True), axis) for axis in (None, 0)]
    with contextlib.redirect_stderr(io.StringIO()):
        for data, axis in warm_ups:
            # ORT needs none: its session is made before the timed calls, its histograms are numpy.
            for rows in (intquant_rows, torch_rows):
                rows(data, axis, "")
    data_sets = make_data(args.quick)
    results: dict[tuple[str, str], list[Row]] = {}
    for data in data_sets:
        granularities: list[tuple[int | None, str]] = [(None, "per tensor")]
        if data.per_channel:
            granularities.append((0, "per channel"))
        for axis, granularity in granularities:
            print(f"{data.name}, {granularity}: {data.values.size} values ...", file=sys.stderr)
            results[data.name, granularity] = (
                intquant_rows(data, axis, granularity)
                + torch_rows(data, axis, granularity)
                + ort_rows(data, axis, granularity)
            )
    verdicts = check_targets(results)
    full_range_state = "absent"
    if HAS_FULL_RANGE:
        full_range_state = "present" if full_range_effective() else "accepted but without effect on the scale"
    header = (
        f"intquant {intquant.__version__}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"scikit-learn {sklearn.__version__}, numpy {numpy.__version__}; "
        f"{'--quick' if args.quick else 'full'} run, {BATCHES} batches per data set (weights: 1); "
        f"full-range grid {full_range_state}."
    )
    text = markdown(results, verdicts, header)
    print(text)
    print(
        f"{sum(v.passed for v in verdicts)} PASS, {sum(not v.passed for v in verdicts)} MISS; "
        f"{time.perf_counter() - start:.1f} s"
    )
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

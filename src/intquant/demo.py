"""The ``intquant demo``: a small neural network run entirely on integers, at 2 to 8 bits.

The demo trains a two-layer perceptron (64 inputs, 64 hidden ReLU units, 10 outputs; scikit-learn's
``MLPClassifier``, adam, seed 0, float64) on the handwritten digits bundled with scikit-learn
(1,797 images of 8x8 pixels; nothing is downloaded), with a fixed, stratified 75/25 train/test
split and pixels scaled from 0..16 to [0, 1]. Then, for each bit width ``n``, it turns the float
network into integer layers with :meth:`intquant.integer.IntegerNetwork.from_float`, calibrated
on the training images, and measures the test accuracy of the integer network:

.. code-block:: text

    q_x  = quant(x)                                   # n-bit unsigned input codes
    acc1 = (q_x - zp_x) @ (q_w1 - zp_w1).T + b1       # int64, exact; b1 = rint(bias / (s_x s_w1))
    q_h  = max(clip(requant(acc1) + zp_h, 0, 2**n - 1), zp_h)  # n-bit codes, then the ReLU
    acc2 = (q_h - zp_h) @ (q_w2 - zp_w2).T + b2       # int64, exact
    q_y  = clip(requant(acc2) + zp_y, 0, 2**16 - 1)   # 16-bit logit codes
    class = argmax(q_y)

Everything after ``quant(x)`` is integer arithmetic, except the rescale of the default
requantization (``rint(acc * M)`` with ``M = s_x s_w / s_y`` in float64; the ``fixed-point``
column replaces it by an int64 multiplier and a rounding right shift).

Columns (:data:`CONFIGURATIONS`): ``per-tensor`` weights (one scale per matrix);
``per-channel`` weights (one scale per output unit; the library's default); ``fixed-point``
(per-channel, :class:`~intquant.integer.FixedPoint` requantization); ``acc16`` (per-channel,
``accumulator_bits=16``: every weight row's scale is raised just enough that its accumulator,
bias included, fits 16 signed bits for *every* input in range, not only the observed ones).

Choices, measured on this data (``docs/benchmarks.md`` has the table): activations are
calibrated by min/max (``calibrator=None``): the inputs are pixels in [0, 1] without outliers,
and on the hidden ReLU activations percentile (99.99, 99.9), MSE and entropy calibration differ
from min/max by at most 0.7 point at 3 to 8 bits, none of them better at 4 or 8 bits. The
logits get 16-bit codes (``output_bits=16``) whatever ``n``: with ``n``-bit logits the argmax
meets ties (2-bit logits: 38% accuracy instead of 56%, 3-bit: 94% instead of 97%).

The demo also reports, per layer, the accumulator bits (signed, bias included) in the worst case
over every input code in range and observed on the test images, against a 16-bit limit, for the
per-channel network and for the constrained ``acc16`` one
(:meth:`~intquant.integer.IntegerNetwork.accumulator_report`).

scikit-learn, matplotlib and tqdm are optional (``pip install "intquant[demo]"``); they are
imported only when the demo runs.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy

from intquant._core.checks import is_integer
from intquant.errors import IntquantError, InvalidTypeError, InvalidValueError
from intquant.integer import (
    AccumulatorReport,
    FixedPoint,
    FloatRescale,
    IntegerNetwork,
    Linear,
    ReLU,
    Requantization,
)

__all__ = [
    "ACCUMULATOR_LIMIT",
    "CONFIGURATIONS",
    "Configuration",
    "DEFAULT_BITS",
    "DemoResult",
    "LAYER_NAMES",
    "MAX_DEMO_BITS",
    "OUTPUT_BITS",
    "TrainedModel",
    "build_network",
    "run_demo",
    "train_float_model",
]

DEFAULT_BITS = (2, 3, 4, 5, 6, 7, 8)

#: The widest codes the demo accepts: beyond it the bias codes ``rint(b / (s_x * s_w))`` no longer
#: fit int32, which the integer layers refuse.
MAX_DEMO_BITS = 16

#: The accumulator width the report measures against, and the constraint of the ``acc16`` column.
ACCUMULATOR_LIMIT = 16

#: Bits of the logit codes (the last layer's output quantizer), whatever the width ``n``.
OUTPUT_BITS = 16

#: Names of the two linear layers, in the accumulator table.
LAYER_NAMES = ("hidden", "output")

_SEED = 0
_TEST_SIZE = 0.25
_PIXEL_MAX = 16.0  # the digits' pixels are integers 0..16
_HIDDEN_UNITS = 64
_MAX_ITERATIONS = 1000  # adam stops on its tolerance after 343 epochs here
_INSTALL_HINT = 'install the demo\'s dependencies with: pip install "intquant[demo]"'


@dataclass(frozen=True)
class Configuration:
    """One column of the demo: how :meth:`IntegerNetwork.from_float` builds the network.

    Attributes
    ----------
    name : str
        The column header (one word).
    description : str
        What the column shows, for the report and the plot's legend.
    per_channel : bool
        One weight scale per output unit (True) or per matrix.
    requantization : Requantization
        The requantization mode of every layer.
    accumulator_bits : int or None
        The constraint mode's accumulator width (None: unconstrained).
    """

    name: str
    description: str
    per_channel: bool = True
    requantization: Requantization = field(default_factory=FloatRescale)
    accumulator_bits: int | None = None


#: The demo's columns, in table order.
CONFIGURATIONS = (
    Configuration("per-tensor", "per-tensor weights", per_channel=False),
    Configuration("per-channel", "per-channel weights"),
    Configuration("fixed-point", "per-channel, fixed-point requantization", requantization=FixedPoint()),
    Configuration(
        "acc16",
        f"per-channel, accumulators constrained to {ACCUMULATOR_LIMIT} bits",
        accumulator_bits=ACCUMULATOR_LIMIT,
    ),
)

#: The columns whose accumulators the report tabulates and plots.
_ACCUMULATOR_COLUMNS = ("per-channel", "acc16")


@dataclass(frozen=True)
class TrainedModel:
    """The trained float64 network and its data.

    Attributes
    ----------
    weights, biases : tuple of numpy.ndarray
        ``(W1 (64, 64), W2 (10, 64))`` as (outputs, inputs), and ``(b1 (64,), b2 (10,))``.
    x_train, x_test : numpy.ndarray of float64
        Pixels in [0, 1], shape (n, 64).
    y_train, y_test : numpy.ndarray of int
        Labels 0..9.
    accuracy : float
        Test accuracy of the float64 network.
    """

    weights: tuple[numpy.ndarray, numpy.ndarray]
    biases: tuple[numpy.ndarray, numpy.ndarray]
    x_train: numpy.ndarray
    x_test: numpy.ndarray
    y_train: numpy.ndarray
    y_test: numpy.ndarray
    accuracy: float


@dataclass(frozen=True)
class DemoResult:
    """Test accuracies of the float network and of its integer versions, and their accumulators.

    Attributes
    ----------
    float_accuracy : float
        Test accuracy of the float64 network.
    accuracy : dict of (int, str) to float
        Test accuracy of the integer network, keyed by ``(n_bits, configuration name)``, e.g.
        ``(4, "per-channel")`` (names in :data:`CONFIGURATIONS`).
    accumulators : dict of (int, str) to AccumulatorReport
        The accumulator report of each integer network (worst case, and observed on the test
        images), with limit :data:`ACCUMULATOR_LIMIT`, under the same keys.
    """

    float_accuracy: float
    accuracy: dict[tuple[int, str], float]
    accumulators: dict[tuple[int, str], AccumulatorReport]


def train_float_model() -> TrainedModel:
    """Train the float network on the bundled digits (deterministic: fixed seeds, one BLAS thread).

    Raises
    ------
    IntquantError
        If scikit-learn is not installed.
    """
    _require("sklearn", "scikit-learn")
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]
    from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]
    from sklearn.neural_network import MLPClassifier  # type: ignore[import-untyped]
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # sklearn's dependency

    images, labels = load_digits(return_X_y=True)
    x = numpy.asarray(images, dtype=numpy.float64) / _PIXEL_MAX
    x_train, x_test, y_train, y_test = train_test_split(
        x, labels, test_size=_TEST_SIZE, random_state=_SEED, stratify=labels
    )
    classifier = MLPClassifier(
        hidden_layer_sizes=(_HIDDEN_UNITS,),
        activation="relu",
        solver="adam",
        max_iter=_MAX_ITERATIONS,
        random_state=_SEED,
    )
    with threadpool_limits(1):  # the sums do not depend on the number of cores
        classifier.fit(x_train, y_train)
    weights = tuple(numpy.ascontiguousarray(w.T, dtype=numpy.float64) for w in classifier.coefs_)
    biases = tuple(numpy.asarray(b, dtype=numpy.float64) for b in classifier.intercepts_)
    hidden = numpy.maximum(x_test @ weights[0].T + biases[0], 0.0)
    logits = hidden @ weights[1].T + biases[1]
    accuracy = float(numpy.mean(numpy.argmax(logits, axis=1) == y_test))
    return TrainedModel(
        weights=(weights[0], weights[1]),
        biases=(biases[0], biases[1]),
        x_train=x_train,
        x_test=x_test,
        y_train=y_train,
        y_test=y_test,
        accuracy=accuracy,
    )


def build_network(model: TrainedModel, n_bits: int, configuration: Configuration) -> IntegerNetwork:
    """The integer network of ``model`` at ``n_bits`` (weights and activations) for a column."""
    layers: list[Linear | ReLU] = [
        Linear(model.weights[0], model.biases[0]),
        ReLU(),
        Linear(model.weights[1], model.biases[1]),
    ]
    return IntegerNetwork.from_float(
        layers,
        model.x_train,
        bits=n_bits,
        output_bits=OUTPUT_BITS,
        per_channel=configuration.per_channel,
        calibrator=None,  # min/max (see the module docstring)
        requantization=configuration.requantization,
        accumulator_bits=configuration.accumulator_bits,
    )


def run_demo(
    plot_path: pathlib.Path | None,
    *,
    bits: Sequence[int] = DEFAULT_BITS,
    show_progress: bool = False,
    write: Callable[[str], None] = print,
) -> DemoResult:
    """Train the digit network, run it on integers at each bit width, report accuracy and accumulators.

    See the module docstring for the data, the network and the integer arithmetic.

    Parameters
    ----------
    plot_path : pathlib.Path or None
        Where to save a PNG of accuracy against bit width (one line per configuration, a
        horizontal line for the float network) beside accumulator bits against bit width (per
        layer, worst case and observed, with and without the constraint; a line at the 16-bit
        limit); written atomically (a temporary file in the same folder, then a rename).
        ``None`` draws nothing.
    bits : sequence of int
        Bit widths of the weights and the activations, each in [2, 16]; reported in increasing
        order, duplicates once.
    show_progress : bool
        Show a tqdm progress bar over the bit widths on stderr.
    write : callable
        Receives the report, one line per call (default: ``print``).

    Returns
    -------
    DemoResult
        The float network's test accuracy, the integer accuracy and the accumulator report for
        every ``(n_bits, configuration)``.

    Raises
    ------
    IntquantError
        If scikit-learn (or, when needed, matplotlib or tqdm) is not installed.
    InvalidTypeError, InvalidValueError
        If ``bits`` is empty or holds anything but ints in [2, 16].
    OSError
        If the plot cannot be written (no partial file is left behind).
    """
    widths = _check_bits(bits)
    _require("sklearn", "scikit-learn")
    if plot_path is not None:
        _require("matplotlib", "matplotlib")
    if show_progress:
        _require("tqdm", "tqdm")

    model = train_float_model()
    accuracy: dict[tuple[int, str], float] = {}
    accumulators: dict[tuple[int, str], AccumulatorReport] = {}
    for n_bits in _progress(widths, show_progress):
        for configuration in CONFIGURATIONS:
            network = build_network(model, n_bits, configuration)
            predictions = network.predict(model.x_test)
            key = (n_bits, configuration.name)
            accuracy[key] = float(numpy.mean(predictions == model.y_test))
            accumulators[key] = network.accumulator_report(model.x_test, limit_bits=ACCUMULATOR_LIMIT)

    result = DemoResult(float_accuracy=model.accuracy, accuracy=accuracy, accumulators=accumulators)
    for line in _report(result, widths, n_train=len(model.y_train), n_test=len(model.y_test)):
        write(line)
    if plot_path is not None:
        _save_plot(result, widths, pathlib.Path(plot_path))
        write(f"wrote the accuracy plot to {plot_path}")
    return result


def _check_bits(bits: Any) -> list[int]:
    if isinstance(bits, (str, bytes)) or not isinstance(bits, Iterable):
        raise InvalidTypeError(
            f"'bits' must be a sequence of ints such as (2, 4, 8); got {bits!r} of type "
            f"{type(bits).__name__}."
        )
    widths = list(bits)
    if not widths:
        raise InvalidValueError("'bits' is empty; give at least one bit width, such as (2, 4, 8).")
    for n_bits in widths:
        if not is_integer(n_bits):
            raise InvalidTypeError(
                f"each bit width must be an int in [2, {MAX_DEMO_BITS}]; got {n_bits!r} of type "
                f"{type(n_bits).__name__}."
            )
        if not 2 <= n_bits <= MAX_DEMO_BITS:
            raise InvalidValueError(
                f"each bit width must be an int in [2, {MAX_DEMO_BITS}]; got {n_bits}. Symmetric "
                f"weights need 2 bits or more, and beyond {MAX_DEMO_BITS} the bias codes "
                f"b / (s_x * s_w) no longer fit int32."
            )
    return sorted({int(n_bits) for n_bits in widths})


def _require(module: str, package: str) -> None:
    """Import ``module`` or raise an :class:`IntquantError` saying how to install it."""
    try:
        importlib.import_module(module)
    except ImportError as error:
        raise IntquantError(
            f"the demo needs {package}, which could not be imported ({error}); {_INSTALL_HINT}"
        ) from error


def _progress(widths: list[int], show_progress: bool) -> Iterable[int]:
    if not show_progress:
        return widths
    from tqdm import tqdm  # type: ignore[import-untyped]

    return tqdm(widths, desc="intquant demo", unit="width", file=sys.stderr)


def _layer_bits(report: AccumulatorReport) -> list[tuple[int, int | None]]:
    """``(worst-case bits, observed bits)`` of each layer of a report, in order."""
    return [(layer.max_worst_bits, layer.max_observed_bits) for layer in report.layers]


def _report(result: DemoResult, widths: list[int], *, n_train: int, n_test: int) -> list[str]:
    names = [configuration.name for configuration in CONFIGURATIONS]
    lines = [
        f"digits: {n_train} training and {n_test} test images of 8x8 pixels, scaled to [0, 1]; "
        f"MLP 64-{_HIDDEN_UNITS}-10 (ReLU), scikit-learn MLPClassifier, adam, seed {_SEED}",
        f"float model (float64): test accuracy {result.float_accuracy:.4f}",
        "integer model: intquant.integer.IntegerNetwork.from_float(..., bits=n): n-bit input and "
        "hidden codes, n-bit signed symmetric weights, int64 accumulators (bias included), "
        f"requantization, {OUTPUT_BITS}-bit logit codes, argmax; calibrated by min/max on the "
        "training images",
    ]
    lines += [f"  {c.name}: {c.description}" for c in CONFIGURATIONS]
    lines += ["", "test accuracy", "bits  " + "  ".join(f"{name:>11}" for name in names)]
    for n_bits in widths:
        cells = "  ".join(f"{result.accuracy[n_bits, name]:>11.4f}" for name in names)
        lines.append(f"{n_bits:>4}  {cells}")

    lines += [
        "",
        f"accumulator bits (signed, bias included) against a {ACCUMULATOR_LIMIT}-bit limit: worst "
        f"case over every input code in range / observed on the {n_test} test images",
        f"{'layer':<7} {'bits':>4}  "
        + "  ".join(f"{name + ': worst':>18}  {'observed':>8}" for name in _ACCUMULATOR_COLUMNS),
    ]
    for index, layer in enumerate(LAYER_NAMES):
        for n_bits in widths:
            bits_cells = []
            for name in _ACCUMULATOR_COLUMNS:
                worst, observed = _layer_bits(result.accumulators[n_bits, name])[index]
                verdict = "fits" if worst <= ACCUMULATOR_LIMIT else "over"
                bits_cells.append(f"{f'{worst} ({verdict})':>18}  {_bits_text(observed):>8}")
            lines.append(f"{layer:<7} {n_bits:>4}  " + "  ".join(bits_cells))
    widest = widths[-1]
    lines += [
        "",
        f"at {widest} bits, network.accumulator_report(x_test, limit_bits={ACCUMULATOR_LIMIT}) "
        f"of the {' and '.join(_ACCUMULATOR_COLUMNS)} networks (ranges over every channel)",
    ]
    for name in _ACCUMULATOR_COLUMNS:
        report_lines = str(result.accumulators[widest, name]).splitlines()
        lines += [f"{name}:", *(f"  {line}" for line in report_lines)]
    lines += _targets(result, widths)
    return lines


def _bits_text(bits: int | None) -> str:
    return "-" if bits is None else str(bits)


def _targets(result: DemoResult, widths: list[int]) -> list[str]:
    """The issue's targets, for the widths measured: each line says met or missed, and by how much."""
    lines = []
    reference = result.float_accuracy

    def gap(n_bits: int, name: str) -> float:
        return 100.0 * (result.accuracy[n_bits, name] - reference)

    for n_bits, allowed in ((8, 0.5), (4, 1.0)):
        if n_bits in widths:
            points = gap(n_bits, "per-channel")
            verdict = "met" if points >= -allowed else "missed"
            lines.append(
                f"target: per-channel at {n_bits} bits within {allowed} point of float: "
                f"{points:+.2f} points, {verdict}"
            )
    if 8 in widths:
        report = result.accumulators[8, "acc16"]
        points = gap(8, "acc16")
        verdict = "met" if report.fits and points >= -2.0 else "missed"
        lines.append(
            f"target: acc16 at 8 bits fits {ACCUMULATOR_LIMIT} bits worst case (widest "
            f"{report.max_worst_bits}) within 2 points of float: {points:+.2f} points, {verdict}"
        )
    return ["", *lines] if lines else []


def _save_plot(result: DemoResult, widths: list[int], path: pathlib.Path) -> None:
    """Draw accuracy and accumulator bits against bit width; save as PNG at ``path``, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12.0, 4.6), layout="constrained")
    FigureCanvasAgg(figure)  # a canvas of our own: no pyplot, no global backend state
    accuracy_axes, bits_axes = figure.subplots(1, 2)

    for configuration, marker in zip(CONFIGURATIONS, ("o", "s", "^", "D"), strict=True):
        values = [result.accuracy[n_bits, configuration.name] for n_bits in widths]
        accuracy_axes.plot(
            widths, values, marker=marker, label=f"{configuration.name}: {configuration.description}"
        )
    accuracy_axes.axhline(
        result.float_accuracy,
        color="black",
        linestyle="--",
        label=f"float model ({result.float_accuracy:.3f})",
    )
    accuracy_axes.set_xticks(widths)
    accuracy_axes.set_xlabel("bits (weights and activations)")
    accuracy_axes.set_ylabel("test accuracy")
    accuracy_axes.set_title("Digits MLP 64-64-10 on integers: accuracy")
    accuracy_axes.grid(alpha=0.3)
    accuracy_axes.legend(loc="lower right", fontsize="small")

    colors = {"per-channel": "tab:orange", "acc16": "tab:red"}
    for name in _ACCUMULATOR_COLUMNS:
        for index, (layer, marker) in enumerate(zip(LAYER_NAMES, ("o", "s"), strict=True)):
            pairs = [_layer_bits(result.accumulators[n_bits, name])[index] for n_bits in widths]
            bits_axes.plot(
                widths,
                [worst for worst, _ in pairs],
                color=colors[name],
                marker=marker,
                label=f"{name}, {layer}: worst case",
            )
            observed = [numpy.nan if seen is None else seen for _, seen in pairs]
            bits_axes.plot(
                widths,
                observed,
                color=colors[name],
                marker=marker,
                linestyle=":",
                fillstyle="none",
                label=f"{name}, {layer}: observed",
            )
    bits_axes.axhline(
        ACCUMULATOR_LIMIT, color="black", linestyle="--", label=f"{ACCUMULATOR_LIMIT}-bit limit"
    )
    bits_axes.set_xticks(widths)
    bits_axes.set_xlabel("bits (weights and activations)")
    bits_axes.set_ylabel("signed accumulator bits (bias included)")
    bits_axes.set_title("Accumulator width per layer")
    bits_axes.grid(alpha=0.3)
    bits_axes.legend(loc="lower right", fontsize="small")

    folder = path.parent if str(path.parent) else pathlib.Path(".")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=folder)
    try:
        with os.fdopen(descriptor, "wb") as file:
            figure.savefig(file, format="png", dpi=100)
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise

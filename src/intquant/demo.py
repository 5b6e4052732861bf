"""The ``intquant demo``: a digit classifier run with integer-only arithmetic at 2 to 8 bits.

The demo trains scikit-learn's ``LogisticRegression`` (multinomial, float64) on the handwritten
digits bundled with scikit-learn (1,797 images of 8x8 pixels; nothing is downloaded), with a
fixed, stratified 75/25 train/test split and pixels scaled from 0..16 to [0, 1]. Then, for each
bit width ``n`` and for two weight granularities, it quantizes the model with intquant and
measures the test accuracy of integer-only inference:

* weights ``W`` (10 classes x 64 pixels): signed symmetric codes, so the zero point is 0 —
  ``QuantizedArray(n, W, is_signed=True, is_symmetric=True)`` with one scale for the whole
  matrix ("per-tensor"), or with ``axis=0``, one scale per class row ("per-channel");
* inputs ``x``: an unsigned asymmetric per-tensor quantizer calibrated on the *training*
  inputs, ``QuantizedArray(n, X_train)``, then applied to the test inputs with ``.quant``.

Integer-only inference means the whole dot product runs on the integer codes; floats appear
once per output, to rescale the integer sum and add the float bias:

.. code-block:: text

    acc    = (q_x - zp_x) @ q_w.T                  # int64: exact, no rounding
    logits = acc * (s_x * s_w) + b                  # float64: one multiply-add per output
    class  = argmax(logits)

Because ``x ~ s_x * (q_x - zp_x)`` and ``W ~ s_w * q_w``, these logits equal the float model's
logits on the de-quantized inputs and weights, ``dequant(q_x) @ dequant(q_w).T + b``, up to float
rounding. The integer sum is exact when it fits int64, and it converts to float64 exactly while
it stays below 2**53; with 64 pixels that holds up to 24 bits, the widest the demo accepts.

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
from dataclasses import dataclass
from typing import Any

import numpy

from intquant._core.checks import is_integer
from intquant.errors import IntquantError, InvalidTypeError, InvalidValueError
from intquant.quantized_array import QuantizedArray

__all__ = ["DemoResult", "GRANULARITIES", "integer_logits", "run_demo"]

#: The weight granularities the demo compares, in table order.
GRANULARITIES = ("per-tensor", "per-channel")

DEFAULT_BITS = (2, 3, 4, 5, 6, 7, 8)

#: The widest codes the demo accepts: with 64 pixels, ``|acc| <= 64 * (2**n - 1) * 2**(n - 1)``
#: stays below 2**53 (exact in float64) up to n = 24.
MAX_DEMO_BITS = 24

_SEED = 0
_TEST_SIZE = 0.25
_PIXEL_MAX = 16.0  # the digits' pixels are integers 0..16
_INSTALL_HINT = 'install the demo\'s dependencies with: pip install "intquant[demo]"'
_INTEGER_ONLY_NOTE = (
    "integer-only: acc = (q_x - zp_x) @ q_w.T in int64 on the codes, then one float rescale "
    "per output, logits = acc * (s_x * s_w) + b"
)


@dataclass(frozen=True)
class DemoResult:
    """Test accuracies of the float model and of its integer-only quantized versions.

    Attributes
    ----------
    float_accuracy : float
        Test accuracy of the float64 logistic regression.
    accuracy : dict of (int, str) to float
        Test accuracy of integer-only inference, keyed by ``(n_bits, granularity)`` with
        ``granularity`` one of :data:`GRANULARITIES`, e.g. ``(4, "per-channel")``.
    """

    float_accuracy: float
    accuracy: dict[tuple[int, str], float]


def integer_logits(
    codes_x: Any, zero_point_x: Any, scale_x: Any, codes_w: Any, scale_w: Any, bias: Any
) -> numpy.ndarray:
    """Logits of a linear layer computed on integer codes, with one float rescale per output.

    With ``q_x`` the input codes (zero point ``zp_x``, scale ``s_x``), ``q_w`` the symmetric
    weight codes (zero point 0, scale ``s_w`` per tensor or per output row) and ``b`` the
    float bias::

        acc    = (q_x - zp_x) @ q_w.T          # int64, exact (checked not to overflow)
        logits = acc * (s_x * s_w) + b         # float64, s_x * s_w computed once per output

    This equals ``(s_x * (q_x - zp_x)) @ (s_w * q_w).T + b``, the float layer on de-quantized
    values, up to float rounding.

    Parameters
    ----------
    codes_x : array_like of int, shape (n_samples, n_features)
        Input codes.
    zero_point_x : int
        The input quantizer's zero point (an integer scalar).
    scale_x : float
        The input quantizer's scale (a finite scalar).
    codes_w : array_like of int, shape (n_outputs, n_features)
        Weight codes of a symmetric quantizer (zero point 0).
    scale_w : float or array_like of float
        One scale, or one per output row: shape ``(n_outputs,)`` or ``(n_outputs, 1)`` as
        intquant's ``axis=0`` quantizers hold it.
    bias : array_like of float, shape (n_outputs,)
        The float bias.

    Returns
    -------
    numpy.ndarray of float64, shape (n_samples, n_outputs)

    Raises
    ------
    InvalidTypeError
        If the codes are not integers, or the zero point is not an integer scalar.
    InvalidValueError
        If the shapes do not fit together, a scale or the bias is not finite, or the integer
        sum could overflow int64.
    """
    q_x = _integer_matrix(codes_x, "codes_x")
    q_w = _integer_matrix(codes_w, "codes_w")
    if q_x.shape[1] != q_w.shape[1]:
        raise InvalidValueError(
            f"codes_x has {q_x.shape[1]} features per row but codes_w has {q_w.shape[1]} "
            f"(shapes {q_x.shape} and {q_w.shape}); codes_w must be (n_outputs, n_features)."
        )
    n_outputs = q_w.shape[0]
    zero_point = _integer_scalar(zero_point_x, "zero_point_x")
    s_x = _finite_float_array(scale_x, "scale_x")
    if s_x.size != 1:
        raise InvalidValueError(f"'scale_x' must be one number (per-tensor); got shape {s_x.shape}.")
    s_w = _finite_float_array(scale_w, "scale_w")
    if s_w.size not in (1, n_outputs):
        raise InvalidValueError(
            f"'scale_w' must be one number or one per output row ({n_outputs}); got shape {s_w.shape}."
        )
    b = _finite_float_array(bias, "bias")
    if b.shape != (n_outputs,):
        raise InvalidValueError(f"'bias' must have shape ({n_outputs},); got shape {b.shape}.")
    _check_no_overflow(q_x, zero_point, q_w)
    accumulator = (q_x - numpy.int64(zero_point)) @ q_w.T  # int64 throughout
    multiplier = s_x.reshape(()) * (s_w.reshape(()) if s_w.size == 1 else s_w.reshape(n_outputs))
    return accumulator.astype(numpy.float64) * multiplier + b


def run_demo(
    plot_path: pathlib.Path | None,
    *,
    bits: Sequence[int] = DEFAULT_BITS,
    show_progress: bool = False,
    write: Callable[[str], None] = print,
) -> DemoResult:
    """Train a digit classifier, run it integer-only at each bit width, report the accuracies.

    See the module docstring for the data, the model and the integer-only arithmetic.

    Parameters
    ----------
    plot_path : pathlib.Path or None
        Where to save a PNG of accuracy against bit width (one line per granularity, a
        horizontal line for the float model); written atomically (a temporary file in the same
        folder, then a rename). ``None`` draws nothing.
    bits : sequence of int
        Bit widths of both weights and inputs, each in [2, 24]; reported in increasing order,
        duplicates once.
    show_progress : bool
        Show a tqdm progress bar over the bit widths on stderr.
    write : callable
        Receives the report, one line per call (default: ``print``).

    Returns
    -------
    DemoResult
        The float model's test accuracy and the integer-only accuracy for every
        ``(n_bits, granularity)``.

    Raises
    ------
    IntquantError
        If scikit-learn (or, when needed, matplotlib or tqdm) is not installed.
    InvalidTypeError, InvalidValueError
        If ``bits`` is empty or holds anything but ints in [2, 24].
    OSError
        If the plot cannot be written (no partial file is left behind).
    """
    widths = _check_bits(bits)
    _require("sklearn", "scikit-learn")
    if plot_path is not None:
        _require("matplotlib", "matplotlib")
    if show_progress:
        _require("tqdm", "tqdm")

    x_train, x_test, y_train, y_test = _digits()
    weights, bias, float_accuracy = _train(x_train, y_train, x_test, y_test)
    accuracy: dict[tuple[int, str], float] = {}
    for n_bits in _progress(widths, show_progress):
        input_quantizer = QuantizedArray(n_bits, x_train).quantizer  # calibrated on training inputs
        codes_x = input_quantizer.quant(x_test)
        for granularity in GRANULARITIES:
            axis = 0 if granularity == "per-channel" else None  # one scale per class row, or one
            quantized_w = QuantizedArray(n_bits, weights, is_signed=True, is_symmetric=True, axis=axis)
            logits = integer_logits(
                codes_x,
                input_quantizer.zero_point,
                input_quantizer.scale,
                quantized_w.qvalues,
                quantized_w.quantizer.scale,
                bias,
            )
            accuracy[n_bits, granularity] = _accuracy(logits, y_test)

    result = DemoResult(float_accuracy=float_accuracy, accuracy=accuracy)
    for line in _report(result, widths, n_train=len(y_train), n_test=len(y_test)):
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
                f"weights need 2 bits or more, and beyond {MAX_DEMO_BITS} the integer sums of 64 "
                f"pixels no longer convert to float64 exactly."
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


def _digits() -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """The bundled digits, pixels scaled to [0, 1], split 75/25 (stratified, fixed seed)."""
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]
    from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]

    images, labels = load_digits(return_X_y=True)
    x = numpy.asarray(images, dtype=numpy.float64) / _PIXEL_MAX
    x_train, x_test, y_train, y_test = train_test_split(
        x, labels, test_size=_TEST_SIZE, random_state=_SEED, stratify=labels
    )
    return x_train, x_test, y_train, y_test


def _train(
    x_train: numpy.ndarray, y_train: numpy.ndarray, x_test: numpy.ndarray, y_test: numpy.ndarray
) -> tuple[numpy.ndarray, numpy.ndarray, float]:
    """Fit the float model; return its weights (classes x pixels), bias and test accuracy."""
    from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]

    # lbfgs fits a multinomial (softmax) model for more than two classes; it converges in
    # under 100 iterations here.
    model = LogisticRegression(max_iter=5000, random_state=_SEED).fit(x_train, y_train)
    weights = numpy.asarray(model.coef_, dtype=numpy.float64)
    bias = numpy.asarray(model.intercept_, dtype=numpy.float64)
    return weights, bias, _accuracy(x_test @ weights.T + bias, y_test)


def _accuracy(logits: numpy.ndarray, labels: numpy.ndarray) -> float:
    return float(numpy.mean(numpy.argmax(logits, axis=1) == labels))


def _progress(widths: list[int], show_progress: bool) -> Iterable[int]:
    if not show_progress:
        return widths
    from tqdm import tqdm  # type: ignore[import-untyped]

    return tqdm(widths, desc="intquant demo", unit="width", file=sys.stderr)


def _report(result: DemoResult, widths: list[int], *, n_train: int, n_test: int) -> list[str]:
    lines = [
        f"digits: {n_train} training and {n_test} test images of 8x8 pixels, scaled to [0, 1]; "
        f"multinomial logistic regression",
        f"float model (float64): test accuracy {result.float_accuracy:.4f}",
        _INTEGER_ONLY_NOTE,
        "weights: signed symmetric (zero point 0); inputs: unsigned, calibrated on the training set",
        "",
        f"{'bits':>4}  {GRANULARITIES[0]:>10}  {GRANULARITIES[1]:>11}",
    ]
    for n_bits in widths:
        tensor, channel = (result.accuracy[n_bits, granularity] for granularity in GRANULARITIES)
        lines.append(f"{n_bits:>4}  {tensor:>10.4f}  {channel:>11.4f}")
    return lines


def _save_plot(result: DemoResult, widths: list[int], path: pathlib.Path) -> None:
    """Draw accuracy against bit width and save it as PNG at ``path``, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2), layout="constrained")
    FigureCanvasAgg(figure)  # a canvas of our own: no pyplot, no global backend state
    axes = figure.add_subplot()
    for granularity, marker in zip(GRANULARITIES, ("o", "s"), strict=True):
        values = [result.accuracy[n_bits, granularity] for n_bits in widths]
        axes.plot(widths, values, marker=marker, label=f"integer-only, {granularity} weights")
    axes.axhline(
        result.float_accuracy,
        color="black",
        linestyle="--",
        label=f"float model ({result.float_accuracy:.3f})",
    )
    axes.set_xticks(widths)
    axes.set_xlabel("bits (weights and inputs)")
    axes.set_ylabel("test accuracy")
    axes.set_title("Digits, logistic regression: accuracy vs. bit width")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")

    folder = path.parent if str(path.parent) else pathlib.Path(".")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=folder)
    try:
        with os.fdopen(descriptor, "wb") as file:
            figure.savefig(file, format="png", dpi=100)
        os.replace(temporary, path)
    except BaseException:
        pathlib.Path(temporary).unlink(missing_ok=True)
        raise


def _integer_matrix(codes: Any, name: str) -> numpy.ndarray:
    array = numpy.asarray(codes)
    if array.dtype.kind not in "iu":
        raise InvalidTypeError(
            f"'{name}' must hold integer codes; got dtype {array.dtype} with shape {array.shape}. "
            f"Pass a quantizer's codes (quant(...) or QuantizedArray.qvalues)."
        )
    if array.ndim != 2:
        raise InvalidValueError(f"'{name}' must be a 2-D array of codes; got shape {array.shape}.")
    if array.dtype.kind == "u" and array.size and int(array.max()) > numpy.iinfo(numpy.int64).max:
        raise InvalidValueError(f"'{name}' holds codes beyond int64; got maximum {int(array.max())}.")
    return array.astype(numpy.int64, copy=False)


def _integer_scalar(value: Any, name: str) -> int:
    array = numpy.asarray(value)
    if array.dtype.kind not in "iu" or array.size != 1:
        raise InvalidTypeError(
            f"'{name}' must be one integer (a per-tensor zero point); got {value!r} "
            f"(dtype {array.dtype}, shape {array.shape})."
        )
    integer = int(array.reshape(()))
    if not numpy.iinfo(numpy.int64).min <= integer <= numpy.iinfo(numpy.int64).max:
        raise InvalidValueError(f"'{name}' must fit int64; got {integer}.")
    return integer


def _finite_float_array(value: Any, name: str) -> numpy.ndarray:
    array = numpy.asarray(value)
    if array.dtype.kind not in "iuf" or array.size == 0 or not numpy.all(numpy.isfinite(array)):
        raise InvalidValueError(
            f"'{name}' must be finite real numbers; got dtype {array.dtype} with shape {array.shape}."
        )
    return array.astype(numpy.float64, copy=False)


def _check_no_overflow(q_x: numpy.ndarray, zero_point: int, q_w: numpy.ndarray) -> None:
    """Refuse codes whose integer sums could leave int64 (bounds computed in Python ints)."""
    if q_x.size == 0 or q_w.size == 0:
        return
    largest_x = max(abs(int(q_x.max()) - zero_point), abs(int(q_x.min()) - zero_point))
    largest_w = max(abs(int(q_w.max())), abs(int(q_w.min())))
    bound = q_x.shape[1] * largest_x * largest_w
    if bound > numpy.iinfo(numpy.int64).max:
        raise InvalidValueError(
            f"the integer sums could reach {bound}, beyond int64; use fewer bits (codes up to "
            f"{largest_x} for inputs and {largest_w} for weights over {q_x.shape[1]} features)."
        )

"""The digits demo: integer-only inference, the report, the plot and the errors."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy
import pytest

from intquant import QuantizedArray
from intquant.demo import GRANULARITIES, DemoResult, integer_logits, run_demo
from intquant.errors import IntquantError, InvalidTypeError, InvalidValueError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _needs_demo_dependencies() -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoResult, list[str], Path]:
    """One run of the demo at 2, 4 and 8 bits, shared by the tests that read its output."""
    _needs_demo_dependencies()
    folder = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    result = run_demo(folder / "plot.png", bits=(2, 4, 8), write=lines.append)
    return result, lines, folder


# --- integer-only arithmetic -------------------------------------------------------------


def test_integer_logits_hand_computed() -> None:
    # q_x - zp_x = [[2, -1], [0, 1]]; acc = [[5, -3], [-1, 3]];
    # per-row multipliers s_x * s_w = [0.125, 1.0]; all values are exact binary fractions.
    codes_x = numpy.array([[3, 0], [1, 2]])
    codes_w = numpy.array([[2, -1], [0, 3]])
    bias = numpy.array([1.0, -1.0])
    per_channel = integer_logits(codes_x, 1, 0.5, codes_w, numpy.array([[0.25], [2.0]]), bias)
    numpy.testing.assert_array_equal(per_channel, [[1.625, -4.0], [0.875, 2.0]])
    assert per_channel.dtype == numpy.float64
    per_tensor = integer_logits(codes_x, 1, 0.5, codes_w, 0.25, bias)
    numpy.testing.assert_array_equal(per_tensor, [[1.625, -1.375], [0.875, -0.625]])


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("n_bits", [2, 3, 4, 8, 16, 24])
def test_integer_logits_equal_float_logits_on_dequantized_values(n_bits: int, granularity: str) -> None:
    rng = numpy.random.default_rng(n_bits)
    # Inputs away from zero give a non-zero input zero point, which the digits (in [0, 1]) do not.
    x_train = rng.normal(loc=0.7, scale=0.4, size=(200, 64))
    x_test = rng.normal(loc=0.7, scale=0.4, size=(50, 64))
    weights = rng.normal(size=(10, 64)) * rng.uniform(0.1, 3.0, size=(10, 1))
    bias = rng.normal(size=10)
    input_quantizer = QuantizedArray(n_bits, x_train).quantizer
    codes_x = input_quantizer.quant(x_test)
    axis = 0 if granularity == "per-channel" else None
    quantized_w = QuantizedArray(n_bits, weights, is_signed=True, is_symmetric=True, axis=axis)
    if n_bits >= 3:
        assert input_quantizer.zero_point != 0  # the zero point is really exercised
    numpy.testing.assert_array_equal(quantized_w.quantizer.zero_point, 0)

    logits = integer_logits(
        codes_x,
        input_quantizer.zero_point,
        input_quantizer.scale,
        quantized_w.qvalues,
        quantized_w.quantizer.scale,
        bias,
    )
    float_logits = input_quantizer.dequant(codes_x) @ quantized_w.dequant().T + bias
    assert logits.shape == (50, 10) and logits.dtype == numpy.float64
    numpy.testing.assert_allclose(logits, float_logits, rtol=1e-12, atol=1e-12)


def test_integer_logits_reject_float_codes_and_mismatched_shapes() -> None:
    codes = numpy.zeros((2, 3), dtype=numpy.int64)
    with pytest.raises(InvalidTypeError, match=r"'codes_x' must hold integer codes; got dtype float64"):
        integer_logits(codes.astype(float), 0, 1.0, codes, 1.0, numpy.zeros(2))
    with pytest.raises(InvalidValueError, match=r"codes_x has 3 features per row but codes_w has 4"):
        integer_logits(codes, 0, 1.0, numpy.zeros((2, 4), dtype=int), 1.0, numpy.zeros(2))
    with pytest.raises(InvalidValueError, match=r"'scale_w' must be one number or one per output row \(2\)"):
        integer_logits(codes, 0, 1.0, codes, numpy.ones(3), numpy.zeros(2))
    with pytest.raises(InvalidValueError, match=r"'bias' must have shape \(2,\); got shape \(3,\)"):
        integer_logits(codes, 0, 1.0, codes, 1.0, numpy.zeros(3))
    with pytest.raises(InvalidTypeError, match=r"'zero_point_x' must be one integer"):
        integer_logits(codes, 0.5, 1.0, codes, 1.0, numpy.zeros(2))
    with pytest.raises(InvalidValueError, match=r"'scale_x' must be finite real numbers"):
        integer_logits(codes, 0, numpy.nan, codes, 1.0, numpy.zeros(2))


def test_integer_logits_refuse_sums_beyond_int64() -> None:
    codes_x = numpy.full((1, 64), 2**32 - 1, dtype=numpy.int64)
    codes_w = numpy.full((1, 64), -(2**31), dtype=numpy.int64)
    with pytest.raises(InvalidValueError, match=r"beyond int64; use fewer bits"):
        integer_logits(codes_x, 0, 1.0, codes_w, 1.0, numpy.zeros(1))


# --- the demo ----------------------------------------------------------------------------


def test_demo_accuracies(demo_run: tuple[DemoResult, list[str], Path]) -> None:
    result, _, _ = demo_run
    assert result.float_accuracy > 0.9
    assert set(result.accuracy) == {(n, g) for n in (2, 4, 8) for g in GRANULARITIES}
    for granularity in GRANULARITIES:
        assert abs(result.accuracy[8, granularity] - result.float_accuracy) <= 0.02
        assert result.accuracy[8, granularity] >= result.accuracy[2, granularity]
    assert all(0.0 <= value <= 1.0 for value in result.accuracy.values())


def test_demo_accuracy_is_that_of_the_float_model_on_dequantized_values(
    demo_run: tuple[DemoResult, list[str], Path],
) -> None:
    from intquant.demo import _digits, _train

    result, _, _ = demo_run
    x_train, x_test, y_train, y_test = _digits()
    weights, bias, float_accuracy = _train(x_train, y_train, x_test, y_test)
    assert float_accuracy == result.float_accuracy
    for n_bits in (2, 4, 8):
        input_quantizer = QuantizedArray(n_bits, x_train).quantizer
        x_restored = input_quantizer.dequant(input_quantizer.quant(x_test))
        for granularity in GRANULARITIES:
            axis = 0 if granularity == "per-channel" else None
            w_restored = QuantizedArray(
                n_bits, weights, is_signed=True, is_symmetric=True, axis=axis
            ).dequant()
            predictions = numpy.argmax(x_restored @ w_restored.T + bias, axis=1)
            assert float(numpy.mean(predictions == y_test)) == result.accuracy[n_bits, granularity]


def test_demo_writes_the_table(demo_run: tuple[DemoResult, list[str], Path]) -> None:
    result, lines, folder = demo_run
    assert f"float model (float64): test accuracy {result.float_accuracy:.4f}" in lines
    assert any(line.startswith("integer-only: acc = (q_x - zp_x) @ q_w.T in int64") for line in lines)
    header = next(index for index, line in enumerate(lines) if line.split()[:1] == ["bits"])
    assert lines[header].split() == ["bits", "per-tensor", "per-channel"]
    rows = [line.split() for line in lines[header + 1 : header + 4]]
    expected = [
        [str(n), f"{result.accuracy[n, 'per-tensor']:.4f}", f"{result.accuracy[n, 'per-channel']:.4f}"]
        for n in (2, 4, 8)
    ]
    assert rows == expected
    assert lines[-1] == f"wrote the accuracy plot to {folder / 'plot.png'}"


def test_demo_saves_a_png_atomically(demo_run: tuple[DemoResult, list[str], Path]) -> None:
    _, _, folder = demo_run
    assert (folder / "plot.png").read_bytes()[:8] == PNG_SIGNATURE
    assert [path.name for path in folder.iterdir()] == ["plot.png"]  # no temporary file left


def test_a_failed_plot_write_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _needs_demo_dependencies()
    target = tmp_path / "plot.png"
    target.write_bytes(b"old")

    def fail(source: object, destination: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        run_demo(target, bits=(8,), write=lambda line: None)
    assert target.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["plot.png"]


@pytest.mark.parametrize("show_progress", [False, True])
def test_progress_bar_goes_to_stderr_only_when_asked(
    show_progress: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    _needs_demo_dependencies()
    result = run_demo(None, bits=(8,), show_progress=show_progress)  # write defaults to print
    captured = capsys.readouterr()
    assert f"   8      {result.accuracy[8, 'per-tensor']:.4f}" in captured.out
    assert "wrote the accuracy plot" not in captured.out
    if show_progress:
        assert "intquant demo" in captured.err and "1/1" in captured.err
    else:
        assert captured.err == ""


def test_result_is_frozen() -> None:
    result = DemoResult(float_accuracy=0.5, accuracy={(2, "per-tensor"): 0.25})
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.float_accuracy = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("bits", "error", "message"),
    [
        ((), InvalidValueError, r"'bits' is empty"),
        ((1, 8), InvalidValueError, r"each bit width must be an int in \[2, 24\]; got 1\."),
        ((25,), InvalidValueError, r"each bit width must be an int in \[2, 24\]; got 25\."),
        ((True,), InvalidTypeError, r"got True of type bool"),
        ((4.0,), InvalidTypeError, r"got 4\.0 of type float"),
        ("8", InvalidTypeError, r"'bits' must be a sequence of ints"),
    ],
)
def test_bad_bits_are_refused_before_any_work(bits: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        run_demo(None, bits=bits, write=lambda line: None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("module", "plot"), [("sklearn", False), ("matplotlib", True), ("tqdm", False)])
def test_a_missing_dependency_says_how_to_install_it(
    module: str, plot: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(IntquantError, match=r'pip install "intquant\[demo\]"'):
        run_demo(tmp_path / "plot.png" if plot else None, bits=(8,), show_progress=module == "tqdm")
    assert list(tmp_path.iterdir()) == []

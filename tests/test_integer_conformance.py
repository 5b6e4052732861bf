"""Integer-network conformance: every backend gives the numpy executors' codes, bit for bit.

The reference is ``network.intermediates(codes)`` with the compiled loops off (the plans' numpy
executors). The same networks (linear and convolution layers, every requantization mode and
rounding, 4 to 12 bits, per-tensor and per-channel weights, the accumulator constraint) go
through each backend: the compiled layer call (numba), a JSON round trip, torch
(``IntegerNetworkModule``) and the ONNX export run by onnxruntime. Each backend's output codes,
and where it exposes them its codes after every element, must equal the reference's (int64,
same shape).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy
import pytest

import intquant
from intquant._numba import dispatch
from intquant.integer import (
    Conv2d,
    DropLowBits,
    FixedPoint,
    Flatten,
    FloatRescale,
    IntegerNetwork,
    Linear,
    PowerOfTwo,
    ReLU,
)
from tests.test_conformance import assert_same


@dataclass(frozen=True)
class NetworkCase:
    id: str
    build: Callable[[], tuple[IntegerNetwork, numpy.ndarray]]


def _mlp(seed: int, **options: Any) -> tuple[IntegerNetwork, numpy.ndarray]:
    rng = numpy.random.default_rng(seed)
    model = [
        Linear(rng.normal(size=(12, 9)) / 3, rng.normal(size=12) / 10),
        ReLU(),
        Linear(rng.normal(size=(5, 12)) / 3, rng.normal(size=5) / 10),
    ]
    x = rng.normal(0.5, 1.0, size=(40, 9))
    network = IntegerNetwork.from_float(model, x, **options)
    return network, network.quantize_input(rng.normal(0.5, 1.5, size=(17, 9)))


def _cnn(seed: int, **options: Any) -> tuple[IntegerNetwork, numpy.ndarray]:
    rng = numpy.random.default_rng(seed)
    model = [
        Conv2d(rng.normal(size=(4, 2, 3, 3)) / 3, rng.normal(size=4) / 10, stride=(2, 1), padding=(1, 2)),
        ReLU(),
        Conv2d(rng.normal(size=(3, 4, 2, 2)) / 3, stride=1, padding=0),
        ReLU(),
        Flatten(),
        Linear(rng.normal(size=(4, 3 * 3 * 6)) / 5, rng.normal(size=4) / 10),
    ]
    x = rng.normal(0.2, 1.0, size=(12, 2, 7, 5))
    network = IntegerNetwork.from_float(model, x, **options)
    return network, network.quantize_input(rng.normal(0.2, 1.3, size=(5, 2, 7, 5)))


MODES = {
    "float": FloatRescale(),
    "fixed-even": FixedPoint(),
    "fixed-away": FixedPoint(20, "half_away"),
    "power-of-two": PowerOfTwo(),
    "power-of-two-away": PowerOfTwo("half_away"),
    "drop-3": DropLowBits(bits=3),
    "drop-to-10": DropLowBits(target_bits=10),
}

CASES = [
    NetworkCase(
        f"{kind}-{mode}-{bits}bit", functools.partial(build, seed, bits=bits, requantization=MODES[mode])
    )
    for seed, (kind, build) in enumerate((("mlp", _mlp), ("cnn", _cnn)))
    for mode in MODES
    for bits in (4, 8)
] + [
    NetworkCase("mlp-12bit-per-tensor", functools.partial(_mlp, 5, bits=12, per_channel=False)),
    NetworkCase("cnn-12bit", functools.partial(_cnn, 6, bits=12, requantization=FixedPoint())),
    NetworkCase("mlp-constrained-14", functools.partial(_mlp, 7, bits=8, accumulator_bits=14)),
    NetworkCase(
        "cnn-constrained-12",
        functools.partial(_cnn, 8, bits=6, accumulator_bits=12, requantization=PowerOfTwo()),
    ),
    NetworkCase(
        "mlp-mixed-bits", functools.partial(_mlp, 9, weight_bits=4, activation_bits=8, output_bits=16)
    ),
]
CASE_IDS = [case.id for case in CASES]


@functools.cache
def _case(index: int) -> tuple[IntegerNetwork, numpy.ndarray, list[numpy.ndarray]]:
    """The network, its input codes and the reference: every element's codes, plain numpy."""
    network, codes = CASES[index].build()
    saved = dispatch.disabled
    dispatch.disabled = True
    try:
        reference = network.intermediates(codes)
    finally:
        dispatch.disabled = saved
    return network, codes, reference


def _compiled(network: IntegerNetwork, codes: numpy.ndarray) -> list[numpy.ndarray]:
    pytest.importorskip("numba", reason="the compiled layer call needs numba (intquant[fast])")
    saved = (dispatch.disabled, dispatch.MIN_SIZE)
    dispatch.disabled, dispatch.MIN_SIZE = False, 1
    try:
        return network.intermediates(codes)
    finally:
        dispatch.disabled, dispatch.MIN_SIZE = saved


def _json(network: IntegerNetwork, codes: numpy.ndarray) -> list[numpy.ndarray]:
    loaded = intquant.loads(intquant.dumps(network))
    assert isinstance(loaded, IntegerNetwork)
    return loaded.intermediates(codes)


def _torch(network: IntegerNetwork, codes: numpy.ndarray) -> list[numpy.ndarray]:
    torch = pytest.importorskip("torch", reason="the torch backend needs torch (intquant[torch])")
    from intquant.torch import IntegerNetworkModule

    module = IntegerNetworkModule(network)
    steps = module.intermediates(torch.from_numpy(codes))
    return [step.numpy() for step in steps]


def _onnx(network: IntegerNetwork, codes: numpy.ndarray) -> list[numpy.ndarray]:
    onnxruntime = pytest.importorskip(
        "onnxruntime", reason="the ONNX backend needs onnxruntime (intquant[onnx])"
    )
    from intquant.onnx import integer_network_to_onnx

    model = integer_network_to_onnx(network)
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [session.run(None, {"x": codes})[0]]  # the output codes only


BACKENDS = {"compiled": _compiled, "json": _json, "torch": _torch, "onnxruntime": _onnx}


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("index", range(len(CASES)), ids=CASE_IDS)
def test_backend_gives_the_reference_codes(index: int, backend: str) -> None:
    network, codes, reference = _case(index)
    steps = BACKENDS[backend](network, codes)
    expected = reference if len(steps) == len(reference) else reference[-1:]
    for step, wanted in zip(steps, expected, strict=True):
        assert_same(step, wanted)


def test_the_cases_reach_every_formula_rounding_and_product_dtype() -> None:
    """The cases are not all alike: every formula, rounding and product dtype occurs."""
    plans = [layer for index in range(len(CASES)) for layer in _case(index)[0].layers]
    seen = {
        (layer.requant_plan.formula, layer.requant_plan.rounding) for layer in plans if layer.requant_plan
    }
    assert {("integer", "half_even"), ("integer", "half_away"), ("float", "half_up")} <= seen
    assert {layer.accumulator_plan.product_dtype for layer in plans} >= {"float32", "float64"}
    assert any(
        layer.accumulator_plan.kind == "conv2d" and any(layer.accumulator_plan.padding) for layer in plans
    )

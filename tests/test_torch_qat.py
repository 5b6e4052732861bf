"""intquant.torch as users train: a QAT run on scikit-learn's digits, and ``torch.compile``.

The compiled tests use the ``aot_eager`` backend (dynamo's graph, AOTAutograd's forward and
backward, run by torch's eager kernels): it checks what intquant controls (one graph, no break;
the same values and gradients) in seconds. Inductor generates and compiles C++, which takes about
a minute on a small machine; ``INTQUANT_TEST_INDUCTOR=1`` runs that test too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy
import pytest

torch = pytest.importorskip("torch")
datasets = pytest.importorskip("sklearn.datasets")

import torch.nn.functional as F  # noqa: E402, N812

import intquant  # noqa: E402
from intquant.torch import FakeQuantize, disable_observer, fake_quant  # noqa: E402

#: QAT at 8 bits may lose at most this much test accuracy against the float model.
ACCURACY_TOLERANCE = 0.02

#: Warnings torch itself raises while dynamo traces (tests turn warnings into errors).
TORCH_TRACING_WARNINGS = (
    "ignore:.*should not be instantiated.*:DeprecationWarning",
    "ignore:The .grad attribute of a Tensor that is not a leaf Tensor is being accessed:UserWarning",
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning",  # inductor's own imports
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny tensors: torch's thread pool only costs time, a lot of it on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class MLP(torch.nn.Module):
    """64 -> 32 -> 10 with ReLU; with ``quantized``, fake quantization at 8 bits of the input
    and hidden activations (asymmetric, per tensor) and of the weights (symmetric, per output
    channel)."""

    def __init__(self, quantized: bool) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(64, 32)
        self.output = torch.nn.Linear(32, 10)

        def activation() -> torch.nn.Module:
            return FakeQuantize(8) if quantized else torch.nn.Identity()

        def weight() -> torch.nn.Module:
            return (
                FakeQuantize(8, is_signed=True, is_symmetric=True, axis=0)
                if quantized
                else torch.nn.Identity()
            )

        self.quantize_input, self.quantize_hidden = activation(), activation()
        self.quantize_w1, self.quantize_w2 = weight(), weight()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        weight1, weight2 = self.quantize_w1(self.hidden.weight), self.quantize_w2(self.output.weight)
        hidden = F.relu(F.linear(self.quantize_input(inputs), weight1, self.hidden.bias))
        return F.linear(self.quantize_hidden(hidden), weight2, self.output.bias)


def _digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Train and test features (standardized on the train split) and labels: 1437 and 360."""
    data = datasets.load_digits()
    order = numpy.random.default_rng(0).permutation(len(data.target))
    train, test = order[:1437], order[1437:]
    mean, std = data.data[train].mean(axis=0), data.data[train].std(axis=0) + 1e-6

    def features(rows: numpy.ndarray) -> torch.Tensor:
        return torch.tensor((data.data[rows] - mean) / std, dtype=torch.float32)

    labels = torch.tensor(data.target, dtype=torch.int64)
    return features(train), labels[train], features(test), labels[test]


def _train(
    model: Callable[[torch.Tensor], torch.Tensor], parameters: list[torch.Tensor], epochs: int
) -> None:
    features, labels, _, _ = _digits()
    optimizer = torch.optim.SGD(parameters, lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        for batch in torch.randperm(len(labels), generator=generator).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(features[batch]), labels[batch]).backward()
            optimizer.step()


def _accuracy(model: torch.nn.Module) -> float:
    _, _, features, labels = _digits()
    with torch.no_grad():
        return float((model(features).argmax(dim=1) == labels).float().mean())


def test_qat_on_digits_keeps_the_accuracy_and_exports_exact_quantizers() -> None:
    torch.manual_seed(0)
    float_model = MLP(quantized=False)
    torch.manual_seed(0)
    quantized_model = MLP(quantized=True)
    assert torch.equal(float_model.hidden.weight, quantized_model.hidden.weight)  # same start
    _train(float_model, list(float_model.parameters()), epochs=6)
    _train(quantized_model, list(quantized_model.parameters()), epochs=6)
    quantized_model.apply(disable_observer)  # evaluate with the trained quantizers
    float_accuracy, quantized_accuracy = _accuracy(float_model), _accuracy(quantized_model)
    assert float_accuracy > 0.93
    assert quantized_accuracy >= float_accuracy - ACCURACY_TOLERANCE, (float_accuracy, quantized_accuracy)

    # What each quantizer saw on the test set: the tensors it fake-quantizes.
    seen: dict[str, torch.Tensor] = {}
    quantizers = {
        name: module for name, module in quantized_model.named_modules() if isinstance(module, FakeQuantize)
    }
    assert len(quantizers) == 4
    handles = [
        module.register_forward_hook(
            lambda module, inputs, output, name=name: seen.setdefault(name, inputs[0])
        )
        for name, module in quantizers.items()
    ]
    _accuracy(quantized_model)
    for handle in handles:
        handle.remove()
    for name, module in quantizers.items():
        exported = intquant.loads(intquant.dumps(module.to_quantizer()))  # through intquant's text too
        values = seen[name].detach()
        codes = exported.quant(values.numpy())
        assert numpy.array_equal(module.quant(values).numpy(), codes), name
        assert module.quant(values).unique().numel() > 16, name  # the codes use the range
        restored = exported.dequant(codes).astype(numpy.float32)
        assert module(values).numpy().tobytes() == restored.tobytes(), name
        assert exported.n_bits == 8 and exported.axis == (0 if name.startswith("quantize_w") else None)


def _same_state(first: torch.nn.Module, second: torch.nn.Module) -> None:
    for (name, mine), (_, theirs) in zip(
        first.state_dict().items(), second.state_dict().items(), strict=True
    ):
        if isinstance(mine, torch.Tensor):
            assert torch.equal(mine, theirs), name
        else:
            assert mine == theirs, name


@pytest.mark.filterwarnings(*TORCH_TRACING_WARNINGS)
def test_compiled_training_matches_eager_in_one_graph() -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = MLP(quantized=True)
    compiled_model = MLP(quantized=True)
    compiled_model.load_state_dict(eager.state_dict())
    features, labels, _, _ = _digits()
    batches = [features[:64], features[64:128], features[128:192]]
    # One eager step each first: the per-channel buffers take their shapes, the statistics
    # their dtype (a compiled first call works too, at the cost of one more compilation).
    for model in (eager, compiled_model):
        F.cross_entropy(model(batches[0]), labels[:64]).backward()
    compiled = torch.compile(compiled_model, backend="aot_eager", fullgraph=True)
    for index, batch in enumerate(batches[1:], start=1):
        target = labels[64 * index : 64 * (index + 1)]
        eager_loss = F.cross_entropy(eager(batch), target)
        compiled_loss = F.cross_entropy(compiled(batch), target)
        eager_loss.backward()
        compiled_loss.backward()
        assert torch.equal(eager_loss, compiled_loss)
        for (name, mine), (_, theirs) in zip(
            eager.named_parameters(), compiled_model.named_parameters(), strict=True
        ):
            assert mine.grad is not None and theirs.grad is not None
            assert torch.equal(mine.grad, theirs.grad), name
        _same_state(eager, compiled_model)
    # On the CPU, the compiled graph refuses NaN too (torch's assertion: a RuntimeError).
    with pytest.raises(RuntimeError, match="cannot observe values containing NaN or an infinity"):
        compiled(torch.full((4, 64), float("nan")))


@pytest.mark.filterwarnings(*TORCH_TRACING_WARNINGS)
def test_compiled_fake_quant_has_one_graph_break_and_sees_new_parameters() -> None:
    torch._dynamo.reset()
    quantizer = intquant.QuantizedArray(6, numpy.linspace(-2.0, 3.0, 50), is_signed=True).quantizer

    def step(values: torch.Tensor) -> torch.Tensor:
        return fake_quant(values * 2.0, quantizer) + 1.0

    values = torch.linspace(-3.0, 4.0, 33, requires_grad=True)
    explanation = torch._dynamo.explain(step)(values)
    # The one break is the quantizer's read on the host (dynamo counts it in the caller's frame
    # and in fake_quant's: at most 2).
    assert 1 <= explanation.graph_break_count <= 2
    assert all("_fake_quant_parameters" in str(reason.reason) for reason in explanation.break_reasons)
    torch._dynamo.reset()
    compiled = torch.compile(step, backend="aot_eager")
    results = []
    for _ in range(2):
        result = compiled(values)
        assert torch.equal(result, step(values))
        (gradient,) = torch.autograd.grad(result.sum(), values)
        (expected,) = torch.autograd.grad(step(values).sum(), values)
        assert torch.equal(gradient, expected) and 0 < int(gradient.count_nonzero()) < 33
        results.append(result.detach())
        quantizer.scale = quantizer.scale * 1.5  # a new scale: no stale parameters
    assert not torch.equal(results[0], results[1])


@pytest.mark.skipif(
    os.environ.get("INTQUANT_TEST_INDUCTOR") != "1",
    reason="inductor compiles C++ (about a minute here); set INTQUANT_TEST_INDUCTOR=1 to run it",
)
@pytest.mark.filterwarnings(*TORCH_TRACING_WARNINGS)
def test_inductor_compiled_module_matches_eager() -> None:
    torch._dynamo.reset()
    for axis in (None, 0):
        eager = FakeQuantize(8, is_signed=True, axis=axis)
        compiled_module = FakeQuantize(8, is_signed=True, axis=axis)
        compiled = torch.compile(compiled_module, fullgraph=True)
        for scale in (1.0, 3.0, 0.5):
            values = torch.linspace(-2.0, 5.0, 48).reshape(6, 8) * scale
            first, second = values.clone().requires_grad_(True), values.clone().requires_grad_(True)
            eager_result, compiled_result = eager(first), compiled(second)
            assert torch.equal(eager_result, compiled_result)
            eager_result.sum().backward()
            compiled_result.sum().backward()
            assert torch.equal(first.grad, second.grad)
            _same_state(eager, compiled_module)

"""Quantization-aware training step time: intquant's FakeQuantize against torch.ao's.

One process trains the same small MLP on scikit-learn's digits (64 inputs, 64 hidden units, 10
classes; batches of 64) with fake quantization on its input, hidden activations (8-bit
asymmetric, per tensor) and weights (8-bit symmetric, per output channel), each quantizer
observing every step (min/max of all batches seen), and times one training step (forward, loss,
backward, SGD update) of each variant:

* ``float``: no quantization (the baseline);
* ``intquant``: :class:`intquant.torch.FakeQuantize` (statistics and parameters by torch on the
  tensor's device, intquant's codes);
* ``torch.ao``: ``torch.ao.quantization.FakeQuantize`` with ``MinMaxObserver`` /
  ``PerChannelMinMaxObserver`` (the same ranges and code ranges);
* ``QuantizedArray`` (reference, the path before ``FakeQuantize``): each step, each tensor
  recalibrated with ``intquant.QuantizedArray`` on a numpy copy and fake-quantized with
  :func:`intquant.torch.fake_quant`;
* ``intquant compiled`` / ``torch.ao compiled`` (``--compile``): the training step's model
  under ``torch.compile`` (inductor; compiling takes a minute or more on a small machine).

The variants run interleaved (every round times ``--steps`` steps of each, in rotating order);
the table gives the median and the best step time in milliseconds over the rounds, and the
median relative to float. Threads: 1 (``torch.set_num_threads``). Usage:
``python benchmarks/torch_qat.py [--quick] [--rounds N] [--steps N] [--compile]``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import numpy
import torch
import torch.nn.functional as F  # noqa: N812
from sklearn.datasets import load_digits

import intquant
from intquant.torch import FakeQuantize, fake_quant

Factory = Callable[[], torch.nn.Module]


class MLP(torch.nn.Module):
    """64 -> 64 -> 10 with ReLU; ``activation()`` and ``weight()`` make the quantizers."""

    def __init__(self, activation: Factory, weight: Factory) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(64, 64)
        self.output = torch.nn.Linear(64, 10)
        self.quantize_input, self.quantize_hidden = activation(), activation()
        self.quantize_w1, self.quantize_w2 = weight(), weight()

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        hidden = F.relu(
            F.linear(self.quantize_input(inputs), self.quantize_w1(self.hidden.weight), self.hidden.bias)
        )
        return F.linear(self.quantize_hidden(hidden), self.quantize_w2(self.output.weight), self.output.bias)


class Recalibrated(torch.nn.Module):
    """The path before FakeQuantize: a QuantizedArray on a numpy copy every step, then fake_quant."""

    def __init__(self, **options: object) -> None:
        super().__init__()
        self.options = options

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        quantizer = intquant.QuantizedArray(8, values.detach().numpy(), **self.options).quantizer
        return fake_quant(values, quantizer)


def _torch_ao_activation() -> torch.nn.Module:
    from torch.ao.quantization import FakeQuantize as TorchFakeQuantize
    from torch.ao.quantization import MinMaxObserver

    return TorchFakeQuantize(observer=MinMaxObserver, quant_min=0, quant_max=255, dtype=torch.quint8)


def _torch_ao_weight() -> torch.nn.Module:
    from torch.ao.quantization import FakeQuantize as TorchFakeQuantize
    from torch.ao.quantization import PerChannelMinMaxObserver

    return TorchFakeQuantize(
        observer=PerChannelMinMaxObserver,
        quant_min=-128,
        quant_max=127,
        dtype=torch.qint8,
        qscheme=torch.per_channel_symmetric,
        ch_axis=0,
    )


VARIANTS: dict[str, tuple[Factory, Factory]] = {
    "float": (torch.nn.Identity, torch.nn.Identity),
    "intquant": (lambda: FakeQuantize(8), lambda: FakeQuantize(8, is_signed=True, is_symmetric=True, axis=0)),
    "torch.ao": (_torch_ao_activation, _torch_ao_weight),
    "QuantizedArray": (
        lambda: Recalibrated(),
        lambda: Recalibrated(is_signed=True, is_symmetric=True, axis=0),
    ),
}


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The digits as standardized float32 features and int64 labels."""
    data = load_digits()
    features = (data.data - data.data.mean(axis=0)) / (data.data.std(axis=0) + 1e-6)
    return torch.tensor(features, dtype=torch.float32), torch.tensor(data.target, dtype=torch.int64)


class Trainer:
    """One variant: its model, optimizer and step function, and a stream of batches."""

    def __init__(self, name: str, factories: tuple[Factory, Factory], compiled: bool, seed: int) -> None:
        torch.manual_seed(seed)
        self.name = name
        self.model = MLP(*factories)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9)
        self.forward: Callable[[torch.Tensor], torch.Tensor] = (
            torch.compile(self.model) if compiled else self.model  # type: ignore[assignment]
        )
        self.features, self.labels = digits()
        self.generator = torch.Generator().manual_seed(seed)

    def steps(self, count: int) -> list[float]:
        """Run ``count`` training steps; their times in seconds."""
        times = []
        for _ in range(count):
            batch = torch.randint(0, len(self.labels), (64,), generator=self.generator)
            inputs, labels = self.features[batch], self.labels[batch]
            start = time.perf_counter()
            self.optimizer.zero_grad()
            loss = F.cross_entropy(self.forward(inputs), labels)
            loss.backward()
            self.optimizer.step()
            times.append(time.perf_counter() - start)
        return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 rounds of 10 steps (a few seconds)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 10; 3 with --quick)")
    parser.add_argument(
        "--steps", type=int, default=None, help="steps per round (default 30; 10 with --quick)"
    )
    parser.add_argument("--compile", action="store_true", help="also time both modules under torch.compile")
    arguments = parser.parse_args()
    rounds = arguments.rounds or (3 if arguments.quick else 10)
    steps = arguments.steps or (10 if arguments.quick else 30)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", module="torch.ao")  # its deprecation notices
    trainers = [Trainer(name, factories, False, seed=0) for name, factories in VARIANTS.items()]
    if arguments.compile:
        trainers += [
            Trainer(f"{name} compiled", VARIANTS[name], True, seed=0) for name in ("intquant", "torch.ao")
        ]
    for trainer in trainers:  # warm up (and compile)
        trainer.steps(5)
    times: dict[str, list[float]] = {trainer.name: [] for trainer in trainers}
    for round_index in range(rounds):
        order = trainers[round_index % len(trainers) :] + trainers[: round_index % len(trainers)]
        for trainer in order:
            times[trainer.name] += trainer.steps(steps)
    baseline = statistics.median(times["float"])
    print(
        f"QAT training step, digits MLP 64-64-10, batch 64, {rounds} rounds x {steps} steps, 1 thread; "
        f"torch {torch.__version__}, numpy {numpy.__version__}, {platform.machine()}"
    )
    print(f"{'variant':<26} {'median ms':>10} {'best ms':>9} {'x float':>8}")
    for name, measured in times.items():
        median = statistics.median(measured)
        print(f"{name:<26} {median * 1e3:>10.3f} {min(measured) * 1e3:>9.3f} {median / baseline:>8.2f}")


if __name__ == "__main__":
    main()

"""PyTorch through intquant: exact codes on tensors, and quantization-aware training modules.

* :class:`TorchUniformQuantizer` and :func:`fake_quant` (:mod:`intquant.torch.quantizer`):
  an :class:`intquant.UniformQuantizer`'s codes computed by torch on the tensor's device, bit for
  bit those of its numpy ``quant``; quantize-then-dequantize with a straight-through gradient.
* :class:`FakeQuantize` (:mod:`intquant.torch.fake_quantize`) and :class:`MinMaxObserver`
  (:mod:`intquant.torch.observer`): ``torch.nn.Module`` s that observe tensors in a training loop
  and fake-quantize them, statistics and parameters computed by torch on the device (no copy to
  the host, ``torch.compile(fullgraph=True)``), exact with intquant's calibration; their state
  exports to a ``UniformQuantizer``. ``enable_observer`` and the three other switches work with
  ``model.apply``, as ``torch.ao.quantization``'s.
* :class:`IntegerNetworkModule` and :func:`run_integer_network` (:mod:`intquant.torch.integer`):
  an :class:`intquant.integer.IntegerNetwork`'s integers computed by torch, bit for bit
  ``network.run``.
* :mod:`intquant.torch.kernels`: the torch operations both are made of.

This package needs PyTorch (``pip install "intquant[torch]"``); ``import intquant`` never imports
it. See ``docs/torch.md`` for a tutorial.
"""

from __future__ import annotations

from intquant.errors import MissingDependencyError

#: Raised when PyTorch is not installed (``pip install "intquant[torch]"``).
TorchUnavailableError = MissingDependencyError

try:
    import torch  # noqa: F401  # checked here, before the modules that need it
except ModuleNotFoundError as error:
    if error.name != "torch":  # torch is there but broken: its own error says more
        raise
    raise TorchUnavailableError(
        "intquant.torch needs PyTorch, which is not installed. Install it with pip install "
        '"intquant[torch]", or pick the build for your platform at https://pytorch.org.'
    ) from error

from intquant.torch.fake_quantize import (  # noqa: E402
    FakeQuantize,
    disable_fake_quant,
    disable_observer,
    enable_fake_quant,
    enable_observer,
)
from intquant.torch.integer import (  # noqa: E402
    IntegerFlattenModule,
    IntegerLayerModule,
    IntegerNetworkModule,
    IntegerReLUModule,
    float32_is_exact,
    integer_module,
    round_shift,
    run_integer_network,
)
from intquant.torch.observer import MinMaxObserver  # noqa: E402
from intquant.torch.quantizer import TorchUniformQuantizer, fake_quant  # noqa: E402

__all__ = [
    "TorchUnavailableError",
    "TorchUniformQuantizer",
    "fake_quant",
    "FakeQuantize",
    "MinMaxObserver",
    "enable_observer",
    "disable_observer",
    "enable_fake_quant",
    "disable_fake_quant",
    "IntegerNetworkModule",
    "IntegerLayerModule",
    "IntegerReLUModule",
    "IntegerFlattenModule",
    "integer_module",
    "run_integer_network",
    "round_shift",
    "float32_is_exact",
]

"""The base of intquant's torch modules: quantization state whose dtypes never change, sized
by the first tensor it sees.

* Statistics and scales are float64 and zero points int64 because intquant's formulas need them
  exactly. ``model.half()``, ``model.double()`` or ``model.to(torch.bfloat16)`` convert every
  floating buffer of a model; a float16 scale would give other codes than intquant's. Modules
  built on :class:`QuantizationState` follow device moves (``.to(device)``, ``.cuda()``) but
  keep their buffers' dtypes.
* Per-channel buffers are sized by the first tensor a module is called with, as a lazy module's
  (``torch.nn.LazyLinear``) parameters: ``torch.nn.modules.lazy.LazyModuleMixin`` calls
  ``initialize_parameters(values)`` once before the first call, also while ``torch.compile``
  traces, so the traced graph sees buffers of their final shape. Loading a ``state_dict`` sizes
  them too.
* Each module keeps a few Python values (the statistics' dtype, the switches) as attributes,
  which ``torch.compile`` specializes on, and writes them through to an int64 ``state`` buffer
  (its format version first), which ``state_dict`` saves like any buffer (``torch.jit.trace``
  and the TorchScript ONNX exporter take tensors only; ``get_extra_state`` would break them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.nn.modules.lazy import LazyModuleMixin

from intquant.errors import InvalidValueError

__all__ = ["QuantizationState"]

#: The format of the ``state`` buffer: its first value.
STATE_FORMAT = 1


class QuantizationState(LazyModuleMixin, torch.nn.Module):
    """A module whose buffers keep their dtypes when the model is cast (devices still move),
    sized by the first call (:meth:`initialize_parameters`), with its Python values kept in the
    ``state`` buffer."""

    state: torch.Tensor

    def initialize_parameters(self, *args: Any, **kwargs: Any) -> None:
        """Size the buffers for the first call's arguments (nothing to do by default)."""

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> QuantizationState:
        originals = {name: buffer for name, buffer in self._buffers.items() if buffer is not None}
        super()._apply(fn, recurse)  # type: ignore[no-untyped-call]
        for name, original in originals.items():
            moved = self._buffers[name]
            if moved is not None and moved.dtype != original.dtype:  # cast: move the original instead
                self._buffers[name] = original.to(moved.device)
        return self

    # -- the Python values, written through to the ``state`` buffer

    def state_values(self) -> list[int]:
        """The Python values to keep in the ``state`` buffer, as ints (after the format)."""
        return []

    def take_state_values(self, values: list[int]) -> None:
        """Set the Python values from the ``state`` buffer's ints (after the format).

        Raises
        ------
        InvalidValueError
            If they do not describe a state of this module.
        """

    def register_state(self) -> None:
        """Register the ``state`` buffer (at the end of ``__init__``)."""
        self.register_buffer("state", torch.tensor([STATE_FORMAT, *self.state_values()], dtype=torch.int64))

    def write_state(self) -> None:
        """Write the Python values to the ``state`` buffer (after they changed)."""
        if "state" in self._buffers:  # (not while __init__ sets the values)
            with torch.no_grad():
                self.state.copy_(torch.tensor([STATE_FORMAT, *self.state_values()], dtype=torch.int64))

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        values = self.state.tolist()
        size = len(self.state_values()) + 1
        if len(values) != size or values[0] != STATE_FORMAT:
            raise InvalidValueError(
                f"the {type(self).__name__} state (at {prefix}state) must be {size} ints, format "
                f"{STATE_FORMAT} first; got {values}. Save it with this version of intquant."
            )
        self.take_state_values(values[1:])

"""Argument checks of the torch modules, and the one check made on the device: :func:`require`.

Shapes, dtypes and devices are known without reading a tensor's values (also while
``torch.compile`` traces), so they are checked in Python with intquant's errors. Conditions on
values (a NaN among the observed values, parameters that would not be finite) are checked by
:func:`require`, on CPU tensors only, where reading one flag back costs no synchronization:
eagerly it raises :class:`~intquant.errors.InvalidValueError`; in a compiled graph it becomes
``torch._assert_async``, which raises ``RuntimeError`` with the same message when the graph runs.
On other devices nothing is read back (a training step never waits for the device): NaN then
flows into the statistics, parameters and outputs, where the loss shows it, and
``FakeQuantize.to_quantizer`` refuses it.
"""

from __future__ import annotations

from typing import Any

import torch

from intquant.errors import InvalidTypeError, InvalidValueError

__all__ = ["FLOAT_DTYPES", "check_values", "compiling", "normalized_axis", "require"]

#: The dtypes the modules observe and fake-quantize: the float dtypes numpy has.
FLOAT_DTYPES = (torch.float16, torch.float32, torch.float64)


def compiling() -> bool:
    """Whether ``torch.compile`` is tracing the caller."""
    return bool(torch.compiler.is_compiling())


def check_values(values: Any, what: str) -> torch.Tensor:
    """``values`` after checking it is a dense float16/32/64 tensor holding values.

    Raises
    ------
    InvalidTypeError
        For anything else (the message names what arrived and how to convert it).
    """
    if not isinstance(values, torch.Tensor):
        raise InvalidTypeError(
            f"{what} must be a torch.Tensor; got {type(values).__name__}. Convert them with "
            f"torch.as_tensor(values), or use intquant.UniformQuantizer for numpy arrays."
        )
    if values.is_nested or values.layout != torch.strided:
        kind = "a nested" if values.is_nested else f"a {values.layout} (sparse)"
        raise InvalidTypeError(
            f"{what} must be a dense (strided) tensor; got {kind} tensor. Convert it first, e.g. "
            f"with tensor.to_dense()."
        )
    if values.dtype not in FLOAT_DTYPES:
        raise InvalidTypeError(
            f"{what} must be a float16, float32 or float64 tensor (a dtype numpy has, so that "
            f"intquant defines the result); got {values.dtype} with shape {tuple(values.shape)}. "
            f"Convert it first, e.g. with tensor.float()."
        )
    if values.device.type == "meta":
        raise InvalidTypeError(
            f"{what} are a tensor on the 'meta' device, which holds no values (shape "
            f"{tuple(values.shape)}); materialize it on a real device first."
        )
    return values


def normalized_axis(axis: int, values: torch.Tensor, what: str) -> int:
    """``axis`` as an index in ``[0, values.dim())``.

    Raises
    ------
    InvalidValueError
        If ``values`` has no such axis.
    """
    rank = values.dim()
    if not -rank <= axis < rank:
        raise InvalidValueError(
            f"axis={axis} is out of range for {what} of shape {tuple(values.shape)} ({rank} "
            f"dimensions); per-channel quantization needs an axis in [{-rank}, {rank - 1}]."
        )
    return axis % rank


def require(condition: torch.Tensor, message: str) -> None:
    """Refuse, with ``message``, unless the one-element bool ``condition`` holds (CPU tensors:
    see the module docstring; on other devices nothing is checked).

    Raises
    ------
    InvalidValueError
        Eagerly, when ``condition`` is False. (In a compiled graph: ``RuntimeError``.)
    """
    if condition.device.type != "cpu":
        return
    if compiling():
        torch._assert_async(condition, message)
    elif not bool(condition):
        raise InvalidValueError(message)

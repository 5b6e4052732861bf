"""The float model :meth:`IntegerNetwork.from_float` quantizes: layers as frozen descriptions.

A model is a sequence of :class:`Linear`, :class:`Conv2d`, :class:`ReLU` and :class:`Flatten`.
Each holds float64 read-only copies of its weights and computes its float64 output
(``__call__``), so a model is also its own float reference::

    Linear:   y[..., o] = sum_k x[..., k] * weight[o, k] + bias[o]
    Conv2d:   y[n, o, i, j] = sum_{c, u, v} xp[n, c, i*sh + u, j*sw + v] * weight[o, c, u, v] + bias[o]
              (xp: x padded with zeros by (ph, pw); no groups, no dilation)
    ReLU:     y = max(x, 0)
    Flatten:  (N, d1, d2, ...) -> (N, d1*d2*...), C order
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy

from intquant._core.checks import as_real_array, check_int
from intquant.errors import InvalidTypeError, InvalidValueError

__all__ = ["Conv2d", "Flatten", "Linear", "ReLU", "FloatModel", "run_float", "pair"]


def pair(name: str, value: Any, minimum: int) -> tuple[int, int]:
    """``value`` (an int, or a pair of ints) as a pair of ints ``>= minimum``."""
    items = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(items) != 2:
        raise InvalidValueError(f"'{name}' must be an int or a pair of ints; got {value!r}.")
    return (
        check_int(name, items[0], minimum=minimum, expected=f"an int >= {minimum} or a pair of them"),
        check_int(name, items[1], minimum=minimum, expected=f"an int >= {minimum} or a pair of them"),
    )


def _float_array(name: str, value: Any, ndim: int, shape_text: str) -> numpy.ndarray:
    """A float64 read-only copy of ``value``, checked to be finite and of rank ``ndim``."""
    array = numpy.asarray(as_real_array(value, f"'{name}'"))
    if array.dtype.kind == "b":
        raise InvalidTypeError(f"'{name}' must be a float array of shape {shape_text}; got a bool array.")
    if array.ndim != ndim or 0 in array.shape:
        raise InvalidValueError(
            f"'{name}' must be a non-empty array of shape {shape_text}; got shape {array.shape}."
        )
    copy = array.astype(numpy.float64)  # always a copy: the caller's array is never shared
    if not numpy.all(numpy.isfinite(copy)):
        raise InvalidValueError(f"'{name}' must be finite; it holds NaN or infinite values.")
    copy.flags.writeable = False
    return copy


def _bias(value: Any, out_channels: int) -> numpy.ndarray | None:
    if value is None:
        return None
    bias = _float_array("bias", value, 1, f"({out_channels},)")
    if bias.shape != (out_channels,):
        raise InvalidValueError(
            f"'bias' must have shape ({out_channels},), one value per output channel; got {bias.shape}."
        )
    return bias


def _inputs(x: Any) -> numpy.ndarray:
    array = numpy.asarray(as_real_array(x, "the inputs"))
    return array.astype(numpy.float64, copy=False)


@dataclass(frozen=True, eq=False)
class Linear:
    """A float linear layer ``y = x @ weight.T + bias``.

    Parameters
    ----------
    weight : array_like, shape (O, K)
        Finite floats; held as a float64 read-only copy.
    bias : array_like, shape (O,), optional

    Examples
    --------
    >>> Linear([[1.0, 2.0]], [0.5])(numpy.array([[3.0, 4.0]])).tolist()
    [[11.5]]
    """

    weight: numpy.ndarray
    bias: numpy.ndarray | None = None

    def __post_init__(self) -> None:
        weight = _float_array("weight", self.weight, 2, "(out_features, in_features)")
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "bias", _bias(self.bias, weight.shape[0]))

    def __call__(self, x: Any) -> numpy.ndarray:
        """The float64 output for inputs ``x`` of shape ``(..., K)``."""
        values = _inputs(x)
        if values.ndim < 1 or values.shape[-1] != self.weight.shape[1]:
            raise InvalidValueError(
                f"Linear inputs must have shape (..., {self.weight.shape[1]}); got {values.shape}."
            )
        out = values @ self.weight.T
        return out if self.bias is None else out + self.bias


@dataclass(frozen=True, eq=False)
class Conv2d:
    """A float 2-D convolution (cross-correlation, as PyTorch's ``Conv2d``), zero padded.

    Parameters
    ----------
    weight : array_like, shape (O, C, kh, kw)
    bias : array_like, shape (O,), optional
    stride : int or (int, int)
        At least 1.
    padding : int or (int, int)
        Zeros added on each side of the rows and columns; at least 0.
    """

    weight: numpy.ndarray
    bias: numpy.ndarray | None = None
    stride: tuple[int, int] = field(default=(1, 1))
    padding: tuple[int, int] = field(default=(0, 0))

    def __post_init__(self) -> None:
        weight = _float_array("weight", self.weight, 4, "(out_channels, in_channels, kh, kw)")
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "bias", _bias(self.bias, weight.shape[0]))
        object.__setattr__(self, "stride", pair("stride", self.stride, 1))
        object.__setattr__(self, "padding", pair("padding", self.padding, 0))

    def __call__(self, x: Any) -> numpy.ndarray:
        """The float64 output ``(N, O, H_out, W_out)`` for inputs ``(N, C, H, W)``."""
        values = _inputs(x)
        _, channels, kh, kw = self.weight.shape
        (sh, sw), (ph, pw) = self.stride, self.padding
        if values.ndim != 4 or values.shape[1] != channels:
            raise InvalidValueError(
                f"Conv2d inputs must have shape (N, {channels}, H, W); got {values.shape}."
            )
        if values.shape[2] + 2 * ph < kh or values.shape[3] + 2 * pw < kw:
            raise InvalidValueError(
                f"Conv2d inputs of shape {values.shape} padded by {self.padding} are smaller than "
                f"the kernel ({kh}, {kw})."
            )
        padded = numpy.pad(values, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        windows = numpy.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))
        windows = windows[:, :, ::sh, ::sw]  # (N, C, H_out, W_out, kh, kw)
        out = numpy.einsum("nchwuv,ocuv->nohw", windows, self.weight, optimize=True)
        return out if self.bias is None else out + self.bias[:, None, None]


@dataclass(frozen=True)
class ReLU:
    """``y = max(x, 0)``."""

    def __call__(self, x: Any) -> numpy.ndarray:
        return numpy.maximum(_inputs(x), 0.0)


@dataclass(frozen=True)
class Flatten:
    """``(N, d1, d2, ...) -> (N, d1*d2*...)`` in C order."""

    def __call__(self, x: Any) -> numpy.ndarray:
        values = _inputs(x)
        if values.ndim < 1:
            raise InvalidValueError("Flatten needs inputs with a batch axis; got a 0-d value.")
        return values.reshape(values.shape[0], -1)


#: One element of a float model.
FloatModel = Sequence[Union[Linear, Conv2d, ReLU, Flatten]]


def run_float(model: FloatModel, x: Any) -> numpy.ndarray:
    """The float64 output of ``model`` (elements applied in order) on ``x``."""
    values = _inputs(x)
    for element in model:
        if not isinstance(element, (Linear, Conv2d, ReLU, Flatten)):
            raise InvalidTypeError(
                f"a float model holds Linear, Conv2d, ReLU and Flatten; got {type(element).__name__}."
            )
        values = element(values)
    return values

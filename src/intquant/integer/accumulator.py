"""Accumulator analysis: the worst-case range of each accumulator, its bits, and a report.

For centered weights ``w[o, k]`` (``q_w - zp_w``), centered inputs ``x[k]`` anywhere in
``[lo, hi]`` (``q_x - zp_x`` over the codes a layer accepts) and bias codes ``b[o]``, the
accumulator ``acc[o] = sum_k w[o, k] * x[k] + b[o]`` ranges exactly over::

    max[o] = sum_k max(w*lo, w*hi) + b[o] = hi * sum_k w+ + lo * sum_k w- + b[o]
    min[o] = sum_k min(w*lo, w*hi) + b[o] = lo * sum_k w+ + hi * sum_k w- + b[o]

(``w+ = max(w, 0)``, ``w- = min(w, 0)``; each bound is reached by an input at the corners
``lo``/``hi``), computed with Python integers, so nothing overflows. ``P`` signed bits hold
``[-2**(P-1), 2**(P-1) - 1]``: ``signed_bits(v) = bit_length(v if v >= 0 else ~v) + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy

from intquant._core.checks import check_int, is_integer
from intquant.errors import InvalidTypeError, InvalidValueError

__all__ = [
    "worst_case_range",
    "worst_case_bits",
    "signed_bits",
    "observed_range",
    "LayerAccumulators",
    "AccumulatorReport",
    "check_pair",
]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def check_pair(name: str, value: Any) -> tuple[int, int]:
    """``value`` as a pair ``(lo, hi)`` of Python ints with ``lo <= hi`` (InvalidValueError)."""
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(is_integer(end) for end in value)
        or value[0] > value[1]
    ):
        raise InvalidValueError(f"'{name}' must be a pair (lo, hi) of ints with lo <= hi; got {value!r}.")
    return int(value[0]), int(value[1])


def _exact_bounds(
    centered_weights: Any, bias_codes: Any, input_range: Any
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """``(min, max)`` per channel as object arrays of Python ints (exact, unbounded)."""
    weights = numpy.asarray(centered_weights)
    if weights.ndim != 2 or weights.dtype.kind not in "iu":
        raise InvalidValueError(
            f"'centered_weights' must be a 2-D integer array (O, K); got shape {weights.shape}, "
            f"dtype {weights.dtype}."
        )
    count, size = weights.shape
    bias = numpy.asarray(bias_codes)
    if bias.shape != (count,) or bias.dtype.kind not in "iu":
        raise InvalidValueError(
            f"'bias_codes' must be an integer array of shape ({count},); got shape {bias.shape}, "
            f"dtype {bias.dtype}."
        )
    lo, hi = check_pair("input_range", input_range)
    weights = weights.astype(numpy.int64)
    largest = max(-int(weights.min()), int(weights.max())) if weights.size else 0
    # int64 sums are exact while K * max|w| stays below 2**63; beyond, sum Python ints.
    wide = size * largest > _INT64_MAX
    positive = numpy.maximum(weights, 0)
    negative = numpy.minimum(weights, 0)
    if wide:
        positive, negative = positive.astype(object), negative.astype(object)
    positive_sum = positive.sum(axis=1).astype(object)
    negative_sum = negative.sum(axis=1).astype(object)
    offset = bias.astype(object)
    return lo * positive_sum + hi * negative_sum + offset, hi * positive_sum + lo * negative_sum + offset


def worst_case_range(
    centered_weights: numpy.ndarray, bias_codes: numpy.ndarray, input_range: tuple[int, int]
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """The exact range ``(min, max)`` of each channel's accumulator over every input in range.

    Parameters
    ----------
    centered_weights : numpy.ndarray of integers, shape (O, K)
        ``q_w - zp_w`` (a convolution's weights reshaped to ``(O, C*kh*kw)``).
    bias_codes : numpy.ndarray of integers, shape (O,)
    input_range : tuple of (int, int)
        ``(lo - zp_x, hi - zp_x)``: the centered input codes. A padded convolution also sees
        ``0`` (its padding), so its range should contain 0 (an input range holding its zero
        point does).

    Returns
    -------
    tuple of numpy.ndarray of int64, shape (O,)
        ``sum_k min(w*lo, w*hi) + b`` and ``sum_k max(w*lo, w*hi) + b``.

    Raises
    ------
    InvalidValueError
        If the arguments are malformed, or a bound does not fit int64.

    Examples
    --------
    >>> import numpy
    >>> worst_case_range(numpy.array([[1, -2, 3]]), numpy.array([5]), (-128, 127))
    (array([-761]), array([769]))
    """
    minimum, maximum = _exact_bounds(centered_weights, bias_codes, input_range)
    for name, bounds in (("minimum", minimum), ("maximum", maximum)):
        for channel, value in enumerate(bounds.tolist()):
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise InvalidValueError(
                    f"The worst-case accumulator {name} of channel {channel} is {value}, beyond int64; "
                    "use fewer bits for the weights or inputs, or fewer products per accumulator."
                )
    return minimum.astype(numpy.int64), maximum.astype(numpy.int64)


def worst_case_bits(
    centered_weights: numpy.ndarray, bias_codes: numpy.ndarray, input_range: tuple[int, int]
) -> numpy.ndarray:
    """``signed_bits`` of :func:`worst_case_range`, exact even beyond int64 (never refuses a
    range for its size; 65 and more bits are returned as such).

    >>> import numpy
    >>> worst_case_bits(numpy.array([[1, -2, 3], [0, 0, 0]]), numpy.array([5, -1]), (-128, 127))
    array([11,  1])
    """
    minimum, maximum = _exact_bounds(centered_weights, bias_codes, input_range)
    return numpy.array(
        [max(_bits(lo), _bits(hi)) for lo, hi in zip(minimum.tolist(), maximum.tolist(), strict=True)],
        dtype=numpy.int64,
    ).reshape(minimum.shape)


def _bits(value: int) -> int:
    return (value if value >= 0 else ~value).bit_length() + 1


def _as_int64(name: str, value: Any) -> numpy.ndarray:
    array = numpy.asarray(value)
    if array.dtype.kind == "O":
        if not all(is_integer(item) for item in array.flat):
            raise InvalidTypeError(f"'{name}' must hold integers; got {array!r}.")
        if array.size and not all(_INT64_MIN <= int(item) <= _INT64_MAX for item in array.flat):
            raise InvalidValueError(f"'{name}' must fit int64; got {array!r}.")
        return array.astype(numpy.int64)
    if array.dtype.kind not in "iu":
        raise InvalidTypeError(f"'{name}' must be an integer array; got dtype {array.dtype}.")
    if array.dtype.kind == "u" and array.size and int(array.max()) > _INT64_MAX:
        raise InvalidValueError(f"'{name}' must fit int64; got a maximum of {int(array.max())}.")
    return array.astype(numpy.int64, copy=False)


def _bit_length(values: numpy.ndarray) -> numpy.ndarray:
    """``int.bit_length`` of each non-negative int64, by halving (six steps, no float)."""
    remaining = values.copy()
    lengths = numpy.zeros(values.shape, dtype=numpy.int64)
    for step in (32, 16, 8, 4, 2, 1):
        large = remaining >= (1 << step)
        lengths += step * large
        remaining = numpy.where(large, remaining >> step, remaining)
    lengths += remaining  # 0 or 1 is left
    return lengths


def signed_bits(minimum: Any, maximum: Any) -> numpy.ndarray:
    """The smallest ``P >= 1`` with ``-2**(P-1) <= minimum`` and ``maximum <= 2**(P-1) - 1``,
    element by element (``minimum`` and ``maximum`` broadcast).

    >>> import numpy
    >>> signed_bits(numpy.array([0, -1, 0, -128, -128]), numpy.array([0, 0, 1, 127, 128]))
    array([1, 1, 2, 8, 9])
    """
    low = _as_int64("minimum", minimum)
    high = _as_int64("maximum", maximum)
    low = numpy.where(low < 0, ~low, low)
    high = numpy.where(high < 0, ~high, high)
    return _bit_length(numpy.maximum(low, high)) + 1


def observed_range(accumulators: numpy.ndarray, channel_axis: int) -> tuple[numpy.ndarray, numpy.ndarray]:
    """The smallest and largest accumulator of each channel (over every other axis), int64.

    Raises
    ------
    InvalidValueError
        If there is no accumulator to observe (an empty batch), or the axis is out of range.
    """
    array = _as_int64("accumulators", accumulators)
    if array.ndim == 0 or not -array.ndim <= channel_axis < array.ndim:
        raise InvalidValueError(f"'channel_axis' {channel_axis} is out of range for shape {array.shape}.")
    moved = numpy.moveaxis(array, channel_axis, 0).reshape(array.shape[channel_axis], -1)
    if moved.shape[1] == 0:
        raise InvalidValueError(f"No accumulator to observe: got shape {array.shape}.")
    return moved.min(axis=1), moved.max(axis=1)


def _frozen(name: str, value: Any, shape: tuple[int, ...] | None) -> numpy.ndarray:
    array = _as_int64(name, value).copy()
    if array.ndim != 1 or (shape is not None and array.shape != shape):
        expected = "a 1-D array" if shape is None else f"shape {shape}"
        raise InvalidValueError(f"LayerAccumulators: '{name}' must be {expected}; got shape {array.shape}.")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class LayerAccumulators:
    """One layer's accumulator ranges, per output channel (int64 arrays of shape ``(O,)``,
    read-only): the worst case over every input in range (bias included) and, optionally, the
    range observed on data, each with its :func:`signed_bits`."""

    name: str
    worst_min: numpy.ndarray
    worst_max: numpy.ndarray
    worst_bits: numpy.ndarray
    observed_min: numpy.ndarray | None = None
    observed_max: numpy.ndarray | None = None
    observed_bits: numpy.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise InvalidTypeError(f"LayerAccumulators: 'name' must be a str; got {self.name!r}.")
        worst_min = _frozen("worst_min", self.worst_min, None)
        shape = worst_min.shape
        object.__setattr__(self, "worst_min", worst_min)
        for field in ("worst_max", "worst_bits"):
            object.__setattr__(self, field, _frozen(field, getattr(self, field), shape))
        observed = ("observed_min", "observed_max", "observed_bits")
        given = [getattr(self, field) is not None for field in observed]
        if any(given) and not all(given):
            raise InvalidValueError(
                "LayerAccumulators: give all of 'observed_min', 'observed_max', 'observed_bits' or none."
            )
        if all(given):
            for field in observed:
                object.__setattr__(self, field, _frozen(field, getattr(self, field), shape))

    @classmethod
    def from_ranges(
        cls,
        name: str,
        worst_min: numpy.ndarray,
        worst_max: numpy.ndarray,
        observed_min: numpy.ndarray | None = None,
        observed_max: numpy.ndarray | None = None,
    ) -> LayerAccumulators:
        """The record of these ranges, with their bits computed by :func:`signed_bits`."""
        observed_bits = None
        if observed_min is not None and observed_max is not None:
            observed_bits = signed_bits(observed_min, observed_max)
        return cls(
            name,
            worst_min,
            worst_max,
            signed_bits(worst_min, worst_max),
            observed_min,
            observed_max,
            observed_bits,
        )

    @property
    def channels(self) -> int:
        """``O``, the number of output channels."""
        return int(self.worst_min.shape[0])

    @property
    def max_worst_bits(self) -> int:
        """The widest worst-case accumulator of the layer, in signed bits (1 without channels)."""
        return int(self.worst_bits.max(initial=1))

    @property
    def max_observed_bits(self) -> int | None:
        """The widest observed accumulator, in signed bits; None when nothing was observed."""
        return None if self.observed_bits is None else int(self.observed_bits.max(initial=1))


def _span(low: numpy.ndarray | None, high: numpy.ndarray | None) -> str:
    if low is None or high is None or not low.size:
        return "-"
    return f"[{int(low.min())}, {int(high.max())}]"


@dataclass(frozen=True, eq=False)
class AccumulatorReport:
    """The accumulators of a network's layers, against an optional limit of ``limit_bits``
    signed bits; ``str(report)`` is a plain-text table, one row per layer."""

    layers: tuple[LayerAccumulators, ...]
    limit_bits: int | None = None

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        for layer in layers:
            if not isinstance(layer, LayerAccumulators):
                raise InvalidTypeError(
                    f"AccumulatorReport: 'layers' must hold LayerAccumulators; got {type(layer).__name__}."
                )
        object.__setattr__(self, "layers", layers)
        if self.limit_bits is not None:
            object.__setattr__(
                self,
                "limit_bits",
                check_int("limit_bits", self.limit_bits, minimum=1, advice="(AccumulatorReport.)"),
            )

    @property
    def max_worst_bits(self) -> int:
        """The widest worst-case accumulator over every layer (0 without layers)."""
        return max((layer.max_worst_bits for layer in self.layers), default=0)

    @property
    def max_observed_bits(self) -> int | None:
        """The widest observed accumulator over the layers observed (None if none was)."""
        observed = [layer.max_observed_bits for layer in self.layers if layer.max_observed_bits is not None]
        return max(observed, default=None)

    @property
    def fits(self) -> bool:
        """Whether every worst-case accumulator fits ``limit_bits`` (True without a limit)."""
        return self.limit_bits is None or self.max_worst_bits <= self.limit_bits

    def _verdict(self, bits: int) -> str:
        if self.limit_bits is None:
            return "-"
        return f"{'fits' if bits <= self.limit_bits else 'exceeds'} {self.limit_bits} bits"

    def __str__(self) -> str:
        header = ("layer", "channels", "worst-case range", "bits", "observed range", "bits", "limit")
        rows = [header]
        for layer in self.layers:
            observed = layer.max_observed_bits
            rows.append(
                (
                    layer.name,
                    str(layer.channels),
                    _span(layer.worst_min, layer.worst_max),
                    str(layer.max_worst_bits),
                    _span(layer.observed_min, layer.observed_max),
                    "-" if observed is None else str(observed),
                    self._verdict(layer.max_worst_bits),
                )
            )
        widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
        total = f"network: worst case {self.max_worst_bits} bits"
        if self.max_observed_bits is not None:
            total += f", observed {self.max_observed_bits} bits"
        if self.limit_bits is not None:
            total += f"; {self._verdict(self.max_worst_bits)}"
        return "\n".join([*lines, total])

"""An observer: running min/max statistics of tensors, and intquant's parameters from them.

:class:`MinMaxObserver` is a ``torch.nn.Module`` in the spirit of
``torch.ao.quantization.MinMaxObserver``: calling it with a tensor folds the tensor's range into
running statistics (torch operations on the tensor's device, no copy to the host) and returns the
tensor unchanged; :meth:`MinMaxObserver.calculate_qparams` turns the statistics into the scale,
zero point and offset intquant computes from them (:mod:`intquant.torch.kernels`).
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy
import torch
from torch.nn.parameter import UninitializedBuffer, is_lazy

from intquant.errors import InvalidOptionsError, InvalidTypeError, InvalidValueError, MissingParameterError
from intquant.options import QuantizationOptions
from intquant.statistics import MinMaxQuantizationStats
from intquant.torch.checks import check_values, normalized_axis, require
from intquant.torch.kernels import Parameters, batch_range, choose_parameters, finite_range, fold_range
from intquant.torch.state import QuantizationState

__all__ = ["MinMaxObserver"]

_DTYPE_NAMES = {torch.float16: "float16", torch.float32: "float32", torch.float64: "float64"}
_DTYPES = {name: dtype for dtype, name in _DTYPE_NAMES.items()}
_RANKS = {torch.float16: 0, torch.float32: 1, torch.float64: 2}
_BITS = {torch.float16: 16, torch.float32: 32, torch.float64: 64}
_FLOAT_OF_BITS = {bits: dtype for dtype, bits in _BITS.items()}


class MinMaxObserver(QuantizationState):
    """Running min/max of the tensors it is called with, and intquant's parameters from them.

    Calling the observer with a float16/32/64 tensor folds the tensor's range into the
    statistics ``min_val``/``max_val`` (float64 buffers: exact for every float16/32/64 value)
    and returns the tensor. Per tensor (``axis=None``) they hold one value (shape ``(1,)``, as
    torch.ao's parameters); per channel (``axis=k``) one per index along axis ``k``, their number
    fixed by the first tensor observed (or the state loaded), as a lazy module's
    (``torch.nn.LazyLinear``) parameters are.

    * Without ``averaging_constant``: ``min_val = min(min_val, min(x))`` and ``max_val =
      max(max_val, max(x))``, the range of everything observed (intquant's
      ``MinMaxQuantizationStats.update``).
    * With ``averaging_constant=c``: the moving average ``min_val + c * (min(x) - min_val)`` (and
      likewise ``max_val``), as ``torch.ao.quantization.MovingAverageMinMaxObserver``; the first
      tensor is taken as is.

    The statistics have the dtype of the values observed (the widest, if several float dtypes
    were observed); :meth:`calculate_qparams` casts them to it and computes the parameters with
    intquant's formulas in intquant's dtypes, so ``scale``, ``zero_point`` and ``offset`` are bit
    for bit what ``UniformQuantizer.compute_quantization_parameters`` gives for the statistics
    :meth:`to_statistics` exports (for min/max statistics: for the observed values themselves).

    Parameters
    ----------
    n_bits : int
        Bits per code, 1 to 32.
    is_signed, is_symmetric : bool
        Signed codes (``offset = 2**(n_bits-1)``); a symmetric grid around 0 (needs signed).
    axis : int, optional
        Per-channel statistics along this axis of the observed tensors (negative counts from
        the end).
    zero_in_range : bool
        Widen the range to hold 0 before computing the parameters.
    power_of_two_scale : bool
        Round the scale up to a power of two.
    averaging_constant : float, optional
        In ``(0, 1]``: a moving average of the ranges instead of their union.

    Raises
    ------
    InvalidTypeError, InvalidValueError, InvalidOptionsError
        For options intquant refuses (``n_bits`` outside 1..32, symmetric unsigned codes,
        1-bit symmetric codes, which have no level above zero), or an ``averaging_constant``
        outside ``(0, 1]``.

    Examples
    --------
    >>> import torch
    >>> from intquant.torch import MinMaxObserver
    >>> observer = MinMaxObserver(4, is_signed=True)
    >>> _ = observer(torch.tensor([-1.0, 0.0, 2.0]))
    >>> _ = observer(torch.tensor([0.5, 3.0]))
    >>> observer.min_val.item(), observer.max_val.item()
    (-1.0, 3.0)
    >>> scale, zero_point, offset, _ = observer.calculate_qparams()
    >>> scale.item(), zero_point.item(), offset.item()  # 4 / 15; round((3 * -8 - (-1) * 7) / 4)
    (0.26666666666666666, -4, 8)
    """

    # Version history of the state (``state_dict`` metadata):
    # 1: float64 ``min_val``/``max_val`` of shape (1,) or (C,); int64 ``state`` [format 1,
    #    statistics dtype in bits (0: none), rank of per-channel tensors (-1: none)].
    _version = 1

    min_val: torch.Tensor
    max_val: torch.Tensor
    divisors: torch.Tensor

    def __init__(
        self,
        n_bits: int = 8,
        *,
        is_signed: bool = False,
        is_symmetric: bool = False,
        axis: int | None = None,
        zero_in_range: bool = False,
        power_of_two_scale: bool = False,
        averaging_constant: float | None = None,
    ) -> None:
        super().__init__()
        options = QuantizationOptions(
            n_bits,
            is_signed,
            is_symmetric,
            axis=axis,
            zero_in_range=zero_in_range,
            power_of_two_scale=power_of_two_scale,
        )
        levels = 2**n_bits - 1
        offset = 2 ** (n_bits - 1) if is_signed else 0
        if is_symmetric and levels == offset:
            raise InvalidOptionsError(
                f"symmetric quantization on {n_bits} bit(s) has no level above zero, so its scale "
                f"max(|rmax|, |rmin|) / (2**n_bits - 1 - offset) would be infinite. Use "
                f"n_bits >= 2, or asymmetric quantization (is_symmetric=False)."
            )
        self.n_bits: int = options.n_bits
        self.is_signed: bool = options.is_signed
        self.is_symmetric: bool = options.is_symmetric
        self.axis: int | None = options.axis
        self.zero_in_range: bool = options.zero_in_range
        self.power_of_two_scale: bool = options.power_of_two_scale
        self.averaging_constant = _checked_averaging_constant(averaging_constant)
        self._statistics_dtype: torch.dtype | None = None
        self._ndim: int | None = None
        if axis is None:
            self.register_buffer("min_val", torch.full((1,), math.inf, dtype=torch.float64))
            self.register_buffer("max_val", torch.full((1,), -math.inf, dtype=torch.float64))
        else:  # sized by the first tensor observed (initialize_parameters)
            self.register_buffer("min_val", UninitializedBuffer(dtype=torch.float64))  # type: ignore[call-arg]
            self.register_buffer("max_val", UninitializedBuffer(dtype=torch.float64))  # type: ignore[call-arg]
        divisors = torch.tensor([levels, levels - offset], dtype=torch.float64)
        self.register_buffer("divisors", divisors, persistent=False)
        self.register_state()

    @property
    def statistics_dtype(self) -> torch.dtype | None:
        """The dtype of the statistics: of the values observed (None before any)."""
        return self._statistics_dtype

    @property
    def ndim(self) -> int | None:
        """The rank of the tensors observed per channel (None per tensor, or before any)."""
        return self._ndim

    def state_values(self) -> list[int]:
        dtype = self._statistics_dtype
        return [0 if dtype is None else _BITS[dtype], -1 if self._ndim is None else self._ndim]

    def take_state_values(self, values: list[int]) -> None:
        bits, ndim = values
        if bits not in (0, *_BITS.values()) or ndim < -1 or (ndim >= 0 and self.axis is None):
            raise InvalidValueError(
                f"a MinMaxObserver state holds the statistics' dtype (0, 16, 32 or 64 bits) and, "
                f"per channel, the rank of the values observed (else -1); got {values} for "
                f"axis={self.axis}."
            )
        self._statistics_dtype = None if bits == 0 else _FLOAT_OF_BITS[bits]
        self._ndim = None if ndim < 0 else ndim

    def extra_repr(self) -> str:
        options = [f"n_bits={self.n_bits}"]
        for name in ("is_signed", "is_symmetric", "zero_in_range", "power_of_two_scale"):
            if getattr(self, name):
                options.append(f"{name}=True")
        if self.axis is not None:
            options.append(f"axis={self.axis}")
        if self.averaging_constant is not None:
            options.append(f"averaging_constant={self.averaging_constant}")
        return ", ".join(options)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """Fold the range of ``values`` into the statistics; return ``values`` unchanged.

        Raises
        ------
        InvalidTypeError, InvalidValueError
            As :meth:`folded` (the statistics are then left as they were).
        """
        self.store(*self.folded(values))
        return values

    def folded(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
        """The statistics with the range of ``values`` folded in, and their dtype (the wider of
        theirs and the values'), without storing them (see :meth:`store`).

        Raises
        ------
        InvalidTypeError
            If ``values`` is not a float16/32/64 tensor.
        InvalidValueError
            If it is empty, has no axis ``axis``, or (per channel) another number of channels
            or rank than the tensors observed before; on the CPU, if it holds NaN or an infinity
            (see :func:`intquant.torch.checks.require`).
        """
        check_values(values, "values to observe")
        if values.numel() == 0:
            raise InvalidValueError(
                f"cannot observe an empty tensor (shape {tuple(values.shape)}): it has no range."
            )
        axis = None if self.axis is None else normalized_axis(self.axis, values, "values to observe")
        if axis is not None:
            self._check_channels(values, axis)
        low, high = batch_range(values.detach() if values.requires_grad else values, axis)
        finite = finite_range(low, high)
        require(
            finite if axis is None else finite.all(),
            f"cannot observe values containing NaN or an infinity (shape {tuple(values.shape)}, "
            f"dtype {values.dtype}): the range would not be finite. Remove or replace non-finite "
            f"values first, e.g. with torch.nan_to_num.",
        )
        running_low, running_high = fold_range(
            (self.min_val, self.max_val), (low, high), self.averaging_constant
        )
        dtype = self._statistics_dtype
        if dtype is None or _RANKS[values.dtype] > _RANKS[dtype]:
            dtype = values.dtype
        return running_low, running_high, dtype

    def store(self, low: torch.Tensor, high: torch.Tensor, dtype: torch.dtype) -> None:
        """Take statistics from :meth:`folded` as the observer's."""
        self.min_val.copy_(low)
        self.max_val.copy_(high)
        if dtype != self._statistics_dtype:
            self._statistics_dtype = dtype
            self.write_state()

    def initialize_parameters(self, values: Any) -> None:
        """Size per-channel statistics for ``values`` (run once, before the first call, by
        ``torch.nn.modules.lazy.LazyModuleMixin``; also while ``torch.compile`` traces)."""
        if self.axis is None or not is_lazy(self.min_val):
            return
        check_values(values, "values to observe")
        axis = normalized_axis(self.axis, values, "values to observe")
        self._materialize(values.shape[axis], values.dim())

    def _materialize(self, channels: int, ndim: int) -> None:
        with torch.no_grad():
            for buffer, start in ((self.min_val, math.inf), (self.max_val, -math.inf)):
                cast(Any, buffer).materialize((channels,), device=buffer.device)  # UninitializedBuffer
                buffer.fill_(start)
        self._ndim = ndim
        self.write_state()

    def _check_channels(self, values: torch.Tensor, axis: int) -> None:
        if self.min_val.numel() != values.shape[axis] or self.ndim != values.dim():
            raise InvalidValueError(
                f"this observer holds statistics of {self.min_val.numel()} channels of "
                f"{self.ndim}-dimensional tensors (axis={self.axis}); got values of shape "
                f"{tuple(values.shape)}. Observe tensors of one layout with each observer."
            )

    def is_empty(self) -> bool:
        """Whether nothing has been observed (or loaded) yet."""
        return self.statistics_dtype is None

    def reset_min_max_vals(self) -> None:
        """Forget the statistics (per channel, the number of channels stays)."""
        if not is_lazy(self.min_val):
            self.min_val.fill_(math.inf)
            self.max_val.fill_(-math.inf)
        self._statistics_dtype = None
        self.write_state()

    def calculate_qparams(self) -> Parameters:
        """The parameters of the statistics: ``(scale, zero_point, offset, valid)`` tensors of
        the statistics' shape (float64, int64, int64, bool; see
        :func:`intquant.torch.kernels.choose_parameters`). ``valid`` is False where intquant
        refuses the parameters (a scale that is not finite, a zero point beyond int64).

        Raises
        ------
        MissingParameterError
            If nothing has been observed yet.
        """
        return self.parameters_of(self.min_val, self.max_val, self._require_statistics())

    def parameters_of(self, low: torch.Tensor, high: torch.Tensor, dtype: torch.dtype) -> Parameters:
        """The parameters of float64 statistics ``low``/``high`` of ``dtype`` (as
        :meth:`calculate_qparams`, for statistics from :meth:`folded`)."""
        if self.averaging_constant is not None and dtype != torch.float64:  # averages: rounded
            low, high = low.to(dtype).to(torch.float64), high.to(dtype).to(torch.float64)
        return choose_parameters(
            low,
            high,
            dtype,
            self.divisors,
            n_bits=self.n_bits,
            is_signed=self.is_signed,
            is_symmetric=self.is_symmetric,
            zero_in_range=self.zero_in_range,
            power_of_two_scale=self.power_of_two_scale,
        )

    def to_statistics(self) -> MinMaxQuantizationStats:
        """The statistics as intquant's: ``rmin``/``rmax`` numpy scalars of the statistics' dtype,
        or per channel arrays of the grid shape ``(1, .., C, .., 1)`` (``uvalues`` None: the
        observer keeps no distinct values).

        Raises
        ------
        MissingParameterError
            If nothing has been observed yet.
        """
        dtype = self._require_statistics()
        numpy_dtype = numpy.dtype(_DTYPE_NAMES[dtype])
        low = self.min_val.detach().cpu().numpy().astype(numpy_dtype)
        high = self.max_val.detach().cpu().numpy().astype(numpy_dtype)
        if self.axis is None:
            return MinMaxQuantizationStats(rmax=high[0], rmin=low[0])
        assert self.ndim is not None  # set with the channels
        grid = [1] * self.ndim
        grid[self.axis % self.ndim] = low.size
        rmax: Any = high.reshape(grid)
        rmin: Any = low.reshape(grid)
        return MinMaxQuantizationStats(rmax=rmax, rmin=rmin)

    def load_statistics(self, stats: Any) -> None:
        """Take ``rmin``/``rmax`` from intquant statistics (or a quantizer holding them): float16,
        float32 or float64 numpy scalars, or per channel arrays of the grid shape ``(1, .., C, ..,
        1)`` (``ndim`` dimensions, C along ``axis``).

        Raises
        ------
        InvalidTypeError, InvalidValueError
            For statistics of another kind, dtype or shape, or not finite.
        """
        low, high = numpy.asarray(stats.rmin), numpy.asarray(stats.rmax)
        if low.dtype != high.dtype or low.dtype.name not in _DTYPES:
            raise InvalidTypeError(
                f"the observer takes float16, float32 or float64 statistics of one dtype; got "
                f"rmin of dtype {low.dtype} and rmax of dtype {high.dtype}."
            )
        if low.shape != high.shape or not (numpy.isfinite(low).all() and numpy.isfinite(high).all()):
            raise InvalidValueError(
                f"the observer takes finite rmin/rmax of one shape; got shapes {low.shape} and "
                f"{high.shape}, rmin={low.tolist()}, rmax={high.tolist()}."
            )
        if self.axis is None and low.ndim:
            raise InvalidValueError(
                f"a per-tensor observer takes scalar statistics; got rmin of shape {low.shape}. "
                f"Use MinMaxObserver(axis=...) for per-channel statistics."
            )
        if self.axis is not None:
            rank = low.ndim
            if not -rank <= self.axis < rank or low.size != low.shape[self.axis]:
                raise InvalidValueError(
                    f"per-channel statistics along axis {self.axis} must have the grid shape "
                    f"(1, .., C, .., 1) of {rank}-dimensional values; got shape {low.shape}."
                )
            if is_lazy(self.min_val):
                self._materialize(low.size, rank)
            elif self.min_val.numel() != low.size or self.ndim != rank:
                raise InvalidValueError(
                    f"this observer holds statistics of {self.min_val.numel()} channels of "
                    f"{self.ndim}-dimensional tensors; got statistics of shape {low.shape}."
                )
        with torch.no_grad():
            self.min_val.copy_(torch.from_numpy(low.astype(numpy.float64).reshape(-1)))
            self.max_val.copy_(torch.from_numpy(high.astype(numpy.float64).reshape(-1)))
        self._statistics_dtype = _DTYPES[low.dtype.name]
        self.write_state()

    def _require_statistics(self) -> torch.dtype:
        if self.statistics_dtype is None:
            raise MissingParameterError(
                "this observer has observed nothing yet: call it with a tensor (or load "
                "statistics) before computing parameters."
            )
        return self.statistics_dtype


def _checked_averaging_constant(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, numpy.integer, numpy.floating)):
        raise InvalidTypeError(f"averaging_constant must be a float in (0, 1] or None; got {value!r}.")
    if not 0 < float(value) <= 1:
        raise InvalidValueError(
            f"averaging_constant must be in (0, 1] (the weight of each new range); got {value!r}."
        )
    return float(value)

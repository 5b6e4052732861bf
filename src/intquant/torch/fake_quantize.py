"""A fake-quantize module for quantization-aware training, exact with intquant's quantizers.

:class:`FakeQuantize` is a ``torch.nn.Module`` in the spirit of
``torch.ao.quantization.FakeQuantize``: it observes the tensors passing through it
(:class:`~intquant.torch.MinMaxObserver`), computes intquant's parameters from the statistics,
and returns the values the codes stand for, with a straight-through gradient. Everything runs as
torch operations on the tensor's device (no copy to the host, no synchronization), and the module
compiles with ``torch.compile(fullgraph=True)``. Its calibrated state exports to an
:class:`intquant.UniformQuantizer` whose numpy ``quant`` gives the module's codes, and loads from
one.
"""

from __future__ import annotations

from typing import Any, cast

import numpy
import torch
from torch.nn.parameter import UninitializedBuffer, is_lazy

from intquant._core.checks import check_flag, check_scale
from intquant.errors import (
    IntquantError,
    InvalidOptionsError,
    InvalidTypeError,
    InvalidValueError,
    MissingParameterError,
)
from intquant.options import QuantizationOptions
from intquant.parameters import UniformQuantizationParameters, compute_parameters
from intquant.quantizer import UniformQuantizer
from intquant.torch.checks import check_values, compiling, normalized_axis, require
from intquant.torch.kernels import (
    DtypePair,
    Parameters,
    dtype_pairs,
    fake_quantize,
    rounded_codes,
    straight_through,
)
from intquant.torch.observer import MinMaxObserver
from intquant.torch.state import QuantizationState

__all__ = [
    "FakeQuantize",
    "disable_fake_quant",
    "disable_observer",
    "enable_fake_quant",
    "enable_observer",
]


class FakeQuantize(QuantizationState):
    """Observe, then fake-quantize: ``scale * (clip(round(x / scale + zero_point), low, high) -
    zero_point)``, with intquant's parameters and codes.

    Called with a float16/32/64 tensor ``x``, the module

    1. if the observer is enabled, folds ``x``'s range into its :class:`MinMaxObserver`
       (``self.observer``) and recomputes ``scale`` (float64), ``zero_point`` and ``offset``
       (int64 buffers) from the statistics, as intquant computes them;
    2. if fake quantization is enabled, returns ``scale * (q - zero_point)`` cast to ``x``'s
       dtype, where ``q = clip(round(x / scale + zero_point), low, high)``, ``[low, high] =
       [-offset (+1 if is_narrow), 2**n_bits - 1 - offset]`` (per channel with ``axis``), and
       the division and addition run in numpy 1.24's dtypes as intquant's ``quant`` does; else
       returns ``x``.

    The codes ``q`` are bit for bit those of ``self.to_quantizer().quant(x.numpy())``, and the
    parameters those intquant computes from the same statistics (for min/max statistics: from the
    observed values themselves).

    **Gradient** (clipped straight-through estimator, as torch's ``FakeQuantize``): the gradient
    passes unchanged where the rounded code before clipping lies in ``[low, high]`` and is 0
    where clipping changes it. (:func:`intquant.torch.fake_quant` instead compares the values
    with the representable range: the two differ within half a step beyond each end.) The scale
    and zero point get no gradient.

    **NaN**: NaN values give NaN. On the CPU, observing NaN or an infinity, or statistics whose
    parameters would not be finite, is refused (see :mod:`intquant.torch.checks`).

    Parameters
    ----------
    n_bits : int
        Bits per code, 1 to 32.
    is_signed, is_symmetric, is_narrow : bool
        Signed codes (``offset = 2**(n_bits-1)``); a symmetric grid around 0 (needs signed);
        the lowest code left out (``[-2**(n-1) + 1, 2**(n-1) - 1]`` for signed codes).
    rounding : str
        ``"half_even"`` (intquant's default), ``"half_up"``, ``"floor"``, ``"ceil"``, or
        ``"stochastic"`` (``floor(s + u)``, ``u`` drawn from torch's generator, so not the draws
        of a numpy quantizer).
    axis : int, optional
        One scale and zero point per index along this axis (per channel), e.g. ``axis=0`` for
        the output channels of a ``Linear`` weight.
    zero_in_range, power_of_two_scale : bool
        intquant's extra options: widen the range to hold 0; round the scale up to a power of 2.
    averaging_constant : float, optional
        Statistics as a moving average of the ranges (``torch.ao``'s
        ``MovingAverageMinMaxObserver``) instead of their union.

    Raises
    ------
    InvalidTypeError, InvalidValueError, InvalidOptionsError
        For options intquant refuses (see :class:`MinMaxObserver`) or an unknown rounding.

    Examples
    --------
    >>> import torch
    >>> from intquant.torch import FakeQuantize
    >>> fake = FakeQuantize(2)
    >>> weights = torch.tensor([0.0, 0.4, 1.6, 3.0], requires_grad=True)
    >>> restored = fake(weights)  # observes [0, 3]: scale 1, zero point 0, codes 0..3
    >>> restored.tolist()
    [0.0, 0.0, 2.0, 3.0]
    >>> fake.disable_observer()
    >>> fake(torch.tensor([-0.6, 3.4, 3.6])).tolist()  # codes -1, 3, 4 clipped to [0, 3]
    [0.0, 3.0, 3.0]
    >>> fake.to_quantizer().quant(weights.detach().numpy()).tolist()
    [0, 0, 2, 3]
    """

    # Version history of the state (``state_dict`` metadata):
    # 1: ``scale`` float64, ``zero_point`` and ``offset`` int64 buffers of shape (1,) or (C,),
    #    the observer's state; int64 ``state`` [format 1, observer enabled, fake quantization
    #    enabled, rank of per-channel values (-1: none)].
    _version = 1

    scale: torch.Tensor
    zero_point: torch.Tensor
    offset: torch.Tensor

    def __init__(
        self,
        n_bits: int = 8,
        *,
        is_signed: bool = False,
        is_symmetric: bool = False,
        is_narrow: bool = False,
        rounding: str = "half_even",
        axis: int | None = None,
        zero_in_range: bool = False,
        power_of_two_scale: bool = False,
        averaging_constant: float | None = None,
    ) -> None:
        super().__init__()
        self.observer = MinMaxObserver(
            n_bits,
            is_signed=is_signed,
            is_symmetric=is_symmetric,
            axis=axis,
            zero_in_range=zero_in_range,
            power_of_two_scale=power_of_two_scale,
            averaging_constant=averaging_constant,
        )
        self.is_narrow: bool = check_flag("is_narrow", is_narrow)
        self.rounding: str = QuantizationOptions(n_bits, rounding=rounding).rounding
        self._observer_enabled = True
        self._fake_quant_enabled = True
        self._ndim: int | None = None
        for name, dtype in (("scale", torch.float64), ("zero_point", torch.int64), ("offset", torch.int64)):
            if axis is None:
                self.register_buffer(name, torch.zeros(1, dtype=dtype))
            else:  # sized by the first tensor observed (initialize_parameters)
                self.register_buffer(name, UninitializedBuffer(dtype=dtype))  # type: ignore[call-arg]
        if axis is None:
            self._reset_parameters()
        self.register_state()

    # -- the options, held by the observer

    @property
    def n_bits(self) -> int:
        """Bits per code."""
        return self.observer.n_bits

    @property
    def is_signed(self) -> bool:
        """Whether the codes are signed."""
        return self.observer.is_signed

    @property
    def is_symmetric(self) -> bool:
        """Whether the grid is symmetric around 0."""
        return self.observer.is_symmetric

    @property
    def axis(self) -> int | None:
        """The channel axis (None: per tensor)."""
        return self.observer.axis

    @property
    def observer_enabled(self) -> bool:
        """Whether calls fold the values into the statistics and recompute the parameters."""
        return self._observer_enabled

    @property
    def fake_quant_enabled(self) -> bool:
        """Whether calls return fake-quantized values (else the values themselves)."""
        return self._fake_quant_enabled

    @property
    def ndim(self) -> int | None:
        """The rank of the values the per-channel parameters apply to (None per tensor, or
        before the first call)."""
        return self._ndim

    def state_values(self) -> list[int]:
        ndim = -1 if self._ndim is None else self._ndim
        return [int(self._observer_enabled), int(self._fake_quant_enabled), ndim]

    def take_state_values(self, values: list[int]) -> None:
        observer_enabled, fake_quant_enabled, ndim = values
        if (
            not {observer_enabled, fake_quant_enabled} <= {0, 1}
            or ndim < -1
            or (ndim >= 0 and self.axis is None)
        ):
            raise InvalidValueError(
                f"a FakeQuantize state holds two switches (0 or 1) and, per channel, the rank of "
                f"the values (else -1); got {values} for axis={self.axis}."
            )
        self._observer_enabled, self._fake_quant_enabled = bool(observer_enabled), bool(fake_quant_enabled)
        self._ndim = None if ndim < 0 else ndim

    def extra_repr(self) -> str:
        options = [f"rounding={self.rounding!r}"] if self.rounding != "half_even" else []
        if self.is_narrow:
            options.append("is_narrow=True")
        options.append(f"observer_enabled={self.observer_enabled}")
        options.append(f"fake_quant_enabled={self.fake_quant_enabled}")
        return ", ".join(options)

    # -- switches, as torch.ao's

    def enable_observer(self, enabled: bool = True) -> None:
        """Let calls observe the values and recompute the parameters (or not)."""
        self._observer_enabled = check_flag("enabled", enabled)
        self.write_state()

    def disable_observer(self) -> None:
        """Freeze the statistics and parameters."""
        self.enable_observer(False)

    def enable_fake_quant(self, enabled: bool = True) -> None:
        """Let calls return fake-quantized values (or the values themselves)."""
        self._fake_quant_enabled = check_flag("enabled", enabled)
        self.write_state()

    def disable_fake_quant(self) -> None:
        """Return the values themselves (the observer still runs if enabled)."""
        self.enable_fake_quant(False)

    # -- per-channel buffers, sized by the first tensor (torch.nn.modules.lazy.LazyModuleMixin)

    def initialize_parameters(self, values: Any) -> None:
        """Size per-channel parameters for ``values`` (run once, before the first call; also
        while ``torch.compile`` traces). Initial parameters: scale 1, zero point 0.

        Raises
        ------
        MissingParameterError
            If the observer is disabled: the parameters would stay the initial ones.
        """
        self.observer.initialize_parameters(values)  # called as a function, not as a module
        if self.axis is None or not is_lazy(self.scale):
            return
        check_values(values, "values to fake-quantize")
        axis = normalized_axis(self.axis, values, "values to fake-quantize")
        if not self.observer_enabled:
            raise MissingParameterError(
                "this per-channel FakeQuantize has no parameters yet and its observer is "
                "disabled: enable it (enable_observer()) or load parameters (load_state_dict, "
                "FakeQuantize.from_quantizer)."
            )
        self._materialize(values.shape[axis], values.dim())

    def _materialize(self, channels: int, ndim: int) -> None:
        with torch.no_grad():
            for buffer in (self.scale, self.zero_point, self.offset):
                cast(Any, buffer).materialize((channels,), device=buffer.device)  # UninitializedBuffer
        self._reset_parameters()
        self._ndim = ndim
        self.write_state()

    def _reset_parameters(self) -> None:
        with torch.no_grad():
            self.scale.fill_(1.0)
            self.zero_point.fill_(0)
            self.offset.fill_(2 ** (self.n_bits - 1) if self.is_signed else 0)

    # -- calls

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """Observe ``values`` (if enabled), then fake-quantize them (if enabled).

        Raises
        ------
        InvalidTypeError
            If ``values`` is not a float16/32/64 tensor.
        InvalidValueError
            As the observer does (an empty tensor, another number of channels; on the CPU,
            NaN or an infinity), for statistics whose parameters would not be finite (on the
            CPU), or for values whose shape does not fit per-channel parameters.
        MissingParameterError
            Per channel, when nothing was observed or loaded yet.
        """
        check_values(values, "values to fake-quantize")
        detached = values.detach() if values.requires_grad else values
        if self.observer_enabled:  # both checked before either is stored
            low, high, dtype = self.observer.folded(detached)
            parameters = self.observer.parameters_of(low, high, dtype)
            self._check(parameters, values)
            self.observer.store(low, high, dtype)
            self._store(parameters)
        if not self.fake_quant_enabled:
            return values
        scale, zero_point, bounds = self._laid_out(values)
        pairs = _dtype_pairs(values, scale, zero_point)
        mask = values.requires_grad and torch.is_grad_enabled()  # the gradient's
        restored, inside = fake_quantize(detached, scale, zero_point, bounds, self.rounding, pairs, mask=mask)
        return straight_through(values, restored, inside) if mask else restored

    def calculate_qparams(self) -> Parameters:
        """The observer's parameters now (see :meth:`MinMaxObserver.calculate_qparams`)."""
        return self.observer.calculate_qparams()

    def quant(self, values: torch.Tensor) -> torch.Tensor:
        """The int64 codes ``clip(round(values / scale + zero_point), low, high)`` of the current
        parameters (nothing is observed): ``self.to_quantizer().quant(values.numpy())``.

        Raises
        ------
        InvalidTypeError
            If ``values`` is not a float16/32/64 tensor.
        InvalidValueError
            On the CPU, for NaN values (no integer stands for them); for values whose shape does
            not fit per-channel parameters.
        """
        check_values(values, "values to quantize")
        scale, zero_point, bounds = self._laid_out(values)
        codes = rounded_codes(
            values.detach(), scale, zero_point, self.rounding, _dtype_pairs(values, scale, zero_point)
        )
        require(
            ~torch.isnan(codes).any(),
            f"cannot quantize NaN: no integer stands for it (values of shape "
            f"{tuple(values.shape)}, dtype {values.dtype}). Remove or replace NaN first, e.g. with "
            f"torch.nan_to_num.",
        )
        return torch.clamp(codes, *bounds).to(torch.int64)

    def dequant(self, codes: torch.Tensor) -> torch.Tensor:
        """``scale * (codes - zero_point)`` in float64, as intquant's ``dequant`` of int64 codes.

        Raises
        ------
        InvalidTypeError
            If ``codes`` is not an integer tensor.
        InvalidValueError
            For codes whose shape does not fit per-channel parameters.
        """
        if not isinstance(codes, torch.Tensor) or codes.dtype.is_floating_point or codes.is_complex():
            kind = f"{codes.dtype} tensor" if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise InvalidTypeError(
                f"dequant takes integer codes (a tensor of an integer dtype, as quant returns); got a {kind}."
            )
        scale, zero_point, _ = self._laid_out(codes)
        return scale * (codes.to(torch.float64) - zero_point.to(torch.float64))

    def _check(self, parameters: Parameters, values: torch.Tensor) -> None:
        """Refuse parameters intquant refuses (on the CPU)."""
        require(
            parameters.valid if self.axis is None else parameters.valid.all(),
            f"the statistics observed (values of shape {tuple(values.shape)}, dtype "
            f"{values.dtype}) give a scale that is not finite or a zero point beyond int64: the "
            f"range is too wide for the dtype, or too far from 0 for its width. Observe float64 "
            f"values, use more bits, or zero_in_range=True.",
        )

    def _store(self, parameters: Parameters) -> None:
        self.scale.copy_(parameters.scale)
        self.zero_point.copy_(parameters.zero_point)
        self.offset.copy_(parameters.offset)

    def _laid_out(
        self, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``(scale, zero_point, (low, high))`` shaped to broadcast against ``values`` (the
        bounds as float64)."""
        scale, zero_point, offset = self.scale, self.zero_point, self.offset
        if self.axis is None:
            if values.dim() == 0:  # shape (1,) would broadcast a 0-d tensor to (1,)
                scale, zero_point, offset = scale.reshape(()), zero_point.reshape(()), offset.reshape(())
        else:
            if self.ndim is None:  # not materialized yet
                raise MissingParameterError(
                    "this per-channel FakeQuantize has no parameters yet: call it with the "
                    "observer enabled, or load them (load_state_dict, FakeQuantize.from_quantizer)."
                )
            channels = scale.numel()
            axis = normalized_axis(self.axis, values, "values")
            if values.shape[axis] != channels or values.dim() != self.ndim:
                raise InvalidValueError(
                    f"the per-channel parameters apply to {self.ndim}-dimensional values with "
                    f"{channels} channels along axis {self.axis}; got values of shape "
                    f"{tuple(values.shape)}."
                )
            shape = [1] * values.dim()
            shape[axis] = channels
            scale, zero_point, offset = scale.view(shape), zero_point.view(shape), offset.view(shape)
        offset64 = offset.to(torch.float64)
        low = float(self.is_narrow) - offset64
        high = float(2**self.n_bits - 1) - offset64
        return scale, zero_point, (low, high)

    # -- intquant's quantizers

    def to_quantizer(self) -> UniformQuantizer:
        """The module's state as an intquant :class:`~intquant.UniformQuantizer`: its options,
        the observer's statistics (``rmin``/``rmax`` of the statistics' dtype; none if nothing
        was observed) and the module's parameters, typed as intquant's calibration types them
        (per channel: arrays of the grid shape ``(1, .., C, .., 1)``). Its ``quant`` gives the
        module's codes.

        Raises
        ------
        MissingParameterError
            Per channel, when the module has no parameters yet.
        """
        if self.axis is not None and self.ndim is None:
            raise MissingParameterError(
                "this per-channel FakeQuantize has no parameters yet: call it with the observer "
                "enabled first."
            )
        options = QuantizationOptions(
            self.n_bits,
            self.is_signed,
            self.is_symmetric,
            **_changed_extras(self),
        )
        options.is_narrow = self.is_narrow
        stats = None if self.observer.is_empty() else self.observer.to_statistics()
        scale = self.scale.detach().cpu().numpy().copy()
        zero_point = self.zero_point.detach().cpu().numpy().copy()
        offset = self.offset.detach().cpu().numpy().copy()
        if self.axis is None:
            held: tuple[Any, Any, Any] = (numpy.float64(scale[0]), numpy.int64(zero_point[0]), int(offset[0]))
        else:
            assert self.ndim is not None  # set with the parameters
            grid = [1] * self.ndim
            grid[self.axis % self.ndim] = scale.size
            offsets: Any = int(offset[0]) if (offset == offset[0]).all() else offset.reshape(grid)
            held = (scale.reshape(grid), zero_point.reshape(grid), offsets)
        params = UniformQuantizationParameters(*_as_calibrated(held, options, stats))
        return UniformQuantizer(options, stats, params)

    @classmethod
    def from_quantizer(cls, quantizer: UniformQuantizer, *, observer_enabled: bool = False) -> FakeQuantize:
        """A module holding ``quantizer``'s options, parameters and (float) statistics.

        The observer starts disabled (the parameters are used as they are) unless
        ``observer_enabled``; then observing continues from the statistics. The quantizer must be
        one the module can compute: ``n_bits`` options without ``is_qat``, ``no_clipping`` or
        ``block_size``; a float scale and integer zero point (and offset), per tensor or per
        axis (grid shape ``(1, .., C, .., 1)``).

        Raises
        ------
        InvalidTypeError
            If ``quantizer`` is not a UniformQuantizer, or its parameters are not a float scale
            and integer zero point and offset.
        InvalidOptionsError
            For options the module cannot follow (``is_qat``, ``no_clipping``, ``block_size``).
        MissingParameterError
            If it has no options or parameters.
        InvalidValueError
            For parameters of the wrong shape, or a scale that is zero or not finite.
        """
        if not isinstance(quantizer, UniformQuantizer):
            raise InvalidTypeError(
                f"FakeQuantize.from_quantizer takes an intquant.UniformQuantizer; got "
                f"{type(quantizer).__name__}."
            )
        if not hasattr(quantizer, "n_bits"):
            raise MissingParameterError(
                "this quantizer has no options (no n_bits); create it with a QuantizationOptions."
            )
        refused = [
            name
            for name, value in (
                ("is_qat", quantizer.is_qat),
                ("no_clipping", quantizer.no_clipping),
                ("block_size", quantizer.block_size is not None),
                ("full_range", bool(getattr(quantizer, "full_range", False))),  # not observed yet
            )
            if value
        ]
        if refused:
            raise InvalidOptionsError(
                f"FakeQuantize follows clipped per-tensor or per-axis quantizers calibrated on "
                f"ranges; this quantizer has {', '.join(refused)}. Use intquant.torch.fake_quant "
                f"(or TorchUniformQuantizer) with it instead."
            )
        scale, zero_point, offset = _loaded_parameters(quantizer)
        module = cls(
            quantizer.n_bits,
            is_signed=bool(quantizer.is_signed),
            is_symmetric=bool(quantizer.is_symmetric),
            is_narrow=bool(quantizer.is_narrow),
            rounding=quantizer.rounding,
            axis=quantizer.axis,
            zero_in_range=bool(quantizer.zero_in_range),
            power_of_two_scale=bool(quantizer.power_of_two_scale),
        )
        if scale.ndim:
            module._materialize(scale.size, scale.ndim)
        with torch.no_grad():
            module.scale.copy_(torch.from_numpy(scale.reshape(-1)))
            module.zero_point.copy_(torch.from_numpy(zero_point.reshape(-1)))
            module.offset.copy_(torch.from_numpy(offset.reshape(-1)))
        rmin = getattr(quantizer, "rmin", None)
        rmax = getattr(quantizer, "rmax", None)
        if rmin is not None and rmax is not None and numpy.asarray(rmin).dtype.kind == "f":
            module.observer.load_statistics(quantizer)
        module.enable_observer(observer_enabled)
        return module


# -- switches for model.apply, as torch.ao.quantization's


def enable_observer(module: torch.nn.Module) -> None:
    """``model.apply(enable_observer)``: enable the observer of every :class:`FakeQuantize`."""
    if isinstance(module, FakeQuantize):
        module.enable_observer()


def disable_observer(module: torch.nn.Module) -> None:
    """``model.apply(disable_observer)``: freeze every :class:`FakeQuantize`'s parameters."""
    if isinstance(module, FakeQuantize):
        module.disable_observer()


def enable_fake_quant(module: torch.nn.Module) -> None:
    """``model.apply(enable_fake_quant)``: fake-quantize in every :class:`FakeQuantize`."""
    if isinstance(module, FakeQuantize):
        module.enable_fake_quant()


def disable_fake_quant(module: torch.nn.Module) -> None:
    """``model.apply(disable_fake_quant)``: pass the values through every :class:`FakeQuantize`."""
    if isinstance(module, FakeQuantize):
        module.disable_fake_quant()


# -- helpers


def _dtype_pairs(
    values: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor
) -> list[DtypePair] | None:
    """The dtype pairs the parameters need for ``values``, read back from CPU tensors in eager
    calls (no synchronization there; :func:`intquant.torch.kernels.rounded_codes` then computes
    only those); None elsewhere (every pair, selected on the device)."""
    if values.device.type != "cpu" or compiling() or values.dtype == torch.float64 or values.dim() == 0:
        return None
    if scale.numel() == 1:
        magnitude, zero = abs(float(scale)), int(zero_point)
        return dtype_pairs(values.dtype, (magnitude, magnitude), (zero, zero))
    low_scale, high_scale = torch.aminmax(scale.abs())
    low_zero, high_zero = torch.aminmax(zero_point)
    return dtype_pairs(values.dtype, (float(low_scale), float(high_scale)), (int(low_zero), int(high_zero)))


def _changed_extras(module: FakeQuantize) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    if module.rounding != "half_even":
        extras["rounding"] = module.rounding
    if module.axis is not None:
        extras["axis"] = module.axis
    if module.observer.zero_in_range:
        extras["zero_in_range"] = True
    if module.observer.power_of_two_scale:
        extras["power_of_two_scale"] = True
    return extras


def _as_calibrated(
    held: tuple[Any, Any, Any], options: QuantizationOptions, stats: Any
) -> tuple[Any, Any, Any]:
    """The parameters ``held`` by a module, as intquant's calibration types them: intquant's own
    parameters from ``stats`` when they are the same numbers (a zero point of 0 is a Python int
    in some cases), else ``held`` as it is."""
    if stats is None:
        return held
    try:
        computed = compute_parameters(options, stats)
    except IntquantError:  # statistics intquant refuses: the held parameters came from elsewhere
        return held
    same = all(
        numpy.shape(mine) == numpy.shape(theirs) and numpy.array_equal(mine, theirs)
        for mine, theirs in zip(held, computed, strict=True)
    )
    return computed if same else held


def _loaded_parameters(quantizer: UniformQuantizer) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """The quantizer's parameters as float64 / int64 arrays (0-d per tensor, the grid shape per
    axis), after checking that the module can compute with them."""
    scale, zero_point, offset = (getattr(quantizer, name) for name in ("scale", "zero_point", "offset"))
    if scale is None or zero_point is None or offset is None:
        missing = [name for name in ("scale", "zero_point", "offset") if getattr(quantizer, name) is None]
        raise MissingParameterError(
            f"this quantizer has no {', '.join(missing)}; compute its parameters first "
            f"(compute_quantization_parameters)."
        )
    scales, zero_points, offsets = numpy.asarray(scale), numpy.asarray(zero_point), numpy.asarray(offset)
    if scales.dtype.kind != "f" or zero_points.dtype.kind not in "iu" or offsets.dtype.kind not in "iu":
        raise InvalidTypeError(
            f"FakeQuantize computes with a float scale and an integer zero point and offset (as "
            f"intquant's calibration gives them); got a scale of dtype {scales.dtype}, a zero point "
            f"of dtype {zero_points.dtype} and an offset of dtype {offsets.dtype}. Convert them, e.g. "
            f"quantizer.zero_point = numpy.int64(quantizer.zero_point)."
        )
    check_scale(scale)
    if zero_points.dtype.kind == "u" and numpy.any(zero_points > numpy.iinfo(numpy.int64).max):
        raise InvalidValueError(f"the zero point {zero_point!r} does not fit in int64.")
    axis = quantizer.axis
    if scales.ndim:
        rank = scales.ndim
        if axis is None or not -rank <= axis < rank or scales.shape[axis] != scales.size:
            raise InvalidValueError(
                f"per-channel parameters must have the grid shape (1, .., C, .., 1) with C along "
                f"the quantizer's axis ({axis}); got a scale of shape {scales.shape}."
            )
    elif axis is not None:
        raise InvalidValueError(
            f"a quantizer with axis={axis} needs per-channel parameters of the grid shape "
            f"(1, .., C, .., 1); got a scalar scale. Calibrate it per axis first."
        )
    for name, value in (("zero point", zero_points), ("offset", offsets)):
        if value.ndim and value.shape != scales.shape:
            raise InvalidValueError(
                f"the {name} must be a scalar or have the scale's shape {scales.shape}; got shape "
                f"{value.shape}."
            )
    grid = scales.shape
    return (
        scales.astype(numpy.float64),
        numpy.broadcast_to(zero_points, grid).astype(numpy.int64),
        numpy.broadcast_to(offsets, grid).astype(numpy.int64),
    )

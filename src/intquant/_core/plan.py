"""The quantization plan: what ``quant`` and ``dequant`` compute, said once.

A plan is made for one quantizer's parameters, one input dtype and one shape, validated as it is
made, and cached by those *values* (a quantizer whose attributes change gets another plan, never
a stale one). Every backend only executes plans: numpy and numba (:mod:`intquant._core.execute`),
torch (steps to tensors), ONNX (steps to nodes), dask and the command line (plans restricted to a
chunk's blocks). einops' ``TransformRecipe`` is the pattern.

Quantization, per block ``g`` (one block per tensor)::

    q = clip(round(float(values, D_g) / scale_g + zero_point_g), low_g, high_g)   as int64

* ``D_g`` (the *division* dtype) and ``A_g`` (the *addition* dtype, in which the quotient and
  the zero point are added) are the dtypes numpy 1.24 computes ``values / scale`` and
  ``quotient + zero_point`` in, with its value-based casting (:mod:`intquant._numpy124.promotion`);
  true division of integers runs in float64. ``scale_g`` is held in ``D_g`` and
  ``zero_point_g`` in ``A_g`` already. Blocks sharing ``(D, A)`` form one :class:`QuantStep`.
* ``round`` is the rounding option (half to even by default).
* ``[low, high] = [-offset (+1 if narrow), 2**n_bits - 1 - offset]``, or no clipping: with
  ``no_clipping``, and, under the ``"concrete-ml-1.7"`` convention, for QAT values whose
  parameters were inferred (``is_qat and not is_precomputed_qat``), whose codes Concrete ML 1.7
  never clips. Concrete ML 1.8 and later (``"concrete-ml-1.9"``) clip those too: only
  ``no_clipping`` turns clipping off (:data:`CLIPS_INFERRED_QAT`).
* 0-d values follow numpy's scalar rules (a 0-d array is a scalar for numpy 1.24: no
  value-based casting between two scalars).

Dequantization, per block: ``x = float(scale_g, M_g) * (float(q, S_g) - float64(zero_point_g))``
with ``S_g``/``M_g`` numpy 1.24's dtypes for the subtraction and the multiplication (float64 for
integer codes); the blocks' values are merged in the widest of the ``M_g``.

Parameters numpy would broadcast by itself (array parameters without ``axis``/``block_size``,
which the reference allows) make a *generic* plan: numpy 1.24's dtypes are then decided per
operation at run time, as the reference does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy

from intquant._core.checks import check_n_bits, check_scale
from intquant._core.formulas import integer_bounds
from intquant._core.granularity import BlockLayout, Granularity, PerTensor, select_blocks
from intquant._numpy124.promotion import as_numpy_operand, legacy_result_type, legacy_result_types
from intquant.errors import InvalidDtypeError, InvalidValueError

__all__ = [
    "CLIPS_INFERRED_QAT",
    "CONCRETE_ML_1_7",
    "CONCRETE_ML_1_9",
    "CONVENTIONS",
    "clip_dtype",
    "DequantPlan",
    "DequantStep",
    "QuantPlan",
    "QuantStep",
    "QuantizerSettings",
    "dequant_plan",
    "dequant_plan_for",
    "quant_plan",
    "representable_range",
    "restricted_dequant_plan",
    "restricted_quant_plan",
    "tensor_dequant_plan",
    "tensor_quant_plan",
]

#: The convention a plan follows: Concrete ML 1.7.0's formulas and clipping rules (the seed's).
CONCRETE_ML_1_7 = "concrete-ml-1.7"
#: Concrete ML 1.8.0's and 1.9.0's (one ``quantizers.py``): statistics without ``uvalues``, no
#: QAT scale inferred from them, the codes of QAT values clipped unless ``no_clipping``.
CONCRETE_ML_1_9 = "concrete-ml-1.9"
#: Every convention, oldest first. An object follows one (its class's ``convention``).
CONVENTIONS = (CONCRETE_ML_1_7, CONCRETE_ML_1_9)
#: Whether a convention clips the codes of QAT values whose parameters were inferred
#: (``is_qat and not is_precomputed_qat``): Concrete ML 1.7 does not (it could not know their
#: grid), 1.8 and later do.
CLIPS_INFERRED_QAT: dict[str, bool] = {CONCRETE_ML_1_7: False, CONCRETE_ML_1_9: True}

_FLOAT64 = numpy.dtype(numpy.float64)
_COMPILED_FLOATS = (numpy.dtype(numpy.float32), _FLOAT64)

#: Why a plan does not clip.
NO_CLIPPING = "no_clipping is set"
INFERRED_QAT = "QAT parameters were inferred from the values (is_qat and not is_precomputed_qat)"


class _PlanCache:
    """Plans by key, the oldest dropped beyond ``size``; safe to share between threads (a plan
    is immutable, and two threads building one plan build equal ones)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._plans: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def lookup(self, key: Any) -> Any:
        """The plan of ``key``, or None."""
        return self._plans.get(key)

    def store(self, key: Any, plan: Any) -> Any:
        """Keep ``plan`` under ``key``; return it."""
        with self._lock:
            if len(self._plans) >= self._size:
                self._plans.pop(next(iter(self._plans)), None)
            self._plans[key] = plan
        return plan

    def get(self, key: Any, build: Callable[[], Any]) -> Any:
        """The plan of ``key``, built by ``build()`` and kept if there is none yet."""
        plan = self._plans.get(key)
        return plan if plan is not None else self.store(key, build())


_QUANT_PLANS = _PlanCache(256)
_DEQUANT_PLANS = _PlanCache(256)


class QuantizerSettings(NamedTuple):
    """What a plan depends on besides the input: a quantizer's parameters and options, read once.

    ``scale``, ``zero_point`` and ``offset`` are the quantizer's own values (Python or numpy
    numbers, or arrays over the block grid); ``granularity`` applies when the scale is an array.
    """

    scale: Any
    zero_point: Any
    offset: Any
    n_bits: Any  # None: the quantizer has no options
    is_narrow: bool
    unclipped: str | None  # why codes are not clipped, or None
    rounding: str
    granularity: Granularity
    convention: str = CONCRETE_ML_1_7

    @property
    def grouped(self) -> bool:
        """Whether the parameters are per axis or per block (arrays, with a granularity)."""
        return (
            isinstance(self.scale, numpy.ndarray)
            and self.scale.ndim > 0
            and not isinstance(self.granularity, PerTensor)
        )

    def key(self) -> tuple[Any, ...]:
        """A hashable key telling settings apart by value, bit for bit (``numpy.int64(7)`` and
        ``numpy.float64(7.0)`` differ: they promote differently)."""
        return (
            _fingerprint(self.scale),
            _fingerprint(self.zero_point),
            None if self.unclipped else _fingerprint(self.offset),
            self.n_bits if self.unclipped is None else None,
            self.is_narrow,
            self.unclipped,
            self.rounding,
            self.granularity,
            self.convention,
        )


@dataclass(frozen=True, eq=False)
class QuantStep:
    """Blocks sharing one pair of dtypes: ``round(float(values, division) / scale + zero_point)``
    with the addition in ``addition``.

    ``scale`` (in ``division``) and ``zero_point`` (in ``addition``) are numpy scalars per tensor,
    else arrays of the layout's ``parameter_shape``; ``blocks`` selects the blocks this step
    computes (a bool array of that shape), None for all of them.
    """

    division: numpy.dtype[Any]
    addition: numpy.dtype[Any]
    scale: Any
    zero_point: Any
    blocks: numpy.ndarray | None


@dataclass(frozen=True, eq=False)
class QuantPlan:
    """Everything ``quant`` computes for one quantizer, input dtype and shape.

    ``layout`` is None per tensor (the plan then fits any shape of the same rank);
    ``bounds`` are ints, or int64 arrays of the layout's ``parameter_shape`` when blocks differ,
    or None without clipping (``unclipped`` says why); ``span`` is the widest ``(low, high)``.
    A ``generic`` plan has no steps: numpy's own broadcasting with numpy 1.24's dtypes per
    operation (``scale``, ``zero_point`` and ``bounds`` as given).
    """

    convention: str
    values_dtype: numpy.dtype[Any]
    scalar_input: bool
    layout: BlockLayout | None
    steps: tuple[QuantStep, ...]
    rounding: str
    bounds: tuple[Any, Any] | None
    span: tuple[int, int] | None
    unclipped: str | None
    generic: bool
    scale: Any  # the quantizer's own parameters, for messages and the generic path
    zero_point: Any
    #: ``(dtype, low, high)``: the rounded codes are clipped in ``dtype`` (their own when it holds
    #: every bound exactly, else float64) to ``bounds`` cast to it; None without clipping.
    clip: tuple[numpy.dtype[Any], Any, Any] | None = field(init=False)
    #: Whether the compiled one-pass loop can run this plan on large arrays: per tensor, half to
    #: even, float32/float64 values divided in their own dtype and added in float32/float64.
    compiled: bool = field(init=False)

    def __post_init__(self) -> None:
        _own_parameters(self)
        compiled = (
            self.layout is None
            and not self.generic
            and not self.scalar_input
            and self.rounding == "half_even"
            and self.values_dtype in _COMPILED_FLOATS
            and self.steps[0].division == self.values_dtype
            and self.steps[0].addition in _COMPILED_FLOATS
        )
        object.__setattr__(self, "compiled", compiled)
        clip = None
        if self.bounds is not None and not self.generic and self.span is not None:
            several = self.rounding == "stochastic" or len(self.steps) > 1  # rounded in float64
            codes = _FLOAT64 if several else self.steps[0].addition
            dtype = clip_dtype(codes, *self.span)
            low, high = self.bounds
            clip = (dtype, numpy.asarray(low, dtype=dtype)[()], numpy.asarray(high, dtype=dtype)[()])
        object.__setattr__(self, "clip", clip)


@dataclass(frozen=True, eq=False)
class DequantStep:
    """Blocks sharing one pair of dtypes: ``scale * (float(codes, subtraction) - zero_point)``
    with the multiplication in ``multiplication``; parameters as in :class:`QuantStep`."""

    subtraction: numpy.dtype[Any]
    multiplication: numpy.dtype[Any]
    zero_point: Any
    scale: Any
    blocks: numpy.ndarray | None


@dataclass(frozen=True, eq=False)
class DequantPlan:
    """Everything ``dequant`` computes for one quantizer, codes dtype and shape; ``dtype`` is the
    result's dtype (the widest of the steps' multiplication dtypes)."""

    convention: str
    codes_dtype: numpy.dtype[Any]
    scalar_input: bool
    layout: BlockLayout | None
    steps: tuple[DequantStep, ...]
    dtype: numpy.dtype[Any] | None  # None for a generic plan
    generic: bool
    scale: Any
    zero_point: Any
    #: Whether this is the all-float64 plan of integer codes per tensor (compiled for large ones).
    integer_codes: bool = field(init=False)
    #: Whether some codes of this dtype could give values beyond the result dtype's range (then
    #: the executor checks the values: an infinity from finite codes is refused).
    may_overflow: bool = field(init=False)
    #: The same for the values cast to float32 (``dequant(codes, dtype=numpy.float32)``).
    may_overflow_float32: bool = field(init=False)

    def __post_init__(self) -> None:
        _own_parameters(self)
        object.__setattr__(self, "may_overflow", self.generic or any(map(self._may_overflow, self.steps)))
        float32 = numpy.dtype(numpy.float32)
        object.__setattr__(
            self,
            "may_overflow_float32",
            self.generic or any(self._may_overflow(step, float32) for step in self.steps),
        )
        integer_codes = (
            self.layout is None
            and not self.generic
            and self.codes_dtype.kind in "iu"
            and self.steps[0].subtraction == _FLOAT64
            and self.steps[0].multiplication == _FLOAT64
        )
        object.__setattr__(self, "integer_codes", integer_codes)

    def _may_overflow(self, step: DequantStep, result: numpy.dtype[Any] | None = None) -> bool:
        """Whether ``|scale| * (|q| + |zero_point|)`` can exceed the largest value of ``result``
        (default: the multiplication dtype) for codes of this dtype (float codes: always assumed
        possible)."""
        result = step.multiplication if result is None else result
        if self.codes_dtype.kind == "f" or step.multiplication.kind != "f":
            return True
        if numpy.size(step.scale) == 0:  # a restricted plan over no blocks
            return False
        info = numpy.iinfo(self.codes_dtype) if self.codes_dtype.kind in "iu" else None
        largest_code = 1.0 if info is None else float(max(abs(info.min), info.max))
        with numpy.errstate(over="ignore", invalid="ignore"):
            reach = float(numpy.max(numpy.abs(numpy.asarray(step.scale, dtype=numpy.float64)))) * (
                largest_code
                + float(numpy.max(numpy.abs(numpy.asarray(step.zero_point, dtype=numpy.float64))))
            )
        return not reach < float(numpy.finfo(result).max)


def quant_plan(settings: QuantizerSettings, dtype: numpy.dtype[Any], shape: tuple[int, ...]) -> QuantPlan:
    """The plan quantizing ``dtype`` values of ``shape`` with ``settings`` (cached by value).

    Raises
    ------
    MissingParameterError, InvalidValueError
        For a zero or non-finite scale, an invalid ``n_bits`` when clipping, or values whose
        shape does not fit per-axis/per-block parameters.
    """
    grouped = settings.grouped
    key = (settings.key(), dtype, tuple(shape) if grouped else len(shape))
    plan = _QUANT_PLANS.lookup(key)
    if plan is None:
        plan = _QUANT_PLANS.store(key, _build_quant_plan(settings, numpy.dtype(dtype), tuple(shape)))
    return plan


def dequant_plan(settings: QuantizerSettings, dtype: numpy.dtype[Any], shape: tuple[int, ...]) -> DequantPlan:
    """The plan dequantizing ``dtype`` codes of ``shape`` with ``settings`` (cached by value);
    only the scale, zero point and granularity matter (see :func:`dequant_plan_for`)."""
    return dequant_plan_for(settings.scale, settings.zero_point, settings.granularity, dtype, shape)


def dequant_plan_for(
    scale: Any, zero_point: Any, granularity: Granularity, dtype: Any, shape: tuple[int, ...]
) -> DequantPlan:
    """The plan dequantizing ``dtype`` codes of ``shape`` with these parameters (cached by value).

    Raises
    ------
    InvalidDtypeError
        If the scale is neither a float nor a float64 array.
    InvalidValueError
        For codes whose shape does not fit per-axis/per-block parameters.
    """
    grouped = isinstance(scale, numpy.ndarray) and scale.ndim > 0 and not isinstance(granularity, PerTensor)
    key = (
        _fingerprint(scale),
        _fingerprint(zero_point),
        granularity if grouped else None,
        dtype,
        tuple(shape) if grouped else len(shape),
    )
    plan = _DEQUANT_PLANS.lookup(key)
    if plan is None:
        settings = QuantizerSettings(scale, zero_point, None, None, False, None, "half_even", granularity)
        plan = _DEQUANT_PLANS.store(key, _build_dequant_plan(settings, numpy.dtype(dtype), tuple(shape)))
    return plan


# -- building


def _build_quant_plan(
    settings: QuantizerSettings, dtype: numpy.dtype[Any], shape: tuple[int, ...]
) -> QuantPlan:
    if settings.convention not in CONVENTIONS:
        raise InvalidValueError(
            f"unknown convention {settings.convention!r}; intquant follows {', '.join(CONVENTIONS)}."
        )
    check_scale(settings.scale)
    n_bits = check_n_bits(settings.n_bits) if settings.unclipped is None else 0
    if settings.grouped:
        return _grouped_quant_plan(settings, dtype, shape, n_bits)
    bounds = None
    if settings.unclipped is None:
        bounds = integer_bounds(n_bits, _checked_offset(settings.offset), settings.is_narrow)
    return tensor_quant_plan(
        dtype, len(shape), settings.scale, settings.zero_point, bounds, settings.rounding,
        unclipped=settings.unclipped, convention=settings.convention,
    )  # fmt: skip


def tensor_quant_plan(
    dtype: numpy.dtype[Any],
    rank: int,
    scale: Any,
    zero_point: Any,
    bounds: tuple[Any, Any] | None,
    rounding: str = "half_even",
    *,
    unclipped: str | None = NO_CLIPPING,
    convention: str = CONCRETE_ML_1_7,
) -> QuantPlan:
    """The per-tensor plan for ``dtype`` values of ``rank`` dimensions (0: numpy's scalar rules),
    parameters as given (unchecked: the kernels' entry point) and ``bounds`` (None: no clipping,
    ``unclipped`` says why). Array parameters make a generic plan (numpy broadcasting), unless
    each holds one value in at most ``rank`` dimensions."""
    key = (
        numpy.dtype(dtype), rank, _fingerprint(scale), _fingerprint(zero_point),
        None if bounds is None else (_fingerprint(bounds[0]), _fingerprint(bounds[1])),
        rounding, unclipped if bounds is None else None, convention,
    )  # fmt: skip
    return _QUANT_PLANS.get(
        key,
        lambda: _tensor_quant_plan(
            numpy.dtype(dtype), rank, scale, zero_point, bounds, rounding,
            None if bounds is not None else unclipped, convention,
        ),
    )  # fmt: skip


def _tensor_quant_plan(
    dtype: numpy.dtype[Any],
    rank: int,
    scale: Any,
    zero_point: Any,
    bounds: tuple[Any, Any] | None,
    rounding: str,
    unclipped: str | None,
    convention: str,
) -> QuantPlan:
    scalar_input = rank == 0
    scale_operand, zero_point_operand = as_numpy_operand(scale), as_numpy_operand(zero_point)
    generic = numpy.ndim(scale_operand) > 0 or numpy.ndim(zero_point_operand) > 0
    generic = generic or (bounds is not None and numpy.ndim(bounds[0]) > 0)
    if generic and not scalar_input and _one_value_each(scale_operand, zero_point_operand, bounds, rank):
        # one-element parameters (shape (1,), (1, 1), ...) broadcast like scalars over values of
        # at least their rank, but promote like arrays: numpy 1.24's dtypes come from the arrays
        division, addition = _quant_dtypes(dtype, scalar_input, scale_operand, zero_point_operand)
        if bounds is not None:
            bounds = (numpy.asarray(bounds[0]).item(), numpy.asarray(bounds[1]).item())
        step = QuantStep(
            division,
            addition,
            numpy.asarray(scale_operand, dtype=division).reshape(())[()],
            numpy.asarray(zero_point_operand, dtype=addition).reshape(())[()],
            None,
        )
        return QuantPlan(
            convention, dtype, scalar_input, None, (step,), rounding, bounds, bounds, unclipped, False,
            scale, zero_point,
        )  # fmt: skip
    span = None
    if bounds is not None:
        span = (
            (bounds[0], bounds[1]) if not generic else (int(numpy.min(bounds[0])), int(numpy.max(bounds[1])))
        )
    steps: tuple[QuantStep, ...] = ()
    if not generic:
        division, addition = _quant_dtypes(dtype, scalar_input, scale_operand, zero_point_operand)
        steps = (QuantStep(division, addition, division.type(scale), addition.type(zero_point), None),)
    return QuantPlan(
        convention, dtype, scalar_input, None, steps, rounding, bounds, span, unclipped, generic, scale,
        zero_point,
    )  # fmt: skip


def _grouped_quant_plan(
    settings: QuantizerSettings, dtype: numpy.dtype[Any], shape: tuple[int, ...], n_bits: int
) -> QuantPlan:
    layout = BlockLayout.for_values(shape, settings.granularity)
    scale = settings.scale
    layout.check_parameters(scale.shape)
    zero_point = numpy.broadcast_to(numpy.asarray(as_numpy_operand(settings.zero_point)), scale.shape)
    bounds: tuple[Any, Any] | None = None
    span = None
    if settings.unclipped is None:
        offsets = numpy.broadcast_to(_checked_offset(numpy.asarray(settings.offset)), scale.shape)
        offsets = offsets.astype(numpy.int64)
        low, high = integer_bounds(n_bits, offsets, settings.is_narrow)
        span = (int(low.min()), int(high.max())) if low.size else (0, 0)
        bounds = (
            (int(low.flat[0]), int(high.flat[0]))
            if low.size and (low == low.flat[0]).all() and (high == high.flat[0]).all()
            else (layout.laid_out(low), layout.laid_out(high))
        )
    steps = _grouped_steps(dtype, scale, zero_point, layout)
    return QuantPlan(
        settings.convention, dtype, False, layout, steps, settings.rounding, bounds, span,
        settings.unclipped, False, settings.scale, settings.zero_point,
    )  # fmt: skip


def _grouped_steps(
    dtype: numpy.dtype[Any], scale: numpy.ndarray, zero_point: numpy.ndarray, layout: BlockLayout
) -> tuple[QuantStep, ...]:
    """One step per ``(division, addition)`` pair of dtypes the blocks need."""
    divisions, division_index = legacy_result_types(dtype, scale)
    groups = _dtype_groups([_computed_in(division) for division in divisions], division_index, zero_point)
    steps = []
    for (division, addition), mask in groups.items():
        blocks = None if len(groups) == 1 else layout.laid_out(mask)
        with numpy.errstate(over="ignore", invalid="ignore"):
            scales = numpy.where(mask, scale, 1).astype(division)  # harmless values elsewhere
            zero_points = numpy.where(mask, zero_point, 0).astype(addition)
        steps.append(
            QuantStep(division, addition, layout.laid_out(scales), layout.laid_out(zero_points), blocks)
        )
    return tuple(steps)


def _dtype_groups(
    firsts: list[numpy.dtype[Any]], first_index: numpy.ndarray, second_operands: numpy.ndarray
) -> dict[tuple[numpy.dtype[Any], numpy.dtype[Any]], numpy.ndarray]:
    """The blocks (a mask over the grid) of each pair of dtypes: a block's first operation runs
    in ``firsts[first_index]``, and its second in numpy 1.24's dtype for an array of that dtype
    and the block's ``second_operands`` value as a scalar."""
    groups: dict[tuple[numpy.dtype[Any], numpy.dtype[Any]], numpy.ndarray] = {}
    for position, first in enumerate(firsts):
        selected = first_index == position
        seconds, second_index = legacy_result_types(first, second_operands[selected])
        for inner, second in enumerate(seconds):
            mask = numpy.zeros(first_index.shape, dtype=bool)
            mask[selected] = second_index == inner
            key = (first, second)
            groups[key] = groups[key] | mask if key in groups else mask
    return groups


def _build_dequant_plan(
    settings: QuantizerSettings, dtype: numpy.dtype[Any], shape: tuple[int, ...]
) -> DequantPlan:
    scale = settings.scale
    if not (
        isinstance(scale, (float, numpy.floating))
        or (isinstance(scale, numpy.ndarray) and scale.dtype == numpy.float64)
    ):
        raise InvalidDtypeError(
            f"the scale must be a float or a float64 array to dequantize; got {scale!r} of "
            f"type {type(scale).__name__}. Set it with numpy.float64(scale)."
        )
    if settings.grouped:
        scale = numpy.asarray(scale)
        layout = BlockLayout.for_values(shape, settings.granularity)
        layout.check_parameters(scale.shape)
        zero_points = numpy.broadcast_to(
            numpy.asarray(as_numpy_operand(settings.zero_point), dtype=numpy.float64), scale.shape
        )
        steps, result = _grouped_dequant_steps(
            legacy_result_types(dtype, zero_points), scale, zero_points, layout
        )
        return DequantPlan(
            settings.convention, dtype, False, layout, steps, result, False, scale, settings.zero_point
        )
    return tensor_dequant_plan(dtype, len(shape), scale, settings.zero_point, convention=settings.convention)


def tensor_dequant_plan(
    dtype: numpy.dtype[Any],
    rank: int,
    scale: Any,
    zero_point: Any,
    *,
    convention: str = CONCRETE_ML_1_7,
) -> DequantPlan:
    """The per-tensor plan dequantizing ``dtype`` codes of ``rank`` dimensions (0: numpy's scalar
    rules), parameters as given (unchecked); array parameters make a generic plan unless each
    holds one value in at most ``rank`` dimensions."""
    key = (numpy.dtype(dtype), rank, _fingerprint(scale), _fingerprint(zero_point), convention)
    return _DEQUANT_PLANS.get(
        key, lambda: _tensor_dequant_plan(numpy.dtype(dtype), rank, scale, zero_point, convention)
    )


def _tensor_dequant_plan(
    dtype: numpy.dtype[Any], rank: int, scale: Any, zero_point: Any, convention: str
) -> DequantPlan:
    scalar_input = rank == 0
    zero_point_operand = as_numpy_operand(zero_point)
    scale_operand = as_numpy_operand(scale)
    arrays = numpy.ndim(scale_operand) > 0 or numpy.ndim(zero_point_operand) > 0
    if arrays and (scalar_input or not _one_value_each(scale_operand, zero_point_operand, None, rank)):
        return DequantPlan(convention, dtype, scalar_input, None, (), None, True, scale, zero_point)
    # one-element arrays broadcast like scalars but promote like arrays (see tensor_quant_plan)
    zero = numpy.asarray(zero_point_operand, dtype=numpy.float64)[()]
    codes = numpy.empty(() if scalar_input else (1,), dtype)
    subtraction = legacy_result_type(codes, zero)
    multiplication = legacy_result_type(scale_operand, numpy.empty(codes.shape, subtraction))
    step = DequantStep(
        subtraction,
        multiplication,
        numpy.asarray(zero, dtype=subtraction).reshape(())[()],
        numpy.asarray(scale_operand, dtype=multiplication).reshape(())[()],
        None,
    )
    return DequantPlan(
        convention, dtype, scalar_input, None, (step,), multiplication, False, scale, zero_point
    )


def _grouped_dequant_steps(
    subtractions: tuple[list[numpy.dtype[Any]], numpy.ndarray],
    scale: numpy.ndarray,
    zero_point: numpy.ndarray,
    layout: BlockLayout,
) -> tuple[tuple[DequantStep, ...], numpy.dtype[Any]]:
    """One step per ``(subtraction, multiplication)`` pair of dtypes (in ``scale * centered``
    the scale is the scalar), and the dtype of the merged values."""
    groups = _dtype_groups(subtractions[0], subtractions[1], scale)
    steps = []
    for (subtraction, multiplication), mask in groups.items():
        blocks = None if len(groups) == 1 else layout.laid_out(mask)
        with numpy.errstate(over="ignore", invalid="ignore"):
            zero_points = numpy.where(mask, zero_point, 0).astype(subtraction)
            scales = numpy.where(mask, scale, 1).astype(multiplication)
        steps.append(
            DequantStep(
                subtraction, multiplication, layout.laid_out(zero_points), layout.laid_out(scales), blocks
            )
        )
    result = numpy.result_type(*(multiplication for _, multiplication in groups))
    return tuple(steps), result


def _quant_dtypes(
    dtype: numpy.dtype[Any], scalar_input: bool, scale: Any, zero_point: Any
) -> tuple[numpy.dtype[Any], numpy.dtype[Any]]:
    """The dtypes numpy 1.24 divides ``dtype`` values by ``scale`` and adds ``zero_point`` in."""
    division = _computed_in(legacy_result_type(numpy.empty(() if scalar_input else (1,), dtype), scale))
    addition = legacy_result_type(numpy.empty(() if scalar_input else (1,), division), zero_point)
    return division, addition


def _computed_in(division: numpy.dtype[Any]) -> numpy.dtype[Any]:
    """The dtype a true division resolved to ``division`` computes in (integers: float64)."""
    return division if division.kind == "f" else numpy.dtype(numpy.float64)


def _fingerprint(value: Any) -> tuple[Any, ...]:
    """A hashable key telling parameter values apart: their type and value (arrays: dtype, shape
    and bytes). Two numbers of one type are equal exactly when their bits are, but for -0.0 and
    0.0, which give the same codes and values as a zero point (the only place a zero is valid)."""
    kind = type(value)
    if kind is float or kind is int or value is None or isinstance(value, (numpy.generic, bool)):
        return (kind, value)
    if isinstance(value, numpy.ndarray):
        return (numpy.ndarray, value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (int, float)):  # subclasses of the Python numbers
        return (kind, value)
    operand = numpy.asarray(value)  # lists and the like (the generic path copes with them)
    return (type(value), operand.dtype.str, operand.shape, operand.tobytes())


def restricted_quant_plan(plan: QuantPlan, region: tuple[slice, ...]) -> QuantPlan:
    """``plan`` for the values in ``region`` of its shape only (a chunk of a larger array): the
    same codes for those values as the whole plan gives them. Per-tensor plans fit any region."""
    if plan.layout is None:
        return plan
    layout, selection = plan.layout.restricted(region)
    grid_shape = plan.layout.grid

    def select(grid: Any) -> Any:
        if grid is None or numpy.ndim(grid) == 0:
            return grid
        return layout.laid_out(select_blocks(numpy.asarray(grid).reshape(grid_shape), selection))

    steps = tuple(
        QuantStep(
            step.division, step.addition, select(step.scale), select(step.zero_point), select(step.blocks)
        )
        for step in plan.steps
    )
    bounds = plan.bounds
    if bounds is not None and numpy.ndim(bounds[0]):
        bounds = (select(bounds[0]), select(bounds[1]))
    return QuantPlan(
        plan.convention, plan.values_dtype, plan.scalar_input, layout, steps, plan.rounding, bounds,
        plan.span, plan.unclipped, plan.generic, plan.scale, plan.zero_point,
    )  # fmt: skip


def restricted_dequant_plan(plan: DequantPlan, region: tuple[slice, ...]) -> DequantPlan:
    """``plan`` for the codes in ``region`` of its shape only (see :func:`restricted_quant_plan`)."""
    if plan.layout is None:
        return plan
    layout, selection = plan.layout.restricted(region)
    grid_shape = plan.layout.grid

    def select(grid: Any) -> Any:
        if grid is None:
            return None
        return layout.laid_out(select_blocks(numpy.asarray(grid).reshape(grid_shape), selection))

    steps = tuple(
        DequantStep(
            step.subtraction,
            step.multiplication,
            select(step.zero_point),
            select(step.scale),
            select(step.blocks),
        )
        for step in plan.steps
    )
    return DequantPlan(
        plan.convention,
        plan.codes_dtype,
        False,
        layout,
        steps,
        plan.dtype,
        False,
        plan.scale,
        plan.zero_point,
    )


def representable_range(plan: QuantPlan) -> tuple[numpy.ndarray, numpy.ndarray] | None:
    """The real values the codes can stand for, per block: ``[min, max]`` of
    ``scale * (low - zero_point)`` and ``scale * (high - zero_point)`` in float64 (the ends swap
    for a negative scale), shaped to broadcast like the plan's parameters (against the values
    viewed as the layout says); None without clipping (every value is representable)."""
    if plan.bounds is None:
        return None
    low, high = plan.bounds
    scale, zero_point = numpy.asarray(plan.scale), numpy.asarray(plan.zero_point)
    if plan.layout is not None:
        scale = plan.layout.laid_out(scale)
        zero_point = plan.layout.laid_out(numpy.broadcast_to(zero_point, plan.layout.grid))
    with numpy.errstate(over="ignore", invalid="ignore"):
        scale, zero_point = scale.astype(numpy.float64), zero_point.astype(numpy.float64)
        first = scale * (numpy.asarray(low, dtype=numpy.float64) - zero_point)
        second = scale * (numpy.asarray(high, dtype=numpy.float64) - zero_point)
    return numpy.minimum(first, second), numpy.maximum(first, second)


def clip_dtype(dtype: numpy.dtype[Any], low: int, high: int) -> numpy.dtype[Any]:
    """The dtype integer-valued ``dtype`` codes are clipped to ``[low, high]`` in: their own when
    it holds both bounds exactly, else float64 (which holds the codes exactly too). Any dtype
    holding the codes and the bounds exactly clips them the same."""
    with numpy.errstate(over="ignore"):
        exact = float(dtype.type(low)) == low and float(dtype.type(high)) == high
    return dtype if exact else _FLOAT64


def _checked_offset(offset: Any) -> Any:
    """``offset`` after checking that the clipping bounds it gives are integers int64 holds
    (an offset beyond ``2**62``, or not a number, would give codes that mean nothing)."""
    if isinstance(offset, int) and not isinstance(offset, bool) and abs(offset) > 2**62:
        values = numpy.asarray(float(offset))
    else:
        values = numpy.asarray(offset)
    if values.dtype.kind not in "iuf" or not numpy.all(numpy.isfinite(values)):
        raise InvalidValueError(
            f"the offset must be a number (0, or 2**(n_bits-1) for signed codes); got {offset!r}."
        )
    if values.size and not numpy.all(numpy.abs(values.astype(numpy.float64)) <= 2.0**62):
        raise InvalidValueError(
            f"the offset {offset!r} gives clipping bounds int64 cannot hold; it should be 0, or "
            f"2**(n_bits-1) for signed codes. Recompute the parameters with "
            f"compute_quantization_parameters(options, stats)."
        )
    return offset


def _one_value_each(scale: Any, zero_point: Any, bounds: tuple[Any, Any] | None, rank: int) -> bool:
    """Whether every parameter holds one value, in at most ``rank`` dimensions."""
    parameters = [scale, zero_point, *(bounds or ())]
    return all(numpy.size(value) == 1 and numpy.ndim(value) <= rank for value in parameters)


def _own_parameters(plan: Any) -> None:
    """Give a plan its own read-only copies of array parameters: plans are cached by the values
    they were made for, so a caller changing its array in place must not change the plan."""
    for name in ("scale", "zero_point"):
        value = getattr(plan, name)
        if isinstance(value, numpy.ndarray):
            owned = value.copy()
            owned.flags.writeable = False
            object.__setattr__(plan, name, owned)

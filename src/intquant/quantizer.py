"""The uniform quantizer: options, statistics and parameters together, with quant/dequant."""

from __future__ import annotations

import threading
from typing import Any, ClassVar, Optional

import numpy

from intquant._core.calibrator import Calibrator
from intquant._core.checks import (
    as_real_array,
    check_flag,
    check_loaded_parameter_shapes,
    check_loaded_parameters,
    check_loaded_statistics,
    check_n_bits,
)
from intquant._core.codec import JSONSerializable
from intquant._core.counter_noise import CounterNoise, fresh_seed
from intquant._core.execute import dequantize_with, quantize_with
from intquant._core.extras import (
    EXTRA_OPTIONS,
    ExtraOptionDefaults,
    check_extra_options,
    copy_extra_options,
    extra_dump,
    needs_intquant_tag,
)
from intquant._core.foreign import dask_dequant, dask_quant, dask_update, is_dask_array
from intquant._core.granularity import PER_TENSOR, Granularity, granularity_of
from intquant._core.members import (
    OPTION_MEMBERS,
    PARAM_MEMBERS,
    STATS_MEMBERS,
    absent_members,
    copy_members,
    members_repr,
    same_members,
)
from intquant._core.plan import (
    CLIPS_INFERRED_QAT,
    CONCRETE_ML_1_7,
    CONCRETE_ML_1_9,
    INFERRED_QAT,
    NO_CLIPPING,
    DequantPlan,
    QuantizerSettings,
    QuantPlan,
    dequant_plan_for,
    quant_plan,
)
from intquant._core.uniques import DeferredMember
from intquant._numpy124.introsort import AVX512
from intquant.errors import MissingParameterError, SerializationError
from intquant.options import QuantizationOptions, copy_options, options_equivalent
from intquant.parameters import UniformQuantizationParameters, compute_parameters, copy_params
from intquant.statistics import (
    MinMaxQuantizationStats,
    calibrate,
    copy_statistics,
    copy_stats,
    fold_in,
    uniform_grid_check,
)

__all__ = ["UniformQuantizer", "load_quantizer"]

#: Threads sharing a quantizer without a seed draw its stochastic-rounding seed once, under this lock.
_DRAWS = threading.Lock()

_ALL_MEMBERS = OPTION_MEMBERS + STATS_MEMBERS + PARAM_MEMBERS


class UniformQuantizer(
    ExtraOptionDefaults,
    JSONSerializable,
    tag="UniformQuantizer",
    versioned_tag="intquant.UniformQuantizer",
    format_version=2,
):
    """Uniform quantizer: quantizes and dequantizes numpy arrays.

    It holds the members of the three parameter sets side by side (``n_bits`` and the five
    flags, ``rmax, rmin, uvalues``, ``scale, zero_point, offset``) and offers the methods of all
    three classes, delegating the arithmetic to :mod:`intquant.kernels`.

    Parameters
    ----------
    options : QuantizationOptions, optional
        Without options the quantizer has no ``n_bits`` attribute.
    stats : MinMaxQuantizationStats, optional
    params : UniformQuantizationParameters, optional
        A given ``scale`` is converted to ``numpy.float64``.
    no_clipping : bool
        Do not clip codes to the ``n_bits`` range.

    Examples
    --------
    >>> import numpy
    >>> from intquant import QuantizationOptions
    >>> quantizer = UniformQuantizer(QuantizationOptions(4))
    >>> values = numpy.array([-1.0, 0.0, 0.5, 2.0])
    >>> quantizer.compute_quantization_stats(values)
    >>> quantizer.compute_quantization_parameters(quantizer.quant_options, quantizer.quant_stats)
    >>> quantizer.quant(values).tolist()
    [0, 5, 8, 15]
    >>> quantizer.dequant(quantizer.quant(values)).tolist()
    [-1.0, 0.0, 0.6000000000000001, 2.0]
    """

    #: The behaviour this object follows (:data:`intquant._core.plan.CONVENTIONS`): Concrete ML
    #: 1.7's formulas and clipping rules.
    convention: ClassVar[str] = CONCRETE_ML_1_7
    #: The numpy 1.24 sort of float32 values ``uvalues`` follows (see
    #: :class:`MinMaxQuantizationStats`); copied from the statistics given.
    float32_sort: ClassVar[str] = AVX512

    # Class-level defaults, as the reference's: a quantizer made without options still has the
    # five flags (False) but no n_bits.
    is_signed: bool = False
    is_symmetric: bool = False
    is_qat: bool = False
    is_narrow: bool = False
    is_precomputed_qat: bool = False
    rmax: Optional[float] = None
    rmin: Optional[float] = None
    #: Computed when first read after compute_quantization_stats (see intquant._core.uniques).
    uvalues: DeferredMember = DeferredMember()

    def __init__(
        self,
        options: Optional[QuantizationOptions] = None,
        stats: Optional[MinMaxQuantizationStats] = None,
        params: Optional[UniformQuantizationParameters] = None,
        no_clipping: bool = False,
    ) -> None:
        self.no_clipping = check_flag("no_clipping", no_clipping)
        self._drawn_seed: int | None = None  # stochastic rounding without a seed: drawn once
        self.scale: Any = None
        self.zero_point: Any = None
        self.offset: Optional[int] = None
        if options is not None:
            self.copy_opts(options)
        if stats is not None:
            self.copy_stats(stats)
        if params is not None:
            self.copy_params(params)
        if self.scale is not None:
            self.scale = numpy.float64(self.scale)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UniformQuantizer):
            return NotImplemented
        return (
            self.convention == other.convention
            and self.no_clipping == other.no_clipping
            and same_members(self, other, _ALL_MEMBERS)
            and extra_dump(self) == extra_dump(other)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return members_repr(self, (*_ALL_MEMBERS, "no_clipping"))

    # -- options
    def copy_opts(self, opts: Any) -> None:
        """Copy the six option members (and the extra options) from ``opts``."""
        copy_members(self, opts, OPTION_MEMBERS)
        copy_extra_options(self, opts)

    @property
    def quant_options(self) -> QuantizationOptions:
        """A copy of the options (needs ``n_bits``)."""
        self._require_n_bits()
        return copy_options(self)

    def is_equal(self, opts: Any, ignore_sign_qat: bool = False) -> bool:
        """Whether ``opts`` quantizes the same way (see :func:`intquant.options.options_equivalent`)."""
        return options_equivalent(self, opts, ignore_sign_qat)

    # -- statistics
    def compute_quantization_stats(self, values: numpy.ndarray) -> None:
        """Compute ``rmin``, ``rmax`` and ``uvalues`` of ``values`` (per axis or block if set;
        ``uvalues`` when first read, with this quantizer's ``float32_sort``)."""
        self.rmin, self.rmax, self.uvalues = calibrate(
            values, self.axis, self.block_size, defer_uniques=True, float32_sort=self.float32_sort
        )

    def update(self, values: numpy.ndarray) -> None:
        """Fold a batch into the statistics (see :meth:`MinMaxQuantizationStats.update`)."""
        if type(values) is not numpy.ndarray and is_dask_array(values):
            dask_update(self, values, self.axis, self.block_size)  # a tree reduction (intquant.dask)
        else:
            fold_in(self, calibrate(values, self.axis, self.block_size, float32_sort=self.float32_sort))

    def check_is_uniform_quantized(self, options: Any) -> bool:
        """Whether ``uvalues`` lie on a uniform grid of at most ``2**options.n_bits`` values."""
        return uniform_grid_check(self.uvalues, options)

    def copy_stats(self, stats: Any) -> None:
        """Copy ``rmax``, ``rmin`` and ``uvalues`` (and ``float32_sort``) from ``stats``;
        statistics without ``uvalues`` (Concrete ML 1.9's) give ``uvalues`` None.

        From a calibration object (``intquant.calibration``), copy its clipping range for this
        quantizer's options (and no ``uvalues``).
        """
        if isinstance(stats, Calibrator) and hasattr(self, "n_bits"):
            self.rmin, self.rmax = stats.range_for(self)
            self.uvalues = None
            return
        copy_statistics(self, stats)

    @property
    def quant_stats(self) -> MinMaxQuantizationStats:
        """A copy of the statistics."""
        return copy_stats(self)

    # -- parameters
    def compute_quantization_parameters(self, options: Any, stats: Any) -> None:
        """Compute ``scale``, ``zero_point``, ``offset`` from ``options`` and ``stats``."""
        self.scale, self.zero_point, self.offset = compute_parameters(options, stats, self.scale)

    def copy_params(self, params: Any) -> None:
        """Copy ``scale``, ``zero_point`` and ``offset`` from ``params``."""
        copy_members(self, params, PARAM_MEMBERS)

    @property
    def quant_params(self) -> UniformQuantizationParameters:
        """A copy of the parameters."""
        return copy_params(self)

    # -- quantization
    def quant(self, values: numpy.ndarray, dtype: Any = None, out: numpy.ndarray | None = None) -> Any:
        """Quantize: ``clip(round(values / scale + zero_point), low, high)``, as int64.

        The range is ``[-offset (+1 if is_narrow), 2**n_bits - 1 - offset]``; there is no
        clipping with ``no_clipping``, nor for QAT values whose parameters were inferred
        (``is_qat and not is_precomputed_qat``). Float16/float32 arrays are divided in their own
        precision, as numpy 1.24 does. ``round`` is the ``rounding`` option (half to even by
        default). With per-axis or per-block parameters each block uses its own. The steps are
        those of :meth:`quant_plan`.

        Codes of another dtype are those int64 codes cast, bit for bit, but computed and stored
        in one pass (no int64 intermediate). When the codes are clipped, the clipping range is
        checked to fit ``dtype`` before anything is computed; without clipping, the codes are.

        Parameters
        ----------
        values : array_like
            Values to quantize. A dask array gives its codes as a lazy dask array
            (:func:`intquant.dask.quant`, chunk by chunk; ``out`` is refused); a torch tensor
            is refused (use :mod:`intquant.torch`; see ``docs/dask.md``).
        dtype : optional
            The codes' dtype (a numpy dtype, type or name): int64 (default), int8, uint8, int16,
            uint16, int32, uint32, float32 or float64 (each must hold every code exactly: floats
            up to ``2**24`` and ``2**53``), or ``"smallest"`` (the smallest integer dtype that
            holds the clipping range, or without clipping the codes).
        out : numpy.ndarray, optional
            An array to write the codes into, and return: writable, C-contiguous, of the
            codes' shape (the values'; a 0-d array for 0-d values), of one of the dtypes above,
            not overlapping ``values``; ``dtype``, if also given, must be its dtype. It is checked
            before anything is written. NaN values found while writing (on the compiled path of
            large arrays) raise with ``out`` partly written; other errors leave it untouched.

        Raises
        ------
        MissingParameterError
            If scale, zero point or offset (or, for clipping, n_bits) are not set.
        TypeError
            For a ``dtype`` or an ``out`` dtype that codes cannot be returned in, or an ``out``
            that is not a numpy array.
        ValueError
            For a zero or non-finite scale, NaN values, codes beyond int64 without clipping,
            codes that ``dtype`` cannot hold exactly, values whose shape does not fit
            per-axis/per-block parameters, or an ``out`` of the wrong shape, not C-contiguous,
            read-only, overlapping the values, or whose dtype differs from ``dtype``.
        """
        if type(values) is not numpy.ndarray and is_dask_array(values):
            return dask_quant(self, values, dtype, out)  # lazy codes, chunk by chunk (intquant.dask)
        settings = self.settings()
        operand = as_real_array(values, "values to quantize")
        plan = quant_plan(settings, operand.dtype, operand.shape)
        return quantize_with(plan, operand, self.rng, dtype=dtype, out=out)

    def dequant(self, qvalues: numpy.ndarray, dtype: Any = None, out: numpy.ndarray | None = None) -> Any:
        """De-quantize: ``scale * (qvalues - float64(zero_point))`` (per block if so calibrated).

        Parameters
        ----------
        qvalues : array_like
            Codes to dequantize. A dask array gives a lazy dask array
            (:func:`intquant.dask.dequant`; ``out`` is refused); a torch tensor is refused.
        dtype : optional
            None (default): the formula's dtype (float64 for integer codes). float32 or
            float64: the same values cast to it, bit for bit (``dequant(q).astype(dtype)``);
            large integer codes are then computed in float64 and stored as ``dtype`` in one
            pass.
        out : numpy.ndarray, optional
            A float32 or float64 array to write the values into, cast to its dtype as
            ``dtype`` casts them, and return: writable, C-contiguous, of the values' shape (the
            codes'; a 0-d array for 0-d codes), not overlapping ``qvalues``; ``dtype``, if also
            given, must be its dtype. It is checked before anything is written, and a refusal
            (overflow included) leaves it untouched. Reusing one buffer across calls saves
            allocating, and page-faulting in, a fresh result each time: for 10M int8 codes to
            float32 that first touch of a new 40 MB array costs about as much as the
            dequantization itself (ONNX Runtime's ``DequantizeLinear`` reuses its memory pool).

        Raises
        ------
        MissingParameterError
            If scale or zero point are not set.
        InvalidDtypeError
            If the scale is neither a float nor a float64 array.
        InvalidTypeError
            If ``dtype`` is neither None, float32 nor float64, or ``out`` is not a float32 or
            float64 numpy array.
        InvalidValueError
            If a finite code's value would overflow to an infinity (values near the float
            maximum, or beyond float32's for float32 values), the codes' shape does not fit
            per-axis/per-block parameters, or ``out`` has the wrong shape, is not C-contiguous,
            is read-only, overlaps ``qvalues``, or its dtype differs from ``dtype``.
        """
        if type(qvalues) is not numpy.ndarray and is_dask_array(qvalues):
            return dask_dequant(self, qvalues, dtype, out)  # lazy values, chunk by chunk (intquant.dask)
        scale, zero_point, _ = self._require_parameters(need_offset=False)
        operand = as_real_array(qvalues, "quantized values")
        plan = dequant_plan_for(scale, zero_point, self._granularity(), operand.dtype, operand.shape)
        return dequantize_with(plan, operand, dtype, out)

    def settings(self, need_offset: bool = True) -> QuantizerSettings:
        """The parameters and options quantization depends on, read from this quantizer now.

        Raises
        ------
        MissingParameterError
            If the scale or zero point (or, with ``need_offset``, the offset; or, when codes are
            clipped, ``n_bits``) are not set.
        """
        scale, zero_point, offset = self._require_parameters(need_offset)
        if self.no_clipping:
            unclipped: str | None = NO_CLIPPING
        elif self.is_qat and not self.is_precomputed_qat and not CLIPS_INFERRED_QAT[self.convention]:
            unclipped = INFERRED_QAT  # the convention's rule (Concrete ML 1.7 does not clip these)
        else:
            unclipped = None
            if need_offset and not hasattr(self, "n_bits"):
                self._require_n_bits()  # raises; the plan checks the value once, when made
        return QuantizerSettings(
            scale,
            zero_point,
            offset,
            getattr(self, "n_bits", None),
            bool(self.is_narrow),
            unclipped,
            self.rounding,
            self._granularity(),
        )  # the seed's convention; a subclass following another one says so (compat.v1_9)

    def _granularity(self) -> Granularity:
        if self.axis is None and self.block_size is None:
            return PER_TENSOR
        return granularity_of(self.axis, self.block_size)

    def quant_plan(self, dtype: Any, shape: tuple[int, ...]) -> QuantPlan:
        """The plan :meth:`quant` executes for values of ``dtype`` and ``shape`` (cached by the
        parameters' values; see :mod:`intquant._core.plan`). Backends (torch, ONNX, dask, the
        command line) execute the same plan.

        Raises
        ------
        MissingParameterError, InvalidValueError
            As :meth:`quant` does for missing or unusable parameters and misfit shapes.
        """
        return quant_plan(self.settings(), numpy.dtype(dtype), tuple(shape))

    def dequant_plan(self, dtype: Any, shape: tuple[int, ...]) -> DequantPlan:
        """The plan :meth:`dequant` executes for codes of ``dtype`` and ``shape``."""
        scale, zero_point, _ = self._require_parameters(need_offset=False)
        return dequant_plan_for(scale, zero_point, self._granularity(), numpy.dtype(dtype), tuple(shape))

    @property
    def rng(self) -> CounterNoise | None:
        """The counter-based noise of stochastic rounding (None for the deterministic modes):
        ``u(seed, i)`` for the element of C-order flat index ``i`` of the whole array (see
        :mod:`intquant._core.counter_noise`), so every call with the same values gives the same
        codes, whole or by chunks. Without a ``seed``, one is drawn from fresh entropy on first
        use and kept by this object (and its copies and pickles, not by its JSON text): codes
        are then repeatable within the object's life, not across processes."""
        if self.rounding != "stochastic":
            return None
        if self.seed is not None:
            return CounterNoise(self.seed)
        with _DRAWS:
            drawn = getattr(self, "_drawn_seed", None)  # absent from pickles of older versions
            if drawn is None:
                drawn = self._drawn_seed = fresh_seed()
        return CounterNoise(drawn)

    def _require_parameters(self, need_offset: bool = True) -> tuple[Any, Any, Any]:
        if (
            self.scale is not None
            and self.zero_point is not None
            and (self.offset is not None or not need_offset)
        ):
            return self.scale, self.zero_point, self.offset
        missing = [name for name in PARAM_MEMBERS if getattr(self, name) is None]
        if not need_offset:
            missing = [name for name in missing if name != "offset"]
        raise MissingParameterError(
            f"the quantizer has no {', '.join(missing)} yet; call "
            f"compute_quantization_parameters(options, stats) first, or pass "
            f"UniformQuantizationParameters(scale, zero_point, offset)."
        )

    def _require_n_bits(self) -> int:
        if not hasattr(self, "n_bits"):
            raise MissingParameterError(
                "the quantizer has no options (n_bits); create it with "
                "UniformQuantizer(QuantizationOptions(n_bits), ...)."
            )
        return check_n_bits(self.n_bits)

    # -- serialization
    @staticmethod
    def convention_of_text(payload: Any) -> str | None:
        """The convention a serialized quantizer shows: Concrete ML 1.7 always writes a
        ``uvalues`` key (possibly null), 1.8 and later never (``"concrete-ml-1.9"``); None for a
        1.7 text."""
        return CONCRETE_ML_1_9 if isinstance(payload, dict) and "uvalues" not in payload else None

    def serial_tag(self) -> str:
        """``"UniformQuantizer"`` (Concrete ML's tag), or ``"intquant.UniformQuantizer"`` when
        Concrete ML would quantize differently: a rounding other than half to even, per-axis or
        per-block parameters."""
        return "intquant.UniformQuantizer" if needs_intquant_tag(self) else "UniformQuantizer"

    def serial_format_version(self) -> int:
        """2 with stochastic rounding (its noise is a function of (seed, element index) since
        version 2), else 1: the other texts are those version 1 wrote."""
        return 2 if self.rounding == "stochastic" else 1

    def dump_dict(self) -> dict[str, Any]:
        """Every member the quantizer has, then ``no_clipping`` (``n_bits`` may be absent); the
        extra options that differ from their defaults come after the option members."""
        options = {name: getattr(self, name) for name in OPTION_MEMBERS if hasattr(self, name)}
        rest = {name: getattr(self, name) for name in (*STATS_MEMBERS, *PARAM_MEMBERS, "no_clipping")}
        return {**options, **extra_dump(self), **rest}

    @staticmethod
    def load_dict(metadata: dict[str, Any], format_version: int = 0) -> UniformQuantizer:
        """Rebuild a quantizer from :meth:`dump_dict` output; absent keys keep their defaults.

        ``format_version`` is that of the ``intquant.UniformQuantizer`` tag (1, or 2 for
        stochastic rounding; the payload is the same as under Concrete ML's tag, 0). A version 1
        text with stochastic rounding loads, and the quantizer then draws version 2's
        counter-based noise (the codes differ from those version 1 drew).

        Raises
        ------
        SerializationError
            For unknown keys, or a field that would give wrong codes or a raw error later: the
            option checks of :class:`QuantizationOptions`, the statistics checks of
            :meth:`MinMaxQuantizationStats.load_dict`, the parameter checks of
            :meth:`UniformQuantizationParameters.load_dict` with an offset in
            ``[0, 2**(n_bits-1)]``, and array parameters that fit no granularity: without
            ``axis`` or ``block_size`` they may vary along one dimension only (see
            ``docs/serialization.md``).
        """
        return load_quantizer(UniformQuantizer, metadata)


def load_quantizer(klass: type[UniformQuantizer], metadata: dict[str, Any]) -> Any:
    """A quantizer of ``klass`` (:class:`UniformQuantizer` or a subclass) rebuilt from
    :meth:`UniformQuantizer.dump_dict` output, checked as :meth:`UniformQuantizer.load_dict`
    says. A key naming a member ``klass`` does not have (``uvalues`` for Concrete ML 1.9's, which
    reads a 1.7 text so) is checked, then dropped."""
    known = (*_ALL_MEMBERS, "no_clipping", *EXTRA_OPTIONS)
    if not isinstance(metadata, dict):
        raise SerializationError(f"UniformQuantizer.load_dict expects a dict; got {type(metadata).__name__}.")
    unknown = [name for name in metadata if name not in known]
    if unknown:
        raise SerializationError(
            f"UniformQuantizer.load_dict got unknown keys {unknown}; it reads {', '.join(known)}."
        )
    if "n_bits" in metadata:
        check_n_bits(metadata["n_bits"])
    for flag in (*OPTION_MEMBERS[1:], "no_clipping"):
        if flag in metadata:
            check_flag(flag, metadata[flag])
    extras = check_extra_options(**{name: metadata[name] for name in EXTRA_OPTIONS if name in metadata})
    check_loaded_statistics("UniformQuantizer", metadata)
    check_loaded_parameters("UniformQuantizer", metadata, n_bits=metadata.get("n_bits"))
    per_tensor = extras.get("axis") is None and extras.get("block_size") is None
    check_loaded_parameter_shapes("UniformQuantizer", metadata, per_tensor=per_tensor)
    absent = absent_members(klass)
    quantizer = klass()
    for name, value in {**metadata, **extras}.items():
        if name not in absent:
            setattr(quantizer, name, value)
    return quantizer

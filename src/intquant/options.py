"""Quantization options: the bit width and the kind of integer grid."""

from __future__ import annotations

from typing import Any, ClassVar

from intquant._core.checks import check_flag, check_n_bits, check_option_combination
from intquant._core.codec import JSONSerializable
from intquant._core.extras import (
    EXTRA_OPTIONS,
    ExtraOptionDefaults,
    check_extra_options,
    check_full_range,
    copy_extra_options,
    extra_dump,
    needs_intquant_tag,
)
from intquant._core.members import (
    OPTION_MEMBERS,
    copy_members,
    has_members,
    members_repr,
    require_keys,
    same_members,
)
from intquant._core.plan import CONCRETE_ML_1_7

__all__ = ["QuantizationOptions", "load_options", "options_equivalent"]


class QuantizationOptions(
    ExtraOptionDefaults,
    JSONSerializable,
    tag="QuantizationOptions",
    versioned_tag="intquant.QuantizationOptions",
    format_version=2,
):
    """Options for quantization: how many bits, and how values map onto the integer grid.

    Signed quantization allows negative codes (an offset of ``2**(n_bits-1)``). Symmetric
    quantization centres the grid on 0 (and needs signed codes). QAT quantization assumes the
    values already sit on a grid and infers only its scale. ``is_narrow`` (codes in
    ``[-2**(n-1)+1, 2**(n-1)-1]``) and ``is_precomputed_qat`` are set as attributes.

    Parameters
    ----------
    n_bits : int
        Bits per code, 1 to 32.
    is_signed, is_symmetric, is_qat : bool
        See above. ``is_symmetric`` needs ``is_signed``; ``is_qat`` excludes ``is_symmetric``.
    **extra_options
        Keyword-only options beyond the seed, described in :mod:`intquant.extensions`:
        ``rounding``, ``seed``, ``axis``, ``block_size``, ``zero_in_range``,
        ``power_of_two_scale``, ``full_range`` (signed symmetric only).

    Raises
    ------
    TypeError, ValueError
        For an ``n_bits`` that is not an int in [1, 32] or a flag that is not a bool.
    InvalidOptionsError
        (an ``AssertionError`` and ``ValueError``) for an invalid combination.

    Examples
    --------
    >>> options = QuantizationOptions(8, is_signed=True, is_symmetric=True)
    >>> options.n_bits, options.is_narrow
    (8, False)
    """

    #: The behaviour this object follows (:data:`intquant._core.plan.CONVENTIONS`).
    convention: ClassVar[str] = CONCRETE_ML_1_7

    n_bits: int
    is_signed: bool = False
    is_symmetric: bool = False
    is_qat: bool = False
    is_narrow: bool = False
    is_precomputed_qat: bool = False

    def __init__(
        self,
        n_bits: int,
        is_signed: bool = False,
        is_symmetric: bool = False,
        is_qat: bool = False,
        **extra_options: Any,
    ) -> None:
        check_n_bits(n_bits)
        flags = {
            name: check_flag(name, value)
            for name, value in (("is_signed", is_signed), ("is_symmetric", is_symmetric), ("is_qat", is_qat))
        }
        check_option_combination(**flags)
        extras = check_extra_options(**extra_options)
        check_full_range(
            flags["is_signed"], flags["is_symmetric"], False, bool(extras.get("full_range", False))
        )
        self.n_bits = n_bits
        self.is_signed = flags["is_signed"]
        self.is_symmetric = flags["is_symmetric"]
        self.is_qat = flags["is_qat"]
        for name, value in extras.items():
            setattr(self, name, value)

    def __eq__(self, other: object) -> bool:
        if not has_members(other, OPTION_MEMBERS):
            return NotImplemented
        return same_members(self, other, OPTION_MEMBERS) and extra_dump(self) == extra_dump(other)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        return members_repr(self, OPTION_MEMBERS)

    def copy_opts(self, opts: Any) -> None:
        """Copy the six option members (and the extra options) from ``opts``."""
        copy_members(self, opts, OPTION_MEMBERS)
        copy_extra_options(self, opts)

    @property
    def quant_options(self) -> QuantizationOptions:
        """A copy of these options."""
        return copy_options(self)

    def is_equal(self, opts: Any, ignore_sign_qat: bool = False) -> bool:
        """Whether ``opts`` quantizes the same way (see :func:`options_equivalent`)."""
        return options_equivalent(self, opts, ignore_sign_qat)

    def serial_tag(self) -> str:
        """``"QuantizationOptions"``, or ``"intquant.QuantizationOptions"`` for options Concrete
        ML would quantize with differently (rounding, per-axis, per-block)."""
        return "intquant.QuantizationOptions" if needs_intquant_tag(self) else "QuantizationOptions"

    def serial_format_version(self) -> int:
        """2 with stochastic rounding (its noise is a function of (seed, element index) since
        version 2), else 1: the other texts are those version 1 wrote."""
        return 2 if self.rounding == "stochastic" else 1

    def dump_dict(self) -> dict[str, Any]:
        """The six members, in order, then the extra options that differ from their defaults."""
        return {**{name: getattr(self, name) for name in OPTION_MEMBERS}, **extra_dump(self)}

    @staticmethod
    def load_dict(metadata: dict[str, Any], format_version: int = 0) -> QuantizationOptions:
        """Rebuild options from :meth:`dump_dict` output (all six seed keys required); the
        payload is the same under both tags (``format_version`` 0, 1 or 2; a version 1 text with
        stochastic rounding loads with version 2's counter-based noise)."""
        return load_options(QuantizationOptions, metadata)


def load_options(klass: type[QuantizationOptions], metadata: dict[str, Any]) -> Any:
    """Options of ``klass`` (:class:`QuantizationOptions` or a subclass taking the same
    arguments) rebuilt from :meth:`QuantizationOptions.dump_dict` output (all six seed keys
    required, extra options optional, other keys refused)."""
    require_keys(metadata, OPTION_MEMBERS, klass.__name__, optional=tuple(EXTRA_OPTIONS))
    extras = {name: metadata[name] for name in EXTRA_OPTIONS if name in metadata}
    options = klass(
        metadata["n_bits"], metadata["is_signed"], metadata["is_symmetric"], metadata["is_qat"], **extras
    )
    options.is_narrow = check_flag("is_narrow", metadata["is_narrow"])
    options.is_precomputed_qat = check_flag("is_precomputed_qat", metadata["is_precomputed_qat"])
    check_full_range(options.is_signed, options.is_symmetric, options.is_narrow, options.full_range)
    return options


def copy_options(source: Any, klass: type[QuantizationOptions] | None = None) -> Any:
    """A new :class:`QuantizationOptions` (or ``klass``) holding the six option members of
    ``source``."""
    options = (klass or QuantizationOptions)(source.n_bits)
    options.copy_opts(source)
    return options


def options_equivalent(first: Any, second: Any, ignore_sign_qat: bool = False) -> bool:
    """Whether two option sets quantize the same way.

    ``n_bits``, ``is_qat``, ``is_symmetric`` and ``is_signed`` must match; the sign is not
    compared when ``second.is_qat`` and ``ignore_sign_qat``. ``is_narrow`` and
    ``is_precomputed_qat`` are not compared.
    """
    sign_matches = (second.is_qat and ignore_sign_qat) or second.is_signed == first.is_signed
    return bool(
        second.is_qat == first.is_qat
        and sign_matches
        and second.is_symmetric == first.is_symmetric
        and second.n_bits == first.n_bits
    )

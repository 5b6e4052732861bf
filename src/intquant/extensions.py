"""The options beyond the seed (rounding, seed, axis, block_size, zero_in_range,
power_of_two_scale, full_range), under their 0.1 import path: :class:`ExtraOptions` is the frozen record
whose defaults are the seed's behaviour. Defined in :mod:`intquant._core.extras`."""

from __future__ import annotations

from intquant._core.extras import EXTRA_OPTIONS, ROUNDING_MODES, ExtraOptions, check_extra_options

__all__ = ["EXTRA_OPTIONS", "ROUNDING_MODES", "ExtraOptions", "check_extra_options"]

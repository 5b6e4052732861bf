"""Granularity as values: :class:`PerTensor`, :class:`PerAxis` and :class:`PerBlock`.

``PerAxis(k)`` is what the ``axis=k`` option gives, ``PerBlock(b)`` what ``block_size=b`` gives;
each says which block extent it gives an array of a given shape. :func:`grouped` lays an array
out block by block and :func:`ungrouped` reverses it. Defined in
:mod:`intquant._core.granularity`, re-exported here under the 0.1 import path.
"""

from __future__ import annotations

from intquant._core.granularity import (
    Granularity,
    PerAxis,
    PerBlock,
    PerTensor,
    granularity_of,
    grouped,
    ungrouped,
)

__all__ = ["Granularity", "PerAxis", "PerBlock", "PerTensor", "granularity_of", "grouped", "ungrouped"]

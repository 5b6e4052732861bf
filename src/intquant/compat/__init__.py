"""Other Concrete ML versions' behaviour, selected by namespace.

``intquant`` (and :mod:`intquant.quantizers`) follows Concrete ML 1.7.0. Each module here holds
the seed's names with another version's formulas, clipping rules, signatures and serialized
text; each object says which it follows in its ``convention`` attribute
(:data:`intquant._core.plan.CONVENTIONS`). Nothing here is a process-wide switch: objects of
several conventions live side by side, in one thread or many.

* :mod:`intquant.compat.v1_9`: Concrete ML 1.8.0 and 1.9.0 (``"concrete-ml-1.9"``).

See ``docs/compat.md``.
"""

from __future__ import annotations

__all__ = ["v1_9"]

"""Status codes the compiled quantization loop returns (shared by the loops and their dispatcher)."""

from __future__ import annotations

__all__ = ["BEYOND_INT64", "NAN_FOUND", "OK"]

OK = 0
#: Without clipping, a code is infinite or outside int64.
BEYOND_INT64 = 1
#: A code is NaN (reported before BEYOND_INT64, as on the plain-numpy path).
NAN_FOUND = 2

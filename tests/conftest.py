"""Test configuration: hypothesis explores a fixed, reproducible set of examples.

Set ``HYPOTHESIS_PROFILE=explore`` to draw new random examples instead.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("reproducible", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "reproducible"))

"""JSON serialization: ``dumps``/``loads`` (and ``dump``/``load`` on files).

The seed's classes are written exactly as Concrete ML 1.7.0 writes them; see
:mod:`intquant._core.codec` for the encoding and the tags intquant adds for what Concrete ML
cannot read.
"""

from __future__ import annotations

from intquant._core.codec import dump, dumps, load, loads

__all__ = ["dump", "dumps", "load", "loads"]

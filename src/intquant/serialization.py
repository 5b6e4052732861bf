"""JSON serialization: ``dumps``/``loads`` (and ``dump``/``load`` on files).

The seed's classes are written exactly as Concrete ML 1.7.0 writes them, those of
:mod:`intquant.compat.v1_9` as Concrete ML 1.9.0 does; ``loads`` reads the texts of Concrete ML 1.7
to 1.9, each object following the convention its text shows (``docs/compat.md``). See
:mod:`intquant._core.codec` for the encoding and the tags intquant adds for what Concrete ML
cannot read.
"""

from __future__ import annotations

from intquant._core.codec import dump, dumps, load, loads

__all__ = ["dump", "dumps", "load", "loads"]

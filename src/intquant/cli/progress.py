"""One progress bar per command, over all of its work: tqdm on stderr, shown after a second of
work, only on a terminal and without ``--quiet``; nothing when tqdm is not installed (it comes
with the ``cli`` and ``demo`` extras)."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

__all__ = ["Progress"]


class Progress:
    """A progress bar over ``total`` steps (a context manager; :meth:`advance` counts steps)."""

    def __init__(self, total: int, *, quiet: bool, unit: str = "chunk") -> None:
        self._bar: Any = None
        if quiet or not sys.stderr.isatty():
            return
        try:
            from tqdm import tqdm  # type: ignore[import-untyped]
        except ImportError:  # the progress bar is optional (pip install "intquant[cli]")
            return
        self._bar = tqdm(total=total, delay=1.0, file=sys.stderr, unit=unit, leave=False)

    def advance(self, steps: int = 1) -> None:
        """Count ``steps`` more steps done."""
        if self._bar is not None:
            self._bar.update(steps)

    def describe(self, text: str) -> None:
        """Say what is being done (shown before the bar)."""
        if self._bar is not None:
            self._bar.set_description_str(text, refresh=False)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.close()

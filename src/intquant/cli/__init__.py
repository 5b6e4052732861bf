"""The command line (``intquant``): ``calibrate``, ``quantize``, ``dequantize``, ``report`` and
``demo``. ``main`` parses the arguments; ``files`` reads inputs and writes outputs atomically."""

from __future__ import annotations

from intquant.cli.main import main

__all__ = ["main"]

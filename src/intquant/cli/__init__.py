"""The command line (``intquant``): ``calibrate``, ``quantize``, ``dequantize``, ``report`` and
``demo`` (``docs/cli.md`` describes every command, option and file format).

One module per concept: ``main`` parses the arguments and reports errors; ``commands`` runs
calibrate, quantize, dequantize and the demo; ``report`` the two-pass report; ``collect`` the
statistics collected chunk by chunk; ``quantizer_file`` the quantizer JSON (one quantizer, or one
per checkpoint array); ``files`` reads inputs and writes outputs atomically; ``messages`` puts the
library's errors in command-line terms; ``progress`` is the progress bar.
"""

from __future__ import annotations

from intquant.cli.main import main

__all__ = ["main"]

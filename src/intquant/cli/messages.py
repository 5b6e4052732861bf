"""Error messages in command-line terms.

The command line checks its own arguments first and words those errors with its flags. An error
raised deeper, by the library, is worded for Python callers; :func:`command_line_message` keeps
its first line, names the flags where the library names a parameter (``'n_bits'`` becomes
``--n-bits``), and drops the advice sentences that show Python code (``is_symmetric=False``,
``numpy.nan_to_num``): what went wrong stays, how to fix it in Python goes.
"""

from __future__ import annotations

import re

__all__ = ["command_line_message"]

#: Library wording -> command-line wording, applied in order.
_FLAGS = (
    (re.compile(r"\(is_symmetric=False\)"), "(without --symmetric)"),
    (re.compile(r"(?<![-\w])n_bits >= (\d+)"), r"--n-bits \1 or more"),
    (re.compile(r"'n_bits'"), "--n-bits"),
    (re.compile(r"'block_size'"), "--block-size"),
    (re.compile(r"(?<![-\w])block_size (\()"), r"--block-size \1"),
    (re.compile(r"(?<![-\w])axis (-?\d+) is out of range"), r"--axis \1 is out of range"),
    (re.compile(r"'percentile'"), "--percentile"),
    (re.compile(r"'seed'"), "--seed"),
)
#: A sentence that shows Python code: a keyword argument, a call, a numpy or torch name.
_PYTHON = re.compile(
    r"\b[a-z_]+=[\w'\"(\[-]"  # a keyword argument: is_symmetric=False
    r"|\b[a-z]+_[a-z_]*\(|\b\w+\.\w+\("  # a call: compute_quantization_stats(, values.filled(
    r"|\b(?:numpy|torch|intquant)\.\w"  # a library's name: numpy.nan_to_num
)
#: Sentence ends: a full stop followed by a space and a capital letter.
_SENTENCES = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def command_line_message(error: BaseException) -> str:
    """The first line of ``error``'s message, in command-line terms (see the module docstring)."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    line = text.splitlines()[0]
    for pattern, replacement in _FLAGS:
        line = pattern.sub(replacement, line)
    first, *rest = _SENTENCES.split(line)
    kept = [first, *(sentence for sentence in rest if not _PYTHON.search(sentence))]
    return " ".join(kept)

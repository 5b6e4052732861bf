"""Arrays on disk for the command line: reading inputs, writing outputs without losing data.

Inputs are ``.npy`` (memory-mapped, so files larger than memory work), ``.npz`` (``file.npz:name``
picks an array; the only one when there is one) or ``.csv`` (numbers separated by commas).
Outputs are written to a temporary file in the destination folder and renamed into place, so a
failure never leaves a partial file; an existing file is replaced only when asked, and never one
of the inputs.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy

from intquant.errors import InvalidValueError

__all__ = ["check_output", "load_array", "row_chunks", "write_array", "write_file", "write_text"]


def load_array(spec: str) -> numpy.ndarray:
    """The array named by ``spec``: a ``.npy`` path (memory-mapped), ``.npz[:name]`` or ``.csv``.

    Raises
    ------
    InvalidValueError
        For a missing file, an unknown extension, a missing ``.npz`` member, or data that are
        not numbers.
    """
    path_text, _, member = spec.partition(".npz:")
    path = Path(path_text + ".npz") if member else Path(spec)
    if not path.is_file():
        raise InvalidValueError(f"no such input file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array = numpy.load(path, mmap_mode="r", allow_pickle=False)
        elif suffix == ".npz":
            array = _npz_member(path, member)
        elif suffix == ".csv":
            array = numpy.loadtxt(path, delimiter=",", dtype=numpy.float64, ndmin=1)
        else:
            raise InvalidValueError(f"{path}: unknown input type {suffix!r}; use .npy, .npz or .csv")
    except (ValueError, OSError, EOFError) as error:
        if isinstance(error, InvalidValueError):
            raise
        raise InvalidValueError(f"{path}: cannot read it as {suffix}: {error}") from error
    if array.dtype.kind not in "biuf" or array.size == 0:
        raise InvalidValueError(
            f"{spec}: expected a non-empty array of numbers; got dtype {array.dtype}, shape {array.shape}"
        )
    return array


def _npz_member(path: Path, member: str) -> numpy.ndarray:
    with numpy.load(path, allow_pickle=False) as archive:
        names = list(archive.files)
        if not member:
            if len(names) != 1:
                raise InvalidValueError(
                    f"{path} holds {len(names)} arrays ({', '.join(names) or 'none'}); "
                    f"pick one as {path}:NAME"
                )
            member = names[0]
        if member not in names:
            raise InvalidValueError(f"{path} has no array {member!r}; it holds {', '.join(names) or 'none'}")
        return numpy.asarray(archive[member])


def row_chunks(shape: tuple[int, ...], chunk_elements: int, row_multiple: int = 1) -> Iterator[slice]:
    """Slices along axis 0 of about ``chunk_elements`` elements, each a multiple of
    ``row_multiple`` rows (a 0-d or 1-row array is one chunk)."""
    rows = shape[0] if shape else 1
    per_row = max(1, int(numpy.prod(shape[1:])) if len(shape) > 1 else 1)
    step = max(row_multiple, (chunk_elements // per_row) // row_multiple * row_multiple)
    for start in range(0, rows, step):
        yield slice(start, min(rows, start + step))


def check_output(output: Path, inputs: list[Path], force: bool) -> None:
    """Refuse to write over an input, or over an existing file without ``force``."""
    for source in inputs:
        if output.exists() and source.exists() and output.resolve() == source.resolve():
            raise InvalidValueError(
                f"refusing to write the output over the input {source}; choose another -o"
            )
    if output.exists() and not force:
        raise InvalidValueError(f"{output} exists; pass --force to replace it")
    if not output.parent.exists():
        raise InvalidValueError(f"the folder of {output} does not exist")


@contextlib.contextmanager
def _temporary_beside(path: Path, suffix: str) -> Iterator[Path]:
    """A temporary file in ``path``'s folder, renamed to ``path`` on success, removed on failure."""
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(descriptor)
    temporary = Path(name)
    temporary.chmod(0o666 & ~_umask())  # mkstemp makes it private; give it a new file's mode
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (ASCII) to ``path`` atomically."""
    with _temporary_beside(path, ".tmp") as temporary:
        temporary.write_text(text, encoding="ascii")


def write_file(path: Path, suffix: str, writer: Callable[[Path], None]) -> None:
    """Create ``path`` atomically: ``writer(temporary)`` writes a temporary file named with
    ``suffix`` in the same folder, which then replaces ``path``."""
    with _temporary_beside(path, suffix) as temporary:
        writer(temporary)


def write_array(
    path: Path, shape: tuple[int, ...], dtype: Any, fill: Callable[[numpy.ndarray], None]
) -> None:
    """Create the ``.npy`` file ``path`` atomically; ``fill(out)`` writes into its memory map."""
    with _temporary_beside(path, ".npy") as temporary:
        out = numpy.lib.format.open_memmap(temporary, mode="w+", dtype=dtype, shape=shape)
        try:
            fill(out)
            out.flush()
        finally:
            del out

"""Arrays on disk for the command line: reading inputs, writing outputs without losing data.

Inputs are ``.npy`` (memory-mapped, so files larger than memory work), ``.npz`` (``file.npz:name``
picks an array; the only one when there is one) or ``.csv`` (numbers separated by commas).
Outputs are written with ordinary buffered writes (never through a memory map, where a full disk
is a SIGBUS rather than an error) to a temporary file in the destination folder, which is removed
on any failure or interruption and otherwise moved into place. An existing file is replaced only
when asked (``replace=True``, atomically with :func:`os.replace`); otherwise the temporary file is
published with a no-replace operation, so a file that appeared at the output while it was being
written is never replaced. An input is never an output.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import signal
import tempfile
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy

from intquant.errors import InvalidValueError

__all__ = ["check_output", "load_array", "row_chunks", "write_array", "write_file", "write_text"]

#: A compressed ``.npz`` member that inflates to more than this many bytes *and* more than
#: ``_MAX_INFLATION`` times its compressed size is refused as a zip bomb, before inflating it.
_BOMB_FLOOR = 64 << 20
_MAX_INFLATION = 100
#: errno values of ``os.link`` on file systems without hard links (FAT, exFAT, some network and
#: FUSE mounts): there a placeholder created with ``O_EXCL`` claims the output name instead.
_NO_HARD_LINKS = frozenset(
    getattr(errno, name)
    for name in ("EPERM", "EOPNOTSUPP", "ENOTSUP", "ENOSYS", "EINVAL", "EMLINK")
    if hasattr(errno, name)
)
#: Signals held while a file is created, published or removed, so a handler never cuts such a
#: step halfway (the handler then runs, and its exception propagates, right after the step).
_DEFERRED_SIGNALS = frozenset(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


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
    except tokenize.TokenError as error:  # numpy's parser of a header cut short
        raise InvalidValueError(f"{path}: not a valid {suffix} file (its header is cut short)") from error
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
    """The array ``member`` of the ``.npz`` file ``path`` (its only one when ``member`` is empty),
    read only after its sizes are checked: no allocation larger than the member, nor than the
    available memory, and no zip bomb inflated."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            names = list(members)
            if not member:
                if len(names) != 1:
                    raise InvalidValueError(
                        f"{path} holds {len(names)} arrays ({', '.join(names) or 'none'}); "
                        f"pick one as {path}:NAME"
                    )
                member = names[0]
            if member not in names:
                raise InvalidValueError(
                    f"{path} has no array {member!r}; it holds {', '.join(names) or 'none'}"
                )
            return _read_member(archive, members[member], f"{path}:{member}")
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError) as error:
        # RuntimeError: an encrypted member, or (NotImplementedError) an unknown compression method
        raise InvalidValueError(f"{path}: not a valid .npz file: {error}") from error
    except tokenize.TokenError as error:
        raise InvalidValueError(
            f"{path}:{member}: not a valid .npy file (its header is cut short)"
        ) from error


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> numpy.ndarray:
    size, packed = info.file_size, info.compress_size
    if info.compress_type != zipfile.ZIP_STORED and size > _BOMB_FLOOR and size > _MAX_INFLATION * packed:
        raise InvalidValueError(
            f"{name}: refusing to inflate {size} bytes from {packed} compressed "
            f"(more than {_MAX_INFLATION}:1, a zip bomb?); save it uncompressed (numpy.save or numpy.savez)"
        )
    available = _available_memory()
    if available is not None and size > available:
        raise InvalidValueError(f"{name}: needs {size} bytes of memory; {available} are available")
    with archive.open(info) as stream:
        version = _read_magic(stream, name)
        if version == (1, 0):
            shape, _, dtype = numpy.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = numpy.lib.format.read_array_header_2_0(stream)
        else:
            raise InvalidValueError(f"{name}: unsupported .npy format version {version[0]}.{version[1]}")
        claimed = math.prod(shape) * dtype.itemsize
        held = size - stream.tell()
    if claimed > held:
        raise InvalidValueError(
            f"{name}: its header claims {shape} {dtype} values ({claimed} bytes) but it holds {held} bytes"
        )
    with archive.open(info) as stream:  # sizes checked: numpy reads it
        return numpy.asarray(numpy.lib.format.read_array(stream, allow_pickle=False))


def _read_magic(stream: IO[bytes], name: str) -> tuple[int, int]:
    try:
        major, minor = numpy.lib.format.read_magic(stream)
    except ValueError as error:
        raise InvalidValueError(f"{name}: not a .npy array: {error}") from error
    return major, minor


def _available_memory() -> int | None:
    """Bytes of memory available now (``MemAvailable`` on Linux), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


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
    if os.path.lexists(output) and not force:
        raise InvalidValueError(f"{output} exists; pass --force to replace it")
    if not output.parent.exists():
        raise InvalidValueError(f"the folder of {output} does not exist")


@contextlib.contextmanager
def _temporary_beside(path: Path, suffix: str, replace: bool) -> Iterator[Path]:
    """A temporary file in ``path``'s folder, moved to ``path`` on success, removed on any failure
    or interruption (exceptions raised by signal handlers included).

    With ``replace``, :func:`os.replace` moves it: atomic, so concurrent writers leave one complete
    file. Without, :func:`_publish_new` does, which never replaces a file that exists by then.
    """
    temporary: Path | None = None
    try:
        with _signals_deferred():  # no signal between creating the file and knowing its name
            descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
            temporary = Path(name)
            os.close(descriptor)
        temporary.chmod(0o666 & ~_umask())  # mkstemp makes it private; give it a new file's mode
        yield temporary
        if replace:
            os.replace(temporary, path)
        else:
            _publish_new(temporary, path)
    except BaseException as error:
        if temporary is not None:
            with _signals_deferred():
                temporary.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno is not None and error.filename is None:
            raise OSError(error.errno, error.strerror, str(path)) from error  # say which output
        raise


def _publish_new(temporary: Path, path: Path) -> None:
    """Move ``temporary`` to ``path`` unless something exists at ``path``, atomically.

    ``os.link`` creates the name only if it does not exist (``FileExistsError`` otherwise); the
    temporary name is then removed. Where the file system has no hard links, a placeholder
    created with ``O_EXCL`` (also atomic, also failing when the name exists) claims the name and
    ``os.replace`` puts the complete file over the placeholder; signals are held meanwhile, so the
    empty placeholder is never left behind. (Only a ``--force`` writer replacing the placeholder in
    that instant could be replaced in turn: by a complete file, never a partial one.)
    """
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise _appeared(path) from None
    except OSError as error:
        if error.errno not in _NO_HARD_LINKS:
            raise
    else:
        temporary.unlink()
        return
    with _signals_deferred():
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise _appeared(path) from None
        placeholder = os.fstat(descriptor)
        os.close(descriptor)
        try:
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                if os.path.samestat(os.stat(path), placeholder):  # still ours: remove it
                    path.unlink()
            raise


def _appeared(path: Path) -> InvalidValueError:
    return InvalidValueError(f"output {path} appeared while writing; not replaced (use --force)")


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP (delivered when the block ends) where the platform can."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _sync(path: Path) -> None:
    """Flush ``path``'s data to the disk: a file system that allocates late reports a full disk
    here, before the file is published."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_text(path: Path, text: str, *, replace: bool = False) -> None:
    """Write ``text`` (ASCII) to ``path`` atomically; over an existing ``path`` only if ``replace``."""
    data = text.encode("ascii")
    write_file(path, ".tmp", lambda temporary: temporary.write_bytes(data), replace=replace)


def write_file(path: Path, suffix: str, writer: Callable[[Path], object], *, replace: bool = False) -> None:
    """Create ``path`` atomically: ``writer(temporary)`` writes a temporary file named with
    ``suffix`` in the same folder, which then becomes ``path`` (over an existing one only if
    ``replace``). ``writer`` must write with ordinary file writes, not through a memory map."""
    with _temporary_beside(path, suffix, replace) as temporary:
        writer(temporary)
        _sync(temporary)


def write_array(
    path: Path,
    shape: tuple[int, ...],
    dtype: Any,
    chunks: Iterable[numpy.ndarray],
    *,
    replace: bool = False,
) -> None:
    """Create the ``.npy`` file ``path`` atomically from ``chunks``: consecutive row blocks of a C-order
    array of ``shape`` (the whole 0-d array for ``shape == ()``), cast to ``dtype`` as assignment
    casts. Written with ordinary writes, so a full disk raises ``OSError`` (``ENOSPC``)."""

    def write(temporary: Path) -> None:
        with temporary.open("wb") as file:
            _write_npy(file, tuple(shape), numpy.dtype(dtype), chunks)

    write_file(path, ".npy", write, replace=replace)


def _write_npy(file: IO[bytes], shape: tuple[int, ...], dtype: numpy.dtype, chunks: Iterable[Any]) -> None:
    """The ``.npy`` header, then each chunk's bytes, checked to add up to ``shape``."""
    header = {"descr": numpy.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    total = math.prod(shape)
    try:
        numpy.lib.format.write_array_header_1_0(file, header)
    except ValueError:  # a header longer than 64 KiB
        numpy.lib.format.write_array_header_2_0(file, header)
    written = 0
    for chunk in chunks:
        block = numpy.ascontiguousarray(numpy.asarray(chunk, dtype=dtype))
        if block.shape[1:] != shape[1:] or written + block.size > total:
            raise ValueError(f"a chunk of shape {block.shape} does not fit an array of shape {shape}")
        file.write(block.reshape(-1).data.cast("B"))
        written += block.size
    if written != total:
        raise ValueError(f"wrote {written} of the {total} values of an array of shape {shape}")

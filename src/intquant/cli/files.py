"""Arrays on disk for the command line: reading inputs, writing outputs without losing data.

Inputs (extensions in any case):

* ``.npy``: memory-mapped, so files larger than memory work;
* ``.npz`` and ``.safetensors`` archives: ``file.npz:name`` is one array; ``file.npz`` alone is the
  whole archive, a *checkpoint* (:func:`open_archive`); ``.safetensors`` needs the
  ``safetensors`` package;
* ``.csv``: numbers separated by commas, one row per line; a first line holding no number at
  all is a header, and is skipped.

Outputs are written with ordinary buffered writes (never through a memory map, where a full disk
is a SIGBUS rather than an error) to a temporary file in the destination folder, which is removed
on any failure or interruption and otherwise moved into place. An existing file is replaced only
when asked (``replace=True``, atomically with :func:`os.replace`); otherwise the temporary file is
published with a no-replace operation, so a file that appeared at the output while it was being
written is never replaced. An input is never an output. The extension of an output names its
format (:func:`output_format`): ``.npy`` or ``.csv`` for an array, ``.npz`` or ``.safetensors``
for a checkpoint, ``.json`` for quantizers.

Packed codes: :func:`write_archive` can store integer arrays packed to 1-8 bits
(:mod:`intquant.packing`, layout ``intquant.packed-le-v1``), each as a 1-D uint8 array, and
records how in the file itself: a ``.npz`` member ``__intquant_packed__`` (a JSON string, 0-d
unicode array), a ``.safetensors`` ``__metadata__`` entry of that name. The record is JSON,
``{"layout": "intquant.packed-le-v1", "arrays": {NAME: {"n_bits", "signed", "shape",
"dtype"}}}``. :func:`open_archive` reads it (strictly: a record that does not match the file is
refused) and unpacks such arrays as they are read, so every command sees the codes themselves.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import signal
import struct
import tempfile
import tokenize
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy

from intquant.errors import InvalidValueError, MissingDependencyError, SerializationError
from intquant.packing import LAYOUT, code_range, pack_codes, packed_size, unpack_codes

__all__ = [
    "ARCHIVE_FORMATS",
    "Archive",
    "InputSpec",
    "INPUT_FORMATS",
    "PACKED_RECORD",
    "PackedArray",
    "check_output",
    "checked_numbers",
    "load_array",
    "open_archive",
    "output_format",
    "parse_input",
    "row_chunks",
    "write_archive",
    "write_array",
    "write_file",
    "write_text",
]

#: The input formats, by extension (compared in lower case).
INPUT_FORMATS = (".npy", ".npz", ".safetensors", ".csv")
#: The formats that hold several named arrays (checkpoints).
ARCHIVE_FORMATS = (".npz", ".safetensors")
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
#: ``file.npz:name`` / ``file.safetensors:name``, the extension in any case.
_MEMBER_SPEC = re.compile(r"^(?P<path>.+?\.(?:npz|safetensors)):(?P<member>.*)$", re.IGNORECASE | re.DOTALL)
#: safetensors' dtype names, and numpy's for them (little-endian).
_SAFETENSORS_DTYPES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "U16": "uint16", "I16": "int16", "F16": "float16",
    "U32": "uint32", "I32": "int32", "F32": "float32", "U64": "uint64", "I64": "int64", "F64": "float64",
}  # fmt: skip
_SAFETENSORS_NAMES = {numpy.dtype(name): code for code, name in _SAFETENSORS_DTYPES.items()}
#: The packing record's name: a ``.npz`` member (``__intquant_packed__.npy``, so this array name
#: is reserved in ``.npz`` files) and a key of a ``.safetensors`` file's ``__metadata__``.
PACKED_RECORD = "__intquant_packed__"
#: The dtypes packed codes are restored in (those ``quantize --dtype`` writes integer codes in).
_PACKED_DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64")
#: A packing record larger than this is refused before it is read.
_MAX_RECORD_BYTES = 64 << 20
#: ``printf`` formats that write each dtype's values so that they read back exactly.
_CSV_FORMATS = {"f2": "%.5g", "f4": "%.9g", "f8": "%.17g"}


# -- inputs


@dataclass(frozen=True)
class InputSpec:
    """An input as the command line names it: ``path``, its format (``suffix``: a lower-case
    extension of :data:`INPUT_FORMATS`) and, in an archive, the ``member`` array (None: the whole
    archive)."""

    text: str
    path: Path
    suffix: str
    member: str | None

    @property
    def is_checkpoint(self) -> bool:
        """Whether this names a whole archive of arrays."""
        return self.suffix in ARCHIVE_FORMATS and self.member is None


def parse_input(text: str) -> InputSpec:
    """The input ``text`` names: a file, or ``archive.npz:name`` / ``archive.safetensors:name``
    (extensions in any case; a file of that very name wins).

    Raises
    ------
    InvalidValueError
        For a missing file, an unknown extension or an empty member name.
    """
    path, member = Path(text), None
    if not path.is_file():
        match = _MEMBER_SPEC.match(text)
        if match is not None:
            path, member = Path(match["path"]), match["member"]
    if not path.is_file():
        raise InvalidValueError(f"no such input file: {path}")
    suffix = path.suffix.lower()
    if suffix not in INPUT_FORMATS:
        raise InvalidValueError(
            f"{path}: unknown input type {path.suffix!r}; use {', '.join(INPUT_FORMATS)} (in any case)"
        )
    if member == "":
        raise InvalidValueError(f"{text}: name an array after the colon, as {path}:NAME")
    return InputSpec(text, path, suffix, member)


def load_array(spec: str | InputSpec) -> numpy.ndarray:
    """The array ``spec`` names: a ``.npy`` file (memory-mapped), an archive's member, a ``.csv``.

    Raises
    ------
    InvalidValueError
        For a missing file, an unknown extension, a whole archive (a checkpoint, not one array),
        a missing member, or data that are not a non-empty array of numbers.
    """
    spec = parse_input(spec) if isinstance(spec, str) else spec
    path, suffix = spec.path, spec.suffix
    if spec.is_checkpoint:
        with open_archive(spec) as archive:
            names = archive.names
        raise InvalidValueError(
            f"{path} is a checkpoint of {len(names)} arrays ({_listed(names)}); this takes one "
            f"array: name it as {path}:NAME"
        )
    try:
        if suffix == ".npy":
            array = numpy.load(path, mmap_mode="r", allow_pickle=False)
        elif suffix == ".csv":
            array = _read_csv(path)
        else:
            with open_archive(spec) as archive:
                array = archive.read(str(spec.member))
    except tokenize.TokenError as error:  # numpy's parser of a header cut short
        raise InvalidValueError(f"{path}: not a valid {suffix} file (its header is cut short)") from error
    except (ValueError, OSError, EOFError) as error:
        if isinstance(error, InvalidValueError):
            raise
        raise InvalidValueError(f"{path}: cannot read it as {suffix}: {error}") from error
    return checked_numbers(array, spec.text)


def checked_numbers(array: numpy.ndarray, name: str) -> numpy.ndarray:
    """``array`` after checking it is a non-empty array of numbers (bool, integer or float)."""
    if array.dtype.kind not in "biuf" or array.size == 0:
        raise InvalidValueError(
            f"{name}: expected a non-empty array of numbers; got dtype {array.dtype}, shape {array.shape}"
        )
    return array


def _read_csv(path: Path) -> numpy.ndarray:
    """Numbers separated by commas, as float64 (one row per line, at least one dimension); a first
    line that holds no number is a header and is skipped."""
    with path.open(encoding="utf-8-sig") as file:
        first = file.readline()
    fields = [field.strip().strip("\"'") for field in first.split(",")] if first.strip() else []
    numeric = [_is_number(field) for field in fields]
    header = bool(fields) and not any(numeric)
    if fields and not header and not all(numeric):
        bad = next(field for field, number in zip(fields, numeric, strict=True) if not number)
        raise InvalidValueError(
            f"{path}: line 1 mixes numbers and text ({bad!r}); a header line holds names only"
        )
    with warnings.catch_warnings():  # an empty file: checked (and refused) by the caller
        warnings.filterwarnings("ignore", "loadtxt: input contained no data", UserWarning)
        return numpy.loadtxt(
            path, delimiter=",", dtype=numpy.float64, ndmin=1, skiprows=int(header), encoding="utf-8-sig"
        )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _listed(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit]) or "none"
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


# -- archives of named arrays (checkpoints)


class Archive:
    """The arrays of an ``.npz`` or ``.safetensors`` file, read one at a time: ``names`` in the
    file's order, ``header(name)`` (shape and dtype, without reading the data) and ``read(name)``."""

    path: Path
    names: list[str]
    #: The packing record's JSON text, None when the file has none (see the module).
    packed_record: str | None = None

    def header(self, name: str) -> tuple[tuple[int, ...], numpy.dtype[Any]]:  # pragma: no cover
        raise NotImplementedError

    def read(self, name: str) -> numpy.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _missing(self, name: str) -> InvalidValueError:
        return InvalidValueError(f"{self.path} has no array {name!r}; it holds {_listed(self.names)}")


@contextlib.contextmanager
def open_archive(spec: InputSpec) -> Iterator[Archive]:
    """The archive ``spec`` names, open while the block runs.

    Raises
    ------
    InvalidValueError
        For a file that is not a valid archive (any array read from it is checked too: sizes
        before anything is allocated, zip bombs refused).
    MissingDependencyError
        For a ``.safetensors`` file when the ``safetensors`` package is not installed.
    """
    if spec.suffix == ".npz":
        try:
            with zipfile.ZipFile(spec.path) as archive:
                yield _unpacking(_NpzArchive(spec.path, archive))
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError) as error:
            # RuntimeError: an encrypted member, or (NotImplementedError) an unknown compression
            raise InvalidValueError(f"{spec.path}: not a valid .npz file: {error}") from error
        return
    try:
        from safetensors import safe_open
    except ImportError:
        raise MissingDependencyError(
            f"{spec.path}: reading .safetensors files needs the safetensors package: "
            f'pip install "intquant[safetensors]"'
        ) from None
    try:
        handle = safe_open(str(spec.path), framework="numpy")
    except Exception as error:  # safetensors raises its own SafetensorError on a bad header
        raise InvalidValueError(f"{spec.path}: not a valid .safetensors file: {error}") from error
    with handle:
        yield _unpacking(_SafetensorsArchive(spec.path, handle))


class _NpzArchive(Archive):
    def __init__(self, path: Path, archive: zipfile.ZipFile) -> None:
        self.path = path
        self._archive = archive
        self._members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
        record = self._members.pop(PACKED_RECORD, None)
        self.names = list(self._members)
        if record is not None:
            self.packed_record = _npz_record(archive, record, f"{path}:{PACKED_RECORD}")

    def header(self, name: str) -> tuple[tuple[int, ...], numpy.dtype[Any]]:
        if name not in self._members:
            raise self._missing(name)
        with self._archive.open(self._members[name]) as stream:
            shape, dtype, _ = _member_header(stream, f"{self.path}:{name}")
        return shape, dtype

    def read(self, name: str) -> numpy.ndarray:
        """The member ``name``, read only after its sizes are checked: no allocation larger than
        the member, nor than the available memory, and no zip bomb inflated."""
        if name not in self._members:
            raise self._missing(name)
        try:
            return _read_member(self._archive, self._members[name], f"{self.path}:{name}")
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError) as error:
            raise InvalidValueError(f"{self.path}: not a valid .npz file: {error}") from error


def _member_header(stream: IO[bytes], name: str) -> tuple[tuple[int, ...], numpy.dtype[Any], int]:
    """Shape, dtype and header length of the ``.npy`` data in ``stream``."""
    try:
        major, minor = numpy.lib.format.read_magic(stream)
    except ValueError as error:
        raise InvalidValueError(f"{name}: not a .npy array: {error}") from error
    try:
        if (major, minor) == (1, 0):
            shape, _, dtype = numpy.lib.format.read_array_header_1_0(stream)
        elif (major, minor) == (2, 0):
            shape, _, dtype = numpy.lib.format.read_array_header_2_0(stream)
        else:
            raise InvalidValueError(f"{name}: unsupported .npy format version {major}.{minor}")
    except tokenize.TokenError as error:
        raise InvalidValueError(f"{name}: not a valid .npy file (its header is cut short)") from error
    except ValueError as error:
        if isinstance(error, InvalidValueError):
            raise
        raise InvalidValueError(f"{name}: not a valid .npy header: {error}") from error
    return tuple(shape), dtype, stream.tell()


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> numpy.ndarray:
    size, packed = info.file_size, info.compress_size
    if info.compress_type != zipfile.ZIP_STORED and size > _BOMB_FLOOR and size > _MAX_INFLATION * packed:
        raise InvalidValueError(
            f"{name}: refusing to inflate {size} bytes from {packed} compressed "
            f"(more than {_MAX_INFLATION}:1, a zip bomb?); save it uncompressed (numpy.save or numpy.savez)"
        )
    _check_memory(size, name)
    with archive.open(info) as stream:
        shape, dtype, header = _member_header(stream, name)
    claimed = math.prod(shape) * dtype.itemsize
    held = size - header
    if claimed > held:
        raise InvalidValueError(
            f"{name}: its header claims {shape} {dtype} values ({claimed} bytes) but it holds {held} bytes"
        )
    with archive.open(info) as stream:  # sizes checked: numpy reads it
        try:
            return numpy.asarray(numpy.lib.format.read_array(stream, allow_pickle=False))
        except ValueError as error:  # object arrays (pickles) are refused
            raise InvalidValueError(f"{name}: cannot read it: {error}") from error


def _npz_record(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> str:
    """The packing record of a ``.npz`` file: its member's JSON text (a 0-d unicode array)."""
    if info.file_size > _MAX_RECORD_BYTES:
        raise SerializationError(
            f"{name}: a packing record of {info.file_size} bytes is refused (at most {_MAX_RECORD_BYTES})"
        )
    array = _read_member(archive, info, name)
    if array.dtype.kind != "U" or array.ndim != 0:
        raise SerializationError(
            f"{name}: expected the packing record intquant writes, a JSON string (a 0-d unicode "
            f"array); got dtype {array.dtype}, shape {array.shape}. The name {PACKED_RECORD} is "
            f"reserved in .npz files"
        )
    return str(array[()])


class _SafetensorsArchive(Archive):
    def __init__(self, path: Path, handle: Any) -> None:
        self.path = path
        self._handle = handle
        self.names = list(handle.keys())
        self.packed_record = (handle.metadata() or {}).get(PACKED_RECORD)

    def _code(self, name: str) -> tuple[tuple[int, ...], str]:
        if name not in self.names:
            raise self._missing(name)
        part = self._handle.get_slice(name)
        return tuple(int(extent) for extent in part.get_shape()), str(part.get_dtype())

    def header(self, name: str) -> tuple[tuple[int, ...], numpy.dtype[Any]]:
        shape, code = self._code(name)
        if code not in _SAFETENSORS_DTYPES:
            raise InvalidValueError(
                f"{self.path}:{name} holds {code} values, which numpy has no dtype for; intquant "
                f"reads {', '.join(_SAFETENSORS_DTYPES)}"
            )
        return shape, numpy.dtype(_SAFETENSORS_DTYPES[code])

    def read(self, name: str) -> numpy.ndarray:
        shape, dtype = self.header(name)
        _check_memory(math.prod(shape) * dtype.itemsize, f"{self.path}:{name}")
        try:
            return numpy.asarray(self._handle.get_tensor(name))
        except Exception as error:  # safetensors' own errors
            raise InvalidValueError(f"{self.path}:{name}: cannot read it: {error}") from error


@dataclass(frozen=True)
class PackedArray:
    """How one array of an archive is stored packed: ``shape`` codes of ``n_bits`` bits
    (``signed`` or not), restored as ``dtype``; stored as ``packed_size(prod(shape), n_bits)``
    uint8 bytes (layout :data:`intquant.packing.LAYOUT`)."""

    n_bits: int
    signed: bool
    shape: tuple[int, ...]
    dtype: numpy.dtype[Any]

    @property
    def stored_shape(self) -> tuple[int]:
        """The shape of the bytes stored: ``(packed_size(prod(shape), n_bits),)``."""
        return (packed_size(math.prod(self.shape), self.n_bits),)

    def to_json(self) -> dict[str, Any]:
        """The record's entry for this array."""
        return {
            "n_bits": self.n_bits,
            "signed": self.signed,
            "shape": list(self.shape),
            "dtype": self.dtype.name,
        }


class _PackedArchive(Archive):
    """An archive whose packed arrays (those of its packing record) read as the codes they hold."""

    def __init__(self, raw: Archive, entries: dict[str, PackedArray]) -> None:
        self.path = raw.path
        self.names = raw.names
        self.packed_record = raw.packed_record
        self._raw = raw
        self._entries = entries

    def header(self, name: str) -> tuple[tuple[int, ...], numpy.dtype[Any]]:
        entry = self._entries.get(name)
        return self._raw.header(name) if entry is None else (entry.shape, entry.dtype)

    def read(self, name: str) -> numpy.ndarray:
        entry = self._entries.get(name)
        if entry is None:
            return self._raw.read(name)
        data = self._raw.read(name)
        if data.shape != entry.stored_shape or data.dtype != numpy.uint8:
            raise SerializationError(
                f"{self.path}:{name}: the packing record says {entry.stored_shape} uint8 bytes; "
                f"the file holds {data.shape} {data.dtype}"
            )
        _check_memory(math.prod(entry.shape) * 8, f"{self.path}:{name}")
        try:
            codes = unpack_codes(data, entry.n_bits, signed=entry.signed, shape=entry.shape)
        except InvalidValueError as error:
            raise InvalidValueError(f"{self.path}:{name}: {error}") from error
        return codes.astype(entry.dtype)


def _unpacking(archive: Archive) -> Archive:
    """``archive`` itself, or, when it has a packing record, the archive that unpacks its packed
    arrays (the record checked against the file first)."""
    if archive.packed_record is None:
        return archive
    entries = _parse_record(archive.packed_record, f"{archive.path}: the packing record ({PACKED_RECORD})")
    for name, entry in entries.items():
        if name not in archive.names:
            raise SerializationError(
                f"{archive.path}: the packing record ({PACKED_RECORD}) names an array {name!r} that "
                f"the file does not hold; it holds {_listed(archive.names)}"
            )
        shape, dtype = archive.header(name)
        if shape != entry.stored_shape or dtype != numpy.uint8:
            raise SerializationError(
                f"{archive.path}:{name}: the packing record says {entry.stored_shape} uint8 bytes "
                f"({math.prod(entry.shape)} codes of {entry.n_bits} bits); the file holds {shape} {dtype}"
            )
    return _PackedArchive(archive, entries)


def _parse_record(text: str, where: str) -> dict[str, PackedArray]:
    """The entries of a packing record's JSON text, each field checked (nothing is evaluated)."""
    try:
        record = json.loads(text, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as error:
        raise SerializationError(f"{where} is not valid JSON: {error}") from None
    _check_keys(record, ("layout", "arrays"), where)
    if record["layout"] != LAYOUT:
        raise SerializationError(
            f"{where} has layout {_brief(record['layout'])}; this intquant reads {LAYOUT!r} (a newer "
            f"intquant may have written the file)"
        )
    if not isinstance(record["arrays"], dict):
        raise SerializationError(
            f'{where}: "arrays" must be an object of name -> layout; got {_brief(record["arrays"])}'
        )
    return {
        name: _packed_entry(entry, f"{where}, array {name!r}") for name, entry in record["arrays"].items()
    }


def _packed_entry(entry: Any, where: str) -> PackedArray:
    _check_keys(entry, ("n_bits", "signed", "shape", "dtype"), where)
    n_bits, signed, shape, dtype = entry["n_bits"], entry["signed"], entry["shape"], entry["dtype"]
    if type(n_bits) is not int or not 1 <= n_bits <= 8:
        raise SerializationError(f'{where}: "n_bits" must be an int in [1, 8]; got {_brief(n_bits)}')
    if type(signed) is not bool:
        raise SerializationError(f'{where}: "signed" must be true or false; got {_brief(signed)}')
    if not isinstance(shape, list) or any(type(extent) is not int or extent < 0 for extent in shape):
        raise SerializationError(f'{where}: "shape" must be a list of ints >= 0; got {_brief(shape)}')
    if dtype not in _PACKED_DTYPES:
        raise SerializationError(
            f'{where}: "dtype" must be one of {", ".join(_PACKED_DTYPES)}; got {_brief(dtype)}'
        )
    low, high = code_range(n_bits, signed=signed)
    info = numpy.iinfo(dtype)
    if low < info.min or high > info.max:
        raise SerializationError(
            f'{where}: "dtype" {dtype} cannot hold {n_bits}-bit {"signed" if signed else "unsigned"} '
            f"codes ({low} to {high})"
        )
    return PackedArray(n_bits, signed, tuple(shape), numpy.dtype(dtype))


def _brief(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a tampered record may hold anything)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict; a key given twice is refused (JSON would keep the last)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"repeated key {key!r}")
        result[key] = value
    return result


def _check_keys(value: Any, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(value, dict) or set(value) != set(keys):
        got = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise SerializationError(
            f"{where} must be an object with exactly the keys {', '.join(keys)}; got {got}"
        )


def _check_memory(size: int, name: str) -> None:
    available = _available_memory()
    if available is not None and size > available:
        raise InvalidValueError(f"{name}: needs {size} bytes of memory; {available} are available")


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


# -- outputs


def output_format(path: Path, formats: Sequence[str], what: str) -> str:
    """The lower-case extension of ``path`` after checking it is one of ``formats`` (the
    extension says what is written: ``codes.CSV`` is CSV, ``codes.csv.npy`` is ``.npy``).

    Raises
    ------
    InvalidValueError
        For another extension: ``-o codes.txt`` would otherwise get contents its name belies.
    """
    suffix = path.suffix.lower()
    if suffix not in formats:
        choices = " or ".join(formats)
        got = f"{path.suffix!r}" if path.suffix else "no extension"
        raise InvalidValueError(
            f"{path}: {what} are written as {choices}; got {got}. Name the output *{formats[0]}"
        )
    return suffix


def check_output(output: Path, inputs: Iterable[Path], force: bool) -> None:
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
    """Create the ``.npy`` or ``.csv`` file ``path`` (its extension, in any case, says which)
    atomically from ``chunks``: consecutive row blocks of a C-order array of ``shape`` (the whole
    0-d array for ``shape == ()``), cast to ``dtype`` as assignment casts. Written with ordinary
    writes, so a full disk raises ``OSError`` (``ENOSPC``).

    A CSV file holds one row of the array per line (a 1-D array one value per line), each value
    written so that it reads back exactly; it holds at most 2 dimensions.
    """
    target = numpy.dtype(dtype)
    csv = path.suffix.lower() == ".csv"
    if csv and len(shape) > 2:
        raise InvalidValueError(
            f"{path}: a CSV file holds at most 2 dimensions; got an array of shape {shape}. Write it as .npy"
        )

    def write(temporary: Path) -> None:
        with temporary.open("wb") as file:
            (_write_csv if csv else _write_npy)(file, tuple(shape), target, chunks)

    write_file(path, path.suffix, write, replace=replace)


def _write_npy(file: IO[bytes], shape: tuple[int, ...], dtype: numpy.dtype, chunks: Iterable[Any]) -> None:
    """The ``.npy`` header, then each chunk's bytes, checked to add up to ``shape``."""
    header = {"descr": numpy.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    try:
        numpy.lib.format.write_array_header_1_0(file, header)
    except ValueError:  # a header longer than 64 KiB
        numpy.lib.format.write_array_header_2_0(file, header)
    for block in _checked_blocks(shape, dtype, chunks):
        file.write(block.reshape(-1).data.cast("B"))


def _write_csv(file: IO[bytes], shape: tuple[int, ...], dtype: numpy.dtype, chunks: Iterable[Any]) -> None:
    """Each chunk's rows as lines of comma-separated numbers, checked to add up to ``shape``."""
    number = _CSV_FORMATS.get(dtype.str[1:], "%d")
    for block in _checked_blocks(shape, dtype, chunks):
        rows = block.reshape(-1, 1) if block.ndim < 2 else block
        numpy.savetxt(file, rows, fmt=number, delimiter=",")


def _checked_blocks(
    shape: tuple[int, ...], dtype: numpy.dtype, chunks: Iterable[Any]
) -> Iterator[numpy.ndarray]:
    """The chunks as C-contiguous arrays of ``dtype``, checked to add up to ``shape``."""
    total = math.prod(shape)
    written = 0
    for chunk in chunks:
        block = numpy.ascontiguousarray(numpy.asarray(chunk, dtype=dtype))
        if block.shape[1:] != shape[1:] or written + block.size > total:
            raise ValueError(f"a chunk of shape {block.shape} does not fit an array of shape {shape}")
        yield block
        written += block.size
    if written != total:
        raise ValueError(f"wrote {written} of the {total} values of an array of shape {shape}")


def write_archive(
    path: Path,
    layout: Sequence[tuple[str, tuple[int, ...], numpy.dtype[Any]]],
    arrays: Iterable[numpy.ndarray],
    *,
    replace: bool = False,
    packed: Mapping[str, tuple[int, bool]] | None = None,
) -> None:
    """Create the ``.npz`` or ``.safetensors`` file ``path`` (its extension says which) atomically:
    ``arrays`` are the arrays of ``layout`` (name, shape, dtype), in its order, produced one at a
    time and written as they come (only one is in memory at once).

    A ``.npz`` file is what :func:`numpy.savez` writes (uncompressed members ``name.npy``); a
    ``.safetensors`` file has the header (8 bytes of its little-endian length, then JSON: each
    name's ``dtype``, ``shape`` and ``data_offsets``, and ``__metadata__`` when there is a packing
    record, padded with spaces to a multiple of 8 bytes) and then the arrays' little-endian bytes,
    in the layout's order.

    ``packed`` maps names of integer arrays to ``(n_bits, signed)``: those are stored packed
    (:func:`intquant.packing.pack_codes`) and the packing record says how (see the module), so
    :func:`open_archive` reads them back as they were given, in their layout dtype.
    """
    safetensors = path.suffix.lower() == ".safetensors"
    entries = _packed_entries(path, layout, packed or {})
    if not safetensors and any(name == PACKED_RECORD for name, _, _ in layout):
        raise InvalidValueError(
            f"{path}: an array named {PACKED_RECORD} cannot be written to a .npz file, where the name "
            f"holds the record of packed codes; rename it, or write .safetensors"
        )
    stored = [
        (name, entries[name].stored_shape, numpy.dtype(numpy.uint8))
        if name in entries
        else (name, shape, dtype)
        for name, shape, dtype in layout
    ]
    if safetensors:
        unsupported = [f"{name} ({dtype})" for name, _, dtype in stored if _safetensors_code(dtype) is None]
        if unsupported:
            raise InvalidValueError(f"{path}: safetensors cannot hold {', '.join(unsupported)}")
    record = None
    if entries:
        arrays_record = {name: entry.to_json() for name, entry in entries.items()}
        record = json.dumps({"layout": LAYOUT, "arrays": arrays_record}, separators=(",", ":"))

    def contents() -> Iterator[numpy.ndarray]:  # each array checked against the layout, then packed
        for name, array in _layout_arrays(layout, arrays):
            entry = entries.get(name)
            yield array if entry is None else pack_codes(array, entry.n_bits, signed=entry.signed)

    def write(temporary: Path) -> None:
        with temporary.open("wb") as file:
            if safetensors:
                _write_safetensors(
                    file, stored, contents(), None if record is None else {PACKED_RECORD: record}
                )
            else:
                _write_npz(file, stored, contents(), record)

    write_file(path, path.suffix, write, replace=replace)


def _packed_entries(
    path: Path,
    layout: Sequence[tuple[str, tuple[int, ...], numpy.dtype[Any]]],
    packed: Mapping[str, tuple[int, bool]],
) -> dict[str, PackedArray]:
    """The record entries of the arrays ``packed`` names (each an integer array of ``layout``
    whose dtype holds its codes)."""
    dtypes = {name: (tuple(shape), numpy.dtype(dtype)) for name, shape, dtype in layout}
    entries = {}
    for name, (n_bits, signed) in packed.items():
        if name not in dtypes:
            raise ValueError(f"{path}: cannot pack {name!r}, which is not an array of the layout")
        shape, dtype = dtypes[name]
        if dtype.name not in _PACKED_DTYPES:
            raise InvalidValueError(f"{path}: {name} is written as {dtype}; packed codes are integers")
        entry = _packed_entry(
            {"n_bits": n_bits, "signed": signed, "shape": list(shape), "dtype": dtype.name}, f"{path}: {name}"
        )
        entries[name] = entry
    return entries


def _layout_arrays(
    layout: Sequence[tuple[str, tuple[int, ...], numpy.dtype[Any]]], arrays: Iterable[numpy.ndarray]
) -> Iterator[tuple[str, numpy.ndarray]]:
    """``(name, array)`` pairs, each array checked against its layout entry."""
    produced = iter(arrays)
    for name, shape, dtype in layout:
        array = next(produced, None)
        if array is None or array.shape != tuple(shape) or array.dtype != dtype:
            got = "nothing" if array is None else f"{array.shape} {array.dtype}"
            raise ValueError(f"array {name!r} should be {tuple(shape)} {dtype}; got {got}")
        yield name, array
    if next(produced, None) is not None:
        raise ValueError(f"more arrays than the {len(layout)} of the layout")


def _write_npz(
    file: IO[bytes],
    layout: Sequence[tuple[str, tuple[int, ...], numpy.dtype[Any]]],
    arrays: Iterable[numpy.ndarray],
    record: str | None = None,
) -> None:
    """The arrays as ``name.npy`` members, then the packing ``record`` (if any) as a 0-d unicode
    array in ``__intquant_packed__.npy``."""
    with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in _layout_arrays(layout, arrays):
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                numpy.lib.format.write_array(member, numpy.ascontiguousarray(array), allow_pickle=False)
        if record is not None:
            with archive.open(f"{PACKED_RECORD}.npy", "w", force_zip64=True) as member:
                numpy.lib.format.write_array(member, numpy.array(record), allow_pickle=False)


def _safetensors_code(dtype: numpy.dtype[Any]) -> str | None:
    """safetensors' name of ``dtype`` (in either byte order), or None when it has none."""
    return _SAFETENSORS_NAMES.get(numpy.dtype(dtype).newbyteorder("="))


def _write_safetensors(
    file: IO[bytes],
    layout: Sequence[tuple[str, tuple[int, ...], numpy.dtype[Any]]],
    arrays: Iterable[numpy.ndarray],
    metadata: dict[str, str] | None = None,
) -> None:
    header: dict[str, Any] = {} if metadata is None else {"__metadata__": metadata}
    start = 0
    for name, shape, dtype in layout:
        end = start + math.prod(shape) * dtype.itemsize
        header[name] = {
            "dtype": _SAFETENSORS_NAMES[dtype],
            "shape": list(shape),
            "data_offsets": [start, end],
        }
        start = end
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    file.write(struct.pack("<Q", len(text)) + text)
    for _, array in _layout_arrays(layout, arrays):
        little = numpy.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        file.write(little.reshape(-1).data.cast("B"))

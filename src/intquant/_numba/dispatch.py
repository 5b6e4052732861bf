"""Compiled one-pass loops for large arrays (numba, optional: ``pip install intquant[fast]``).

Each loop computes exactly what its plain-numpy twin in :mod:`intquant.kernels` computes, in the
same dtypes and the same order of operations, but in one pass without full-size temporaries.
numba is imported on first use (not by ``import intquant``) and compiled loops are cached on
disk (in memory only when numba finds no writable cache directory, as in a read-only install).
Set ``INTQUANT_PURE_NUMPY=1`` before importing intquant to never use them.

Threads. An array of ``PARALLEL_MIN_SIZE`` elements or more is cut into ``THREADS`` slices: the
calling thread computes the first and intquant's own thread pool (a
:class:`concurrent.futures.ThreadPoolExecutor` of ``THREADS - 1`` workers, created on first
need) the others, each with the serial ``nogil`` loop of :mod:`intquant._numba.loops`, which
releases the GIL. numba's ``parallel=True``/``prange`` is not used, because none of its
threading layers is safe everywhere intquant runs: after GNU OpenMP (``omp``) has run, a fork
child is killed ("fork() called from a process already using GNU OpenMP"), so
``multiprocessing.Pool`` (fork, Linux's default) hangs; ``workqueue`` aborts the process when two
Python threads (or dask's threaded scheduler) call a parallel function at once; ``tbb`` is an
extra package. Python threads over slices have none of these faults: several callers share the
pool (its workers only run leaf loops, so no caller waits on a worker that waits on it), and a
fork child forgets the parent's pool (``os.register_at_fork``) and builds its own on first need,
never touching the parent's, whose threads do not exist in the child. Each slice computes
exactly what the serial loop computes on it and the per-slice results are combined as before
(``NAN_FOUND`` outranks ``BEYOND_INT64``; one row of key marks per slice), so results are bit
for bit the same for any number of slices. Memory-bound loops over numpy slices run as fast on
these threads as under ``prange``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, wait
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

import numpy

from intquant._numba.status import BEYOND_INT64, NAN_FOUND

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

__all__ = [
    "BEYOND_INT64",
    "NEGATIVE_ZERO_KEY",
    "cent_keys",
    "MIN_SIZE",
    "NAN_FOUND",
    "avx512_element_at",
    "cast_codes",
    "dequantize_codes",
    "enabled",
    "introsort_element_at",
    "quantize_floats",
    "requantize_product",
    "float_range",
    "round_cents",
    "sorted_rows_elements_at",
    "unique_cents",
]

#: Arrays this large load numba (about 0.3 s, once per process) to use the compiled loops;
#: smaller ones use them only once numba is loaded, and the plain-numpy path until then.
MIN_SIZE = 50_000
#: Arrays this large are cut into one slice per thread.
PARALLEL_MIN_SIZE = 200_000


def _default_threads() -> int:
    """One thread per core this process may use, at most 8 (the loops are memory-bound);
    ``NUMBA_NUM_THREADS``, when set, caps it as it capped numba's parallel loops."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    threads = min(cores, 8)
    configured = os.environ.get("NUMBA_NUM_THREADS", "")
    if configured.strip().isdigit() and int(configured) >= 1:
        threads = min(threads, int(configured))
    return max(threads, 1)


#: How many slices (threads, the caller's included) a large array is cut into.
THREADS = _default_threads()


_BLOCK = 128  # elements scanned at a time by the partition


#: True when ``INTQUANT_PURE_NUMPY`` was set (to anything but 0) as intquant was imported.
disabled = os.environ.get("INTQUANT_PURE_NUMPY", "") not in ("", "0")
_loaded = False  # numba loaded and the loops importable


def enabled() -> bool:
    """Whether compiled loops may be used: numba is installed and they are not disabled."""
    return not disabled and _loops() is not None


def worthwhile(size: int) -> bool:
    """Whether an array of ``size`` elements should take the compiled loops."""
    if disabled:
        return False
    return _loaded or (size >= MIN_SIZE and _loops() is not None)


@cache
def _loops() -> Any:
    """The numba loops (compiled on first call, cached on disk); None when numba is missing."""
    global _loaded
    try:
        from intquant._numba import loops as _numba_loops
    except ImportError:
        return None
    _loaded = True
    return _numba_loops


_Result = TypeVar("_Result")

_pool: ThreadPoolExecutor | None = None  # intquant's worker threads, created on first need
_pool_lock = threading.Lock()


def _forget_pool_in_child() -> None:
    """After ``fork``, in the child: the parent's pool has no threads here; build a new one."""
    global _pool, _pool_lock
    _pool = None  # never shut down or used here: it belongs to the parent
    _pool_lock = threading.Lock()  # another parent thread may have held it during the fork


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def _worker_pool() -> ThreadPoolExecutor:
    """The pool that runs all slices but each call's first (``THREADS - 1`` workers)."""
    global _pool
    pool = _pool
    if pool is None:
        with _pool_lock:
            if _pool is None:
                from concurrent.futures import ThreadPoolExecutor

                _pool = ThreadPoolExecutor(max_workers=THREADS - 1, thread_name_prefix="intquant")
            pool = _pool
    return pool


def _parts(size: int) -> int:
    """How many slices an array of ``size`` elements is cut into."""
    return THREADS if size >= PARALLEL_MIN_SIZE and THREADS > 1 else 1


def _run_slices(task: Callable[[int, int, int], _Result], size: int, parts: int) -> list[_Result]:
    """``task(part, start, stop)`` for each of ``parts`` slices of ``range(size)`` (the same
    bounds as ``numba.prange`` over parts gave), in part order: the first on this thread while
    the pool runs the others."""
    if parts == 1:  # small arrays: no thread, no waiting
        return [task(0, 0, size)]
    bounds = [(part, part * size // parts, (part + 1) * size // parts) for part in range(parts)]
    results: list[Any] = [None] * parts
    futures: list[tuple[int, Future[_Result]]] = []
    try:
        for part, start, stop in bounds[1:]:
            try:
                futures.append((part, _worker_pool().submit(task, part, start, stop)))
            except RuntimeError:  # no new threads (the interpreter is shutting down): run it here
                results[part] = task(part, start, stop)
        results[0] = task(*bounds[0])
    finally:
        wait([future for _, future in futures])  # no slice outlives the call
    for part, future in futures:
        results[part] = future.result()
    return results


def quantize_floats(
    values: numpy.ndarray,
    scale: Any,
    zero_point: Any,
    clip: tuple[Any, Any] | None,
    codes: numpy.ndarray | None = None,
) -> tuple[Any, int]:
    """``clip(rint(values / scale + zero_point))`` in one pass, and 0, ``NAN_FOUND`` or
    ``BEYOND_INT64``.

    ``values`` and ``scale`` must share a float32/float64 dtype (the division's) and
    ``zero_point`` have the addition's dtype, both numpy scalars. ``clip`` is ``(low, high)``
    as numpy scalars of the dtype to clip in, or None (no clipping: int64 codes only). The
    codes are written to ``codes`` (a C-contiguous array of ``values.size`` elements of any
    dtype that holds ``[low, high]`` exactly; a new int64 array if None) and returned in the
    values' shape (a scalar for 0-d values). On ``NAN_FOUND`` or ``BEYOND_INT64``, ``codes``
    has been written (partly meaningless).
    """
    quantize_range = _loops().quantize_range
    flat = values.reshape(-1)  # a view when values are contiguous
    if codes is None:
        codes = numpy.empty(flat.size, dtype=numpy.int64)
    target = codes.reshape(-1)  # a view: codes are C-contiguous
    if clip is not None:
        low, high = clip
    else:
        low = high = zero_point.dtype.type(0)  # unused; of the addition's dtype, the loop's
    clipped = clip is not None
    parts = _parts(flat.size)
    if parts == 1:  # the usual small call: straight to the loop
        status = int(quantize_range(flat, scale, zero_point, low, high, clipped, target, 0, flat.size))
        return target.reshape(numpy.shape(values))[()], status

    def quantize(part: int, start: int, stop: int) -> int:
        return int(quantize_range(flat, scale, zero_point, low, high, clipped, target, start, stop))

    # NAN_FOUND outranks BEYOND_INT64, as on the plain path.
    status = max(_run_slices(quantize, flat.size, parts))
    return target.reshape(numpy.shape(values))[()], status  # a 0-d input gives a scalar


def cast_codes(codes: numpy.ndarray, dtype: Any) -> tuple[numpy.ndarray, int, int]:
    """Non-empty integer ``codes`` cast to ``dtype`` (a new C-contiguous array of their shape;
    exact: the caller picks a dtype that holds them) and their ``(min, max)``, in one pass."""
    loop = _loops().cast_codes_range
    flat = numpy.ravel(codes)
    cast = numpy.empty(flat.size, dtype=dtype)

    def run(part: int, start: int, stop: int) -> tuple[int, int]:
        low, high = loop(flat, cast, start, stop)
        return int(low), int(high)

    ranges = _run_slices(run, flat.size, _parts(flat.size))
    return cast.reshape(numpy.shape(codes)), min(low for low, _ in ranges), max(high for _, high in ranges)


def requantize_product(
    product: numpy.ndarray,
    constant: numpy.ndarray,
    multiplier: numpy.ndarray,
    shift: numpy.ndarray,
    integer_formula: bool,
    rounding: int,
    zero_point: int,
    output_range: tuple[int, int],
    codes: numpy.ndarray,
) -> None:
    """Output codes of the C-contiguous product ``(R, O)`` (float32, float64 or int64) written to
    the int64 ``codes`` ``(B, O, P)`` with ``R = B * P``, in one pass: see
    ``loops.requantize_product_rows`` (rows cut into one slice per thread when large)."""
    loop = _loops().requantize_product_rows
    low, high = output_range
    rows = product.shape[0]

    def run(part: int, start: int, stop: int) -> None:
        loop(
            product,
            constant,
            multiplier,
            shift,
            integer_formula,
            rounding,
            zero_point,
            low,
            high,
            codes,
            start,
            stop,
        )

    _run_slices(run, rows, _parts(product.size) if rows > 1 else 1)


def dequantize_codes(
    codes: numpy.ndarray,
    scale: numpy.float64,
    zero_point: numpy.float64,
    dtype: numpy.dtype[Any] | type[numpy.floating[Any]] = numpy.float64,
    values: numpy.ndarray | None = None,
) -> Any:
    """``scale * (codes - zero_point)`` in float64, for integer codes and float64 scalars, stored
    as ``dtype`` (float64, or float32: each value rounded to nearest, as ``astype`` does), in the
    codes' shape: written to ``values`` (a C-contiguous array of ``codes.size`` elements of
    ``dtype``) if given, else to a new array."""
    dequantize_range = _loops().dequantize_range
    flat = numpy.ravel(codes)
    values = numpy.empty(flat.size, dtype=dtype) if values is None else values.reshape(-1)
    parts = _parts(flat.size)
    if parts == 1:  # the usual small call: straight to the loop
        dequantize_range(flat, scale, zero_point, values, 0, flat.size)
        return values.reshape(numpy.shape(codes))[()]

    def dequantize(part: int, start: int, stop: int) -> None:
        dequantize_range(flat, scale, zero_point, values, start, stop)

    _run_slices(dequantize, flat.size, parts)
    return values.reshape(numpy.shape(codes))[()]


def unique_cents(values: numpy.ndarray, key_low: int, key_high: int) -> tuple[numpy.ndarray, int, bool, bool]:
    """One pass over float32/float64 ``values``: the sorted distinct keys ``rint(x*100)`` (int64),
    how many rounded values ``rint(x*100)/100`` are below 0, and whether they hold ``+0.0`` and
    ``-0.0``.

    Every key must lie in ``[key_low, key_high]`` (they do for ``rint(rmin*100)`` and
    ``rint(rmax*100)``: rounding is monotonic).
    """
    cents_range = _loops().cents_range
    flat = numpy.ravel(values)
    hundred = values.dtype.type(100)
    parts = _parts(flat.size)
    seen = numpy.zeros((parts, key_high - key_low + 1), dtype=numpy.bool_)  # marks: a row per slice

    def cents(part: int, start: int, stop: int) -> tuple[int, bool, bool]:
        return cents_range(flat, hundred, key_low, seen[part], start, stop)

    counts = _run_slices(cents, flat.size, parts)
    keys = numpy.flatnonzero(seen.any(axis=0)) + key_low
    negatives = sum(int(count) for count, _, _ in counts)
    positive_zero = any(bool(positive) for _, positive, _ in counts)
    negative_zero = any(bool(negative) for _, _, negative in counts)
    return keys, negatives, positive_zero, negative_zero


def round_cents(values: numpy.ndarray) -> numpy.ndarray:
    """``rint(x*100)/100`` of float32/float64 ``values``, flattened, in one pass."""
    return _cents_pass(_loops().round_range, values, values.dtype)


#: The int16 key :func:`cent_keys` stores for ``-0.0`` (keys themselves lie in [-32767, 32767]).
NEGATIVE_ZERO_KEY = -32768


def cent_keys(values: numpy.ndarray) -> numpy.ndarray:
    """``rint(x*100)`` of float32/float64 ``values`` as int16, in one pass, ``-0.0`` stored as
    :data:`NEGATIVE_ZERO_KEY`; every key must lie in ``[-32767, 32767]`` (flattened, C order)."""
    return _cents_pass(_loops().cent_keys_range, values, numpy.dtype(numpy.int16))


def _cents_pass(loop: Any, values: numpy.ndarray, dtype: numpy.dtype[Any]) -> numpy.ndarray:
    """``loop(flat values, 100, out, start, stop)`` over one slice per thread, into a new flat
    array of ``dtype``."""
    flat = numpy.ravel(values)
    hundred = values.dtype.type(100)
    out = numpy.empty(values.size, dtype=dtype)

    def run_slice(part: int, start: int, stop: int) -> None:
        loop(flat, hundred, out, start, stop)

    _run_slices(run_slice, flat.size, _parts(flat.size))
    return out


def float_range(values: numpy.ndarray) -> tuple[Any, Any]:
    """``(min, max)`` of non-empty C-contiguous float ``values``, numpy's reductions run on one
    slice per thread (they release the GIL). NaN if a value is NaN. A zero extreme's sign is
    the zero one slice's reduction returned: ask numpy for the whole array when it matters."""
    flat = values.reshape(-1)

    def reduced(part: int, start: int, stop: int) -> tuple[Any, Any]:
        piece = flat[start:stop]
        return piece.min(), piece.max()

    parts = _run_slices(reduced, flat.size, _parts(flat.size))
    lows, highs = [low for low, _ in parts], [high for _, high in parts]
    if any(numpy.isnan(low) for low in lows):
        return values.dtype.type(numpy.nan), values.dtype.type(numpy.nan)
    return min(lows), max(highs)


def introsort_element_at(rounded: numpy.ndarray, position: int) -> Any:
    """Element numpy 1.24's introsort leaves at ``position`` (float32/float64, no NaN).

    ``rounded`` is overwritten (it is the caller's scratch copy). Serial: the partitions depend
    on each other.
    """
    left_stops = numpy.empty(_BLOCK, dtype=numpy.int64)
    right_stops = numpy.empty(_BLOCK, dtype=numpy.int64)
    return _loops().introsort_loop(rounded, position, left_stops, right_stops)


def avx512_element_at(
    values: numpy.ndarray, position: int, scratch: bool = False, paths: numpy.ndarray | None = None
) -> numpy.float32:
    """Element numpy 1.24's AVX-512 quicksort of the 1-d float32 ``values`` puts at ``position``
    (same bits, sign of a zero included); NaNs sort as +inf and the last slots are NaN.

    ``values`` is overwritten only when ``scratch`` says it may be. ``paths``, an int64 array of
    ``avx512_loops.PATH_COUNT`` counters, gets the number of steps of each kind added (full
    partitions, "pivot == minimum" steps, bitonic sorts, heapsorts). Serial: the partitions
    depend on each other.
    """
    from intquant._numba import avx512_loops

    if values.ndim != 1 or values.dtype != numpy.float32:
        raise TypeError(f"values must be a 1-d float32 array, not {values.ndim}-d {values.dtype}")
    size = values.size
    if not -size <= position < size:
        raise IndexError(f"position {position} out of range for size {size}")
    position = position + size if position < 0 else position
    work = values if scratch else numpy.empty(size, dtype=numpy.float32)
    counters = numpy.zeros(avx512_loops.PATH_COUNT, dtype=numpy.int64) if paths is None else paths
    element = avx512_loops.select_with_nans(values, position, work, avx512_loops.workspace(), counters)
    return numpy.float32(element)


def sorted_rows_elements_at(rows: numpy.ndarray, positions: numpy.ndarray) -> numpy.ndarray:
    """For each row of the 2-d NaN-free float16/float32/float64 ``rows``, the element numpy 1.24's
    sort of the row puts at ``positions[row]`` (0 <= position < row length): the AVX-512
    quicksort for float32, the introsort for float16 and float64. ``rows`` is not modified.

    Rows are independent: a large batch is cut into one slice of rows per thread.
    """
    from intquant._numba import avx512_loops

    dtype = rows.dtype
    if dtype == numpy.float32:
        select_rows = avx512_loops.select_avx512_rows
        work = numpy.ascontiguousarray(rows)
    else:  # numba has no float16 arithmetic: its values are exact in float32
        select_rows = avx512_loops.select_introsort_rows
        work = numpy.ascontiguousarray(rows, dtype=numpy.float32 if dtype == numpy.float16 else dtype)
    wanted = numpy.ascontiguousarray(positions, dtype=numpy.int64)
    out = numpy.empty(rows.shape[0], dtype=work.dtype)

    def select(part: int, start: int, stop: int) -> None:
        select_rows(work, wanted, out, start, stop)

    _run_slices(select, rows.shape[0], _parts(rows.size) if rows.shape[0] > 1 else 1)
    return out.astype(dtype, copy=False)

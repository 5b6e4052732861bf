"""The commands ``calibrate``, ``quantize``, ``dequantize`` and ``demo`` (``report`` has its own
module): each takes the parsed arguments and returns the exit status.

An array (a ``.npy`` file, an archive's member, a ``.csv`` file) is processed in chunks of rows,
so a memory-mapped ``.npy`` file larger than memory works; a whole archive (a checkpoint) is
processed array by array, each array in memory. Quantizing and dequantizing execute the
quantizer's plan for the whole array (which checks the array against the quantizer's block
grid, as the Python API does) restricted to each chunk. ``quantize --pack`` packs each array's
codes to the quantizer's bits (:mod:`intquant.packing`) in a ``.npz`` or ``.safetensors`` file
that records the layout (:func:`intquant.cli.files.write_archive`); reading it unpacks them, so
``dequantize`` takes such a file as it takes unpacked codes.
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy

from intquant._core.execute import dequantize_with, quantize_with
from intquant._core.formulas import fitting_code_dtype
from intquant._core.plan import restricted_dequant_plan, restricted_quant_plan
from intquant.cli.collect import DEFAULT_PERCENTILE, Collector, check_granularity, collector
from intquant.cli.files import (
    ARCHIVE_FORMATS,
    PACKED_RECORD,
    InputSpec,
    check_output,
    checked_numbers,
    load_array,
    open_archive,
    output_format,
    parse_input,
    row_chunks,
    write_archive,
    write_array,
    write_file,
    write_text,
)
from intquant.cli.progress import Progress
from intquant.cli.quantizer_file import (
    Quantizers,
    check_names,
    dumps_quantizers,
    read_quantizers,
    restored_dtype,
)
from intquant.errors import InvalidTypeError, InvalidValueError
from intquant.options import QuantizationOptions
from intquant.packing import MAX_PACKED_BITS, code_range
from intquant.quantizer import UniformQuantizer

__all__ = [
    "ARRAY_OUTPUTS",
    "CODE_DTYPES",
    "VALUE_DTYPES",
    "calibrate_command",
    "calibrated",
    "check_option_flags",
    "chunk_count",
    "codes_dtype",
    "dequantize_command",
    "demo_command",
    "pack_width",
    "percentile_of",
    "quantization_options",
    "quantize_command",
    "statistics_for",
]

#: ``--dtype`` of ``quantize``: ``smallest`` (the default) or one of intquant's code dtypes.
CODE_DTYPES = (
    "smallest",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "float32",
    "float64",
)
#: ``--dtype`` of ``dequantize``.
VALUE_DTYPES = ("float16", "float32", "float64")
#: The formats an array is written in (a checkpoint: ``files.ARCHIVE_FORMATS``).
ARRAY_OUTPUTS = (".npy", ".csv")
_FLOAT16, _FLOAT32 = numpy.dtype(numpy.float16), numpy.dtype(numpy.float32)


# -- options


def check_option_flags(arguments: argparse.Namespace) -> None:
    """Refuse flags that would be ignored or cannot work together, before any data is read."""
    if getattr(arguments, "symmetric", False):
        widths = getattr(arguments, "bits", None) or (arguments.n_bits,)
        if 1 in widths:
            flag = "--bits" if hasattr(arguments, "bits") else "--n-bits"
            raise InvalidValueError(
                f"--symmetric needs {flag} 2 or more: 1-bit symmetric codes have no level above zero"
            )
    if getattr(arguments, "full_range", False):
        if not getattr(arguments, "symmetric", False):
            raise InvalidValueError(
                "--full-range is for symmetric grids; add --symmetric, or leave --full-range out"
            )
        if getattr(arguments, "narrow", False):
            raise InvalidValueError(
                "--full-range uses every code, -2**(n-1) included, which --narrow drops; use only one of them"
            )
    if arguments.seed is not None and arguments.rounding != "stochastic":
        raise InvalidValueError(
            "--seed seeds stochastic rounding; add --rounding stochastic, or leave --seed out"
        )
    methods = arguments.method if isinstance(arguments.method, tuple) else (arguments.method,)
    if arguments.percentile is not None and "percentile" not in methods:
        raise InvalidValueError(
            f"--percentile is for --method percentile; got --method {','.join(methods)}. Add the "
            f"percentile method, or leave --percentile out"
        )


def percentile_of(arguments: argparse.Namespace) -> float:
    """``--percentile``, or its default."""
    return DEFAULT_PERCENTILE if arguments.percentile is None else float(arguments.percentile)


def quantization_options(arguments: argparse.Namespace, n_bits: int | None = None) -> QuantizationOptions:
    """The options the flags give (only the extra options that differ from their defaults are
    set, so a seed quantizer's file stays Concrete ML's text)."""
    extras: dict[str, Any] = {}
    if arguments.rounding != "half_even":
        extras["rounding"] = arguments.rounding
    for name in ("seed", "axis", "block_size"):
        if getattr(arguments, name) is not None:
            extras[name] = getattr(arguments, name)
    for name in ("zero_in_range", "power_of_two_scale", "full_range"):
        if getattr(arguments, name, False):
            extras[name] = True
    options = QuantizationOptions(
        arguments.n_bits if n_bits is None else n_bits,
        is_signed=bool(arguments.signed or arguments.symmetric),
        is_symmetric=bool(arguments.symmetric),
        **extras,
    )
    options.is_narrow = bool(arguments.narrow)
    return options


# -- calibrate


def calibrate_command(arguments: argparse.Namespace) -> int:
    check_option_flags(arguments)
    output = arguments.output
    spec = parse_input(arguments.input)
    output_format(output, (".json",), "quantizers")
    if arguments.exclude and not spec.is_checkpoint:
        raise InvalidValueError(
            f"--exclude leaves arrays of a whole checkpoint out; {arguments.input} is one array"
        )
    check_output(output, [spec.path], arguments.force)
    options = quantization_options(arguments)
    if spec.is_checkpoint:
        quantizers = _calibrate_checkpoint(spec, options, arguments)
        write_text(output, dumps_quantizers(quantizers), replace=arguments.force)
        print(
            f"wrote {len(quantizers)} {options.n_bits}-bit {arguments.method} quantizers, one per "
            f"array of {spec.path}"
        )
    else:
        values = load_array(spec)
        statistics = statistics_for(values.shape, spec.text, options, arguments)
        with Progress(
            chunk_count(values.shape, arguments.chunk_size, statistics.row_multiple), quiet=arguments.quiet
        ) as progress:
            quantizer = calibrated(values, statistics, options, arguments.chunk_size, progress)
        write_text(output, dumps_quantizers(quantizer), replace=arguments.force)
        print(
            f"wrote a {options.n_bits}-bit {arguments.method} quantizer for {values.shape} "
            f"{values.dtype} values"
        )
    print(f"to {output}")
    return 0


def statistics_for(
    shape: tuple[int, ...], name: str, options: QuantizationOptions, arguments: argparse.Namespace
) -> Collector:
    """The collector of ``--method``'s statistics for an array of ``shape`` (granularity checked)."""
    check_granularity(options.axis, options.block_size, shape, name)
    return collector(arguments.method, percentile_of(arguments), shape, options.axis, options.block_size)


def calibrated(
    values: numpy.ndarray,
    statistics: Collector,
    options: QuantizationOptions,
    chunk_size: int,
    progress: Progress,
) -> UniformQuantizer:
    """The quantizer of ``options`` calibrated on ``values``, chunk by chunk.

    Its parameters are those the Python API computes from the same statistics. Its ``rmin`` and
    ``rmax`` are in the values' float dtype (min/max statistics are; a method's float64 range
    is cast to it once the parameters are computed), which is how ``dequantize`` knows the
    dtype to restore.
    """
    for chunk in _chunks(values, chunk_size, statistics.row_multiple):
        statistics.add(chunk)
        progress.advance()
    stats = statistics.statistics(options)
    quantizer = UniformQuantizer(options, stats)
    quantizer.compute_quantization_parameters(options, stats)
    if values.dtype.kind == "f" and numpy.asarray(quantizer.rmin).dtype != values.dtype:
        rmin: Any = numpy.asarray(quantizer.rmin).astype(values.dtype)[()]
        rmax: Any = numpy.asarray(quantizer.rmax).astype(values.dtype)[()]
        quantizer.rmin, quantizer.rmax = rmin, rmax
    return quantizer


def _calibrate_checkpoint(
    spec: InputSpec, options: QuantizationOptions, arguments: argparse.Namespace
) -> dict[str, UniformQuantizer]:
    quantizers = {}
    with open_archive(spec) as archive:
        names = _selected(archive.names, arguments.exclude, spec)
        check_names(names)
        collectors = {
            name: statistics_for(archive.header(name)[0], f"{spec.path}:{name}", options, arguments)
            for name in names
        }
        total = sum(
            chunk_count(archive.header(name)[0], arguments.chunk_size, collectors[name].row_multiple)
            for name in names
        )
        with Progress(total, quiet=arguments.quiet) as progress:
            for name in names:
                values = checked_numbers(archive.read(name), f"{spec.path}:{name}")
                quantizers[name] = calibrated(
                    values, collectors[name], options, arguments.chunk_size, progress
                )
    return quantizers


def _selected(names: list[str], patterns: list[str], spec: InputSpec) -> list[str]:
    """``names`` but those matching an ``--exclude`` pattern; a pattern matching none is refused."""
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            raise InvalidValueError(
                f"--exclude {pattern!r} matches no array of {spec.path}; it holds {', '.join(names)}"
            )
    kept = [name for name in names if not any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)]
    if not kept:
        raise InvalidValueError(f"--exclude leaves no array of {spec.path} to calibrate")
    return kept


# -- quantize, dequantize


def quantize_command(arguments: argparse.Namespace) -> int:
    return _apply(arguments, quantize=True)


def dequantize_command(arguments: argparse.Namespace) -> int:
    return _apply(arguments, quantize=False)


def _apply(arguments: argparse.Namespace, *, quantize: bool) -> int:
    spec = parse_input(arguments.input)
    output = arguments.output
    what = "codes" if quantize else "restored values"
    pack = quantize and arguments.pack
    if pack:
        _check_pack_flags(arguments)
    if spec.is_checkpoint or pack:
        output_format(
            output, ARCHIVE_FORMATS, f"a checkpoint's {what}" if spec.is_checkpoint else "packed codes"
        )
    else:
        output_format(output, ARRAY_OUTPUTS, what)
    check_output(output, [spec.path, arguments.quantizer], arguments.force)
    quantizers = read_quantizers(arguments.quantizer)
    if spec.is_checkpoint:
        return _apply_checkpoint(spec, quantizers, arguments, quantize)
    values = load_array(spec)
    quantizer = _quantizer_for(quantizers, spec, arguments.quantizer)
    if quantize:
        _seeded([quantizer], arguments.seed)
    if pack:
        return _pack_array(values, quantizer, spec, arguments)
    dtype = _apply_array(values, quantizer, arguments, quantize, spec.text)
    print(f"wrote {values.shape} {dtype} {what} to {output}")
    return 0


def _check_pack_flags(arguments: argparse.Namespace) -> None:
    """Refuse what ``--pack`` cannot write: an array format (no room for the layout's record)
    and float codes."""
    suffix = arguments.output.suffix.lower()
    if suffix not in ARCHIVE_FORMATS:
        got = f"-o {arguments.output}" if suffix else f"-o {arguments.output} (no extension)"
        raise InvalidValueError(
            f"--pack writes .npz or .safetensors, which record how the codes are packed; got {got}. "
            f"Name the output *.npz"
        )
    if arguments.dtype != "smallest" and numpy.dtype(arguments.dtype).kind == "f":
        raise InvalidValueError(
            f"--pack packs integer codes; --dtype {arguments.dtype} is a float dtype. Leave --dtype out, "
            f"or name an integer dtype"
        )


def pack_width(quantizer: UniformQuantizer, plan: Any, name: str) -> tuple[int, bool]:
    """``(n_bits, signed)`` of ``--pack`` for the codes of ``plan``: the quantizer's bits, signed
    when its codes go below 0 (``--signed``, ``--symmetric``).

    Raises
    ------
    InvalidValueError
        For more than 8 bits, or a quantizer that does not clip its codes to its bits (its codes
        could fall outside them).
    """
    n_bits = int(getattr(quantizer, "n_bits", 0))  # without n_bits, there is no clipping (span None)
    if n_bits > MAX_PACKED_BITS:
        raise InvalidValueError(
            f"{name}: --pack packs codes of 1 to {MAX_PACKED_BITS} bits; this quantizer's have {n_bits} "
            f"(wider codes are whole bytes already: leave out --pack)"
        )
    if plan.span is None or not n_bits:
        raise InvalidValueError(
            f"{name}: --pack needs codes clipped to the quantizer's bits, and this quantizer "
            f"does not clip them (no clipping, or QAT parameters inferred from the values); leave out --pack"
        )
    low, high = plan.span
    signed = low < 0
    first, last = code_range(n_bits, signed=signed)
    if low < first or high > last:
        raise InvalidValueError(
            f"{name}: this quantizer's codes, {low} to {high}, do not fit {n_bits} bits "
            f"({first} to {last}); leave out --pack"
        )
    return n_bits, signed


def _pack_array(
    values: numpy.ndarray, quantizer: UniformQuantizer, spec: InputSpec, arguments: argparse.Namespace
) -> int:
    """``quantize --pack`` of one array: an archive holding its packed codes under the array's
    name (its member name, or the input file's stem)."""
    name = spec.member if spec.member is not None else spec.path.stem
    if name == PACKED_RECORD:
        raise InvalidValueError(f"{spec.text}: the name {PACKED_RECORD} is reserved for the packing record")
    work, dtype, packing = _array_work(quantizer, values.shape, values.dtype, arguments, True, spec.text)
    packed = {} if packing is None else {name: packing}  # always one: --pack
    with Progress(1, quiet=arguments.quiet, unit="array") as progress:

        def arrays() -> Iterator[numpy.ndarray]:
            yield work(values)
            progress.advance()

        write_archive(
            arguments.output,
            [(name, values.shape, dtype)],
            arrays(),
            replace=arguments.force,
            packed=packed,
        )
    for n_bits, signed in packed.values():
        print(
            f"wrote {values.shape} {dtype} codes packed to {n_bits} bits "
            f"({'signed' if signed else 'unsigned'}) as {name!r} to {arguments.output}"
        )
    return 0


def _quantizer_for(quantizers: Quantizers, spec: InputSpec, path: Path) -> UniformQuantizer:
    if isinstance(quantizers, UniformQuantizer):
        return quantizers
    if spec.member is not None and spec.member in quantizers:
        return quantizers[spec.member]
    names = ", ".join(quantizers)
    if spec.member is not None:
        raise InvalidValueError(
            f"{path} holds no quantizer for {spec.member!r}; it holds quantizers for {names}"
        )
    raise InvalidValueError(
        f"{path} holds quantizers for the arrays of a checkpoint ({names}); apply it to the "
        f"checkpoint, or to one of its arrays as FILE.npz:NAME"
    )


def _seeded(quantizers: list[UniformQuantizer], seed: int | None) -> None:
    """Give stochastic quantizers the ``--seed`` (refused when none of them rounds stochastically)."""
    if seed is None:
        return
    stochastic = [quantizer for quantizer in quantizers if quantizer.rounding == "stochastic"]
    if not stochastic:
        raise InvalidValueError(
            f"--seed seeds stochastic rounding, but the quantizer rounds {quantizers[0].rounding}; "
            f"calibrate with --rounding stochastic, or leave --seed out"
        )
    for quantizer in stochastic:
        quantizer.seed = seed


def codes_dtype(plan: Any, requested: str) -> numpy.dtype[Any]:
    """The dtype codes are written in: ``smallest`` is the smallest integer dtype holding the
    clipping range (int64 without clipping, where the range is not known in advance)."""
    if requested == "smallest":
        return numpy.dtype(numpy.int64) if plan.span is None else fitting_code_dtype("smallest", *plan.span)
    target = numpy.dtype(requested)
    if plan.span is not None:
        low, high = plan.span
        try:
            fitting_code_dtype(target, low, high)
        except InvalidValueError:
            fitting = fitting_code_dtype("smallest", low, high)
            raise InvalidValueError(
                f"--dtype {requested} cannot hold this quantizer's codes, {low} to {high}; use "
                f"--dtype {fitting} or wider, or leave --dtype out (the smallest that holds them)"
            ) from None
    return target


def _apply_array(
    values: numpy.ndarray,
    quantizer: UniformQuantizer,
    arguments: argparse.Namespace,
    quantize: bool,
    name: str,
) -> numpy.dtype[Any]:
    """Quantize or dequantize ``values`` in chunks of rows into the output file; return its dtype."""
    if quantize:
        plan: Any = quantizer.quant_plan(values.dtype, values.shape)
        dtype = codes_dtype(plan, arguments.dtype)
        restrict: Any = restricted_quant_plan
    else:
        plan = quantizer.dequant_plan(values.dtype, values.shape)
        dtype = numpy.dtype(arguments.dtype) if arguments.dtype else restored_dtype(quantizer)
        restrict = restricted_dequant_plan
    rng = quantizer.rng  # stochastic noise by (seed, flat index): each row chunk takes its region

    def run(part_plan: Any, chunk: numpy.ndarray, row: int = 0) -> Any:  # output dtype, one pass
        if quantize:
            noise = (
                rng
                if rng is None or not chunk.ndim
                else rng.region((row,) + (0,) * (chunk.ndim - 1), values.shape)
            )
            return quantize_with(part_plan, chunk, noise, dtype=dtype)
        _check_codes(chunk, name)
        return _restored(part_plan, chunk, dtype)

    layout = plan.layout
    row_multiple = layout.extent[0] if layout is not None and layout.grid and layout.grid[0] > 1 else 1

    def fill() -> Iterator[numpy.ndarray]:  # the output's rows in order, written as they come
        if values.ndim == 0:
            yield run(plan, numpy.asarray(values))
            return
        rest = (slice(None),) * (values.ndim - 1)
        slices = list(row_chunks(values.shape, arguments.chunk_size, row_multiple))
        with Progress(len(slices), quiet=arguments.quiet) as progress:
            for part in slices:
                yield run(restrict(plan, (part, *rest)), numpy.asarray(values[part]), part.start)
                progress.advance()

    write_array(arguments.output, values.shape, dtype, fill(), replace=arguments.force)
    return dtype


def _check_codes(codes: numpy.ndarray, name: str) -> None:
    """Refuse float "codes" that are not whole numbers (the original values, given by mistake?)."""
    if codes.dtype.kind != "f":
        return
    whole = numpy.equal(codes, numpy.rint(codes))
    if not numpy.all(whole):
        bad = codes[~whole].flat[0]
        raise InvalidValueError(
            f"{name} holds {bad}, which is not a whole number: dequantize takes the codes "
            f"'intquant quantize' writes, not the values themselves"
        )


def _restored(plan: Any, codes: Any, dtype: numpy.dtype[Any]) -> Any:
    """The codes dequantized under ``plan``, as ``dtype`` (float16 through float32, refused where
    a value overflows float16)."""
    if dtype != _FLOAT16:
        return dequantize_with(plan, codes, dtype)
    values = dequantize_with(plan, codes, _FLOAT32)
    with numpy.errstate(over="ignore"):
        half = numpy.asarray(values).astype(_FLOAT16)
    if numpy.any(numpy.isinf(half) & numpy.isfinite(values)):
        raise InvalidValueError(
            "restored values exceed float16's range (+-65504); use --dtype float32 or float64"
        )
    return half


def _apply_checkpoint(
    spec: InputSpec, quantizers: Quantizers, arguments: argparse.Namespace, quantize: bool
) -> int:
    """Every array of a checkpoint with a quantizer quantized (or dequantized); the others copied."""
    path = arguments.quantizer
    if not isinstance(quantizers, dict):
        raise InvalidValueError(
            f"{path} holds one quantizer, but {spec.path} is a checkpoint: calibrate it as a whole "
            f"(intquant calibrate {spec.path} -o quantizers.json) for a quantizer per array, or "
            f"name one array as {spec.path}:NAME"
        )
    if quantize:
        _seeded(list(quantizers.values()), arguments.seed)
    with open_archive(spec) as archive:
        unknown = [name for name in quantizers if name not in archive.names]
        if unknown:
            raise InvalidValueError(
                f"{path} holds quantizers for {', '.join(map(repr, unknown))}, which {spec.path} "
                f"does not hold (it holds {', '.join(archive.names)}); use the quantizers "
                f"calibrated on this checkpoint"
            )
        layout, work, packed = [], {}, {}
        for name in archive.names:
            shape, dtype = archive.header(name)
            if name in quantizers:
                work[name], dtype, packing = _array_work(
                    quantizers[name], shape, dtype, arguments, quantize, f"{spec.path}:{name}"
                )
                if packing is not None:
                    packed[name] = packing
            layout.append((name, shape, dtype))

        def arrays() -> Iterator[numpy.ndarray]:
            with Progress(len(layout), quiet=arguments.quiet, unit="array") as progress:
                for name, _, _ in layout:
                    array = archive.read(name)
                    yield work[name](checked_numbers(array, f"{spec.path}:{name}")) if name in work else array
                    progress.advance()

        write_archive(arguments.output, layout, arrays(), replace=arguments.force, packed=packed)
    kept = [name for name in archive.names if name not in quantizers]
    what = "codes" if quantize else "restored values"
    print(f"wrote the {what} of {len(quantizers)} arrays to {arguments.output}")
    if packed:
        widths = sorted({n_bits for n_bits, _ in packed.values()})
        print(f"packed to {', '.join(map(str, widths))} bits per code (intquant dequantize unpacks them)")
    if kept:
        print(f"copied {len(kept)} arrays without a quantizer unchanged: {', '.join(kept)}")
    return 0


def _array_work(
    quantizer: UniformQuantizer,
    shape: tuple[int, ...],
    dtype: numpy.dtype[Any],
    arguments: argparse.Namespace,
    quantize: bool,
    name: str,
) -> tuple[Callable[[numpy.ndarray], Any], numpy.dtype[Any], tuple[int, bool] | None]:
    """What to do to one array of a checkpoint, the dtype it is written in and, with ``--pack``,
    its packing (n_bits, signed) (the plan is made now: a misfit shape, or codes ``--pack``
    cannot pack, are refused, naming the array, before anything is written)."""
    try:
        plan: Any = (quantizer.quant_plan if quantize else quantizer.dequant_plan)(dtype, shape)
        if quantize:
            target = codes_dtype(plan, arguments.dtype)
    except (InvalidValueError, InvalidTypeError) as error:
        raise type(error)(f"{name}: {error}") from error
    if quantize:
        packing = pack_width(quantizer, plan, name) if arguments.pack else None
        rng = quantizer.rng
        return (lambda array: quantize_with(plan, array, rng, dtype=target)), target, packing
    target = numpy.dtype(arguments.dtype) if arguments.dtype else restored_dtype(quantizer)

    def restore(codes: numpy.ndarray) -> Any:
        _check_codes(codes, name)
        return _restored(plan, codes, target)

    return restore, target, None


# -- demo


def demo_command(arguments: argparse.Namespace) -> int:
    """The demo, its plot written atomically (an existing plot is replaced only with ``--force``)."""
    from intquant.demo import run_demo

    plot: Path = arguments.plot
    output_format(plot, (".png",), "the demo's plot")
    check_output(plot, [], arguments.force)
    lines: list[str] = []

    def draw(temporary: Path) -> None:
        show = not arguments.quiet
        run_demo(temporary, show_progress=show and _terminal(), write=lines.append)

    write_file(plot, ".png", draw, replace=arguments.force)
    for line in lines:
        print(
            line if not line.startswith("wrote the accuracy plot") else f"wrote the accuracy plot to {plot}"
        )
    return 0


def _terminal() -> bool:
    return sys.stderr.isatty()


# -- chunks


def chunk_count(shape: tuple[int, ...], chunk_size: int, row_multiple: int = 1) -> int:
    """How many chunks :func:`_chunks` cuts an array of ``shape`` into."""
    return 1 if not shape else sum(1 for _ in row_chunks(shape, chunk_size, row_multiple))


def _chunks(values: numpy.ndarray, chunk_size: int, row_multiple: int = 1) -> Iterator[numpy.ndarray]:
    """Chunks of rows of ``values``, each in memory."""
    if values.ndim == 0:
        yield numpy.asarray(values)
        return
    for part in row_chunks(values.shape, chunk_size, row_multiple):
        yield numpy.asarray(values[part])

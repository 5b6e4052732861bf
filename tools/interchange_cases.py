"""The cases of the Concrete ML interchange check: every kind of text intquant writes, and how
each object is used once read.

Shared by ``tools/check_concrete_ml_interchange.py`` (which loads each text in Concrete ML 1.7.0
and 1.9.0 and compares) and ``tests/test_interchange.py`` (which checks, without Concrete ML,
that the committed verdicts still describe what intquant writes). This module imports neither
intquant nor Concrete ML at import time: the functions that make or use objects take the library
as a namespace (``QuantizationOptions``, ``MinMaxQuantizationStats``,
``UniformQuantizationParameters``, ``UniformQuantizer``, ``QuantizedArray``), so the same recipe
and the same use run in intquant and in a Concrete ML virtual environment.

* :func:`all_cases` lists the cases: a name, what intquant writes (``kind``), the group (the
  seed's classes with the seed's options, the extra options, calibration states, the command
  line, Concrete ML 1.9's convention), a JSON recipe and how the object is used.
* :func:`make_text` writes a case's text with intquant; :func:`build` makes a recipe's object
  with any library (the seed's recipes run in Concrete ML too, to compare texts).
* :func:`use` runs what a user does with the object read: ``quant`` and ``dequant`` on
  :data:`PROBES` and :data:`CODES` (and on values at exact ties of its grid), after calibrating
  it first when it is options or statistics, and returns labelled results (arrays, or
  :class:`Failure` for an exception).

The data are fixed formulas (no random generator), so every numpy makes the same texts.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

import numpy

SHAPE = (4, 8)


def spread(low: float, high: float, salt: int, shape: tuple[int, ...] = SHAPE) -> numpy.ndarray:
    """Deterministic float64 values spread over ``[low, high]`` (a fixed permutation of a grid
    of 1009 steps), none within 0.01 of 0 (a rounded ``-0.0`` beside ``0.0`` would make
    ``uvalues`` depend on numpy's sort)."""
    steps = (numpy.arange(math.prod(shape), dtype=numpy.int64) * 7919 + salt * 104729) % 1009
    values = low + (high - low) * (steps / 1008.0)
    values = numpy.where(numpy.abs(values) < 0.01, values + 0.02, values)
    return values.reshape(shape)


def _grid_values() -> numpy.ndarray:
    """Values already on a grid of step 0.25 (QAT data: the scale is inferred from them)."""
    steps = (numpy.arange(math.prod(SHAPE), dtype=numpy.int64) * 5) % 13 - 4
    return (steps * 0.25).reshape(SHAPE)


#: Calibration data, by name.
DATA: dict[str, numpy.ndarray] = {
    "mixed": spread(-1.3, 2.9, 1),
    "mixed32": spread(-1.3, 2.9, 1).astype(numpy.float32),
    "positive": spread(0.7, 3.1, 2),
    "grid": _grid_values(),
    "grid32": _grid_values().astype(numpy.float32),
    "constant": numpy.full(SHAPE, 0.75),
}

#: Values quantized by every use: beyond the calibration range (clipping shows), float64 and
#: float32, and a 0-d value.
PROBES: dict[str, numpy.ndarray] = {
    "wide": spread(-3.0, 5.5, 3),
    "wide32": spread(-3.0, 5.5, 3).astype(numpy.float32),
    "scalar": numpy.array(0.8123),
}

#: Codes dequantized by every use, from below any signed range to above 8-bit unsigned codes.
CODES: dict[str, numpy.ndarray] = {
    "codes": ((numpy.arange(math.prod(SHAPE), dtype=numpy.int64) * 37) % 300 - 20).reshape(SHAPE),
    "codes32": ((numpy.arange(math.prod(SHAPE), dtype=numpy.int32) * 37) % 300 - 20).reshape(SHAPE),
}

#: The seed's option flags, in their order, and how the tables name them.
FLAGS = ("is_signed", "is_symmetric", "is_qat", "is_narrow", "is_precomputed_qat")
FLAG_WORDS = {
    "is_signed": "signed",
    "is_symmetric": "symmetric",
    "is_qat": "QAT",
    "is_narrow": "narrow",
    "is_precomputed_qat": "precomputed QAT",
}

#: Options under which statistics and parameters are used (the seed's options only).
STATS_OPTIONS: dict[str, dict[str, Any]] = {
    "8 bits": {"n_bits": 8},
    "4 bits signed symmetric narrow": {
        "n_bits": 4,
        "is_signed": True,
        "is_symmetric": True,
        "is_narrow": True,
    },
    "6 bits QAT": {"n_bits": 6, "is_qat": True},
}
PARAMS_OPTIONS: dict[str, dict[str, Any]] = {
    "8 bits": {"n_bits": 8},
    "8 bits signed narrow": {"n_bits": 8, "is_signed": True, "is_narrow": True},
}


@dataclass(frozen=True)
class Case:
    """One text intquant writes.

    ``kind`` is what is written (``options``, ``stats``, ``params``, ``quantizer``,
    ``quantized_array``, ``calibration``); ``group`` is ``seed`` (the seed's classes and options:
    Concrete ML makes the same object from the recipe), ``extra`` (intquant's extra options),
    ``calibration`` (calibration states), ``cli`` (what ``intquant calibrate`` writes) or
    ``v1_9`` (objects of Concrete ML 1.9's convention). ``use`` names how the object read is
    used (see :func:`use`); ``calib`` the data a ``calibrate`` use calibrates on.
    """

    name: str
    kind: str
    group: str
    recipe: dict[str, Any]
    use: str
    calib: Optional[str] = None
    convention: str = "1.7"
    #: Concrete ML of this convention makes the same object from ``recipe`` (checked as text).
    cml_buildable: bool = False
    description: str = field(default="", compare=False)


# -- recipes


def _flags_text(spec: dict[str, Any]) -> str:
    words = [f"{spec['n_bits']} bits"]
    words += [FLAG_WORDS[flag] for flag in FLAGS if spec.get(flag)]
    return ", ".join(words)


def _extras_text(extras: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in extras.items())


def _option_specs() -> list[dict[str, Any]]:
    """Every valid combination of the seed's flags (symmetric needs signed; QAT excludes
    symmetric), at 4 bits."""
    specs = []
    for signed, symmetric, qat, narrow, precomputed in itertools.product((False, True), repeat=5):
        if (symmetric and not signed) or (qat and symmetric):
            continue
        values = (signed, symmetric, qat, narrow, precomputed)
        specs.append(
            {"n_bits": 4, **{flag: value for flag, value in zip(FLAGS, values, strict=True) if value}}
        )
    return specs


def _slug(spec: dict[str, Any], extras: Optional[dict[str, Any]] = None) -> str:
    parts = [f"{spec['n_bits']}b"] + [flag[3:] for flag in FLAGS if spec.get(flag)]
    for name, value in (extras or {}).items():
        if isinstance(value, bool):
            parts.append(name)
        elif isinstance(value, tuple):
            parts.append(f"{name}={'x'.join(map(str, value))}")
        else:
            parts.append(f"{name}={value}")
    return "-".join(parts)


def _data_for(spec: dict[str, Any], extras: Optional[dict[str, Any]] = None) -> str:
    if spec.get("is_qat"):
        return "grid"
    if extras and extras.get("zero_in_range"):
        return "positive"
    return "mixed"


def seed_cases() -> list[Case]:
    """The seed's classes with the seed's options: Concrete ML 1.7.0 writes the same text."""
    cases = []
    for spec in _option_specs():
        cases.append(
            Case(
                f"options/{_slug(spec)}",
                "options",
                "seed",
                {"kind": "options", "options": spec},
                "calibrate",
                calib=_data_for(spec),
                cml_buildable=True,
                description=f"QuantizationOptions {_flags_text(spec)}",
            )
        )
    for spec in _option_specs():
        for no_clipping in (False, True):
            name = f"quantizer/{_slug(spec)}{'-no_clipping' if no_clipping else ''}"
            recipe = {
                "kind": "quantizer",
                "options": spec,
                "data": _data_for(spec),
                "no_clipping": no_clipping,
            }
            text = f"UniformQuantizer {_flags_text(spec)}{', no_clipping' if no_clipping else ''}"
            cases.append(
                Case(name, "quantizer", "seed", recipe, "quantizer", cml_buildable=True, description=text)
            )
    for bits, spec in (
        (8, {"n_bits": 8}),
        (8, {"n_bits": 8, "is_signed": True, "is_symmetric": True}),
        (8, {"n_bits": 8, "is_qat": True}),
        (2, {"n_bits": 2, "is_signed": True}),
        (16, {"n_bits": 16}),
    ):
        for data in ("mixed32", "constant") if bits == 8 and not spec.get("is_qat") else (_data_for(spec),):
            if spec.get("is_qat") and bits == 8:
                data = "grid32"
            recipe = {"kind": "quantizer", "options": spec, "data": data, "no_clipping": False}
            cases.append(
                Case(
                    f"quantizer/{_slug(spec)}/{data}",
                    "quantizer",
                    "seed",
                    recipe,
                    "quantizer",
                    cml_buildable=True,
                    description=f"UniformQuantizer {_flags_text(spec)}, {data} data",
                )
            )
    for data in ("mixed", "mixed32", "positive", "grid", "constant"):
        cases.append(
            Case(
                f"stats/{data}",
                "stats",
                "seed",
                {"kind": "stats", "data": data},
                "stats",
                cml_buildable=True,
                description=f"MinMaxQuantizationStats of {data} data",
            )
        )
    for spec in (
        {"n_bits": 8},
        {"n_bits": 8, "is_signed": True, "is_narrow": True},
        {"n_bits": 8, "is_qat": True},
    ):
        cases.append(
            Case(
                f"params/{_slug(spec)}",
                "params",
                "seed",
                {"kind": "params", "options": spec, "data": _data_for(spec)},
                "params",
                cml_buildable=True,
                description=f"UniformQuantizationParameters of a quantizer {_flags_text(spec)}",
            )
        )
    for spec in (
        {"n_bits": 4},
        {"n_bits": 4, "is_signed": True},
        {"n_bits": 4, "is_signed": True, "is_symmetric": True, "is_narrow": True},
        {"n_bits": 4, "is_qat": True},
        {"n_bits": 4, "is_qat": True, "is_precomputed_qat": True},
        {"n_bits": 8},
    ):
        cases.append(
            Case(
                f"quantized_array/{_slug(spec)}",
                "quantized_array",
                "seed",
                {"kind": "quantized_array", "options": spec, "data": _data_for(spec)},
                "quantized_array",
                cml_buildable=True,
                description=f"QuantizedArray {_flags_text(spec)}",
            )
        )
    cases.append(
        Case(
            "quantized_array/8b/from-codes",
            "quantized_array",
            "seed",
            {"kind": "quantized_array_codes", "options": {"n_bits": 8}, "data": "mixed"},
            "quantized_array",
            cml_buildable=True,
            description="QuantizedArray 8 bits made from codes (value_is_float=False)",
        )
    )
    return cases


#: The extra options tried alone and together, with the seed options they go with.
EXTRA_SETS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"n_bits": 4}, {"rounding": "half_up"}),
    ({"n_bits": 4}, {"rounding": "floor"}),
    ({"n_bits": 4}, {"rounding": "ceil"}),
    ({"n_bits": 4}, {"rounding": "stochastic", "seed": 0}),
    ({"n_bits": 4}, {"axis": 0}),
    ({"n_bits": 4, "is_signed": True, "is_symmetric": True}, {"axis": -1}),
    ({"n_bits": 4}, {"block_size": (2, 4)}),
    ({"n_bits": 4}, {"zero_in_range": True}),
    ({"n_bits": 4}, {"power_of_two_scale": True}),
    ({"n_bits": 4, "is_signed": True, "is_symmetric": True}, {"power_of_two_scale": True}),
    ({"n_bits": 4, "is_qat": True}, {"power_of_two_scale": True}),
    ({"n_bits": 4}, {"zero_in_range": True, "power_of_two_scale": True}),
    ({"n_bits": 4}, {"rounding": "floor", "axis": 0}),
    ({"n_bits": 4}, {"rounding": "stochastic", "seed": 7, "axis": 1}),
    ({"n_bits": 4}, {"block_size": (2, 4), "zero_in_range": True}),
    ({"n_bits": 4, "is_signed": True}, {"axis": 1, "power_of_two_scale": True}),
    ({"n_bits": 4}, {"rounding": "half_up", "zero_in_range": True}),
    ({"n_bits": 4, "is_signed": True, "is_symmetric": True}, {"full_range": True}),
    ({"n_bits": 2, "is_signed": True, "is_symmetric": True}, {"full_range": True}),
    (
        {"n_bits": 4, "is_signed": True, "is_symmetric": True},
        {"full_range": True, "power_of_two_scale": True},
    ),
    ({"n_bits": 4, "is_signed": True, "is_symmetric": True}, {"full_range": True, "axis": 0}),
]


def extra_cases() -> list[Case]:
    """Each extra option alone and in combination, on options, quantizers (calibrated or not),
    statistics, parameters and quantized arrays."""
    cases = []
    for spec, extras in EXTRA_SETS:
        slug, words = _slug(spec, extras), f"{_flags_text(spec)}, {_extras_text(extras)}"
        data = _data_for(spec, extras)
        cases.append(
            Case(
                f"options/{slug}",
                "options",
                "extra",
                {"kind": "options", "options": spec, "extras": extras},
                "calibrate",
                calib=data,
                description=f"QuantizationOptions {words}",
            )
        )
        recipe = {"kind": "quantizer", "options": spec, "extras": extras, "data": data, "no_clipping": False}
        cases.append(
            Case(
                f"quantizer/{slug}",
                "quantizer",
                "extra",
                recipe,
                "quantizer",
                description=f"UniformQuantizer {words}",
            )
        )
        cases.append(
            Case(
                f"quantizer/{slug}/uncalibrated",
                "quantizer",
                "extra",
                {"kind": "quantizer_uncalibrated", "options": spec, "extras": extras},
                "calibrate",
                calib=data,
                description=f"UniformQuantizer {words}, not calibrated yet",
            )
        )
        cases.append(
            Case(
                f"quantized_array/{slug}",
                "quantized_array",
                "extra",
                {"kind": "quantized_array", "options": spec, "extras": extras, "data": data},
                "quantized_array",
                description=f"QuantizedArray {words}",
            )
        )
        granular = {name: extras[name] for name in ("axis", "block_size") if name in extras}
        if granular and set(extras) == set(granular):
            cases.append(
                Case(
                    f"stats/{slug}",
                    "stats",
                    "extra",
                    {"kind": "stats", "data": data, "extras": granular},
                    "stats",
                    description=f"MinMaxQuantizationStats of {data} data, {_extras_text(granular)}",
                )
            )
            cases.append(
                Case(
                    f"params/{slug}",
                    "params",
                    "extra",
                    {"kind": "params", "options": spec, "extras": extras, "data": data},
                    "params",
                    description=f"UniformQuantizationParameters of a quantizer {words}",
                )
            )
    return cases


CALIBRATORS: dict[str, dict[str, Any]] = {
    "PercentileStats": {"percentile": 99.0, "bins": 64},
    "MovingAverageMinMaxStats": {"averaging_constant": 0.5},
    "MSEStats": {"bins": 64, "candidates": 8},
    "EntropyStats": {"bins": 128},
}


def calibration_cases() -> list[Case]:
    """Calibration states, fed and empty."""
    cases = []
    for method, arguments in CALIBRATORS.items():
        for fed in (True, False):
            cases.append(
                Case(
                    f"calibration/{method}{'' if fed else '/empty'}",
                    "calibration",
                    "calibration",
                    {"kind": "calibration", "method": method, "arguments": arguments, "fed": fed},
                    "calibration",
                    description=f"{method}{', no data yet' if not fed else ''}",
                )
            )
    return cases


#: Arguments of ``intquant calibrate`` tried, with the seed recipe of the same quantizer (when
#: Concrete ML can make it).
CLI_RUNS: list[tuple[str, list[str], Optional[dict[str, Any]]]] = [
    ("default", [], {"n_bits": 8}),
    ("signed-symmetric", ["--n-bits", "4", "--signed", "--symmetric"], None),
    ("symmetric-full-range", ["--n-bits", "4", "--symmetric", "--full-range"], None),
    ("signed-narrow", ["--n-bits", "4", "--signed", "--narrow"], None),
    ("axis", ["--n-bits", "4", "--signed", "--symmetric", "--axis", "0"], None),
    ("block-size", ["--n-bits", "4", "--block-size", "2,4"], None),
    ("rounding-half_up", ["--n-bits", "4", "--rounding", "half_up"], None),
    ("rounding-stochastic", ["--n-bits", "4", "--rounding", "stochastic"], None),
    ("percentile", ["--method", "percentile", "--percentile", "99"], None),
    ("mse", ["--n-bits", "4", "--method", "mse"], None),
    ("entropy", ["--method", "entropy"], None),
]


def cli_cases() -> list[Case]:
    """What ``intquant calibrate DATA -o q.json ...`` writes (from a ``.npy`` of float32 data)."""
    cases = []
    for name, arguments, seed_options in CLI_RUNS:
        recipe: dict[str, Any] = {"kind": "cli", "arguments": arguments, "data": "mixed32"}
        if seed_options is not None:
            recipe["seed"] = {
                "kind": "quantizer",
                "options": seed_options,
                "data": "mixed32",
                "no_clipping": False,
            }
        cases.append(
            Case(
                f"cli/{name}",
                "quantizer",
                "cli",
                recipe,
                "quantizer",
                cml_buildable=seed_options is not None,
                description=f"intquant calibrate {' '.join(arguments)}".rstrip(),
            )
        )
    return cases


def v1_9_available() -> bool:
    """Whether ``intquant.compat.v1_9`` (Concrete ML 1.9's convention) can be imported."""
    try:
        import intquant.compat.v1_9  # noqa: F401
    except ImportError:
        return False
    return True


#: Extra options tried on Concrete ML 1.9 convention objects.
V1_9_EXTRA_SETS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"n_bits": 4}, {"rounding": "floor"}),
    ({"n_bits": 4}, {"axis": 0}),
    ({"n_bits": 4}, {"zero_in_range": True}),
    ({"n_bits": 4, "is_qat": True}, {"power_of_two_scale": True}),
]


def v1_9_cases() -> list[Case]:
    """Objects of Concrete ML 1.9's convention: Concrete ML 1.9.0 writes the same text."""
    cases = []
    for spec in _option_specs():
        for no_clipping in (False, True):
            recipe = {
                "kind": "quantizer",
                "options": spec,
                "data": _data_for(spec),
                "no_clipping": no_clipping,
            }
            cases.append(
                Case(
                    f"v1_9/quantizer/{_slug(spec)}{'-no_clipping' if no_clipping else ''}",
                    "quantizer",
                    "v1_9",
                    recipe,
                    "quantizer",
                    convention="1.9",
                    cml_buildable=True,
                    description=f"1.9 UniformQuantizer {_flags_text(spec)}"
                    f"{', no_clipping' if no_clipping else ''}",
                )
            )
    for spec in ({"n_bits": 4}, {"n_bits": 4, "is_qat": True}):
        cases.append(
            Case(
                f"v1_9/options/{_slug(spec)}",
                "options",
                "v1_9",
                {"kind": "options", "options": spec},
                "calibrate",
                calib=_data_for(spec),
                convention="1.9",
                cml_buildable=True,
                description=f"1.9 QuantizationOptions {_flags_text(spec)}",
            )
        )
    for data in ("mixed", "grid"):
        cases.append(
            Case(
                f"v1_9/stats/{data}",
                "stats",
                "v1_9",
                {"kind": "stats", "data": data},
                "stats",
                convention="1.9",
                cml_buildable=True,
                description=f"1.9 MinMaxQuantizationStats of {data} data",
            )
        )
    for spec in ({"n_bits": 4}, {"n_bits": 4, "is_qat": True}):
        cases.append(
            Case(
                f"v1_9/quantized_array/{_slug(spec)}",
                "quantized_array",
                "v1_9",
                {"kind": "quantized_array", "options": spec, "data": _data_for(spec)},
                "quantized_array",
                convention="1.9",
                cml_buildable=True,
                description=f"1.9 QuantizedArray {_flags_text(spec)}",
            )
        )
    for spec, extras in V1_9_EXTRA_SETS:
        slug, words = _slug(spec, extras), f"{_flags_text(spec)}, {_extras_text(extras)}"
        data = _data_for(spec, extras)
        cases.append(
            Case(
                f"v1_9/options/{slug}",
                "options",
                "v1_9",
                {"kind": "options", "options": spec, "extras": extras},
                "calibrate",
                calib=data,
                convention="1.9",
                description=f"1.9 QuantizationOptions {words}",
            )
        )
        recipe = {"kind": "quantizer", "options": spec, "extras": extras, "data": data, "no_clipping": False}
        cases.append(
            Case(
                f"v1_9/quantizer/{slug}",
                "quantizer",
                "v1_9",
                recipe,
                "quantizer",
                convention="1.9",
                description=f"1.9 UniformQuantizer {words}",
            )
        )
    for extras in ({"axis": 0}, {"block_size": (2, 4)}):
        cases.append(
            Case(
                f"v1_9/stats/{_slug({'n_bits': 4}, extras)[3:]}",
                "stats",
                "v1_9",
                {"kind": "stats", "data": "mixed", "extras": extras},
                "stats",
                convention="1.9",
                description=f"1.9 MinMaxQuantizationStats of mixed data, {_extras_text(extras)}",
            )
        )
    return cases


def all_cases(include_v1_9: Optional[bool] = None) -> list[Case]:
    """Every case, in a fixed order (the 1.9 cases when ``intquant.compat.v1_9`` exists, unless
    ``include_v1_9`` says otherwise)."""
    if include_v1_9 is None:
        include_v1_9 = v1_9_available()
    cases = seed_cases() + extra_cases() + calibration_cases() + cli_cases()
    if include_v1_9:
        cases += v1_9_cases()
    names = [case.name for case in cases]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:  # pragma: no cover - a mistake in the lists above
        raise ValueError(f"duplicate case names: {duplicates}")
    return cases


# -- libraries


def intquant_library(convention: str = "1.7") -> SimpleNamespace:
    """intquant's seed classes (or those of ``intquant.compat.v1_9``) with ``loads``/``dumps``."""
    import intquant

    module: Any = intquant
    if convention == "1.9":
        import intquant.compat.v1_9 as module
    elif convention != "1.7":
        raise ValueError(f"unknown convention {convention!r}; expected '1.7' or '1.9'")
    return SimpleNamespace(
        name=f"intquant ({convention})",
        QuantizationOptions=module.QuantizationOptions,
        MinMaxQuantizationStats=module.MinMaxQuantizationStats,
        UniformQuantizationParameters=module.UniformQuantizationParameters,
        UniformQuantizer=module.UniformQuantizer,
        QuantizedArray=module.QuantizedArray,
        loads=getattr(module, "loads", intquant.loads),
        dumps=getattr(module, "dumps", intquant.dumps),
        extras=True,
    )


def make_options(lib: Any, spec: dict[str, Any], extras: Optional[dict[str, Any]] = None) -> Any:
    """``QuantizationOptions`` of ``spec`` (``n_bits`` and the flags), with ``extras`` as keywords."""
    options = lib.QuantizationOptions(
        spec["n_bits"],
        is_signed=spec.get("is_signed", False),
        is_symmetric=spec.get("is_symmetric", False),
        is_qat=spec.get("is_qat", False),
        **(extras or {}),
    )
    options.is_narrow = spec.get("is_narrow", False)
    options.is_precomputed_qat = spec.get("is_precomputed_qat", False)
    return options


def _calibrated(lib: Any, recipe: dict[str, Any]) -> Any:
    options = make_options(lib, recipe["options"], recipe.get("extras"))
    quantizer = lib.UniformQuantizer(options, no_clipping=recipe.get("no_clipping", False))
    quantizer.compute_quantization_stats(DATA[recipe["data"]])
    quantizer.compute_quantization_parameters(options, quantizer.quant_stats)
    return quantizer


def build(lib: Any, recipe: dict[str, Any]) -> Any:
    """The object of a recipe (not ``cli`` ones), made with ``lib`` as a user would."""
    kind = recipe["kind"]
    if kind == "options":
        return make_options(lib, recipe["options"], recipe.get("extras"))
    if kind == "stats":
        stats = lib.MinMaxQuantizationStats()
        stats.compute_quantization_stats(DATA[recipe["data"]], **recipe.get("extras", {}))
        return stats
    if kind == "quantizer":
        return _calibrated(lib, recipe)
    if kind == "quantizer_uncalibrated":
        return lib.UniformQuantizer(make_options(lib, recipe["options"], recipe.get("extras")))
    if kind == "params":
        return _calibrated(lib, recipe).quant_params
    if kind == "quantized_array":
        options = make_options(lib, recipe["options"], recipe.get("extras"))
        return lib.QuantizedArray(recipe["options"]["n_bits"], DATA[recipe["data"]], options=options)
    if kind == "quantized_array_codes":
        params = _calibrated(lib, recipe).quant_params
        options = make_options(lib, recipe["options"])
        codes = CODES["codes"].clip(0, 255)
        return lib.QuantizedArray(recipe["options"]["n_bits"], codes, False, options=options, params=params)
    if kind == "calibration":
        import intquant.calibration

        calibrator = getattr(intquant.calibration, recipe["method"])(**recipe["arguments"])
        if recipe["fed"]:
            calibrator.update(DATA["mixed"])
            calibrator.update(DATA["positive"])
        return calibrator
    raise ValueError(f"no object for a recipe of kind {kind!r}")


def _cli_text(recipe: dict[str, Any]) -> str:
    from intquant.cli.main import main

    with tempfile.TemporaryDirectory() as folder:
        data, output = Path(folder) / "data.npy", Path(folder) / "q.json"
        numpy.save(data, DATA[recipe["data"]])
        arguments = ["calibrate", str(data), "-o", str(output), "--quiet", *recipe["arguments"]]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as errors:
            status = main(arguments)
        if status != 0:
            raise RuntimeError(f"intquant {' '.join(arguments)} failed ({status}): {errors.getvalue()}")
        return output.read_text()


def make_text(case: Case) -> str:
    """The text intquant writes for ``case``."""
    if case.recipe["kind"] == "cli":
        return _cli_text(case.recipe)
    lib = intquant_library(case.convention)
    return str(lib.dumps(build(lib, case.recipe)))


def text_hash(text: str) -> str:
    """The SHA-256 of a text's UTF-8 bytes, in hex."""
    return hashlib.sha256(text.encode()).hexdigest()


# -- uses


@dataclass(frozen=True)
class Failure:
    """An exception a step raised: its type and first line of message."""

    error: str
    message: str


def attempt(step: Callable[[], Any]) -> Any:
    """``step()``, or the :class:`Failure` of the exception it raised."""
    try:
        return step()
    except Exception as error:
        lines = str(error).strip().splitlines()
        return Failure(type(error).__name__, lines[0][:200] if lines else "")


def tie_values(quantizer: Any) -> Optional[numpy.ndarray]:
    """Values at exact ties of a per-tensor grid: ``(k + 0.5 - zero_point) * scale`` for ``k``
    in [-40, 40] (None for per-channel parameters or none yet)."""
    scale, zero_point = getattr(quantizer, "scale", None), getattr(quantizer, "zero_point", None)
    if scale is None or zero_point is None or numpy.ndim(scale) or numpy.ndim(zero_point):
        return None
    return (numpy.arange(-40, 41) + 0.5 - float(zero_point)) * float(scale)


def quantizer_results(quantizer: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``quant`` of every probe (and of the grid's ties), ``dequant`` of every code probe."""
    results = [
        (f"{prefix}quant({name})", attempt(lambda v=values: quantizer.quant(v)))
        for name, values in PROBES.items()
    ]
    ties = attempt(lambda: tie_values(quantizer))
    if isinstance(ties, numpy.ndarray):
        results.append((f"{prefix}quant(ties)", attempt(lambda: quantizer.quant(ties))))
        ties32 = ties.astype(numpy.float32)
        results.append((f"{prefix}quant(ties32)", attempt(lambda: quantizer.quant(ties32))))
    results += [
        (f"{prefix}dequant({name})", attempt(lambda c=codes: quantizer.dequant(c)))
        for name, codes in CODES.items()
    ]
    return results


def _calibrate_then_use(lib: Any, obj: Any, calib: str) -> list[tuple[str, Any]]:
    if isinstance(obj, lib.QuantizationOptions):
        quantizer, options = lib.UniformQuantizer(obj), obj
    else:
        quantizer, options = obj, attempt(lambda: obj.quant_options)
        if isinstance(options, Failure):
            return [("quant_options", options)]
    step = attempt(lambda: quantizer.compute_quantization_stats(DATA[calib]))
    if not isinstance(step, Failure):
        step = attempt(lambda: quantizer.compute_quantization_parameters(options, quantizer.quant_stats))
    if isinstance(step, Failure):
        return [("calibrate", step)]
    return quantizer_results(quantizer)


def _with_options(lib: Any, obj: Any, kind: str) -> list[tuple[str, Any]]:
    results: list[tuple[str, Any]] = []
    for label, spec in (STATS_OPTIONS if kind == "stats" else PARAMS_OPTIONS).items():
        options = make_options(lib, spec)
        if kind == "params":
            quantizer = lib.UniformQuantizer(options, None, obj)
        else:
            quantizer = lib.UniformQuantizer(options, obj)
            step = attempt(lambda q=quantizer, o=options: q.compute_quantization_parameters(o, obj))
            if isinstance(step, Failure):
                results.append((f"{label}: parameters", step))
                continue
        results += quantizer_results(quantizer, f"{label}: ")
    return results


def _quantized_array_results(array: Any) -> list[tuple[str, Any]]:
    results = [("qvalues", array.qvalues), ("values", array.values)]
    results.append(("quant()", attempt(array.quant)))
    results.append(("dequant()", attempt(array.dequant)))
    for name, values in PROBES.items():
        results.append((f"update_values({name})", attempt(lambda v=values: array.update_values(v))))
    for name, codes in CODES.items():
        results.append(
            (f"update_quantized_values({name})", attempt(lambda c=codes: array.update_quantized_values(c)))
        )
    return results


def use(lib: Any, obj: Any, case: Case) -> list[tuple[str, Any]]:
    """What a user does with ``obj``, the object read from ``case``'s text, in library ``lib``:

    * ``quantizer``: ``quant`` of :data:`PROBES` and of values at exact ties, ``dequant`` of
      :data:`CODES`;
    * ``calibrate`` (options, or a quantizer not calibrated yet): calibrate a quantizer of these
      options on ``DATA[case.calib]``, then as ``quantizer``;
    * ``stats`` / ``params``: a quantizer of each of :data:`STATS_OPTIONS` /
      :data:`PARAMS_OPTIONS` with these statistics (parameters computed) or parameters, then as
      ``quantizer``;
    * ``calibration``: a quantizer of 8-bit options whose range the calibration state gives;
    * ``quantized_array``: ``qvalues``, ``values``, ``quant()``, ``dequant()``,
      ``update_values`` of :data:`PROBES` and ``update_quantized_values`` of :data:`CODES`.

    A step that raises gives a :class:`Failure` in its place.
    """
    if case.use == "quantizer":
        return quantizer_results(obj)
    if case.use == "calibrate":
        return _calibrate_then_use(lib, obj, case.calib or "mixed")
    if case.use in ("stats", "params"):
        return _with_options(lib, obj, case.use)
    if case.use == "calibration":
        options = make_options(lib, {"n_bits": 8})
        quantizer = lib.UniformQuantizer(options)
        step = attempt(lambda: quantizer.compute_quantization_parameters(options, obj))
        return [("parameters", step)] if isinstance(step, Failure) else quantizer_results(quantizer)
    if case.use == "quantized_array":
        return _quantized_array_results(obj)
    raise ValueError(f"unknown use {case.use!r}")


def recalibration(lib: Any, obj: Any, case: Case) -> list[tuple[str, Any]]:
    """A calibrated quantizer's parameters recomputed from its own options and statistics
    (``compute_quantization_parameters(q.quant_options, q.quant_stats)``), then used; empty when
    it has no statistics. Not part of the verdict: it shows what a reader loses with an option
    it ignores."""
    if case.use != "quantizer" or getattr(obj, "rmin", None) is None:
        return []
    copy = attempt(lambda: lib.loads(lib.dumps(obj)))
    if isinstance(copy, Failure):
        return [("copy", copy)]
    step = attempt(lambda: copy.compute_quantization_parameters(copy.quant_options, copy.quant_stats))
    if isinstance(step, Failure):
        return [("recalibrate", step)]
    return quantizer_results(copy, "recalibrated: ")


# -- results as JSON


def encode_result(value: Any) -> dict[str, Any]:
    """A result as JSON: its Python type, and for numpy values dtype, shape and bytes (hex), so
    that two results are equal exactly when their JSON is."""
    if isinstance(value, Failure):
        return {"error": value.error, "message": value.message}
    if isinstance(value, (numpy.ndarray, numpy.generic)):
        array = numpy.asarray(value)
        return {
            "type": type(value).__name__,
            "dtype": str(array.dtype),
            "shape": list(array.shape),
            "bytes": numpy.ascontiguousarray(array).tobytes().hex(),
        }
    return {"type": type(value).__name__, "repr": repr(value)}


def encode_results(results: list[tuple[str, Any]]) -> list[list[Any]]:
    return [[label, encode_result(value)] for label, value in results]


def case_from_json(raw: dict[str, Any]) -> Case:
    """A :class:`Case` from ``dataclasses.asdict`` output (sent to a worker process)."""
    recipe = dict(raw["recipe"])
    if "extras" in recipe and "block_size" in recipe["extras"]:
        recipe["extras"] = {**recipe["extras"], "block_size": tuple(recipe["extras"]["block_size"])}
    return Case(**{**raw, "recipe": recipe})


def tags_of(text: str) -> str:
    """The outer tag, and any intquant tag inside it."""
    found: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            name = node.get("type_name")
            if isinstance(name, str) and name not in (
                "numpy_integer",
                "numpy_float",
                "numpy_array",
                "tuple",
                "set",
            ):
                found.append(name)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(json.loads(text))
    inner = [name for name in dict.fromkeys(found[1:]) if name.startswith("intquant.") and name != found[0]]
    return " > ".join([found[0], *inner]) if found else ""


# -- the tables of docs/interchange.md

#: docs/interchange.md holds the generated tables between these markers.
TABLE_START = "<!-- interchange tables: generated by tools/check_concrete_ml_interchange.py -->"
TABLE_END = "<!-- end of interchange tables -->"

_KIND_NAMES = {
    "options": "`QuantizationOptions`",
    "stats": "`MinMaxQuantizationStats`",
    "params": "`UniformQuantizationParameters`",
    "quantizer": "`UniformQuantizer`",
    "quantizer_uncalibrated": "`UniformQuantizer` not calibrated yet",
    "quantized_array": "`QuantizedArray`",
    "quantized_array_codes": "`QuantizedArray`",
    "calibration": "calibration state",
    "cli": "`intquant calibrate` output",
}


def _cell(verdict: dict[str, Any], full: bool) -> str:
    if verdict["verdict"] == "MISREAD" and verdict.get("cml_own"):
        cell = "differs: Concrete ML's own difference"
    else:
        cell = verdict["verdict"]
    if full and verdict.get("same_text"):
        cell += ", its own text"
    if full and "refused by both" in verdict["detail"]:
        cell += f" ({verdict['detail'].split('(')[1].rstrip(')')})"
    return cell


def _row_label(record: dict[str, Any], case: Optional[Case]) -> str:
    kind = case.recipe["kind"] if case is not None else record["kind"]
    label = _KIND_NAMES.get(kind, record["kind"])
    if record["group"] == "seed":
        return f"{label} (seed)"
    if record["group"] == "v1_9":
        return f"{label} (Concrete ML 1.9's convention)"
    return label


def _common_flags(records: list[dict[str, Any]], cases: dict[str, Case]) -> list[str]:
    """The seed flags every record of a group sets (``is_qat``, ...)."""
    sets = [
        {flag for flag in FLAGS if cases[record["name"]].recipe.get("options", {}).get(flag)}
        for record in records
        if record["name"] in cases
    ]
    return sorted(set.intersection(*sets), key=FLAGS.index) if sets else []


def markdown_tables(document: dict[str, Any]) -> str:
    """A summary table (cases grouped by what is written and what Concrete ML does) and the table
    of every case, from the JSON record."""
    versions = list(document["concrete_ml"])
    cases = {case.name: case for case in all_cases(include_v1_9=document.get("v1_9_cases", False))}
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for record in document["cases"]:
        cells = tuple(_cell(record["concrete_ml"][version], full=False) for version in versions)
        case = cases.get(record["name"])
        has_extras = str(bool(case is not None and case.recipe.get("extras")))
        key = (_row_label(record, case), record["tag"], has_extras, *cells)
        groups.setdefault(key, []).append(record)
    head = " | ".join(f"Concrete ML {version}" for version in versions)
    lines = [f"| what intquant writes | tag | cases | {head} |"]
    lines.append("| --- | --- | --- | " + " | ".join("---" for _ in versions) + " |")
    for (label, tag, _, *cells), records in groups.items():
        extras = sorted(
            {
                name
                for record in records
                if record["name"] in cases
                for name in cases[record["name"]].recipe.get("extras", {})
                if name != "seed"
            }
        )
        flags = [FLAG_WORDS[flag] for flag in _common_flags(records, cases)]
        if flags:
            label += ", " + ", ".join(flags)
        if extras:
            label += ", with " + ", ".join(f"`{name}`" for name in extras)
        lines.append(f"| {label} | `{tag}` | {len(records)} | " + " | ".join(cells) + " |")
    lines += ["", "<details><summary>Every case</summary>", ""]
    lines.append(f"| case | tag | {head} |")
    lines.append("| --- | --- | " + " | ".join("---" for _ in versions) + " |")
    for record in document["cases"]:
        cells = tuple(_cell(record["concrete_ml"][version], full=True) for version in versions)
        lines.append(f"| {record['description']} | `{record['tag']}` | " + " | ".join(cells) + " |")
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def summary(document: dict[str, Any]) -> str:
    """One line per Concrete ML version: how many cases got each verdict."""
    lines = []
    for version in document["concrete_ml"]:
        counts: dict[str, int] = {}
        for record in document["cases"]:
            verdict = record["concrete_ml"][version]
            key = verdict["verdict"] + (" (Concrete ML's own difference)" if verdict.get("cml_own") else "")
            counts[key] = counts.get(key, 0) + 1
        lines.append(f"Concrete ML {version}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return "\n".join(lines)

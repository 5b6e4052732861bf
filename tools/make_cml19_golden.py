"""Golden data of Concrete ML 1.9.0's quantizers, made by a real Concrete ML 1.9.0.

Run once, from the project root, with the python of a Concrete ML 1.9.0 environment (numpy
1.26.4, the one it pins); the output is deterministic and committed::

    /tmp/venv-cml19/bin/python tools/make_cml19_golden.py            # writes tests/data/golden_cml19.jsonl
    /tmp/venv-cml19/bin/python tools/make_cml19_golden.py --compare  # 1.9 against 1.7's expectations

That environment, Python 3.11: concrete-ml 1.9.0 pins torch 2.3.1, a multi-gigabyte CUDA build
on Linux, so a CPU torch goes in first and Concrete ML's other pins are installed as given
(the quantizers use numpy only); setuptools stays below 81, whose ``pkg_resources`` the
``concrete`` namespace package imports::

    python3 -m venv /tmp/venv-cml19 && cd /tmp/venv-cml19
    bin/pip install torch==2.13.0          # the CPU build (on this machine's wheel list)
    bin/pip install --no-deps concrete-ml==1.9.0
    bin/pip install brevitas==0.10.2 concrete-ml-extensions==0.1.9 concrete-python==2.10.0 \\
        "hummingbird-ml[onnx]==0.4.11" numpy==1.26.4 onnx==1.17.0 onnxoptimizer==0.3.13 \\
        onnxruntime==1.18 pandas==2.0.3 "protobuf>=5.28.3,<6" scikit-learn==1.5.0 "scipy>=1.10.1" \\
        skops==0.5.0 skorch==0.11.0 "typing-extensions>=4.5,<5" xgboost==1.6.2 "setuptools>=77.0.3,<81"

Concrete ML 1.8.0 and 1.9.0 ship the same ``quantizers.py``, so the data stand for both.

What ``tests/data/golden_cml19.jsonl`` holds: JSON lines ``{"recipe": ..., "expect": ...}`` in
the format of ``tests/golden/recipes_v1_9.py`` (which interprets them):

* the 1,801 recipes of ``tests/data/golden_public.jsonl`` (Concrete ML 1.7.0), same ids and
  inputs, adapted where 1.9's API differs: statistics objects get no ``uvalues`` keyword, and the
  ``stats`` op no longer asks ``check_is_uniform_quantized``. Their ``roundtrip`` texts are 1.7's
  (with ``uvalues``): 1.9 reads them and writes its own text;
* recipes made here with fixed seeds (ids ``cml19-<family>-<n>``): ``quant`` with ``dtype``
  (int64, int32, float32, float64, also as ``numpy.dtype`` objects and positionally, and
  spellings 1.9 refuses), up to 32 bits and without clipping, so that int32 codes wrap and
  float32 codes round above 2**24; custom-QAT quantizers (``is_qat`` without
  ``is_precomputed_qat``), whose codes 1.9 clips; ``fill_from_kwargs`` with ``accept_missing`` and
  quantized arrays with all-None statistics; 1.7 texts loaded and used in 1.9; 1.9 texts
  (taken from the results above) read back.

Where Concrete ML 1.9 returns garbage, the expectation is ``{"error": "ValueError", "mro":
["ValueError"], "deviation": "<why>"}``, as in the 1.7 file: intquant must raise a ValueError.
The tool decides this objectively while Concrete ML runs (its methods are wrapped, their
results untouched):

* ``non-finite scale``: ``compute_quantization_parameters`` left a scale that is not finite;
* ``zero point out of int64 range``: the zero point's float was beyond int64 before its cast;
* ``zero or non-finite scale``: ``quant`` was called with such a scale;
* ``NaN quantized`` / ``non-finite code`` / ``integer out of int64 range``: the float64 codes
  (the same call with ``dtype=numpy.float64``) hold a NaN, an infinity, or an integer that int64
  lacks while int64 codes were asked for;
* ``int32 codes wrapped`` / ``float32 codes rounded``: the codes 1.9 returned in that dtype
  differ from the float64 codes of the same call (so only codes that actually changed count: an
  int32 code beyond 2**31 - 1, a float32 code above 2**24 that float32 cannot hold);
* ``dequant overflow``: ``dequant`` of finite codes gave an infinity or NaN.

Check of this tool against 1.7 (``--compare``): each of the 1,801 public recipes, adapted,
run by Concrete ML 1.9.0 through this interpreter and compared with Concrete ML 1.7.0's
expectation, with ``uvalues`` removed from 1.7's texts and results. 1,760 agree (the 5
deviations of the 1.7 file are the same deviations in 1.9) and 41 differ, all where 1.9 changed
behaviour, custom QAT (``is_qat`` without ``is_precomputed_qat``); the script classifies each
difference by checking it, and prints the breakdown:

* 22 ``QAT scale`` (8 ``params``, 8 ``qa``, 5 ``qa_opts``, 1 ``uq``): 1.7's scale is the smallest
  step between the statistics' ``uvalues`` (inferred where they looked uniformly quantized);
  1.9 computes ``(rmax - rmin) / (2**n_bits - 1)``, so scale, codes and texts differ;
* 19 ``QAT clip`` (12 ``qa``, 2 ``qa_opts``, 5 ``uq``): same parameters, and 1.9's codes are
  exactly 1.7's clipped to ``[-offset (+1 if narrow), 2**n_bits - 1 - offset]`` (1.7 left
  custom-QAT codes unclipped); dequantized values follow.

No other result differs: every non-QAT code, scale, zero point, text (less ``uvalues``), round
trip, equality and error type is the same, which checks the adapted recipes and this
interpreter where the API did not change.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.golden import recipes_v1_9 as rv  # noqa: E402

PUBLIC = ROOT / "tests" / "data" / "golden_public.jsonl"
OUTPUT = ROOT / "tests" / "data" / "golden_cml19.jsonl"
SEED = 20250401  # Concrete ML 1.9.0's release month
_INT64_LIMIT = 2.0**63


# ---------------------------------------------------------------- Concrete ML 1.9, with checks


class _Watch:
    """Wrap Concrete ML's methods to record where it returns garbage (first reason wins)."""

    def __init__(self, quantizers: Any) -> None:
        self.q = quantizers
        self.reason: str | None = None
        self._saved: list[tuple[Any, str, Any]] = []

    def flag(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def __enter__(self) -> _Watch:
        q, watch = self.q, self
        compute = q.UniformQuantizationParameters.compute_quantization_parameters
        quant = q.UniformQuantizer.quant
        dequant = q.UniformQuantizer.dequant

        def checked_compute(self: Any, options: Any, stats: Any) -> None:
            zero_point_float = _zero_point_float(options, stats, self.scale)
            compute(self, options, stats)
            if not numpy.all(numpy.isfinite(self.scale)):
                watch.flag("non-finite scale")
            elif zero_point_float is not None and not (
                numpy.isfinite(zero_point_float) and -_INT64_LIMIT <= zero_point_float < _INT64_LIMIT
            ):
                watch.flag("zero point out of int64 range")

        def checked_quant(self: Any, values: Any, *args: Any, **kwargs: Any) -> Any:
            result = quant(self, values, *args, **kwargs)  # refuses a bad dtype first
            dtype = args[0] if args else kwargs.get("dtype", numpy.int64)
            scale = numpy.asarray(self.scale)
            if not (numpy.all(numpy.isfinite(scale)) and numpy.all(scale != 0)):
                watch.flag("zero or non-finite scale")
                return result
            exact = numpy.asarray(quant(self, values, dtype=numpy.float64), dtype=numpy.float64)
            got = numpy.asarray(result).astype(numpy.float64)
            kind = numpy.dtype(dtype)
            if numpy.isnan(exact).any():
                watch.flag("NaN quantized")
            elif not numpy.isfinite(exact).all():
                watch.flag("non-finite code")
            elif kind == numpy.int64 and not ((exact >= -_INT64_LIMIT) & (exact < _INT64_LIMIT)).all():
                watch.flag("integer out of int64 range")
            elif kind == numpy.int32 and not numpy.array_equal(got, exact):
                watch.flag("int32 codes wrapped")
            elif kind == numpy.float32 and not numpy.array_equal(got, exact):
                watch.flag("float32 codes rounded")
            return result

        def checked_dequant(self: Any, qvalues: Any) -> Any:
            result = dequant(self, qvalues)
            finite_in = numpy.all(numpy.isfinite(numpy.asarray(qvalues, dtype=numpy.float64)))
            if finite_in and not numpy.all(numpy.isfinite(result)):
                watch.flag("dequant overflow")
            return result

        for owner, name, new in [
            (q.UniformQuantizationParameters, "compute_quantization_parameters", checked_compute),
            (q.UniformQuantizer, "quant", checked_quant),
            (q.UniformQuantizer, "dequant", checked_dequant),
        ]:
            self._saved.append((owner, name, owner.__dict__[name]))
            setattr(owner, name, new)
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, old in reversed(self._saved):
            setattr(owner, name, old)
        self._saved.clear()


def _zero_point_float(options: Any, stats: Any, scale: Any) -> Any:
    """The float Concrete ML 1.9 rounds and casts to the int64 zero point (asymmetric, non-QAT,
    non-constant ranges), computed as it computes it; None where it has no such float."""
    rmax, rmin = stats.rmax, stats.rmin
    if rmax is None or rmin is None or options.is_symmetric or options.is_qat:
        return None
    with numpy.errstate(all="ignore"):
        if rmax - rmin < 10**-6:
            return None
        offset = 2 ** (options.n_bits - 1) if options.is_signed else 0
        return numpy.round((rmax * (-offset) - (rmin * (2**options.n_bits - 1 - offset))) / (rmax - rmin))


def cml_api() -> tuple[Any, Any]:
    from concrete.ml.common.serialization.dumpers import dumps
    from concrete.ml.common.serialization.loaders import loads
    from concrete.ml.quantization import quantizers

    return quantizers, rv.api_from_module(quantizers, dumps, loads)


def run_checked(recipe: dict[str, Any], quantizers: Any, api: Any) -> dict[str, Any]:
    with _Watch(quantizers) as watch, numpy.errstate(all="ignore"):
        got = rv.run(recipe, api)
    if watch.reason is not None:
        return {"error": "ValueError", "mro": ["ValueError"], "deviation": watch.reason}
    return got


# ---------------------------------------------------------------- the 1.7 recipes, adapted


def adapt(recipe: dict[str, Any]) -> dict[str, Any]:
    """A 1.7 recipe in 1.9's API: statistics without ``uvalues``; no uniformity check."""
    out = dict(recipe)
    for key in ("stats", "kwargs"):
        if isinstance(out.get(key), dict) and "uvalues" in out[key]:
            out[key] = {k: v for k, v in out[key].items() if k != "uvalues"}
    if out["op"] == "stats":
        out.pop("options", None)
    return out


def public_recipes() -> list[dict[str, Any]]:
    return [json.loads(line)["recipe"] for line in PUBLIC.read_text().splitlines()]


# ---------------------------------------------------------------- new 1.9 recipes

FLOAT_DTYPES = ["float32", "float64"]
CODE_DTYPES = ["int64", "int32", "float32", "float64"]
HIGH_BITS = [1, 2, 3, 4, 7, 8, 12, 16, 20, 23, 24, 25, 26, 28, 30, 31, 32]
#: Spellings of a dtype that 1.9's `quant` refuses (AssertionError), or accepts as numpy.dtype.
OTHER_DTYPES = [
    "dtype:int32",
    "dtype:float32",
    "int16",
    "uint32",
    "float16",
    "python:int",
    "python:float",
    "str:int64",
]


def _array(rng: numpy.random.Generator, low: float, high: float, dtype: str, size: int | None = None) -> Any:
    n = int(size if size is not None else rng.integers(1, 11))
    shape = [(n,), (1, n), (n, 1)][int(rng.integers(0, 3))]
    values = rng.uniform(low, high, size=shape)
    if n > 3 and rng.random() < 0.5:  # the ends themselves, so that the extreme codes occur
        values.flat[0], values.flat[1] = low, high
    return rv.tag(values.astype(dtype))


def _range(rng: numpy.random.Generator) -> tuple[float, float]:
    kind = rng.choice(["symmetric", "positive", "negative", "wide", "small"])
    width = float(10.0 ** rng.uniform(-3, 3))
    if kind == "symmetric":
        return -width, width
    if kind == "positive":
        return width * 0.1, width
    if kind == "negative":
        return -width, -width * 0.2
    if kind == "wide":
        return -(10.0**8), 10.0**9
    return -(10.0**-4), 3 * 10.0**-4


def _options(rng: numpy.random.Generator, n_bits: int, qat: bool | None = None) -> dict[str, Any]:
    is_qat = bool(rng.random() < 0.2) if qat is None else qat
    is_signed = bool(rng.random() < 0.5)
    is_symmetric = bool(is_signed and not is_qat and rng.random() < 0.4 and n_bits > 1)
    opts: dict[str, Any] = {
        "n_bits": n_bits,
        "is_signed": is_signed,
        "is_symmetric": is_symmetric,
        "is_qat": is_qat,
    }
    if rng.random() < 0.3:
        opts["is_narrow"] = True
    if is_qat and rng.random() < 0.3:
        opts["is_precomputed_qat"] = True
    return opts


def _offset(opts: dict[str, Any]) -> int:
    return 2 ** (opts["n_bits"] - 1) if opts["is_signed"] else 0


def _dtype_case(rng: numpy.random.Generator, r: dict[str, Any], dtype: str) -> dict[str, Any]:
    r["dtype"] = dtype
    if rng.random() < 0.2:
        r["dtype_positional"] = True
    return r


def dtype_recipes(rng: numpy.random.Generator) -> Iterator[dict[str, Any]]:
    """``quant(probe, dtype=...)`` of quantizers up to 32 bits, with and without clipping: random
    ones, then ones aimed at int32 wrapping, float32 rounding and codes beyond int64 (each family
    with cases on both sides of its limit), then the spellings 1.9 refuses."""
    cases: list[dict[str, Any]] = []
    for i in range(120):  # random quantizers, probes inside, beyond or near rmin
        opts = _options(rng, int(rng.choice(HIGH_BITS)))
        r: dict[str, Any] = {"op": "uq", "options": opts, "no_clipping": bool(rng.random() < 0.35)}
        low, high = _range(rng)
        value_dtype = str(rng.choice(FLOAT_DTYPES))
        if rng.random() < 0.7:
            r["compute"] = True
            r["calibrate"] = _array(rng, low, high, value_dtype)
            where = rng.choice(["inside", "beyond", "low"])
            if where == "inside":
                r["probe"] = _array(rng, low, high, value_dtype)
            elif where == "beyond":
                r["probe"] = _array(rng, low - (high - low), high + (high - low), value_dtype)
            else:  # near rmin: small codes, which float32 holds even at 32 bits (unsigned)
                r["probe"] = _array(rng, low, low + (high - low) * 2.0**-27, value_dtype)
        else:
            scale = float(10.0 ** rng.uniform(-9, 0))
            r["params"] = {"scale": scale, "zero_point": int(rng.integers(-5, 6)), "offset": _offset(opts)}
            span = scale * 2.0 ** float(rng.uniform(0, 40))
            r["probe"] = _array(rng, -span, span, value_dtype)
        cases.append(_dtype_case(rng, r, CODE_DTYPES[i % 4]))
    for i in range(40):  # int32: 32-bit unsigned codes reach 2**32 - 1; signed ones fit
        n_bits, signed = [(32, False), (32, False), (31, False), (32, True)][i % 4]
        opts = {"n_bits": n_bits, "is_signed": signed, "is_symmetric": False, "is_qat": False}
        r = {"op": "uq", "options": opts, "no_clipping": i % 3 == 0, "compute": True}
        low, high = sorted(rng.uniform(-10, 10, size=2).tolist())
        value_dtype = "float64" if i % 5 else "float32"
        r["calibrate"] = _array(rng, low, high, value_dtype, size=4)
        where = ["full", "lower half", "beyond"][i % 3]
        if where == "full":
            r["probe"] = _array(rng, low, high, value_dtype, size=6)
        elif where == "lower half":
            r["probe"] = _array(rng, low, low + (high - low) * 0.49, value_dtype, size=6)
        else:
            r["probe"] = _array(rng, low - (high - low) * 0.3, high + (high - low) * 0.3, value_dtype, size=6)
        cases.append(_dtype_case(rng, r, "int32" if i % 7 else "dtype:int32"))
    for i in range(40):  # float32: odd codes above 2**24 round; small or power-of-two codes do not
        n_bits = int(rng.choice([24, 25, 26, 28, 30, 32]))
        opts = {"n_bits": n_bits, "is_signed": bool(i % 2), "is_symmetric": False, "is_qat": False}
        scale = float(10.0 ** rng.uniform(-6, 0))
        r = {"op": "uq", "options": opts, "no_clipping": i % 4 == 0}
        r["params"] = {"scale": scale, "zero_point": int(rng.integers(-3, 4)), "offset": _offset(opts)}
        kind = ["spread", "powers", "small"][i % 3]
        if kind == "spread":
            codes = rng.integers(2**24, 2 ** (n_bits - 1) + 2**24, size=6) - _offset(opts)
        elif kind == "powers":
            codes = 2 ** rng.integers(0, n_bits - 1, size=6) - _offset(opts) * (i % 2)
        else:
            codes = rng.integers(-(2**20), 2**20, size=6)
        r["probe"] = rv.tag((codes * scale).astype("float64"))
        cases.append(_dtype_case(rng, r, "float32" if i % 7 else "dtype:float32"))
    for i in range(16):  # without clipping, codes beyond int64: int64/int32/float32 fail, float64 holds them
        opts = {"n_bits": 8, "is_signed": bool(i % 2), "is_symmetric": False, "is_qat": False}
        scale = float(10.0 ** rng.uniform(-12, -6))
        r = {"op": "uq", "options": opts, "no_clipping": True}
        r["params"] = {"scale": scale, "zero_point": 0, "offset": _offset(opts)}
        exponent = [70.0, 62.5, 64.0, 90.0][(i // 4) % 4]
        r["probe"] = rv.tag(numpy.array([1.0, -3.0, 2.0**exponent, -(2.0**exponent)]) * scale)
        cases.append(_dtype_case(rng, r, CODE_DTYPES[i % 4]))
    for name in OTHER_DTYPES:
        opts = {"n_bits": 8, "is_signed": True, "is_symmetric": False, "is_qat": False}
        r = {"op": "uq", "options": opts, "compute": True, "probe": _array(rng, -1.0, 1.0, "float64")}
        cases.append(_dtype_case(rng, r, name))
    for i, r in enumerate(cases):
        r["id"] = f"cml19-dtype-{i:04d}"
        yield r


def qat_recipes(rng: numpy.random.Generator, count: int) -> Iterator[dict[str, Any]]:
    """Custom-QAT quantizers (1.9 clips their codes unless ``no_clipping``)."""
    for i in range(count):
        n_bits = int(rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16]))
        opts = _options(rng, n_bits, qat=True)
        step = float(10.0 ** rng.uniform(-3, 1))
        low_code = int(rng.integers(-(2**n_bits), 2**n_bits))
        levels = rng.integers(low_code, low_code + 2**n_bits, size=int(rng.integers(2, 9)))
        grid = levels * step  # values as a QAT layer outputs them: multiples of one step
        value_dtype = str(rng.choice(FLOAT_DTYPES))
        beyond = numpy.concatenate([grid, grid * 1.7 + step * 3, grid * -1.3])
        if i % 3 == 2:  # a quantized array: calibrated on the grid, then values beyond it
            kwargs = {k: opts[k] for k in ("is_signed", "is_symmetric", "is_qat")}
            r: dict[str, Any] = {"op": "qa", "n_bits": n_bits, "values": rv.tag(grid.astype(value_dtype))}
            r["kwargs"] = kwargs
            r["dequant"] = True
            r["update"] = rv.tag(beyond.astype(value_dtype))
        else:
            r = {"op": "uq", "options": opts, "no_clipping": bool(rng.random() < 0.25)}
            if rng.random() < 0.7:
                r["compute"] = True
                r["calibrate"] = rv.tag(grid.astype(value_dtype))
            else:
                r["params"] = {"scale": step, "zero_point": 0, "offset": _offset(opts)}
            r["probe"] = rv.tag(beyond.astype(value_dtype))
            if rng.random() < 0.3:
                r["dtype"] = str(rng.choice(CODE_DTYPES))
            r["other"] = _options(rng, n_bits)
        r["id"] = f"cml19-qat-{i:04d}"
        yield r


_MEMBERS: dict[str, list[str]] = {
    "QuantizationOptions": [
        "n_bits",
        "is_signed",
        "is_symmetric",
        "is_qat",
        "is_narrow",
        "is_precomputed_qat",
    ],
    "MinMaxQuantizationStats": ["rmax", "rmin"],
    "UniformQuantizationParameters": ["scale", "zero_point", "offset"],
}
_OBJECTS: dict[str, list[str | None]] = {
    "QuantizationOptions": [None, "options"],
    "MinMaxQuantizationStats": [None, "stats", "empty_stats"],
    "UniformQuantizationParameters": [None, "params", "empty_params"],
}


def _member_value(rng: numpy.random.Generator, name: str) -> Any:
    if rng.random() < 0.25:
        return None
    if name == "n_bits":
        return int(rng.integers(1, 17))
    if name.startswith("is_"):
        return bool(rng.random() < 0.5)
    if name in ("rmax", "rmin"):
        value = float(rng.normal(0, 3))
        return rv.tag(numpy.float64(value)) if rng.random() < 0.5 else value
    if name == "scale":
        return float(10.0 ** rng.uniform(-3, 1))
    if name == "zero_point":
        return int(rng.integers(-8, 9))
    return int(rng.choice([0, 1, 2, 4, 128]))


def fill_recipes(rng: numpy.random.Generator, count: int) -> Iterator[dict[str, Any]]:
    """``fill_from_kwargs(obj, klass, accept_missing, **kwargs)`` over the three classes."""
    classes = list(_MEMBERS)
    for i in range(count):
        klass = classes[i % 3]
        members = _MEMBERS[klass]
        chosen = [m for m in members if rng.random() < 0.5]
        kwargs = {m: _member_value(rng, m) for m in chosen}
        if rng.random() < 0.3:
            kwargs["unrelated"] = 1
        if rng.random() < 0.15:
            kwargs = {m: None for m in members}
        objs = _OBJECTS[klass]
        obj = objs[int(rng.integers(0, len(objs)))]
        r: dict[str, Any] = {"op": "fill", "klass": klass, "kwargs": kwargs, "accept_missing": bool(i % 2)}
        if obj is not None:
            r["obj"] = obj
        r["id"] = f"cml19-fill-{i:04d}"
        yield r


def qa_stats_recipes(rng: numpy.random.Generator, count: int) -> Iterator[dict[str, Any]]:
    """Quantized arrays whose statistics are omitted, all None, or partly given."""
    for i in range(count):
        n_bits = int(rng.choice([2, 3, 4, 6, 8, 12, 16]))
        opts = _options(rng, n_bits, qat=False)
        offset = _offset(opts)
        scale = float(10.0 ** rng.uniform(-3, 1))
        zero_point = int(rng.integers(-4, 5))
        low, high = -offset + (1 if opts.get("is_narrow") else 0), 2**n_bits - 1 - offset
        codes = rng.integers(low, high + 1, size=int(rng.integers(1, 11)))
        value_is_float = bool(rng.random() < 0.3)
        r: dict[str, Any] = {"op": "qa_opts", "n_bits": n_bits, "value_is_float": value_is_float}
        if value_is_float:
            r["values"] = rv.tag((codes * scale).astype(str(rng.choice(FLOAT_DTYPES))))
        else:
            r["values"] = rv.tag(codes.astype(str(rng.choice(["int64", "int32", "int8"]))))
        if rng.random() < 0.5:
            r["options"] = opts
        else:
            r["kwargs"] = {k: opts[k] for k in ("is_signed", "is_symmetric", "is_qat")}
        params = {"scale": scale, "zero_point": zero_point, "offset": offset}
        stats_kind = rng.choice(["none_object", "none_kwargs", "omitted", "partial", "full"])
        kwargs = r.setdefault("kwargs", {})
        if stats_kind == "none_object":
            r["stats"] = {"rmax": None, "rmin": None}
        elif stats_kind == "none_kwargs":
            kwargs.update({"rmax": None, "rmin": None})
        elif stats_kind == "partial":
            kwargs[str(rng.choice(["rmax", "rmin"]))] = float(high * scale)
        elif stats_kind == "full":
            r["stats"] = {"rmax": float(high * scale), "rmin": float(low * scale)}
        where = rng.random()
        if where < 0.5:
            r["params"] = params
        elif where < 0.8:
            kwargs.update(params)  # else no parameters: computed from float values, or refused
        if not kwargs:
            del r["kwargs"]
        if rng.random() < 0.4:
            r["update_q"] = rv.tag(rng.integers(low, high + 1, size=int(rng.integers(1, 8))).astype("int64"))
        r["id"] = f"cml19-qa_stats-{i:04d}"
        yield r


def _probe_for(rng: numpy.random.Generator, text: str) -> Any:
    """Float values around what the object of `text` quantizes (and beyond its range)."""
    body = json.loads(text)["serialized_value"]
    quantizer = body.get("quantizer", {}).get("serialized_value", body)
    low, high = -1.0, 1.0
    rmin, rmax = quantizer.get("rmin"), quantizer.get("rmax")
    if isinstance(rmin, dict) and isinstance(rmax, dict):
        low, high = float(rmin["serialized_value"]), float(rmax["serialized_value"])
    elif isinstance(quantizer.get("scale"), dict):
        scale = float(quantizer["scale"]["serialized_value"])
        low, high = -scale * 8, scale * 8
    pad = (high - low) * 0.5 + abs(high) * 0.1 + 1e-3
    return _array(rng, low - pad, high + pad, str(rng.choice(FLOAT_DTYPES)))


def _quantizer_body(text: str) -> dict[str, Any]:
    body = json.loads(text)["serialized_value"]
    return body.get("quantizer", {}).get("serialized_value", body)


def loads_recipes(
    rng: numpy.random.Generator, texts: list[str], count: int, family: str
) -> Iterator[dict[str, Any]]:
    """``loads`` of quantizer and quantized-array texts, then the object used (``loads_use``):
    half of them custom-QAT ones (where 1.7 and 1.9 differ), and a few without parameters."""
    usable = [t for t in texts if len(t) <= MAX_TEXT and json.loads(t)["type_name"] in USABLE]
    no_scale = [t for t in usable if _quantizer_body(t)["scale"] is None]
    qat = [t for t in usable if _custom_qat({"op": "loads_use", "text": t}) and t not in no_scale]
    other = [t for t in usable if t not in qat and t not in no_scale]
    chosen: list[str] = []
    for pool, share in ((qat, count // 2), (no_scale, 4), (other, count - count // 2 - 4)):
        picks = rng.choice(len(pool), size=min(share, len(pool)), replace=False) if pool else []
        chosen.extend(pool[int(k)] for k in sorted(picks))
    for i, text in enumerate(chosen):
        r: dict[str, Any] = {"op": "loads_use", "text": text, "probe": _probe_for(rng, text)}
        if json.loads(text)["type_name"] == "UniformQuantizer" and rng.random() < 0.4:
            r["dtype"] = str(rng.choice(CODE_DTYPES))
        r["id"] = f"cml19-{family}-{i:04d}"
        yield r


MAX_TEXT = 2500  # characters of a text a new recipe reads (keeps the file small)
USABLE = ("UniformQuantizer", "QuantizedArray")  # the texts loads_use quantizes with


def texts_of(cases: list[dict[str, Any]]) -> list[str]:
    """Every serialized quantizer, array, statistics, parameters or options text in results."""
    found: list[str] = []
    for case in cases:
        for key in ("dumps", "computed", "after", "opts", "stats", "params"):
            value = case["expect"].get(key)
            if isinstance(value, str) and value.startswith('{"type_name"') and value not in found:
                found.append(value)
    return found


def roundtrip_recipes(rng: numpy.random.Generator, texts: list[str], count: int) -> Iterator[dict[str, Any]]:
    by_type: dict[str, list[str]] = collections.defaultdict(list)
    for text in texts:
        by_type[json.loads(text)["type_name"]].append(text)
    i = 0
    for type_name in sorted(by_type):
        pool = by_type[type_name]
        share = min(len(pool), max(5, count * len(pool) // len(texts)))
        for k in sorted(int(p) for p in rng.choice(len(pool), size=share, replace=False)):
            yield {"op": "roundtrip", "text": pool[k], "id": f"cml19-rt19-{i:04d}"}
            i += 1


# ---------------------------------------------------------------- making the file


def generate(quantizers: Any, api: Any) -> list[dict[str, Any]]:
    rng = numpy.random.default_rng(SEED)
    public = public_recipes()
    run: Callable[[dict[str, Any]], dict[str, Any]] = lambda r: run_checked(r, quantizers, api)  # noqa: E731
    cases = [{"recipe": r, "expect": run(r)} for r in map(adapt, public)]
    new: list[dict[str, Any]] = []
    for family in (
        dtype_recipes(rng),
        qat_recipes(rng, 90),
        fill_recipes(rng, 90),
        qa_stats_recipes(rng, 80),
    ):
        new.extend({"recipe": r, "expect": run(r)} for r in family)
    texts17 = [r["text"] for r in public if r["op"] == "roundtrip"]
    new.extend({"recipe": r, "expect": run(r)} for r in loads_recipes(rng, texts17, 60, "loads17"))
    texts19 = [t for t in texts_of(new) if len(t) <= MAX_TEXT]
    new.extend({"recipe": r, "expect": run(r)} for r in roundtrip_recipes(rng, texts19, 100))
    new.extend({"recipe": r, "expect": run(r)} for r in loads_recipes(rng, texts19, 50, "loads19"))
    return cases + new


def summary(cases: list[dict[str, Any]]) -> str:
    ops = collections.Counter(c["recipe"]["op"] for c in cases)
    deviations = collections.Counter(c["expect"]["deviation"] for c in cases if "deviation" in c["expect"])
    errors = collections.Counter(c["expect"]["error"] for c in cases if "error" in c["expect"])
    return (
        f"{len(cases)} cases; ops {dict(sorted(ops.items()))}\n"
        f"  errors {dict(errors)}\n  deviations {dict(deviations)}"
    )


# ---------------------------------------------------------------- 1.9 against 1.7's expectations


def _without_uvalues(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_uvalues(v) for k, v in value.items() if k != "uvalues"}
    if isinstance(value, list):
        return [_without_uvalues(v) for v in value]
    return value


def _normalized_17(expect: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in expect.items():
        if key in ("uvalues", "uniform"):
            continue
        if isinstance(value, str) and value.startswith('{"type_name"'):
            value = json.dumps(_without_uvalues(json.loads(value)))
        out[key] = value
    if "again" in out:  # 1.9's roundtrip reports whether the text written again is the same
        out["again_is_dumps"] = out.pop("again") == out["dumps"]
    return out


def _custom_qat(recipe: dict[str, Any]) -> bool:
    texts = [recipe.get("text", "")] + [json.dumps(recipe.get(k, {})) for k in ("options", "kwargs")]
    return any('"is_qat": true' in t and '"is_precomputed_qat": true' not in t for t in texts)


_TEXT_KEYS = ("computed", "dumps", "params")


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value.startswith('{"type_name"')


def _quantizer_of(result: dict[str, Any]) -> dict[str, Any] | None:
    """The quantizer (or parameters) a result's texts describe last: computed, else as made."""
    for key in _TEXT_KEYS:
        if _is_text(result.get(key)):
            body = json.loads(result[key])["serialized_value"]
            body = body.get("quantizer", {}).get("serialized_value", body)
            if "scale" in body:
                return body
    return None


def _codes_clipped(old: Any, new: Any, quantizer: dict[str, Any]) -> bool:
    offset = rv.untag(quantizer["offset"])
    low, high = -offset + (1 if quantizer["is_narrow"] else 0), 2 ** quantizer["n_bits"] - 1 - offset
    return bool(numpy.array_equal(numpy.clip(old, low, high), new))


def _clipped_only(expect: dict[str, Any], got: dict[str, Any], differing: list[str]) -> bool:
    """Whether each differing result is int64 codes (described, or a text's ``qvalues``) that are
    1.7's clipped to the quantizer's bounds; dequantized values follow their codes."""
    quantizer = _quantizer_of(got)
    if quantizer is None:
        return False
    for key in differing:
        old, new = expect.get(key), got.get(key)
        if _is_text(old) and _is_text(new):
            a, b = json.loads(old)["serialized_value"], json.loads(new)["serialized_value"]
            if {k: v for k, v in a.items() if k != "qvalues"} != {
                k: v for k, v in b.items() if k != "qvalues"
            }:
                return False
            if not _codes_clipped(rv.untag(a["qvalues"]), rv.untag(b["qvalues"]), quantizer):
                return False
        elif isinstance(old, dict) and old.get("array") == "<i8" and isinstance(new, dict):
            if new.get("array") != "<i8":
                return False
            a = numpy.frombuffer(bytes.fromhex(old["hex"]), dtype="<i8")
            b = numpy.frombuffer(bytes.fromhex(new["hex"]), dtype="<i8")
            if not _codes_clipped(a, b, quantizer):
                return False
        elif not (isinstance(old, dict) and old.get("array") == "<f8"):
            return False
    return True


def _scale_from_uvalues(recipe: dict[str, Any], original: dict[str, Any]) -> bool:
    """Whether 1.7's scale is the smallest step between the statistics' uvalues (as 1.7 inferred
    it for custom QAT)."""
    quantizer = _quantizer_of(original)
    if quantizer is None:
        return False
    uvalues = quantizer.get("uvalues") or (recipe.get("stats") or {}).get("uvalues")
    if not uvalues:
        return False
    steps = numpy.unique(numpy.diff(rv.untag(uvalues)))
    return steps.size > 0 and bool(numpy.float64(steps[0]) == rv.untag(quantizer["scale"]))


def _why(
    recipe: dict[str, Any],
    original: dict[str, Any],
    expect: dict[str, Any],
    got: dict[str, Any],
    differing: list[str],
) -> str:
    """Why 1.9's result differs from 1.7's: a change of 1.9, or OTHER (unexplained)."""
    if not _custom_qat(recipe):
        return "OTHER"
    old, new = _quantizer_of(original), _quantizer_of(got)
    if old is not None and new is not None and old["scale"] != new["scale"]:
        return "QAT scale" if _scale_from_uvalues(recipe, original) else "OTHER"
    return "QAT clip" if _clipped_only(expect, got, differing) else "OTHER"


def compare(quantizers: Any, api: Any) -> int:
    lines = [json.loads(line) for line in PUBLIC.read_text().splitlines()]
    same, differ, deviations = 0, collections.Counter(), collections.Counter()
    examples: dict[tuple[str, str, str], str] = {}
    for item in lines:
        got = run_checked(adapt(item["recipe"]), quantizers, api)
        expect = _normalized_17(item["expect"])
        if "deviation" in expect:
            deviations[expect["deviation"] == got.get("deviation")] += 1
        if "error" in expect:
            ok = "error" in got and expect["error"] in [got["error"], *got["mro"]]
        else:
            ok = expect == got
        if ok:
            same += 1
            continue
        differing = sorted(k for k in set(expect) | set(got) if expect.get(k) != got.get(k))
        keys = ",".join(differing)
        kind = _why(item["recipe"], item["expect"], expect, got, differing)
        key = (kind, item["recipe"]["op"], keys)
        differ[key] += 1
        examples.setdefault(key, item["recipe"]["id"])
    print(f"1.9 vs 1.7 expectations (uvalues removed): {same} agree, {sum(differ.values())} differ")
    print(f"  the 1.7 file's deviations: {deviations[True]} the same in 1.9, {deviations[False]} not")
    for (kind, op, keys), n in sorted(differ.items()):
        print(f"  {n:4d}  {kind:10s} {op:8s} differing: {keys}   e.g. {examples[(kind, op, keys)]}")
    return 1 if any(kind == "OTHER" for kind, _, _ in differ) else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", action="store_true", help="compare 1.9 with the 1.7 expectations")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    quantizers, api = cml_api()
    import concrete.ml

    print(f"Concrete ML {concrete.ml.__version__}, numpy {numpy.__version__}")
    if args.compare:
        return compare(quantizers, api)
    cases = generate(quantizers, api)
    args.output.write_text("".join(json.dumps(case) + "\n" for case in cases))
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes): {summary(cases)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

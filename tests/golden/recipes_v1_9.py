"""Interpreter for golden recipes of Concrete ML 1.8/1.9's quantizers (``tests/data/golden_cml19.jsonl``).

The recipe format is the one of ``recipes.py`` (Concrete ML 1.7.0); this module reuses its helpers
(``tag``, ``untag``, ``describe``, ``error_of``) and its ops where 1.9's API did not change. What
differs in 1.9, and so here:

- ``stats``: no ``uvalues`` and no ``check_is_uniform_quantized``; the result is the text, ``rmin``
  and ``rmax`` (a recipe's ``options`` list, if any, is ignored).
- ``fill``: ``fill_from_kwargs(obj, klass, accept_missing, **kwargs)``; ``accept_missing`` comes
  from the recipe (default False). ``obj`` is None, ``options`` (3 bits), ``stats`` (filled),
  ``params`` or, new, ``empty_stats`` / ``empty_params`` (every member None).
- ``uq``: optionally ``dtype`` (a name, see `quant_dtype`) for ``quant(probe, dtype=...)``, passed
  by keyword, or by position with ``dtype_positional``; with ``compute``, the statistics come
  from ``calibrate`` when given (else from ``probe``, as in 1.7).
- ``loads_use`` (new): ``loads(text)`` (a 1.7 text with ``uvalues`` or a 1.8/1.9 one), then use
  the object: a quantizer quantizes and dequantizes ``probe``; a quantized array re-quantizes
  ``probe`` with ``update_values`` and dequantizes; statistics are computed from ``probe``; the
  text after it is reported each time.
- ``roundtrip``: as in ``recipes.py``, but the text written again after ``load_dict(dump_dict())``
  is reported as ``again_is_dumps`` (whether it equals ``dumps``), not a second copy of the text.
- ``qa``, ``qa_opts``, ``params``, ``options``: as in ``recipes.py``. A statistics
  object with every member None (1.9's optional statistics) is written ``"stats": {"rmax": null,
  "rmin": null}``; 1.9's statistics take no ``uvalues`` keyword, so 1.9 recipes carry none.

`api_from_module(mod)` builds the namespace the recipes call: the five classes,
``fill_from_kwargs``, ``dumps`` and ``loads`` (by default the module's own).
"""

from __future__ import annotations

import types
from typing import Any

import numpy

from . import recipes

tag = recipes.tag
untag = recipes.untag
describe = recipes.describe
error_of = recipes.error_of

NAMES = [
    "fill_from_kwargs",
    "QuantizationOptions",
    "MinMaxQuantizationStats",
    "UniformQuantizationParameters",
    "UniformQuantizer",
    "QuantizedArray",
]

# What a recipe's "dtype" names: numpy types as Concrete ML 1.9's `quant` accepts them, plus
# spellings that it refuses (an AssertionError there), to pin that refusal down as well.
_DTYPES: dict[str, Any] = {
    "int64": numpy.int64,
    "int32": numpy.int32,
    "float32": numpy.float32,
    "float64": numpy.float64,
    "dtype:int32": numpy.dtype("int32"),
    "dtype:float32": numpy.dtype("float32"),
    "int16": numpy.int16,
    "uint32": numpy.uint32,
    "float16": numpy.float16,
    "python:int": int,
    "python:float": float,
    "str:int64": "int64",
}


def quant_dtype(name: str) -> Any:
    """The object a recipe's ``dtype`` name stands for (``"int32"`` is ``numpy.int32``)."""
    return _DTYPES[name]


def run(recipe: dict[str, Any], api: Any) -> dict[str, Any]:
    """Run one recipe against `api`; an exception is itself the result."""
    try:
        return _run(recipe, api)
    except Exception as exc:  # the error itself is the result
        return error_of(exc)


def _run(r: dict[str, Any], api: Any) -> dict[str, Any]:
    op = r["op"]
    if op == "uq":
        return _uq(r, api)
    if op == "stats":
        return _stats(r, api)
    if op == "fill":
        return _fill(r, api)
    if op == "loads_use":
        return _loads_use(r, api)
    if op == "roundtrip":
        return _roundtrip(r, api)
    if op in ("qa", "qa_opts", "params", "options"):
        return recipes._run(r, api)
    raise ValueError(f"unknown op {op!r}")


def _quant(quantizer: Any, values: Any, r: dict[str, Any]) -> Any:
    if "dtype" not in r:
        return quantizer.quant(values)
    dtype = quant_dtype(r["dtype"])
    if r.get("dtype_positional"):
        return quantizer.quant(values, dtype)
    return quantizer.quant(values, dtype=dtype)


def _uq(r: dict[str, Any], api: Any) -> dict[str, Any]:
    opts = recipes._options(api, r["options"]) if r.get("options") else None
    stats = api.MinMaxQuantizationStats(**untag(r["stats"])) if r.get("stats") else None
    params = api.UniformQuantizationParameters(**untag(r["params"])) if r.get("params") else None
    uq = api.UniformQuantizer(opts, stats, params, no_clipping=r.get("no_clipping", False))
    out: dict[str, Any] = {"dumps": api.dumps(uq)}
    if r.get("compute"):
        calibration = untag(r.get("calibrate", r["probe"]))
        uq.compute_quantization_stats(calibration)
        uq.compute_quantization_parameters(uq.quant_options, uq.quant_stats)
        out["computed"] = api.dumps(uq)
    q = _quant(uq, untag(r["probe"]), r)
    out["quant"] = describe(q)
    out["dequant"] = describe(uq.dequant(q))
    out["opts"] = api.dumps(uq.quant_options)
    out["stats"] = api.dumps(uq.quant_stats)
    out["params"] = api.dumps(uq.quant_params)
    if "other" in r:
        other = recipes._options(api, r["other"])
        out["is_equal"] = uq.is_equal(other)
        out["is_equal_ign"] = uq.is_equal(other, ignore_sign_qat=True)
    return out


def _stats(r: dict[str, Any], api: Any) -> dict[str, Any]:
    s = api.MinMaxQuantizationStats()
    s.compute_quantization_stats(untag(r["values"]))
    return {"dumps": api.dumps(s), "rmin": describe(s.rmin), "rmax": describe(s.rmax)}


def _fill(r: dict[str, Any], api: Any) -> dict[str, Any]:
    klass = getattr(api, r["klass"])
    makers = {
        "options": lambda: recipes._options(api, {"n_bits": 3}),
        "stats": lambda: api.MinMaxQuantizationStats(rmax=numpy.float64(1.5), rmin=numpy.float64(-0.5)),
        "params": lambda: api.UniformQuantizationParameters(),
        "empty_stats": lambda: api.MinMaxQuantizationStats(),
        "empty_params": lambda: api.UniformQuantizationParameters(),
    }
    obj = makers[r["obj"]]() if r.get("obj") else None
    res, rest = api.fill_from_kwargs(obj, klass, r.get("accept_missing", False), **untag(r["kwargs"]))
    return {"obj": api.dumps(res) if res is not None else None, "rest": sorted(rest)}


def _roundtrip(r: dict[str, Any], api: Any) -> dict[str, Any]:
    text = r["text"]
    obj = api.loads(text)
    again = type(obj).load_dict(obj.dump_dict()) if hasattr(obj, "load_dict") else obj
    dumped = api.dumps(obj)
    return {
        "type": type(obj).__name__,
        "dumps": dumped,
        "again_is_dumps": api.dumps(again) == dumped,
        "eq": bool(obj == api.loads(text)),
    }


def _loads_use(r: dict[str, Any], api: Any) -> dict[str, Any]:
    obj = api.loads(r["text"])
    out: dict[str, Any] = {"type": type(obj).__name__, "dumps": api.dumps(obj)}
    probe = untag(r["probe"])
    kind = type(obj).__name__
    if kind == "UniformQuantizer":
        q = _quant(obj, probe, r)
        out["quant"] = describe(q)
        out["dequant"] = describe(obj.dequant(q))
    elif kind == "QuantizedArray":
        out["update_values"] = describe(obj.update_values(probe))
        out["dequant"] = describe(obj.dequant())
    elif kind == "MinMaxQuantizationStats":
        obj.compute_quantization_stats(probe)
    out["after"] = api.dumps(obj)
    return out


def api_from_module(mod: Any, dumps: Any = None, loads: Any = None) -> types.SimpleNamespace:
    """The namespace recipes call: `mod`'s classes and ``fill_from_kwargs``, and dumps/loads."""
    ns = types.SimpleNamespace()
    for name in NAMES:
        setattr(ns, name, getattr(mod, name))
    ns.dumps = dumps if dumps is not None else mod.dumps
    ns.loads = loads if loads is not None else mod.loads
    return ns

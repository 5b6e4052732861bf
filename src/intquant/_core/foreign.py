"""Arrays of other libraries given to the numpy API: dask arrays stay dask arrays, the others are
refused. Nothing is converted or gathered silently.

The seed API takes numpy arrays (and what ``numpy.asarray`` makes one of: lists, Python and
numpy scalars, pandas objects, numpy-backed xarray objects) and returns numpy arrays. Arrays of
other libraries get, by kind:

=========================  ======================================================================
dask array                 ``quant``/``dequant`` return lazy dask arrays, chunk by chunk;
                           statistics are computed when called, by a tree reduction of chunk
                           summaries (both through :data:`DASK_MODULE`); ``out=`` is refused.
                           Where values must be held in memory (``QuantizedArray``, the
                           calibration methods): refused, pointing to ``intquant.dask``.
other dask collection      refused (a dask DataFrame, a dask-backed xarray object): pass its dask
                           array, or compute it yourself.
``torch.Tensor``           refused, pointing to ``intquant.torch`` (tensors on their device, with
                           gradients) or ``tensor.detach().cpu().numpy()``.
other array-API array      refused (jax, cupy, ...: a type with ``__array_namespace__`` from a
                           library other than numpy): convert it to numpy explicitly.
=========================  ======================================================================

No library is imported to recognize its arrays: a tensor or a dask array exists only once its
library is loaded, so its class is looked up in ``sys.modules``; the other rules read attributes
of the value's type. Entry points let a plain numpy array through first
(``type(values) is numpy.ndarray``), so the numpy path pays for none of this.

``intquant.dask`` lives in the top layer, above this one: it is named here (:data:`DASK_MODULE`)
and imported by :mod:`importlib` when a dask array arrives, as ``codec.TAG_MODULES`` names the
modules of tags, so that ``import intquant`` imports neither it nor dask.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

import numpy

from intquant.errors import InvalidTypeError

__all__ = [
    "DASK_MODULE",
    "check_not_foreign",
    "dask_dequant",
    "dask_quant",
    "dask_statistics",
    "dask_update",
    "is_dask_array",
]

#: The intquant module that executes the seed API on dask arrays (imported at call time).
DASK_MODULE = "intquant.dask"

#: Values numpy takes as they are or converts cheaply: never foreign.
_PLAIN = (numpy.ndarray, numpy.generic, int, float, bool, list, tuple)


def is_dask_array(values: Any) -> bool:
    """Whether ``values`` is a ``dask.array.Array`` (dask is not imported to find out)."""
    array_module = sys.modules.get("dask.array")
    return array_module is not None and isinstance(values, array_module.Array)


def _dask_backend() -> ModuleType:
    return importlib.import_module(DASK_MODULE)


# -- the seed API on dask arrays (the callers check is_dask_array first)


def dask_quant(quantizer: Any, values: Any, dtype: Any, out: Any) -> Any:
    """``intquant.dask.quant(quantizer, values, dtype)``: the codes as a lazy dask array.

    Raises
    ------
    InvalidTypeError
        For ``out`` (lazy codes are not written into an array), before anything else.
    """
    _refuse_out(out, values, "codes", "quant")
    return _dask_backend().quant(quantizer, values, dtype=dtype)


def dask_dequant(quantizer: Any, qvalues: Any, dtype: Any, out: Any) -> Any:
    """``intquant.dask.dequant(quantizer, qvalues, dtype)``: the values as a lazy dask array.

    Raises
    ------
    InvalidTypeError
        For ``out`` (lazy values are not written into an array), before anything else.
    """
    _refuse_out(out, qvalues, "values", "dequant")
    return _dask_backend().dequant(quantizer, qvalues, dtype=dtype)


def dask_statistics(
    values: Any, axis: int | None, block_size: tuple[int, ...] | None, float32_sort: str | None = None
) -> tuple[Any, Any, Any]:
    """``(rmin, rmax, uvalues)`` of a dask array, computed now by ``intquant.dask``'s tree
    reduction (:func:`intquant.dask.compute_statistics`; ``float32_sort`` None: its default)."""
    sort = {} if float32_sort is None else {"float32_sort": float32_sort}
    stats = _dask_backend().compute_statistics(values, axis=axis, block_size=block_size, **sort)
    return stats.rmin, stats.rmax, stats.uvalues


def dask_update(stats: Any, values: Any, axis: int | None, block_size: tuple[int, ...] | None) -> None:
    """Fold a dask array into ``stats`` (statistics or a quantizer, with its ``float32_sort``) with
    :func:`intquant.dask.update_statistics`: a dtype or block grid that cannot merge is refused
    before anything is computed."""
    _dask_backend().update_statistics(stats, values, axis=axis, block_size=block_size)


def _refuse_out(out: Any, values: Any, result: str, method: str) -> None:
    if out is not None:
        raise InvalidTypeError(
            f"{method}(values, out=) got {_described(values)}: the {result} of a dask array are a "
            f"lazy dask array, computed chunk by chunk, not written into out. Drop out= and store "
            f"the result where it belongs: result.store(target) (zarr, HDF5, a memory map), or "
            f"out[...] = result.compute() if it fits in memory."
        )


# -- refusals


def check_not_foreign(values: Any, what: str, holder: str | None = None) -> None:
    """Refuse the arrays of other libraries (see the module's table) where numpy values are taken.

    ``what`` names the values in the message ("values to quantize"); ``holder``, the class that
    keeps the values in memory, if that is why (``"QuantizedArray"``). Plain numpy arrays, numpy
    and Python scalars, lists and tuples return at once; anything else numpy converts (pandas
    objects, numpy-backed xarray objects, objects with ``__array__``) passes.

    Raises
    ------
    InvalidTypeError
        For a torch tensor, a dask array or other dask collection, or an array-API array of
        another library, with what to use instead.
    """
    if isinstance(values, _PLAIN):
        return
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(values, torch.Tensor):
        raise _tensor_error(values, what, holder)
    kind = type(values)
    if getattr(kind, "__dask_graph__", None) is not None and values.__dask_graph__() is not None:
        raise _dask_error(values, what, holder)
    if hasattr(kind, "__array_namespace__") and kind.__module__.partition(".")[0] != "numpy":
        library = kind.__module__.partition(".")[0]
        raise InvalidTypeError(
            f"{what} are a {kind.__module__}.{kind.__qualname__}, an array of {library}; "
            f"{_why(holder)}, so it does not convert other libraries' arrays silently. Convert them "
            f"explicitly, e.g. with numpy.asarray(values) (copy arrays held on a GPU to the host "
            f"first), and use the result."
        )


def _why(holder: str | None) -> str:
    if holder is None:
        return "intquant's numpy API takes numpy arrays and returns numpy arrays"
    return f"{holder} holds numpy arrays in memory"


def _described(values: Any) -> str:
    """The kind, shape and dtype of a dask array or torch tensor, for a message."""
    if is_dask_array(values):
        return (
            f"a dask array of shape {values.shape}, dtype {values.dtype}, in "
            f"{values.npartitions} chunks of up to {values.chunksize}"
        )
    shape = tuple(getattr(values, "shape", ()))
    details = [f"shape {shape}", f"dtype {getattr(values, 'dtype', '?')}"]
    if hasattr(values, "requires_grad"):
        details += [f"device {getattr(values, 'device', '?')}", f"requires_grad={values.requires_grad}"]
    return f"a {type(values).__module__}.{type(values).__qualname__} ({', '.join(details)})"


def _tensor_error(values: Any, what: str, holder: str | None) -> InvalidTypeError:
    return InvalidTypeError(
        f"{what} are {_described(values)}; {_why(holder)}, and converting a tensor would copy it "
        f"to the host and drop its gradient, so tensors are refused. Quantize tensors on their "
        f"own device with intquant.torch: intquant.torch.TorchUniformQuantizer(quantizer)"
        f".quant(tensor) and .dequant(codes), or intquant.torch.fake_quant(tensor, quantizer) in "
        f"training (a straight-through gradient). For the numpy path, pass "
        f"tensor.detach().cpu().numpy()."
    )


def _dask_error(values: Any, what: str, holder: str | None) -> InvalidTypeError:
    gather = "so taking it would gather the whole collection into this process's memory"
    if not is_dask_array(values):
        return InvalidTypeError(
            f"{what} are a {type(values).__module__}.{type(values).__qualname__}, a lazy dask "
            f"collection; {_why(holder)}, {gather}. Pass its dask array instead (e.g. "
            f"dataframe.to_dask_array(lengths=True), or data_array.data for xarray), which the "
            f"seed API computes chunk by chunk with intquant.dask, or compute it yourself first."
        )
    if holder is not None:
        return InvalidTypeError(
            f"{what} are {_described(values)}; {_why(holder)}, {gather}. For a dask array, "
            f"calibrate chunk by chunk with quantizer = intquant.dask.quantizer_from(values, "
            f"QuantizationOptions(n_bits)) (a tree reduction) and quantize lazily with "
            f"quantizer.quant(values); or pass values.compute() if it fits in memory."
        )
    return InvalidTypeError(
        f"{what} are {_described(values)}; this function needs the values in memory, {gather}. "
        f"intquant.dask computes min/max statistics (intquant.dask.quantizer_from, or "
        f"compute_quantization_stats on the dask array) and quant/dequant chunk by chunk; for "
        f"anything else, compute the values yourself (values.compute(), or a sample of them)."
    )

"""ONNX: export quantizers as models, and insert quantizers into existing models.

Needs the ``onnx`` package (and ``onnxruntime`` to calibrate): ``pip install "intquant[onnx]"``.
Neither is imported until a function needs it, so ``import intquant.onnx`` imports neither.

Export a quantizer (:mod:`intquant.onnx.export`):

* :func:`quantizer_to_onnx` -- a model computing ``quantizer.quant(x)``: QuantizeLinear
  (standard) or elementary operators giving intquant's int64 codes exactly (``exact=True``).
* :func:`dequantizer_to_onnx` -- a model computing ``quantizer.dequant(q)`` (DequantizeLinear,
  or exactly in float64).
* :func:`code_dtype` -- the dtype of the codes the first outputs and the second reads.
* ``quantize_model`` and ``dequantize_model`` -- the older names of the first two.

Quantize an existing float model (:mod:`intquant.onnx.calibrate`, :mod:`intquant.onnx.insert`),
the job of ONNX Runtime's ``quantize_static`` with intquant's calibration methods:

* :func:`calibrate_tensors` -- quantizers for the model's activations (run on calibration data
  in onnxruntime, ranges from min/max or a method of :mod:`intquant.calibration`) and weights
  (per output channel);
* :func:`insert_qdq` -- the model with QuantizeLinear/DequantizeLinear pairs on those tensors;
* :func:`quantizable_tensors` -- which tensors are quantized by default.

Export an integer network (:mod:`intquant.onnx.integer`):

* :func:`integer_network_to_onnx`, :func:`integer_layer_to_onnx` -- an
  :class:`intquant.integer.IntegerNetwork` (or one layer) with MatMulInteger/ConvInteger where
  exact, exact float routes otherwise and an integer requantization; onnxruntime gives
  ``network.run``'s codes bit for bit.

See docs/onnx.md for the formulas, shapes, names and a tutorial.
"""

from __future__ import annotations

from intquant.errors import MissingDependencyError
from intquant.onnx._support import DEFAULT_OPSET, MIN_OPSET
from intquant.onnx.calibrate import METHODS, calibrate_tensors, quantizable_tensors
from intquant.onnx.export import (
    code_dtype,
    dequantize_model,
    dequantizer_to_onnx,
    quantize_model,
    quantizer_to_onnx,
)
from intquant.onnx.insert import insert_qdq
from intquant.onnx.integer import integer_layer_to_onnx, integer_network_to_onnx

__all__ = [
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "MissingDependencyError",
    "code_dtype",
    "quantizer_to_onnx",
    "dequantizer_to_onnx",
    "quantize_model",
    "dequantize_model",
    "METHODS",
    "calibrate_tensors",
    "insert_qdq",
    "quantizable_tensors",
    "integer_network_to_onnx",
    "integer_layer_to_onnx",
]

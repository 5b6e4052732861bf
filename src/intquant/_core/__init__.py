"""The core layer: argument checks, granularity, the quantization formulas, the plan that says
once what ``quant``/``dequant`` compute for a quantizer, an input dtype and a shape, the numpy
executor of plans, the JSON codec and the calibrator base. It knows nothing of the seed classes
(which sit on top of it) and imports only the bottom layers (``_numpy124``, ``_numba``); the
two modules that name upper ones (``codec``'s tag modules, ``foreign``'s ``intquant.dask``) import
them by name at call time."""

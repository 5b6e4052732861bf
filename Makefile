# Everything runs in virtual environments this Makefile creates: only python3 and make are needed.
PYTHON ?= python3
VENV := .venv
OLDEST_VENV := .venv-oldest
NUMPY126_VENV := .venv-numpy126
# Tests compare per-channel scales with PyTorch's observers. This pinned CPU build is the one on
# this machine's disk; an unpinned torch would pull a multi-gigabyte GPU build.
TORCH := torch==2.13.0

.PHONY: demo test test-oldest test-numpy126 test-pure lint bench docs clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet $(TORCH)
	$(VENV)/bin/python -m pip install --quiet -e ".[test,fast,demo,torch,onnx,dask,docs,safetensors]"
	touch $@

# The oldest numpy intquant supports, the one Concrete ML 1.7 users are pinned to.
$(OLDEST_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(OLDEST_VENV)/bin/python -m pip install --quiet $(TORCH)
	$(OLDEST_VENV)/bin/python -m pip install --quiet "numpy==1.24.*" -e ".[test,fast,demo,torch,onnx,dask,safetensors]"
	touch $@

# numpy 1.26.4, the one Concrete ML 1.8/1.9 pins: the golden data of 1.7 and 1.9 (no torch).
$(NUMPY126_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(NUMPY126_VENV)
	$(NUMPY126_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(NUMPY126_VENV)/bin/python -m pip install --quiet "numpy==1.26.4" -e ".[test]"
	touch $@

# --force: the demo replaces its own plot from an earlier run (intquant demo alone refuses to).
demo: $(VENV)/.installed
	$(VENV)/bin/intquant demo --force

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests tools benchmarks
	$(VENV)/bin/ruff format --check src tests tools benchmarks
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/python -m pytest -q
	$(MAKE) --no-print-directory test-pure

# The suite again without the compiled loops: the plain-numpy path alone must be exact too.
test-pure: $(VENV)/.installed
	INTQUANT_PURE_NUMPY=1 $(VENV)/bin/python -m pytest -q

test-oldest: $(OLDEST_VENV)/.installed
	$(OLDEST_VENV)/bin/python -c "import numpy; assert numpy.__version__.startswith('1.24'), numpy.__version__"
	$(OLDEST_VENV)/bin/python -m pytest -q

test-numpy126: $(NUMPY126_VENV)/.installed
	$(NUMPY126_VENV)/bin/python -c "import numpy; assert numpy.__version__ == '1.26.4', numpy.__version__"
	$(NUMPY126_VENV)/bin/python -m pytest -q tests/test_golden.py tests/test_golden_v1_9.py tests/test_compat_v1_9.py

# The API reference from the docstrings, and docs/*.md, as HTML in build/docs (warnings are errors).
docs: $(VENV)/.installed
	$(VENV)/bin/python -m sphinx -W --keep-going -b html docs build/docs

# Speed against the reference's formulas and a numpy copy, N = 1e3 to 1e8 (a few minutes); then
# against peers, each comparison in one process (docs/benchmarks.md): PyTorch's observers and ONNX
# Runtime on numpy 2, and those again with Concrete ML 1.7.0's own quantizers on numpy 1.24 (its
# wheel is downloaded from PyPI into the temp dir, never installed). `make bench PEERS=--quick`
# runs a subset of the peers in about a minute.
# Integer layers (numpy, torch, ONNX Runtime) against the float64 matmul/conv of the same shapes:
# `make bench INTEGER=--quick` skips the largest shape and times less (20 s instead of 35 s).
PEERS ?=
QAT ?=
INTEGER ?=
bench: $(VENV)/.installed $(OLDEST_VENV)/.installed
	$(VENV)/bin/python benchmarks/bench.py
	$(VENV)/bin/python benchmarks/peers.py --sections 2,3 $(PEERS)
	$(VENV)/bin/python benchmarks/calibration_peers.py $(filter --quick,$(PEERS))
	$(VENV)/bin/python benchmarks/torch_qat.py $(QAT)
	$(VENV)/bin/python benchmarks/integer_layers.py $(INTEGER)
	$(OLDEST_VENV)/bin/python benchmarks/peers.py $(PEERS)

clean:
	rm -rf $(VENV) $(OLDEST_VENV) $(NUMPY126_VENV) build src/*.egg-info

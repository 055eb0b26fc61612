# Every target builds its own .venv on first use: a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORE   := $(VENV)/.installed-core
FULL   := $(VENV)/.installed-test
# Tests and benchmarks read the real datasets from the shared folder beside the checkout.
export TINYLARGE_DATA ?= $(abspath ../shared/datasets)

.PHONY: demo test lint typecheck pytest bench clean

# The core: what `make demo` needs.
$(CORE): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch on disk; a looser spec would download a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e .
	touch $(CORE)

# Tests exercise every extra: the Ray backend, TFLite export (LiteRT), federated LoRA (ffm), privacy,
# and the TFLite Micro interpreter.
$(FULL): $(CORE)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,ray,tflite,ffm,privacy,tflite-micro]'
	# numba compiles librosa's kernels once per install: do it here, not inside a test
	$(BIN)/python -c 'import numpy, librosa; librosa.feature.mfcc(y=numpy.zeros(8000, "float32"), sr=8000)'
	touch $(FULL)

demo: $(CORE)
	rm -rf runs/quickstart
	$(BIN)/tinylarge run examples/quickstart.yaml --out runs/quickstart

lint: $(FULL)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(FULL)
	$(BIN)/mypy

pytest: $(FULL)
	$(BIN)/pytest -q

test: lint typecheck pytest

# Flower's simulation engine pins its own Ray (and protobuf), which clash with .venv:
# bench/fedavg_vs_flower.py runs Flower's side in .venv-flower. Never part of `make test`.
FLOWER_VENV := .venv-flower
FLOWER      := $(FLOWER_VENV)/.installed-flower
$(FLOWER): pyproject.toml constraints.txt
	test -x $(FLOWER_VENV)/bin/python || $(PYTHON) -m venv $(FLOWER_VENV)
	$(FLOWER_VENV)/bin/python -m pip install -q --upgrade pip
	# torch first: the CPU build on disk, as in .venv
	$(FLOWER_VENV)/bin/python -m pip install -q torch==2.13.0
	$(FLOWER_VENV)/bin/python -m pip install -q -c constraints.txt numpy 'flwr[simulation]>=1.42,<2'
	# tinylarge for its model zoo and local training only (numpy + torch), without its deps
	$(FLOWER_VENV)/bin/python -m pip install -q --no-deps -e .
	touch $(FLOWER)

.PHONY: bench-flower
bench-flower: $(FULL) $(FLOWER)
	$(BIN)/python bench/fedavg_vs_flower.py --flower-python $(FLOWER_VENV)/bin/python

clean:
	rm -rf $(VENV) $(FLOWER_VENV) .mypy_cache .pytest_cache .ruff_cache

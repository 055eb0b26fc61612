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

# Tests exercise every extra: the Ray backend, TFLite export (LiteRT), federated LoRA (ffm).
$(FULL): $(CORE)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,ray,tflite,ffm]'
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

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# Every target builds its own .venv on first use: a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Tests and benchmarks read the real datasets from the shared folder beside the checkout.
export TINYLARGE_DATA ?= $(abspath ../shared/datasets)

.PHONY: demo test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch on disk; a looser spec would download a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	# numba compiles librosa's kernels once per install: do it here, not inside a timed test
	$(BIN)/python -c 'import numpy, librosa; librosa.feature.mfcc(y=numpy.zeros(8000, "float32"), sr=8000)'
	touch $(STAMP)

demo: $(STAMP)
	rm -rf runs/quickstart
	$(BIN)/tinylarge run examples/quickstart.yaml --out runs/quickstart

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

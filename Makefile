# nws-bench: `make help` lists the targets.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Set TORCH_INDEX to a PyTorch wheel index to choose the build, e.g. the CPU-only one:
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export WANDB_MODE ?= offline

STAMP := $(VENV)/.installed

.PHONY: help setup run test test-all bench reproduce clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv and install the project with its test tools

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/pip install -q --index-url $(TORCH_INDEX) "torch<=2.14.1" "torchvision<=0.29.1",)
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)  ## set up if needed, then run the main job on its embedded default (python -m bench.run)
	$(BIN)/python -m bench.run

test: $(STAMP)  ## set up if needed, then run the default (fast) test suite
	$(BIN)/python -m pytest -q --durations=15

test-all: $(STAMP)  ## every test, slow ones included (GPU ones skip without CUDA)
	$(BIN)/python -m pytest -q -m "slow or not slow"

bench: $(STAMP)  ## benchmark the sketch's speed (writes results/bench_sketch_<device>.json)
	$(BIN)/python scripts/bench_sketch.py

reproduce:  ## the paper-claims sweeps and report, quick mode (scripts/reproduce.sh --quick)
	bash scripts/reproduce.sh --quick

clean:  ## remove outputs (not the data cache)
	rm -rf outputs multirun .pytest_cache

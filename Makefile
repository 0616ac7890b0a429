# Two commands set everything up on a fresh clone:
#   make quickstart   -> venv + install + run the main job on the built-in dataset
#   make test         -> venv + install + ruff + pytest
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU-only torch pinned here so that an unpinned `torch` never pulls a multi-GB CUDA build.
# A GPU user runs e.g. `make setup TORCH_SPEC="torch==2.13.0" TORCH_INDEX=<your CUDA wheel index>`.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: setup quickstart test lint clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
	$(BIN)/pip install -e ".[all,dev]"
	touch $@

setup: $(VENV)/.installed

quickstart: setup
	OMP_WAIT_POLICY=PASSIVE $(BIN)/symcere quickstart

lint: setup
	$(BIN)/ruff check src tests benchmarks

test: setup lint
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info

# Two set-up commands, each from a fresh clone with only Python 3.11:
#   make run   -> bootstraps .venv, then runs the default pipeline
#   make test  -> bootstraps .venv, then runs the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
# Stage eval's own env: imgutils 0.19 pins numpy<2, the SLURM executor plugin needs numpy>=2.4.5
EVAL_VENV ?= .venv-eval
TARGET ?= results/epsilon.safetensors
CORES  ?= all

.PHONY: run test test-fast lint bench clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# the exact CPU build first: a later resolver then never pulls a CUDA torch
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[train,dev]'
	touch $@

$(EVAL_VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(EVAL_VENV)
	$(EVAL_VENV)/bin/python -m pip install -q --upgrade pip
	$(EVAL_VENV)/bin/python -m pip install -q torch==2.13.0
	$(EVAL_VENV)/bin/python -m pip install -q -e '.[train,eval]'
	touch $@

run: $(VENV)/.installed $(EVAL_VENV)/.installed
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --cores $(CORES) $(TARGET)

test: $(VENV)/.installed $(EVAL_VENV)/.installed
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest

# The fast tier for iteration: unit, property and conformance tests, no pipeline run, no SLURM
# (markers in pyproject.toml); `make test` runs everything.
test-fast: $(VENV)/.installed $(EVAL_VENV)/.installed
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -m "not slow and not e2e and not cluster"

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/snakemake --lint

bench: $(VENV)/.installed
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m benchmarks

clean:
	rm -rf results logs .snakemake

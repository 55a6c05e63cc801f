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

.PHONY: run test test-fast lint bench lock clean

# Each venv installs the exact versions of the last verified run: envs/locks/*.txt are pip
# constraint files written by `make lock`; pyproject.toml keeps the ranges.
$(VENV)/.installed: pyproject.toml Makefile envs/locks/main.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c envs/locks/main.txt --upgrade pip
	# the exact CPU build first: a later resolver then never pulls a CUDA torch
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c envs/locks/main.txt -e '.[train,dev]'
	touch $@

$(EVAL_VENV)/.installed: pyproject.toml Makefile envs/locks/eval.txt
	$(PYTHON) -m venv $(EVAL_VENV)
	$(EVAL_VENV)/bin/python -m pip install -q -c envs/locks/eval.txt --upgrade pip
	$(EVAL_VENV)/bin/python -m pip install -q torch==2.13.0
	$(EVAL_VENV)/bin/python -m pip install -q -c envs/locks/eval.txt -e '.[train,eval]'
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

# After a verified `make test` (and not before: it freezes whatever the venvs hold), each venv's
# versions become its lock, pip and setuptools included (torch and tensorboard need setuptools at
# run time). kxl itself is left out, and a local build label (torch's +cpu) is dropped: the lock
# pins the version, the machine picks the build (CPU here, CUDA on a GPU node). A failed freeze
# stops before a lock is written; the lock test then checks the locks against pyproject.toml.
LOCK_HEADER := \# make lock: the exact versions of the last verified run (ranges: pyproject.toml)
DROP_BUILD_LABEL := sed 's/^\([^=]*==[^+]*\)+.*/\1/'
lock:
	$(BIN)/python -m pip freeze --all --exclude-editable --exclude kxl > envs/locks/main.new
	$(EVAL_VENV)/bin/python -m pip freeze --all --exclude-editable --exclude kxl > envs/locks/eval.new
	{ echo '$(LOCK_HEADER)'; $(DROP_BUILD_LABEL) envs/locks/main.new; } > envs/locks/main.txt
	{ echo '$(LOCK_HEADER)'; $(DROP_BUILD_LABEL) envs/locks/eval.new; } > envs/locks/eval.txt
	rm envs/locks/main.new envs/locks/eval.new
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_locks.py

clean:
	rm -rf results logs .snakemake

# The two commands of the README: `make book` (main job) and `make test` (lint + tests).
# Each creates .venv on first use and reinstalls only when pyproject.toml changes.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SCALE  ?= default

.PHONY: install test lint book clean-book bench

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m geomtl_core.assets
	@! $(BIN)/python -m pip show tensorflow >/dev/null 2>&1 || (echo "tensorflow must never be installed" && exit 1)
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest

book: $(STAMP)
	$(BIN)/python -m geomtl_core.runner --scale $(SCALE)
	$(BIN)/python -m geomtl_core.experiments --scale $(SCALE) --publish mtl_s3
	$(BIN)/jupyter-book build book/ -W --keep-going

clean-book:
	rm -rf book/_build

bench: $(STAMP)
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

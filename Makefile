# The two commands of the README: `make book` (main job) and `make test` (lint + tests); `make lab`
# opens the notebooks in JupyterLab. Each creates .venv on first use and reinstalls only when
# pyproject.toml changes.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SCALE  ?= default
# training processes of `make book` (runner --workers): each takes its share of the cores; empty: the scale's
# own (train_workers: 2 at the default scale, measured faster than 1 on 2 cores)
WORKERS ?=
# The notebooks' kernel: the venv's python as the named kernelspec `geomtl` (the notebooks' metadata
# names it, so papermill and JupyterLab both run them on this environment).
KERNEL := geomtl
# --allow-root only where make runs as root (containers), which Jupyter otherwise refuses
LAB_ARGS ?= --no-browser $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: install test test-fast lint book clean-book bench lab

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m geomtl_core.data.assets
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "geomtl (.venv)"
	@! $(BIN)/python -m pip show tensorflow >/dev/null 2>&1 || (echo "tensorflow must never be installed" && exit 1)
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest

# The fast tier (a few minutes on 2 cores): everything but the tests marked slow (end-to-end trainings, the
# smoke book, multi-process and kill/resume runs, the full 100K-location split checks); CI runs `make test`.
test-fast: lint
	$(BIN)/python -m pytest -m "not slow"

# Each scale builds its own report: default from book/ into book/_build/html; another scale from its copy of
# book/ in book/_build/$(SCALE)/ (a banner on every page) into book/_build/$(SCALE)/_build/html. The runner
# says which folder (--book-dir); its trained model goes to models/$(SCALE)/. The default scale's build also
# writes its answer into README.md and book/intro.md (runner --readme, from results/default/).
book: $(STAMP)
	$(BIN)/python -m geomtl_core.compendium.runner --scale $(SCALE) $(if $(WORKERS),--workers $(WORKERS))
	$(BIN)/python -m geomtl_core.compendium.publish --scale $(SCALE) --run mtl_s3
	$(if $(filter default,$(SCALE)),$(BIN)/python -m geomtl_core.compendium.runner --scale default --readme >/dev/null)
	$(BIN)/jupyter-book build "$$($(BIN)/python -m geomtl_core.compendium.runner --scale $(SCALE) --book-dir)" \
		-W --keep-going

# JupyterLab on the project root with the venv's kernel; prints the URL (with its token) to open.
lab: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" \
		--MultiKernelManager.default_kernel_name=$(KERNEL) $(LAB_ARGS)

clean-book:
	rm -rf book/_build

bench: $(STAMP)
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

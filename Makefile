# mmzoo — `make help` lists the targets. Everything installs into .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast bench leaderboard lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev,slurm]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install mmzoo with its dev and slurm extras (only what is missing)

run: $(STAMP)  ## train + evaluate the default (tiny CLIP on the embedded shapes data); ARGS="model=llava ..."
	$(PY) -m mmzoo.run $(ARGS)

test: $(STAMP)  ## run the whole test suite
	$(PY) -m pytest -q $(ARGS)

test-fast: $(STAMP)  ## the tests not marked slow
	$(PY) -m pytest -q -m "not slow" $(ARGS)

bench: $(STAMP)  ## side-by-side benchmarks (see benchmarks/RESULTS.md)
	$(PY) benchmarks/bench_loader.py
	$(PY) benchmarks/bench_step.py
	$(PY) benchmarks/bench_feature_cache.py
	$(PY) benchmarks/bench_generate.py

leaderboard: $(STAMP)  ## compare every run under runs/ (markdown, CSV, HTML, plots)
	$(PY) -m mmzoo.leaderboard runs $(ARGS)

lint: $(STAMP)  ## ruff
	$(VENV)/bin/ruff check src tests benchmarks

clean:  ## remove the virtual environment and caches (not runs/)
	rm -rf $(VENV) .pytest_cache .ruff_cache

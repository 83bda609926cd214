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
	$(PY) benchmarks/bench_length_groups.py
	$(PY) benchmarks/bench_memory.py

# The whole zoo in one command: every model trained with its default recipe and evaluated
# untrained (sweep=zoo, one process, jobs one after another: a failed job is recorded and the
# rest go on), then the leaderboard of that sweep folder. ARGS go to every job, e.g. a dry run:
#   make leaderboard ARGS="trainer.max_steps=5 data.train_size=500 data.test_size=64"
# LEADERBOARD_DIR picks the folder (default multirun/zoo/<time>); an existing one is resumed.
LEADERBOARD_DIR ?=
leaderboard: $(STAMP)  ## train + evaluate every model of the zoo, then compare them (md, csv, html, png); ARGS="..."
	@dir="$(LEADERBOARD_DIR)"; dir="$${dir:-multirun/zoo/$$(date +%Y-%m-%d_%H-%M-%S)}"; \
	echo "mmzoo: the whole zoo into $$dir"; \
	$(PY) -m mmzoo.run -m sweep=zoo "hydra.sweep.dir=$$dir" $(ARGS) \
	  || echo "mmzoo: the sweep stopped early (exit $$?); the leaderboard lists what it wrote"; \
	$(PY) -m mmzoo.leaderboard "$$dir"

lint: $(STAMP)  ## ruff
	$(VENV)/bin/ruff check src tests benchmarks

clean:  ## remove the virtual environment and caches (not runs/)
	rm -rf $(VENV) .pytest_cache .ruff_cache

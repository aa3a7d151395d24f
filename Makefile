# Two commands: `make run` (the demo) and `make test` (everything the tests need, then the suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint install system-deps clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/stemme demo
	$(BIN)/stemme serve

system-deps:
	bash scripts/install-system-deps.sh

# Two workers (pytest-xdist): most tests wait on servers, fsync and sleeps, so the 2-core CI
# runner is busy about twice as often. `--dist loadgroup` keeps the crash tests (xdist_group
# "crash") on one worker, one after the other. `make test PYTEST_WORKERS=0` runs in-process.
PYTEST_WORKERS ?= 2
test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadgroup \
		$(PYTEST_ARGS)

# Measurement only, never part of `make test`; about 4 minutes (see bench/README.md).
bench: $(STAMP) system-deps
	$(BIN)/python -m bench all

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache

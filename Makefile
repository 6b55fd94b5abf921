# One-command set-up: every target that needs the virtualenv builds it first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Empty: `openmmp serve` takes OPENMMP_HOST / OPENMMP_PORT (default 127.0.0.1:8000); `make run PORT=9000` wins.
HOST ?=
PORT ?=
PYTEST_ARGS ?=

.PHONY: install run test lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/openmmp migrate
	$(BIN)/openmmp serve --sandbox $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

# Tests marked `alone` bound what a SIGKILL or an outage costs in time and repeats: they run after the
# rest, one at a time, so that no other test's processes compete for the two cores they are measured on.
# Exit code 5 of the second run (none selected, e.g. with PYTEST_ARGS naming one file) is not a failure.
test: install
	$(BIN)/python -m pytest -n 2 -m "not alone" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m alone $(PYTEST_ARGS) || test $$? -eq 5

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache

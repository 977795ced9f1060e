# `make test` is the whole suite: it creates .venv, installs the project with its pinned
# dependencies, then runs ruff, mypy, hadolint and pytest.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DOCKERFILES := $(wildcard Dockerfile.*)

.PHONY: test lint pytest venv clean bench

test: lint pytest

venv: $(STAMP)

$(STAMP): pyproject.toml requirements/agent.txt requirements/subscriber.txt requirements/dev.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[agent,subscriber,dev]'
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
ifneq ($(DOCKERFILES),)
	$(BIN)/hadolint $(DOCKERFILES)
endif

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# `make bench` (about 10 minutes) or `make bench QUICK=1` (under 3): needs a Docker Engine.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements/bench.txt
	$(BIN)/python -m bench $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

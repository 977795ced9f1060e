# `make test` is the whole suite: it creates .venv, installs the project with its pinned
# dependencies, then runs ruff, mypy, hadolint, actionlint, promtool (example alerting rules) and pytest.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DOCKERFILES := $(wildcard Dockerfile.*) tests/homeassistant/image/Dockerfile
WORKFLOWS   := $(wildcard .github/workflows/*.yml)

.PHONY: test lint pytest venv clean bench multiarch coverage v2host homeassistant

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
ifneq ($(WORKFLOWS),)
	$(BIN)/actionlint $(WORKFLOWS)
endif
	@command -v promtool >/dev/null || { echo "promtool not found: apt-get install prometheus (Debian)"; exit 1; }
	promtool check rules prometheus/*.yml

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# Coverage of the unit tests alone, with no Docker Engine reachable (about a minute).
coverage: $(STAMP)
	env -u OTTO_REQUIRE_DOCKER DOCKER_HOST=unix:///nonexistent.sock \
		$(BIN)/pytest tests/unit -q --cov=agent --cov=subscriber --cov=common --cov-report=term

# The cgroup v2 host suite (tests/v2host): boots ../shared/ci/v2-host's VM (Debian trixie,
# systemd, Engine 26) if it is not up, seeds the agent image and runs the agent there. About 10
# minutes under emulation; `v2-host down` afterwards frees its 1.5 cores before timing tests.
v2host: $(STAMP)
	env -u DOCKER_HOST docker build -q -f Dockerfile.agent -t otto-metrics/agent:local . >/dev/null
	$(BIN)/pytest -m v2host tests/v2host $(PYTEST_ARGS)

# The Home Assistant suite (tests/homeassistant): builds a Home Assistant image from PyPI on the
# Python stand-in (about 2.5 minutes the first time, 1.3 GB), then runs it against the real agent
# and subscriber (under a minute).
homeassistant: $(STAMP)
	$(BIN)/pytest -m homeassistant tests/homeassistant $(PYTEST_ARGS)

# `make bench` (about 20 minutes) or `make bench QUICK=1` (under 3): needs a Docker Engine.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements/bench.txt
	$(BIN)/python -m bench $(if $(QUICK),--quick)

# Build the agent image for linux/arm64 and linux/arm/v7 under QEMU and run it (see README).
# Bases: ARM64_BASE / ARMV7_BASE, default the local stand-ins `docker-host seed` creates.
multiarch: $(STAMP)
	$(BIN)/python scripts/multiarch.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

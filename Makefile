# Two commands: `make run` serves the API, `make test` checks everything.
# Each builds the virtualenv it needs (.venv, ignored by git) from pyproject.toml.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Development tokens for `make run` only; set API_TOKENS yourself for anything shared.
DEV_TOKENS := admin:dev-admin-token,writer:dev-writer-token,reader:dev-reader-token

.PHONY: run test lint format bench clean screenshots fleet

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is needed, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	API_TOKENS="$${API_TOKENS:-$(DEV_TOKENS)}" $(BIN)/product-status serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy .

test: lint
	$(BIN)/pytest -q

# Needs Debian's chromium (apt-get install -y chromium); writes docs/screenshots/*.png.
screenshots: $(STAMP)
	SCREENSHOTS_DIR=docs/screenshots $(BIN)/pytest -q tests/browser -k screenshot

# The production topology as processes on this machine (tests/fleet.py): two API processes,
# two of each follower, PostgreSQL (TEST_DATABASE_URL or a throwaway one) and a three-node
# NATS JetStream cluster with stream replicas 3. Ctrl-C stops it all.
fleet: $(STAMP)
	$(BIN)/python -m tests.fleet

format: $(STAMP)
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench.commands_http

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Tertulia: `make run` serves a demo on SQLite, `make test` runs everything CI runs.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
# Three test processes on two cores: much of the suite waits (PostgreSQL, Chromium, subprocesses,
# sleeps in timing tests), and a third process fills those waits (2,944 tests: 13 min against about
# 16 min with two processes for 200 fewer tests, same machine).
PYTEST_WORKERS ?= 3
# A worker that runs out of tests takes part of what the other has left, instead of the suite ending
# with one worker alone on a tail of slow tests (browser modules, the schema test on PostgreSQL).
PYTEST_DIST ?= worksteal

.PHONY: install run test lint contracts typecheck bytecode pytest chromium dovecot bench screenshots clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet --python $(PYTHON)
	touch $@

install: $(VENV)/.synced

run: install
	$(BIN)/tertulia demo

# Browser tests drive Debian's Chromium; Playwright's own browser download cannot run here.
chromium:
	@command -v chromium >/dev/null || { \
		echo "Installing Chromium from Debian..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The email channel's tests run a private Dovecot (IMAP and POP3) from Debian's packages.
dovecot:
	@command -v dovecot >/dev/null || { \
		echo "Installing Dovecot from Debian..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd dovecot-pop3d >/dev/null; }

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

# Import contracts ([tool.importlinter] in pyproject.toml): which package may import which.
contracts: install
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

# Bytecode written before the run (only what changed since the last one: about 2 s): where
# PYTHONDONTWRITEBYTECODE is set, each process (the test workers, and every server and worker process
# a test starts) would otherwise compile all it imports again; `tertulia worker` took 4.4 s to import
# its tasks instead of 2.0 s.
bytecode: install
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib src tests >/dev/null

pytest: install chromium dovecot bytecode
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist $(PYTEST_DIST) $(PYTEST_ARGS)

test: lint typecheck pytest

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(TOOLS) data .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .grimp_cache

# Two commands do all set-up on a fresh machine:
#   make start   create the venv, install, build the bundled plugins, start Allele
#   make test    the same set-up, then lint, type-check and run the whole test suite
# Both are idempotent and fast when nothing changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The install stamp is named after pyproject.toml's hash: editing dependencies reinstalls.
STAMP  := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)

.PHONY: start test plugins lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

plugins: $(STAMP)
	$(BIN)/allele build --bundled

start: plugins
	$(BIN)/allele start

lint: $(STAMP)
	$(BIN)/ruff check kernel vault watchdog plugins tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: plugins
	$(BIN)/python bench/plugin_calls.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/arena.py

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache

# Two commands do all set-up on a fresh machine:
#   make start   create the venv, install, build the bundled plugins, start Allele
#   make test    the same set-up, then lint, type-check and run the whole test suite
# Both are idempotent and fast when nothing changed.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The install stamp is named after pyproject.toml's hash: editing dependencies reinstalls.
STAMP  := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)

.PHONY: start test plugins dashboard lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

plugins: $(STAMP)
	$(BIN)/allele build --bundled

# The dashboard's static build, served by the API at /; rebuilt when a source or the lock file changes.
DASHBOARD_SOURCES := $(shell find dashboard/src -type f 2>/dev/null) dashboard/index.html dashboard/vite.config.ts \
                     dashboard/tsconfig.json dashboard/package-lock.json
dashboard/dist/index.html: $(DASHBOARD_SOURCES)
	cd dashboard && npm ci --no-audit --no-fund --loglevel=error && npm run build

dashboard: dashboard/dist/index.html

start: plugins dashboard
	$(BIN)/allele start

lint: $(STAMP)
	$(BIN)/ruff check kernel vault watchdog plugins tests bench hw
	$(BIN)/mypy

test: lint dashboard
	$(BIN)/pytest

bench: plugins
	$(BIN)/python bench/plugin_calls.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/arena.py

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache dashboard/dist

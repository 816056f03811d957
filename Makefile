# Two commands on a fresh clone: `make run` and `make test`. Everything else is setup.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?=
ARGS   ?=

.PHONY: run test setup lint bench clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; install Python 3.11 or run make PYTHON=python3"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dev]'
	@touch $@

# The page's charting library, pinned by package-lock.json and served by our server.
node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "make: npm not found; install Node.js (the page's chart library comes from the npm registry)"; exit 1; }
	npm ci --silent --no-audit --no-fund
	@touch $@

run: setup
	$(BIN)/phoenix serve $(if $(PORT),--port $(PORT)) $(ARGS)

test: setup
	$(BIN)/pytest $(ARGS)

lint: setup
	$(BIN)/ruff check phoenix simulator tests bench
	$(BIN)/ruff format --check phoenix simulator tests bench

bench: setup
	$(BIN)/python bench/fanout.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache

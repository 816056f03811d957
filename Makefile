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

# What our server serves from node_modules (the page's chart library, the /docs viewer),
# pinned by package-lock.json: about 10 s and 125 MB. No install scripts: none is needed,
# and some would phone home (@scarf/scarf) or edit shell profiles (@asyncapi/cli).
NPM_CI = npm ci --ignore-scripts --silent --no-audit --no-fund
NPM_CHECK = @command -v npm >/dev/null || { echo "make: npm not found; install Node.js (the page's chart library and the API docs' viewer come from the npm registry)"; exit 1; }
node_modules/.installed: package.json package-lock.json
	$(NPM_CHECK)
	$(NPM_CI) --omit=dev
	@touch $@

# `make test` also needs the AsyncAPI CLI, a devDependency (about 1.5 GB and 80 s on a
# cold cache, so `make run` goes without it); this set includes the one above.
node_modules/.installed-dev: package.json package-lock.json
	$(NPM_CHECK)
	$(NPM_CI)
	@touch node_modules/.installed $@

# The CLI with no analytics (that file says disabled) and no update check: it reaches no
# network, and it reads no stdin.
ASYNCAPI = ASYNCAPI_METRICS_CONFIG_PATH=tests/contract/asyncapi-analytics.json \
	ASYNCAPI_SKIP_NEW_VERSION_CHECK=true node_modules/.bin/asyncapi

run: setup
	$(BIN)/phoenix serve $(if $(PORT),--port $(PORT)) $(ARGS)

test: $(VENV)/.installed node_modules/.installed-dev
	$(ASYNCAPI) validate docs/asyncapi.yaml --fail-severity warn </dev/null
	$(BIN)/pytest $(ARGS)

lint: setup
	$(BIN)/ruff check phoenix simulator tests bench
	$(BIN)/ruff format --check phoenix simulator tests bench

bench: setup
	$(BIN)/python bench/fanout.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache

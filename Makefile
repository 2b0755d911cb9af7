# sentq: `make demo` and `make test` work from a clean clone; everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DATA := data/vader/SHA256SUMS
QUICK ?=

.PHONY: setup redis-server chromium wrk demo test lint format bench faults clean

setup: $(STAMP) $(DATA) redis-server

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

$(DATA): | $(STAMP)
	$(BIN)/python -m sentq.dataset fetch --data-dir data

# redis-server must be on PATH (tests and the demo start their own); install it when we can, else say how.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "redis-server is missing: installing it with apt-get"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; \
	  else \
	    echo "redis-server is missing. Install it, e.g.: sudo apt-get install redis-server (Debian/Ubuntu)" \
	         "or brew install redis (macOS), then run make again."; exit 1; \
	  fi; }

# The console's browser test drives Debian's Chromium (no browser download by Playwright); same policy as redis-server.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "chromium is missing (the console's browser test needs it): installing it with apt-get"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else \
	    echo "chromium is missing (the console's browser test needs it). Install it, e.g.:" \
	         "sudo apt-get install chromium (Debian/Ubuntu), then run make again."; exit 1; \
	  fi; }

demo: setup
	$(BIN)/python scripts/demo.py

test: setup chromium lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check sentq tests bench scripts
	$(BIN)/ruff format --check sentq tests bench scripts
	$(BIN)/mypy sentq

format: $(STAMP)
	$(BIN)/ruff check --fix sentq tests bench scripts
	$(BIN)/ruff format sentq tests bench scripts

bench: setup wrk
	$(BIN)/python bench/run.py $(if $(QUICK),--quick,)
	$(BIN)/python bench/reconcile_cost.py --append $(if $(QUICK),bench/out/RESULTS-quick.md,bench/RESULTS.md)
	$(BIN)/python bench/api.py $(if $(QUICK),--quick,) --append $(if $(QUICK),bench/out/RESULTS-quick.md,bench/RESULTS.md)
	$(BIN)/python bench/tls.py $(if $(QUICK),--quick,) --append $(if $(QUICK),bench/out/RESULTS-quick.md,bench/RESULTS.md)

# `make bench` loads `sentq api` with wrk (the HTTP load generator), installed like the others.
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; \
	  else \
	    echo "wrk is missing (make bench loads the API with it): sudo apt-get install wrk, then run make again."; exit 1; \
	  fi; }

# The Redis restart, Redis SIGKILL and worker-host-vanish scenarios, RUNS times each (default 20); prints the tally.
RUNS ?= 20
faults: setup
	$(BIN)/python bench/faults.py --runs $(RUNS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache bench/out

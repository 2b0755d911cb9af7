# sentq: `make demo` and `make test` work from a clean clone; everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Every package `make setup` installs, at exact versions (runtime, api and test extras and all they pull in), made
# by `make lock` from pyproject.toml's ranges. uv installs it, compiled: `make setup` from nothing (no pip or uv
# cache) took 29 s with uv, 48 s with pip unpinned; the packages alone 11 s with uv, 55 s with pip (same lock).
LOCK := requirements.lock
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
DATA := data/vader/SHA256SUMS
QUICK ?=

.PHONY: setup lock cli-table redis-server chromium wrk demo test lint format bench faults clean

setup: $(STAMP) $(DATA) redis-server

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv==$(UV_VERSION)

$(STAMP): pyproject.toml $(LOCK) | $(UV)
	$(UV) pip sync -q --compile-bytecode --python $(BIN)/python $(LOCK)
	$(UV) pip install -q --python $(BIN)/python --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Refresh the pins to the newest releases pyproject.toml allows (then run `make test` from a clean clone and commit
# the lock alone; `make setup` then installs it). PACKAGE=name upgrades just that one package.
lock: | $(UV)
	$(UV) pip compile -q pyproject.toml --extra test --universal --python-version 3.11 \
	  $(if $(PACKAGE),--upgrade-package $(PACKAGE),--upgrade) -o $(LOCK)

# sentq/plain_table.py: how sentq.plain reads `sentq submit|wait|status|cancel` without Typer, written from their
# Typer declarations (sentq/commands.py); run it after changing one (tests/test_cli.py fails until you do).
cli-table: $(STAMP)
	$(BIN)/python -m sentq.plain

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

# One pytest process more than there are cores (pytest-xdist; each has its own Redis and session worker): the suite
# waits on real servers and clocks much of its time (at 2 processes on 2 cores it kept them 63% busy), and a third
# process fills those waits: pytest 322 s -> 264 s here. The venv is compiled at setup; sentq's own modules are
# compiled here too, where an environment's PYTHONDONTWRITEBYTECODE would have every one of the suite's sentq
# processes compile them again (the suite took 1,015 CPU-s that way, 470 compiled).
PYTEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
test: setup chromium lint
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check sentq tests bench scripts
	$(BIN)/ruff format --check sentq tests bench scripts
	$(BIN)/mypy sentq

format: $(STAMP)
	$(BIN)/ruff check --fix sentq tests bench scripts
	$(BIN)/ruff format sentq tests bench scripts

# bench/requirements.lock: the bench's own packages (Dask, for its peer row), pinned, installed over the venv
# (install, not sync: the main lock's packages stay); `make test` never installs them.
bench: setup wrk
	$(UV) pip install -q --python $(BIN)/python -r bench/requirements.lock
	$(BIN)/python bench/run.py $(if $(QUICK),--quick,)
	$(BIN)/python bench/reconcile_cost.py --append $(if $(QUICK),bench/out/RESULTS-quick.md,bench/RESULTS.md)
	$(BIN)/python bench/api.py $(if $(QUICK),--quick,) --append $(if $(QUICK),bench/out/RESULTS-quick.md,bench/RESULTS.md)
	$(BIN)/python bench/tls.py $(if $(QUICK),--quick,) --append $(if $(QUICK),bench/out/RESULTS-quick.md,bench/RESULTS.md)
	$(BIN)/python bench/costs.py $(if $(QUICK),--texts 60000,--texts 300000) --append $(if $(QUICK),bench/out/RESULTS-quick.md,bench/RESULTS.md)
	$(BIN)/python bench/hosts.py $(if $(QUICK),--texts 200000,) --append $(if $(QUICK),bench/out/RESULTS-quick.md,bench/RESULTS.md)

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

# Handoff: the developer's entry points. Only Python 3.11+ is needed on a fresh clone.
#
#   make run     venv + install + migrate + demo data, then serve on http://$(HOST):$(PORT)
#                (no env: one embedded process; DATABASE_URL + REDIS_URL: web, worker, beat)
#   make test    venv + install with the test extra, then pytest (ARGS="-k foo -x" passes through),
#                then the TypeScript client's tests (make test-ts; skipped when ARGS selects tests)
#
# Installs come from the lock files only (requirements/*.lock, exact versions with hashes):
# every install path (make, CI, the Dockerfile) gets the same packages. A stamp file in the
# venv records the last install; it is redone when a lock file changes (or after
# `make clean`). `make lock` refreshes the locks from pyproject.toml.

SHELL := /bin/bash
.DEFAULT_GOAL := help

HOST ?= 127.0.0.1
PORT ?= 8000
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# Arguments for pytest: `make test ARGS="-x -k webhook"` (PYTEST_ARGS works too).
ARGS ?=
PYTEST_ARGS ?=

STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
# axe-core for the accessibility test (make axe-install)
AXE_STAMP := tests/node_modules/.installed
LOCK := requirements/prod.lock
DEV_LOCK := requirements/dev.lock
CLIENT_LOCK := clients/python/requirements.lock

export HOST PORT

CLIENT_VENV ?= .venv-client

.PHONY: help run serve test test-client test-ts ts-install axe-install lint typecheck screenshots format lock bench bench-hotpath bench-insights bench-queue bench-metrics bench-precedents bench-slack bench-all migrate seed worker beat check venv install install-test clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# ---------------------------------------------------------------- the venv
# The first of $(PYTHON), python3, python3.13, python3.12, python3.11 that is 3.11 or newer.
$(PY):
	@set -e; found=""; \
	for candidate in $(PYTHON) python3 python3.13 python3.12 python3.11; do \
	  if command -v "$$candidate" >/dev/null 2>&1 && \
	     "$$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then \
	    found="$$candidate"; break; \
	  fi; \
	done; \
	if [ -z "$$found" ]; then \
	  echo "error: Handoff needs Python 3.11 or newer, and none was found" >&2; \
	  echo "       (tried: $(PYTHON) python3 python3.13 python3.12 python3.11; python3 is $$(python3 --version 2>&1 || echo missing))." >&2; \
	  echo "       Install one, or point PYTHON at it: make PYTHON=/path/to/python3.12 ..." >&2; \
	  exit 1; \
	fi; \
	echo "==> creating $(VENV) with $$found ($$("$$found" --version 2>&1))"; \
	"$$found" -m venv $(VENV)

venv: $(PY) ## create .venv

# The project's own packages are not installed: they run from the checkout.
$(STAMP_RUN): $(LOCK) | $(PY)
	@echo "==> installing Handoff's dependencies into $(VENV) from $(LOCK)"
	$(PIP) install -q --require-hashes -r $(LOCK)
	@rm -f $(STAMP_TEST)
	@touch $@

$(STAMP_TEST): $(DEV_LOCK) | $(PY)
	@echo "==> installing Handoff's dependencies with the test extra into $(VENV) from $(DEV_LOCK)"
	$(PIP) install -q --require-hashes -r $(DEV_LOCK)
	@touch $@ $(STAMP_RUN)

install: $(STAMP_RUN) ## install the project into .venv (incremental)
install-test: $(STAMP_TEST) ## install the project with the test extra (incremental)

# ---------------------------------------------------------------- running
# These are local, development entry points: DEBUG defaults on for them even with
# DATABASE_URL set (settings would otherwise demand SECRET_KEY and ALLOWED_HOSTS).
# Set DEBUG=0 (with SECRET_KEY and ALLOWED_HOSTS) to try the production settings.
run serve migrate seed worker beat check: export DEBUG ?= 1

migrate: $(STAMP_RUN) ## apply database migrations
	$(PY) manage.py migrate --noinput

seed: migrate ## load the demo data (idempotent; the demo app, demo/data/)
	$(PY) manage.py seed_demo

run: seed ## migrate, load demo data and serve on http://$(HOST):$(PORT); Ctrl-C stops all
	@$(PY) scripts/run.py --host "$(HOST)" --port "$(PORT)"

serve: $(STAMP_RUN) ## serve without migrating or seeding
	@$(PY) scripts/run.py --host "$(HOST)" --port "$(PORT)"

worker: $(STAMP_RUN) ## a Celery worker on REDIS_URL (production shape only)
	@test -n "$$REDIS_URL" || { echo "error: make worker needs REDIS_URL (with no REDIS_URL the web process runs the worker itself)" >&2; exit 1; }
	$(PY) -m celery -A handoff_site worker -l INFO

beat: $(STAMP_RUN) ## Celery beat on REDIS_URL (production shape only; run exactly one)
	@test -n "$$REDIS_URL" || { echo "error: make beat needs REDIS_URL (with no REDIS_URL the web process runs beat itself)" >&2; exit 1; }
	$(PY) -m celery -A handoff_site beat -l INFO

# ---------------------------------------------------------------- checking
# pytest's exit 5 means it collected no test: that is a failure here, with a message.
# Locally the test database is kept between runs (--reuse-db: only new migrations are
# applied); with CI set it is created afresh. ARGS=--create-db recreates it locally.
REUSE_DB := $(if $(CI),,--reuse-db)
# pytest-xdist: the files are shared out to TEST_WORKERS processes (a file's tests stay in one
# process, with its module fixtures), each with its own test database and Redis database
# (handoff_site/settings_test.py). Much of the suite waits on servers, workers and browsers,
# so two processes per core pay. TEST_WORKERS=0 runs everything in this one process.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) * 2 )))
XDIST := $(if $(filter 0,$(TEST_WORKERS)),-n 0,-n $(TEST_WORKERS) --dist loadfile)
# Then the TypeScript client's live tests (make test-ts), unless ARGS/PYTEST_ARGS pick tests.
test: $(STAMP_TEST) $(AXE_STAMP) ## run the tests: pytest (ARGS / PYTEST_ARGS pass through), then make test-ts
	@set +e; $(PY) -m pytest $(REUSE_DB) $(XDIST) $(ARGS) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests (exit 5): nothing was tested" >&2; fi; \
	if [ -z "$(strip $(ARGS)$(PYTEST_ARGS))" ]; then $(MAKE) --no-print-directory test-ts || { [ $$rc -ne 0 ] || rc=1; }; fi; \
	exit $$rc

# The agent client (clients/python) has a venv of its own: it must not lean on the server's
# dependencies. Its live tests start the real server with the server's venv.
$(CLIENT_VENV)/.installed: $(CLIENT_LOCK) clients/python/pyproject.toml | $(PY)
	@echo "==> installing handoff-client with its framework adapters into $(CLIENT_VENV) from $(CLIENT_LOCK)"
	@"$$($(PY) -c 'import sys; print(sys._base_executable)')" -m venv $(CLIENT_VENV)
	$(CLIENT_VENV)/bin/python -m pip install -q --disable-pip-version-check --require-hashes -r $(CLIENT_LOCK)
	$(CLIENT_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps -e clients/python
	@touch $@

test-client: $(STAMP_TEST) $(CLIENT_VENV)/.installed ## the agent client's tests, live ones against a real server
	cd clients/python && ../../$(CLIENT_VENV)/bin/python -m pytest $(ARGS)

# The browser tests' npm packages (tests/package.json: axe-core, which the accessibility
# test injects into each page), from tests/package-lock.json only (npm ci). Node 20+ and npm.
NEED_NODE = @command -v npm >/dev/null 2>&1 && node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)' || \
	  { echo "error: $(1) needs Node 20+ and npm (node is $$(node --version 2>&1 || echo missing))" >&2; exit 1; }
$(AXE_STAMP): tests/package-lock.json tests/package.json
	$(call NEED_NODE,the accessibility test (axe-core))
	@echo "==> installing the browser tests' packages from tests/package-lock.json (npm ci)"
	cd tests && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

axe-install: $(AXE_STAMP) ## the browser tests' npm packages (axe-core), from their lockfile (npm ci)

# The TypeScript client (clients/typescript): Node 20+ and npm, its packages from
# package-lock.json only (npm ci). Its tests start the real server with the server's venv
# (embedded SQLite in a temporary directory, or DATABASE_URL + REDIS_URL when both are set).
TS_DIR := clients/typescript
TS_STAMP := $(TS_DIR)/node_modules/.installed
$(TS_STAMP): $(TS_DIR)/package-lock.json $(TS_DIR)/package.json
	$(call NEED_NODE,the TypeScript client)
	@echo "==> installing the TypeScript client's packages from $(TS_DIR)/package-lock.json (npm ci)"
	cd $(TS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

ts-install: $(TS_STAMP) ## the TypeScript client's packages, from its lockfile (npm ci)

test-ts: $(STAMP_TEST) $(TS_STAMP) ## the TypeScript client's tests (node:test), live ones against a real server
	cd $(TS_DIR) && npm test --silent

# The only way the lock files change: exact versions with hashes, for every platform and
# Python 3.11+, from the ranges in pyproject.toml (and clients/python/pyproject.toml).
# `make lock UPGRADE=1` moves every package to its newest allowed version;
# `make lock ARGS="--upgrade-package redis"` moves one. Commit the result.
UV_COMPILE = $(VENV)/bin/uv pip compile --universal --python-version 3.11 --generate-hashes --no-header --quiet $(if $(UPGRADE),--upgrade) $(ARGS)
lock: $(STAMP_TEST) ## refresh the lock files from pyproject.toml (UPGRADE=1: newest allowed)
	$(UV_COMPILE) pyproject.toml -o $(LOCK)
	$(UV_COMPILE) pyproject.toml --extra test -c $(LOCK) -o $(DEV_LOCK)
	$(UV_COMPILE) clients/python/pyproject.toml --extra langgraph --extra openai-agents --extra mcp --extra pydantic-ai --extra test -o $(CLIENT_LOCK)
	@echo "==> lock files refreshed: review 'git diff requirements/ $(CLIENT_LOCK)' and commit"

lint: $(STAMP_TEST) ## ruff
	$(VENV)/bin/ruff check .

# bench/ and scripts/ are folders of scripts, not packages: each is checked on its own so
# their module names (run, lib) do not clash with each other's or the apps'.
typecheck: $(STAMP_TEST) ## mypy with django-stubs: the apps and tests, then bench/ and scripts/
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --cache-dir .mypy_cache/bench bench
	$(VENV)/bin/mypy --cache-dir .mypy_cache/scripts scripts

format: $(STAMP_TEST) ## ruff format + import sorting
	$(VENV)/bin/ruff check --select I --fix .
	$(VENV)/bin/ruff format .

check: $(STAMP_RUN) ## Django system checks and a missing-migration check
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run

screenshots: $(STAMP_TEST) ## refresh docs/screenshots/ from the demo data (a fresh embedded instance; Debian chromium)
	$(PY) scripts/screenshots.py $(ARGS)

bench: $(STAMP_TEST) ## the benchmarks in bench/ (best with DATABASE_URL and REDIS_URL)
	$(PY) bench/run.py $(ARGS)

bench-hotpath: $(STAMP_TEST) ## CPU and queries of one create and one decide, in-process (PostgreSQL; ~1 min)
	$(PY) bench/hotpath_bench.py $(ARGS)

bench-insights: $(STAMP_TEST) ## the insights page at 1,000,000 escalations (PostgreSQL; ~10 min)
	$(PY) bench/insights_bench.py $(ARGS)

bench-queue: $(STAMP_TEST) ## the queue at 100,000 open escalations and live notices on 100 sockets (PostgreSQL, Redis; ~5 min)
	$(PY) bench/queue_bench.py $(ARGS)

bench-metrics: $(STAMP_TEST) ## GET /metrics and the retention purge at 100,000 escalations (PostgreSQL, Redis; ~5 min)
	$(PY) bench/metrics_bench.py $(ARGS)

bench-precedents: $(STAMP_TEST) ## precedents (`similar`) at 1,000,000 escalations (PostgreSQL; ~10 min)
	$(PY) bench/precedents_bench.py $(ARGS)

bench-slack: $(STAMP_TEST) ## beat's Slack sweep and every other beat job at 1,000,000 escalations (PostgreSQL; ~10 min)
	$(PY) bench/slack_sweep_bench.py $(ARGS)

bench-all: bench bench-queue bench-insights bench-metrics bench-precedents bench-slack ## every benchmark, one after the other

clean: ## remove .venv and local state under var/ (the embedded database too)
	rm -rf $(VENV) var

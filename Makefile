# dealbooks: the verbs a newcomer uses. Every target does its own set-up.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export UV_PYTHON := python3.11
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
UV := .cache/bootstrap/bin/uv
PY := .venv/bin/python
TEST_PATHS := $(wildcard libs sandboxes services tests)
SRC_DIRS := $(wildcard libs/*/src sandboxes/*/src services/*/src)
PACKAGES := $(notdir $(filter-out %.egg-info,$(wildcard $(addsuffix /*,$(SRC_DIRS)))))
SPACE := $(subst ,, )

.PHONY: help venv infra browser up down status demo test unit lint fmt schemas bench chaos clean

help: ## list the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(UV):
	@python3.11 -m venv .cache/bootstrap && .cache/bootstrap/bin/pip install -q uv==0.13.9

venv: $(UV) ## create .venv with every package of the workspace
	@$(UV) sync --all-packages --locked --quiet

lint: venv ## ruff (format check + lint) and mypy
	@.venv/bin/ruff format --check .
	@.venv/bin/ruff check .
	@MYPYPATH=$(subst $(SPACE),:,$(SRC_DIRS)) .venv/bin/mypy --config-file pyproject.toml \
		$(foreach p,$(PACKAGES),-p $(p))

fmt: venv ## apply ruff formatting and safe fixes
	@.venv/bin/ruff format . && .venv/bin/ruff check --fix .

infra: venv ## download/build the local Kafka and FerretDB once (cached in .cache/)
	@$(PY) -m dealbooks_infra install

up: infra ## start the local stack in the background (REPLICAS=2: two processes per consumer service)
	@$(PY) -m dealbooks_infra up --replicas $(or $(REPLICAS),1)

down: ## stop what `make up` started (by recorded PID)
	@if [ -x $(PY) ]; then $(PY) -m dealbooks_infra down; fi

status: venv ## show what `make up` started
	@$(PY) -m dealbooks_infra status

demo: infra ## start everything, run the main job, show what happened, stop everything
	@$(PY) deploy/local/demo.py

browser: ## Debian's Chromium for the browser tests (installed when missing, as root)
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && { apt-get install -y -q chromium >/dev/null 2>&1 \
		|| { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }; } \
		|| echo "the browser tests need Debian's chromium: run 'apt-get install chromium' as root"

test: infra browser ## every test: unit, contracts, integration on real Kafka + FerretDB + sandboxes
	@TEST_REQUIRE_INFRA=1 $(PY) -m pytest -q $(TEST_PATHS)

unit: venv ## only the tests that need no servers
	@$(PY) -m pytest -q -m "not integration" $(TEST_PATHS)

schemas: venv ## regenerate the event JSON Schema snapshots and docs/openapi, docs/asyncapi
	@$(PY) -m dealbooks_contracts.schemas write
	@$(PY) docs/interfaces.py write

bench: infra ## benchmarks (reported, never asserted)
	@for b in tests/benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

chaos: infra ## crash anything, lose nothing: load, kills and faults, then invariants (CHAOS_ARGS=)
	@$(PY) tests/chaos/chaos.py $(CHAOS_ARGS)

clean: down ## remove the virtualenv, caches and local data
	@rm -rf .venv .local .cache .mypy_cache .ruff_cache

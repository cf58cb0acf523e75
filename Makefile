# dealbooks: the verbs a newcomer uses. Every target does its own set-up.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export UV_PYTHON := python3.11
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
UV := .cache/bootstrap/bin/uv
PY := .venv/bin/python

.PHONY: help venv infra up down status demo test unit lint fmt schemas bench clean

help: ## list the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(UV):
	@python3.11 -m venv .cache/bootstrap && .cache/bootstrap/bin/pip install -q uv==0.13.9

venv: $(UV) ## create .venv with every package of the workspace
	@$(UV) sync --all-packages --locked --quiet

lint: venv ## ruff (format check + lint) and mypy
	@.venv/bin/ruff format --check .
	@.venv/bin/ruff check .
	@.venv/bin/mypy --config-file pyproject.toml libs/*/src sandboxes/*/src services/*/src

fmt: venv ## apply ruff formatting and safe fixes
	@.venv/bin/ruff format . && .venv/bin/ruff check --fix .

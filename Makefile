# Two commands do all the set-up on a fresh machine with only python3:
#   make demo   -> creates .venv, installs tiering (core dependencies only), runs `tiering demo`
#   make test   -> creates .venv, installs tiering with test extras ([dev]), runs the test suite
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
CKSUM := $(shell cksum pyproject.toml | cut -d' ' -f1)
CORE = $(VENV)/.installed-core-$(CKSUM)
DEV = $(VENV)/.installed-dev-$(CKSUM)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(CORE): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	rm -f $(VENV)/.installed-core-*; touch $@

# [dev] holds the core dependencies too: it marks both installed
$(DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-*; touch $@ $(CORE)

install: $(CORE)

install-dev: $(DEV)

demo: $(CORE)
	$(BIN)/tiering demo

test: $(DEV)
	$(BIN)/python -m pytest -q

# ruff (lint and format) and mypy on src/, as CI runs them (settings in pyproject.toml; `ruff format src` fixes the format)
lint: $(DEV)
	$(BIN)/ruff check src
	$(BIN)/ruff format --check src
	$(BIN)/mypy

.PHONY: install install-dev demo test lint

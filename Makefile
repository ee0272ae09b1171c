# Two commands do all the set-up on a fresh machine with only python3:
#   make demo   -> creates .venv, installs tiering, runs `tiering demo`
#   make test   -> creates .venv, installs tiering with test extras, runs the test suite
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/tiering demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

.PHONY: install demo test

# Everyday targets. `make run` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: run test lint bench clean install install-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test,dev]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	$(BIN)/forgeyard validate pipelines/*.yml
	$(BIN)/forgeyard serve --host 127.0.0.1 --port 8080

test: install-test
	bash tests/services/install.sh
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Issue 7's benchmark: a markdown table on stdout, the same figures in bench/results/latest.json.
bench: install-test
	bash tests/services/install.sh
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: install-test
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

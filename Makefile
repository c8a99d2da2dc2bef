# Two commands on a fresh machine: `make run` (the server) and `make test` (the whole suite).
# Both bootstrap .venv idempotently: torch 2.13.0 first (CPU wheel), then the project with its dev extras.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
PYTEST_ARGS ?=

.PHONY: venv run lint test system-deps train-classifier train-agent bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: venv
	$(VENV)/bin/ecglens serve --host $(HOST) --port $(PORT)

system-deps:
	bash scripts/install-system-deps.sh

lint: venv
	$(VENV)/bin/ruff check backend tests benchmarks
	$(VENV)/bin/ruff format --check backend tests benchmarks

test: venv system-deps lint
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

train-classifier: venv
	$(VENV)/bin/ecglens train-classifier

train-agent: venv
	$(VENV)/bin/ecglens train-agent

bench: venv
	$(PY) benchmarks/explainers.py

clean:
	rm -rf $(VENV) var .pytest_cache

# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test bench fuzz lint proto clean install snapshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/otelcockpit --source demo

test: $(STAMP)
	sh scripts/ensure_postgres.sh
	$(PY) -m pytest -n 2 -q $(PYTEST_ARGS)

bench: $(STAMP)
	sh scripts/ensure_postgres.sh
	$(PY) -m pytest -q -m slow -p no:xdist bench $(PYTEST_ARGS)

# Hostile traffic against a real `serve`: 1,000,000 mutated messages (figures in BENCHMARKS.md).
FUZZ_MESSAGES ?= 1000000
fuzz: $(STAMP)
	$(PY) bench/fuzz_serve.py --messages $(FUZZ_MESSAGES) --seed 1

snapshots: $(STAMP)
	$(PY) -m pytest -q -p no:xdist tests/tui/test_snapshots.py --snapshot-update

lint: $(STAMP)
	$(VENV)/bin/ruff check otelcockpit tests bench

proto: $(STAMP)
	$(PY) scripts/gen_proto.py

clean:
	rm -rf $(VENV) build dist *.egg-info

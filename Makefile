# jaxdyn: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/default
CONFIG ?= configs/default.py
CLAIM ?=
PYTEST_ARGS ?=
NOTEBOOKS ?=

.PHONY: run test bench repro notebooks install install-test clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(VENV)/bin/activate pyproject.toml
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: $(VENV)/.installed
	$(PY) -m experiments.main --config=$(CONFIG) --workdir=$(WORKDIR)

test: $(VENV)/.installed-test
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

bench: $(VENV)/.installed
	@for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

repro: $(VENV)/.installed
	$(PY) -m experiments.repro $(if $(CLAIM),--claim=$(CLAIM),) --output=REPRODUCTION.md

# Checks that every colabs/<name>.py and its .ipynb are in sync and stripped, then executes every
# .ipynb with small settings (or only NOTEBOOKS=colabs/<name>.ipynb ...).
notebooks: $(VENV)/.installed-test
	$(PY) -m experiments.notebooks $(NOTEBOOKS)

clean:
	rm -rf runs .pytest_cache

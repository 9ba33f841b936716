# Two entry points, both self-contained on a machine with only Python and make:
#   make demo  -- create .venv, install scalarjax, run the main job on the embedded default data
#   make test  -- create .venv, install scalarjax with its test extras, run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# The demo needs only the core dependencies (ASE brings matplotlib for the plots); the tests add theirs.
CORE := $(VENV)/.installed-core

$(CORE): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $(CORE)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP) $(CORE)

demo: $(CORE)
	$(PY) -m scalarjax.launch -m scalarjax.demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	SCALARJAX_COMPILATION_CACHE=none $(PY) -m scalarjax.launch -m pytest -q -n auto --maxprocesses 4 tests

bench: $(STAMP)
	$(PY) experiments/bench_inference.py

clean:
	rm -rf $(VENV) build *.egg-info

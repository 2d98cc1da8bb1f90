# gan-cli developer commands. `make train` and `make test` are all a new user needs.
#
# Inside an active virtual environment the commands use it; otherwise they create
# and use .venv next to this file.

ifdef VIRTUAL_ENV
VENV := $(VIRTUAL_ENV)
else
VENV := .venv
endif
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip --disable-pip-version-check -q
PYTEST_ARGS ?=

.PHONY: train test test-all bench bench-quick install dev clean

train: $(VENV)/.installed ## install the package and run the default training (DCGAN on digits)
	$(VENV)/bin/gan-train $(ARGS)

test: $(VENV)/.installed-dev ## install .[dev] and run the tests, slow ones excluded
	$(PYTHON) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: $(VENV)/.installed-dev ## every test, the slow ones too
	$(PYTHON) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-bench ## every benchmark (about 10 hours on 2 cores) -> benchmarks/results.md
	$(PYTHON) benchmarks/run_all.py

bench-quick: $(VENV)/.installed-bench ## every benchmark, short runs (a few minutes) -> benchmarks/results-quick.md
	$(PYTHON) benchmarks/run_all.py --quick

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

$(PYTHON):
	python3 -m venv $(VENV)

# Editable installs, redone when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(PYTHON)
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PYTHON)
	$(PIP) install -e ".[dev]"
	touch $@ $(VENV)/.installed

$(VENV)/.installed-bench: pyproject.toml | $(PYTHON)
	$(PIP) install -e ".[bench]"
	touch $@ $(VENV)/.installed

clean: ## remove build leftovers (never outputs/)
	rm -rf build dist *.egg-info .pytest_cache

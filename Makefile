# Two commands set everything up on a fresh machine with Python 3.11+ and make:
#   make demo   runs ToonVision end to end on the built-in synthetic dataset (workspace: demo/)
#   make test   runs the linter, the format check and the test suite
# Both create or refresh .venv (pip install -e '.[dev]') whenever pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_ROOT ?= demo

.PHONY: demo test lint bench venv clean-demo

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ToonVision needs Python 3.11 or newer (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

demo: $(STAMP)
	$(BIN)/toonvision demo --root $(DEMO_ROOT)

test: lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup --no-loadscope-reorder

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools

bench: $(STAMP)
	@for script in benchmarks/[a-z]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean-demo:
	rm -rf $(DEMO_ROOT)

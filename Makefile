# Two commands do all set-up on a fresh machine with Python 3.11:
#   make demo   creates .venv, installs the platform, runs the demo flow
#   make test   creates .venv with the test extras, runs the whole suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast check lint typecheck format bench bench-full clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,spark,ray]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sandbox demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not postgres and not mysql and not spark and not ray and not browser"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy with the settings in pyproject.toml ([tool.mypy]): strict on policies/ and jobs/.
typecheck: $(STAMP)
	$(BIN)/python -m mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

check: lint typecheck test

# make bench: every bench script in its quick mode (small sizes, minutes in all);
# make bench-full: the full figures (10M rows, 1M items; more than half an hour).
# Each run also writes its figures as JSON under bench/results/ (see bench/README.md).
bench: $(STAMP)
	@for script in bench/[a-z]*.py; do echo "== $$script --quick"; $(BIN)/python $$script --quick || exit 1; done

bench-full: $(STAMP)
	@for script in bench/[a-z]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info bench/data

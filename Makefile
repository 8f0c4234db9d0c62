# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck check bench bench-smoke clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## run a text and an embedding batch over the sample data on the local emulator
	$(BIN)/python examples/demo.py

test: $(STAMP)  ## the whole test suite, lint and type checks, and a smoke run of the benchmarks
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks
	$(BIN)/mypy
	$(BIN)/pytest
	$(BIN)/python benchmarks/run.py --smoke
	$(BIN)/python benchmarks/first_clients.py --repeats 1

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)  ## the benchmarks of issue 5, medians of 3 fresh processes (25-55 minutes; BENCH_ARGS=...)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

bench-smoke: $(STAMP)  ## every benchmark once at a tiny size (seconds), so that they cannot rot
	$(BIN)/python benchmarks/run.py --smoke
	$(BIN)/python benchmarks/first_clients.py --repeats 1

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Two commands for a newcomer: `make run` and `make test`. Everything else is for the inner loop.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install run test test-fast test-backends lint format screenshots bench bench-quick bench-gpu clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,train,demo,distributed,onnx]'
	touch $@

## run: install, build the starter model, build the demo index, serve on http://$(HOST):$(PORT)
run: install
	$(BIN)/clipsearch demo --host $(HOST) --port $(PORT)

## test: everything CI runs: lint, then the whole suite including slow tests
test: install lint
	$(BIN)/pytest -q -ra --durations=15

## test-fast: the quick inner loop (no slow tests)
test-fast: install
	$(BIN)/pytest -q -m "not slow" -x

## test-backends: the whole suite again with torch, then with onnx, as the default backend
## (`make test` runs it with the default, auto); 35–45 min each on 2 cores
test-backends: install
	$(BIN)/pytest -q -ra --default-backend torch
	$(BIN)/pytest -q -ra --default-backend onnx

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## bench: the benchmark suite (< 15 min on 2 cores); updates the table in docs/benchmarks.md
bench: install
	$(BIN)/python -m benchmarks.run_all --write-docs

## bench-quick: the same suite at small sizes (a few minutes), docs untouched
bench-quick: install
	$(BIN)/python -m benchmarks.run_all --quick

## bench-gpu: the GPU check on a CUDA machine (< 8 min): gpu tests, indexer, training, server;
## writes benchmarks/results/gpu_check.json and the GPU table in docs/benchmarks.md
bench-gpu: install
	$(BIN)/python -m benchmarks.gpu_check

## screenshots: refresh docs/screenshots from the browser tests
screenshots: install
	CLIPSEARCH_SCREENSHOTS=docs/screenshots $(BIN)/pytest -q tests/web

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info

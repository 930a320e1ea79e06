# Two set-up commands for a fresh clone: `make demo` and `make test` (both create .venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-full test test-slow bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m experiments.demo --out=out/demo

demo-full: $(STAMP)
	$(BIN)/python -m experiments.demo --out=out/demo --tiny_classes=all --tiny_iters=0

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow tests

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_convert.py
	$(BIN)/python benchmarks/bench_caffe_decode.py
	$(BIN)/python benchmarks/bench_demo.py

clean:
	rm -rf $(VENV) out/demo .pytest_cache

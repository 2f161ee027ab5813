# One entry point for setting up, running and testing testtime. Everything a test needs is
# installed from this repository's own files (pyproject extras); nothing by hand.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MODEL ?= qwen2.5-coder-0.5b
PYTEST_ARGS ?=
# CI runs everything except the slow real-model checks, plus the slow ones also marked 'ci'.
MARKERS ?= not slow or ci

.PHONY: setup setup-dev demo test lint typecheck check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

setup: $(BIN)/python
	$(BIN)/pip install -q -e '.[embedded,serve,eval]'

setup-dev: $(BIN)/python
	$(BIN)/pip install -q -e '.[embedded,serve,eval,ray,hf,dev,code,diffusion]'
	@# the code sandbox's boxes (docs/code-verification.md) need util-linux's unshare/setpriv
	@command -v unshare >/dev/null && command -v setpriv >/dev/null && command -v mount >/dev/null \
		|| { [ "$$(id -u)" = 0 ] && apt-get install -y -q util-linux mount >/dev/null; } \
		|| echo "warning: no unshare/setpriv: code verification will refuse untrusted code"
	@# the report's browser test (tests/eval/test_report_browser.py) drives Debian's chromium
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null \
		|| { [ "$$(id -u)" = 0 ] && apt-get install -y -q chromium chromium-driver >/dev/null; } \
		|| echo "warning: no chromium/chromedriver: the report's browser test will be skipped"

# A first look in minutes: one sample vs the majority of 5 on the same 16 problems. One problem
# at a time and no prompt cache, so every call is computed in the same batches and the seed
# reproduces its samples (docs/backends.md, "What a seed reproduces").
DEMO_TASK ?= arith:level=3+4
DEMO_LIMIT ?= 16
DEMO_STRATEGY ?= self-consistency:n=5,max_tokens=256

demo: setup
	$(BIN)/testtime pull $(MODEL)
	$(BIN)/testtime run --task $(DEMO_TASK) --limit $(DEMO_LIMIT) --strategy $(DEMO_STRATEGY) \
		--backend embedded:$(MODEL),cache=false --seed 0 --concurrency 1 --out runs/demo.jsonl

test: setup-dev
	$(BIN)/testtime pull smollm2-135m
	$(BIN)/testtime pull qwen2.5-coder-0.5b
	$(BIN)/python -m pytest -q -m "$(MARKERS)" $(PYTEST_ARGS)

lint: setup-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

check: lint test

bench: setup
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache runs

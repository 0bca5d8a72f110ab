# Two entry points for a fresh machine: `make quickstart` (set up, run the offline pipeline) and
# `make test` (set up, lint, run the tests). The venv is built from requirements.lock, pinned exactly.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.10
# uv installs the lock about 3x faster than pip (measured: 49 s vs 141 s); wheels of a local mirror, where the
# machine has one, are taken before PyPI's.
WHEELS := $(wildcard /opt/pypi-more/files /opt/wheels)

.PHONY: setup test lint browser quickstart clean

$(BIN)/img2prompt: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps --compile-bytecode $(addprefix --find-links ,$(WHEELS)) \
		-r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $@

setup: $(BIN)/img2prompt

lint: setup
	$(BIN)/ruff check src tests benchmarks

# Headless Chromium for the web page's end-to-end test (Debian packages; CI runs as root with apt reachable).
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then echo "browser: chromium and chromedriver already installed"; \
	else apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; fi

# One pytest worker per core (each with one compute thread: tests/conftest.py), the slowest modules first; the 10
# slowest tests listed at the end (benchmarks/RESULTS.md keeps them).
test: lint browser
	$(BIN)/python -m pytest -q -n auto --dist loadfile --durations=10

quickstart: setup
	$(BIN)/img2prompt quickstart

clean:
	rm -rf $(VENV) runs

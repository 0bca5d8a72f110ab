# Two entry points for a fresh machine: `make quickstart` (set up, run the offline pipeline) and
# `make test` (set up, lint, run the tests). The venv is built from requirements.lock, pinned exactly.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup test lint browser quickstart clean

$(BIN)/img2prompt: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --no-deps -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

setup: $(BIN)/img2prompt

lint: setup
	$(BIN)/ruff check src tests benchmarks

# Headless Chromium for the web page's end-to-end test (Debian packages; CI runs as root with apt reachable).
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then echo "browser: chromium and chromedriver already installed"; \
	else apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; fi

test: lint browser
	$(BIN)/python -m pytest -q

quickstart: setup
	$(BIN)/img2prompt quickstart

clean:
	rm -rf $(VENV) runs

# The two commands of the README: `make run` and `make test`. Both set up what they need first.
# Set-up is idempotent: the venv is rebuilt only when pyproject.toml changes.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run test lint format bench clean system-deps browser-deps

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Debian: apt-get install -y python3.11 python3.11-venv)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# redis-server is needed by `make run` and by the tests (they start their own when none answers).
system-deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq redis-server; \
	  else echo "note: redis-server not found (Debian: sudo apt-get install -y redis-server)"; fi; }

# Debian's chromium and chromium-driver: the console's browser tests drive them (never a downloaded browser).
browser-deps:
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium chromium-driver; \
	  else echo "note: chromium not found (Debian: sudo apt-get install -y chromium chromium-driver); the browser tests will fail"; fi; }

run: setup system-deps
	$(BIN)/agilegan up

# Two steps: the tests that mostly wait on their subprocesses (workers, APIs, Redis) two at a time, one
# file per process (module fixtures built once); then the `serial` ones (timing and memory bounds) alone.
TEST_PROCESSES ?= 2
test: setup system-deps browser-deps
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n $(TEST_PROCESSES) --dist loadfile -m "not serial"
	$(BIN)/python -m pytest -q -m serial

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup
	$(BIN)/python bench/generator.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

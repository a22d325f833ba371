# Two commands on a fresh machine: `make demo` and `make test`.
# Everything installs into .venv from requirements.txt (exact pins) plus three distributions, all
# editable: gdpr-erasure (the runtime package, the only one a production image holds), the API
# sandbox (include/sandbox, the extra gdpr-erasure[sandbox]) and the development harnesses
# (include/devstack: the demo, the local and compose stacks). README, "Layout".
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-fast test-dag test-stack demo lint format clean browser screenshots bench

$(STAMP): requirements.txt pyproject.toml include/sandbox/pyproject.toml include/devstack/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e . -e include/sandbox -e include/devstack
	$(PY) -m pip check
	touch $(STAMP)

install: $(STAMP)

# The browser test drives Debian's Chromium (Playwright's own browser download is not possible here).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

test: $(STAMP) browser
	$(PY) -m ruff format --check .
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

# One tier each (tests/conftest.py gives every test its tier; README, "Development"). `make test`
# above runs all of them and stays what CI runs. test-fast runs the unit tier on every core
# (pytest-xdist; each test file stays on one worker, for its module fixtures).
TEST_FAST_WORKERS ?= auto

test-fast: $(STAMP)
	$(PY) -m pytest -m unit -n $(TEST_FAST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-dag: $(STAMP)
	$(PY) -m pytest -m dag $(PYTEST_ARGS)

test-stack: $(STAMP) browser
	$(PY) -m pytest -m stack $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) -m devstack.demo

# Throughput benchmark on the LocalExecutor stack (local PostgreSQL and Redis): prints a table
# and writes it with a plot into docs/benchmarks.md and docs/benchmarks.png (~12 min here). Then
# the runs at the providers' limits (include/bench/limits_bench.py, LocalExecutor and Celery with
# two workers, ~45 min): docs/benchmarks.json, its section and docs/benchmarks-limits.png.
# BENCH_ARGS="--parts limits --limit-sizes 100" for a quick one.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(PY) -m pip install --quiet -r requirements-bench.txt
	$(PY) -m pip check
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) include/bench/throughput.py $(BENCH_ARGS)

# Regenerate the screenshots in README and docs/ with the browser tests (marker browser).
screenshots: $(STAMP) browser
	GDPR_SCREENSHOTS_DIR=docs/screenshots $(PY) -m pytest tests/stack -m browser -q

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf .demo .pytest_cache .ruff_cache

# Every target prepares what it needs: a virtual environment with thidua and its test tools.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo test test-unit test-integration test-e2e lint bench chaos postgres tools migration clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/thidua up

demo: $(STAMP)
	$(BIN)/thidua demo

# The storage tests run on SQLite and on PostgreSQL (TEST_DATABASE_URL, by default the local server).
test: $(STAMP) postgres tools
	$(BIN)/pytest

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

test-integration: $(STAMP) postgres tools
	$(BIN)/pytest tests/integration

test-e2e: $(STAMP) postgres tools
	$(BIN)/pytest tests/e2e

# The national benchmark on SQLite and on the local PostgreSQL server (see README: Benchmark).
GRASSROOTS ?= 135000
BENCH_POSTGRES ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
BENCH_FLAGS ?=
bench: $(STAMP) postgres
	$(BIN)/thidua bench national --grassroots $(GRASSROOTS) --database sqlite $(BENCH_FLAGS)
	$(BIN)/thidua bench national --grassroots $(GRASSROOTS) --database $(BENCH_POSTGRES) $(BENCH_FLAGS)

# Fault injection on the local PostgreSQL server (see README: Faults).
CHAOS_FLAGS ?=
chaos: $(STAMP) postgres
	$(BIN)/thidua chaos --database $(BENCH_POSTGRES) $(CHAOS_FLAGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# Start the local PostgreSQL server when it is installed but stopped.
postgres:
	@if [ -z "$$TEST_DATABASE_URL" ] && command -v pg_isready >/dev/null 2>&1 \
	    && ! pg_isready -q -h 127.0.0.1 -p 5432 && [ -d /etc/postgresql ]; then \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
	  for i in $$(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; \
	fi

# promtool (Debian's prometheus package) tests the alert rules.
# Debian's prometheus (promtool tests the alert rules) and chromium (the browser tests drive it).
tools:
	@if ! command -v promtool >/dev/null 2>&1 || [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends prometheus chromium >/dev/null; \
	  else echo "The tests need Debian's prometheus and chromium packages (apt-get install prometheus chromium)."; exit 1; fi; \
	fi

# A new Alembic revision from a service's models: make migration SERVICE=plans MESSAGE="what changed"
migration: $(STAMP)
	$(BIN)/python -m shared.migrations $(SERVICE) "$(MESSAGE)"

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .mypy_cache

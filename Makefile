# The two commands a newcomer needs: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# PostgreSQL for the second test pass (trust auth on this machine kind); the tests make a scratch database.
TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test
# Two pytest-xdist workers (one per core), a test file's tests on one worker; PYTEST_PARALLEL= runs serially.
PYTEST_PARALLEL ?= -n 2 --dist loadfile

.PHONY: demo test lint typecheck test-sqlite test-postgres serve lock clean docs browser bench bench-full compose

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/zorgpad demo

serve: $(STAMP)
	$(BIN)/zorgpad serve

lint: $(STAMP)
	$(BIN)/ruff check .

# mypy must see the import names (zorgpad.engine, …): check through a link tree shaped like the package.
typecheck: $(STAMP)
	rm -rf build/typecheck && mkdir -p build/typecheck/zorgpad
	for d in engine pathways fhir; do ln -s ../../../$$d build/typecheck/zorgpad/$$d; done
	cd build/typecheck && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p zorgpad.engine -p zorgpad.pathways

# The dashboard's browser tests drive Debian's chromium through Playwright (never `playwright install`).
browser:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)

# Where the Docker CLI has no compose plugin, Debian's docker-compose validates docker/compose.yaml in the tests.
compose:
	! command -v docker >/dev/null || docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null \
	  || (apt-get update && apt-get install -y --no-install-recommends docker-compose)

test-sqlite: $(STAMP) browser compose
	$(BIN)/pytest --db sqlite $(PYTEST_PARALLEL)

test-postgres: $(STAMP) browser compose
	$(BIN)/pytest --db $(TEST_POSTGRES_URL) $(PYTEST_PARALLEL)

# Lint, types, then the whole suite once on SQLite and once on PostgreSQL.
test: lint typecheck test-sqlite test-postgres

# After changing a pathway on purpose: redraw the diagrams in docs/pathways.md and rewrite the golden exports.
docs: $(STAMP)
	$(BIN)/python docs/regenerate.py

# Issue #7's benchmarks beside their baselines, written to docs/benchmarks.md: reduced sizes (a few minutes)
# or the full sizes (hours, docs/benchmarks-full.md). BENCH_DB=postgresql://… runs them on PostgreSQL and
# writes docs/benchmarks-postgresql.md and docs/benchmarks-full-postgresql.md instead.
BENCH_DB ?= sqlite
BENCH_ON = $(if $(filter sqlite,$(BENCH_DB)),,-postgresql)

bench: $(STAMP)
	$(BIN)/python -m bench --db $(BENCH_DB) --out docs/benchmarks$(BENCH_ON).md

bench-full: $(STAMP)
	$(BIN)/python -m bench --full --db $(BENCH_DB) --out docs/benchmarks-full$(BENCH_ON).md

# Re-resolve the pinned set after changing dependencies in pyproject.toml.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e . ruff mypy pytest pytest-timeout pytest-xdist hypothesis schemathesis fhirpy playwright
	(echo "# Exact versions of every dependency, resolved together (make lock regenerates this file)."; \
	 .lock-venv/bin/pip freeze --exclude-editable | grep -iv "^zorgpad"; echo setuptools==84.2.1; echo wheel==0.48.0) > requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) build *.egg-info zorgpad.db*

# fivedocks: `make run` sets up and serves the app; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# Runs a command with DATABASE_URL set: when it is unset (environment and .env), the embedded
# PostgreSQL in .pgdata/ is started first (settings never start a database themselves).
WITH_DB := $(PY) -m fivedocks.embedded_db run

.PHONY: run test install lint format bench db-stop clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

.env:
	$(PY) scripts/make_env.py .env.example .env

# A small generated KV store in the platform's layout (ids from 1000, a few malformed records),
# moved by kvmigrate on every `make run` (a no-op after the first): a newcomer sees data.
.demo/kv.jsonl: | install .env
	mkdir -p .demo
	$(WITH_DB) -- $(PY) manage.py kvgen --users 40 --start-id 1000 --seed 7 --malformed-share 0.05 \
		--out .demo/kv.jsonl --users-out .demo/users.csv

# The embedded PostgreSQL (when DATABASE_URL is unset) stays up after `make run`: `make db-stop`.
run: install .env .demo/kv.jsonl
	$(WITH_DB) -- $(PY) manage.py migrate --noinput
	$(WITH_DB) -- $(PY) manage.py collectstatic --noinput --verbosity 0
	$(WITH_DB) -- $(PY) manage.py kvmigrate --source .demo/kv.jsonl --users-from .demo/users.csv \
		--report .demo/kvmigrate-report.json || [ $$? -eq 3 ]  # 3: some records quarantined (on purpose)
	$(WITH_DB) -- $(PY) manage.py demo_setup --url http://$(HOST):$(PORT)
	$(WITH_DB) -- $(PY) manage.py runserver $(HOST):$(PORT)

# The embedded PostgreSQL (when DATABASE_URL is unset) is stopped afterwards if this started it.
# PYTEST_ARGS narrows the run, e.g. `make test PYTEST_ARGS="credits -k ledger"`.
PYTEST_ARGS ?=
test: install
	$(WITH_DB) --stop-after -- $(VENV)/bin/pytest -n 2 $(PYTEST_ARGS)

# ruff, the dependency rules between the apps (import-linter, `.importlinter`), then the types of
# the services and selectors (mypy with django-stubs, `mypy.ini`).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --config .importlinter
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Every benchmark under bench/ (needs PostgreSQL on 127.0.0.1:5432 and Redis on 6379); one table
# in bench/results.md. BENCH_ARGS=--quick for a rough look. wrk is installed when missing and
# possible (Debian, root); otherwise the bench falls back to its Python load generator.
bench: install
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } || \
		echo "wrk not installed: using bench/loadgen.py"
	$(PY) -m bench.run_all $(BENCH_ARGS)

db-stop: install
	$(PY) -m fivedocks.embedded_db stop

clean:
	rm -rf $(VENV) staticfiles

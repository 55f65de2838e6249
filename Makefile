# Every target sets up what it needs first: `make demo` and `make test` work on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: help install ceph chromium postgres demo dev dev-postgres replay test test-fast lint fmt env-example reliability-doc infra-check lambda-package bench clean

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## /  make \1\t/' | expand -t 24

install: $(VENV)/.installed .dagster_home/dagster.yaml  ## .venv with the project, the replay and the dev tools; .dagster_home

# Reinstall when the pins change. constraints.txt pins the whole tree that the tests ran with.
$(VENV)/.installed: setup.py constraints.txt replay/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]' -e replay
	touch $@

# Ceph RGW, the real S3 server of the storage and Lambda tests (apt-get, as root; else skipped).
ceph:
	bash scripts/install_ceph.sh

# Debian's Chromium, the browser of the UI test (apt-get, as root; else skipped).
chromium:
	bash scripts/install_chromium.sh

# Debian's PostgreSQL, the server of the production instance's tests (apt-get, as root; else skipped).
postgres:
	bash scripts/install_postgres.sh

demo: install  ## replay API -> a month of USA into ./warehouse, then a summary
	$(PY) -m covid_pipeline_replay.demo

# `dg` expects the project's venv activated; VIRTUAL_ENV says it is, without a shell to source.
DG := VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg

dev: install  ## the Dagster UI and daemon on http://127.0.0.1:3000 (reads .env if present)
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(DG) dev --host 127.0.0.1 --port 3000

# The production instance in one command: a local PostgreSQL in .postgres (port 5433, kept
# between runs), then the webserver and the daemon as separate processes, as in production.
PG_ENV := DAGSTER_HOME=$(CURDIR)/.dagster_home_postgres DAGSTER_PG_HOST=127.0.0.1 \
	DAGSTER_PG_PORT=5433 DAGSTER_PG_USER=postgres DAGSTER_PG_PASSWORD= DAGSTER_PG_DB=dagster \
	DAGSTER_EVENT_BATCH_SIZE=100 DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=true
dev-postgres: install postgres  ## the UI and daemon on the production instance (PostgreSQL), http://127.0.0.1:3000
	$(PY) -m covid_pipeline_tests.support.postgres_server --dir .postgres --port 5433 --db dagster
	mkdir -p .dagster_home_postgres
	cp dagster-instance.postgres.yaml .dagster_home_postgres/dagster.yaml
	$(PG_ENV) $(BIN)/dagster-daemon run -w workspace.yaml & daemon=$$!; \
	trap 'kill $$daemon' EXIT INT TERM; \
	$(PG_ENV) $(BIN)/dagster-webserver -h 127.0.0.1 -p 3000 -w workspace.yaml

# The instance's configuration is kept in the repository (not named dagster.yaml: Dagster
# warns about a dagster.yaml in the working directory); the instance itself is not.
.dagster_home/dagster.yaml: dagster-instance.yaml
	mkdir -p .dagster_home
	cp dagster-instance.yaml $@

replay: install  ## the replay API alone, on http://127.0.0.1:8000/api
	$(PY) -m covid_pipeline_replay --port 8000

test: install ceph chromium postgres  ## everything: the UI in Chromium, backfills stopped and re-run, the Lambda zip, faults, Ceph RGW, PostgreSQL (about 11 minutes)
	$(PY) -m pytest -n 2

test-fast: install  ## everything but the end-to-end tests (about 2 minutes)
	$(PY) -m pytest -n 2 -m "not slow"

env-example: install  ## rewrite .env.example and the README's table from core/config.py's table
	$(PY) -m covid_pipeline_tests.support.settings_docs .

reliability-doc: install  ## rewrite docs/reliability.md's table from the tests' reliability marks
	$(PY) -m covid_pipeline_tests.support.reliability

lint: install  ## ruff, mypy (strict on covid_pipeline/core), then dg check defs
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(DG) check defs

fmt: install  ## ruff: fix and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install postgres  ## the backfill benchmark: project vs peers, both replay profiles, the reporting table (docs/performance.md)
	$(PY) benchmarks/bench.py $(BENCH_ARGS)

# The peers of the benchmark (dlt, awswrangler, pyarrow) in a venv of their own, pinned.
.venv-peers/.installed: benchmarks/peers-requirements.txt benchmarks/peers.lock
	python3 -m venv .venv-peers
	.venv-peers/bin/python -m pip install --quiet --upgrade pip
	.venv-peers/bin/python -m pip install --quiet -c benchmarks/peers.lock -r benchmarks/peers-requirements.txt
	touch $@

lambda-package: install  ## dist/lambda.zip for python3.12 x86_64; fails over Lambda's size limit
	$(PY) scripts/build_lambda.py --out dist/lambda.zip

# SAM -> CloudFormation, then cfn-lint and checkov, offline, in a venv of their own.
infra-check: .venv-infra/.installed  ## infra/template.yaml: SAM translation, cfn-lint, checkov (offline)
	.venv-infra/bin/python infra/validate.py

.venv-infra/.installed: infra/requirements.txt infra/requirements.lock
	python3 -m venv .venv-infra
	.venv-infra/bin/python -m pip install --quiet --upgrade pip
	.venv-infra/bin/python -m pip install --quiet -c infra/requirements.lock -r infra/requirements.txt
	touch $@

clean:  ## remove the venvs, the warehouse, the Dagster homes and the local PostgreSQL
	-[ -f .postgres/data/postmaster.pid ] && $(PY) -m covid_pipeline_tests.support.postgres_server --dir .postgres --stop
	rm -rf $(VENV) .venv-infra .venv-peers build warehouse .dagster_home .dagster_home_postgres .postgres .pytest_cache .ruff_cache

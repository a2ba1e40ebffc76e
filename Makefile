# Marketing Hub: setup, run, test and benchmark.
#
#   make run      set up (once) and serve the console on http://127.0.0.1:5000
#   make test     set up with the test tools and run the whole pytest suite (PostgreSQL + Redis)
#   make bench    load benchmarks against gunicorn on PostgreSQL + Redis (bench/run.py)
#   make worker   an RQ worker  } only when REDIS_URL is set; the embedded default runs
#   make cron     the RQ cron   } both inside the web process
#
# Setup steps leave stamp files, so they run again only when their inputs change.

SHELL  := /bin/bash
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
FLASK  := $(BIN)/flask --app wsgi
HOST   ?= 127.0.0.1
PORT   ?= 5000

RUNTIME_STAMP := $(VENV)/.requirements.stamp
DEV_STAMP     := $(VENV)/.requirements-dev.stamp
NODE_STAMP    := node_modules/.npm-ci.stamp
ASSETS_STAMP  := static/vendor/.built.stamp

# One .mo per catalogue; with no catalogue yet there is simply nothing to compile.
PO_FILES := $(wildcard translations/*/LC_MESSAGES/messages.po)
MO_FILES := $(PO_FILES:.po=.mo)

.PHONY: run test bench worker cron setup setup-dev assets translations extract-messages db clean help
.DEFAULT_GOAL := help

help:
	@sed -n '3,8p' Makefile | sed 's/^# *//'

# --- Python ---------------------------------------------------------------------------------

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME_STAMP): requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(RUNTIME_STAMP)

# --- Front-end assets (npm registry -> node_modules -> static/vendor) ----------------------

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

$(ASSETS_STAMP): $(NODE_STAMP) scripts/build_assets.mjs
	npm run --silent build
	touch $@

assets: $(ASSETS_STAMP)

# --- Translations ---------------------------------------------------------------------------

translations/%/LC_MESSAGES/messages.mo: translations/%/LC_MESSAGES/messages.po | $(RUNTIME_STAMP)
	$(BIN)/pybabel compile -d translations -l $*

translations: $(MO_FILES)

# Refresh the message template from the code (the catalogues themselves are edited by hand).
extract-messages: $(RUNTIME_STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext --sort-by-file \
		--project "Marketing Hub" -o translations/messages.pot .

# --- Run ------------------------------------------------------------------------------------

setup: $(RUNTIME_STAMP) assets translations

# Both commands are idempotent: a no-op at the head revision, and demo data created once.
db: $(RUNTIME_STAMP)
	$(FLASK) db upgrade
	$(FLASK) demo seed

# With DATABASE_URL / REDIS_URL unset this is the embedded default (SQLite under instance/,
# fakeredis, and an RQ worker and cron thread started by the first request).
run: setup db
	@echo "Marketing Hub on http://$(HOST):$(PORT)/  (demo accounts: see README.md)"
	$(FLASK) run --host $(HOST) --port $(PORT) --no-reload --no-debugger

worker: $(RUNTIME_STAMP)
	@test -n "$$REDIS_URL" || { echo "REDIS_URL is not set: the embedded default runs its own worker inside 'make run'"; exit 2; }
	$(BIN)/rq worker --worker-class jobs.worker.AppWorker --url "$$REDIS_URL" outbox default reports

cron: $(RUNTIME_STAMP)
	@test -n "$$REDIS_URL" || { echo "REDIS_URL is not set: the embedded default runs its own cron inside 'make run'"; exit 2; }
	$(BIN)/rq cron --url "$$REDIS_URL" jobs/cron.py

# --- Test and benchmark ---------------------------------------------------------------------

setup-dev: $(DEV_STAMP) assets translations

# On PostgreSQL and Redis: TEST_DATABASE_URL / TEST_REDIS_URL, defaults in app/config.py
# (TestConfig). The browser tests drive /usr/bin/chromium (override with CHROMIUM=...).
test: setup-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup-dev
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules static/vendor test-artifacts bench/results
	find translations -name '*.mo' -delete

# Docket: `make run` serves the demo on this machine; `make test` runs the whole suite on real services.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

# The suite proves things on PostgreSQL, Redis and a real Celery worker, never on SQLite.
# TEST_DB_NAME and TEST_BROKER_URL let two checkouts run the suite side by side without meeting.
# The app (tests, live server, worker) connects as docket_app, which owns nothing and may only INSERT and SELECT
# on the audit log; docket_owner creates the test database and runs migrations (docs/security.md).
TEST_ENV := DOCKET_DEVELOPMENT=1 \
	DATABASE_URL=$${TEST_DATABASE_URL:-postgres://docket_app:docket_app@127.0.0.1:5432/$${TEST_DB_NAME:-docket}} \
	DATABASE_OWNER_URL=$${TEST_DATABASE_OWNER_URL:-postgres://docket_owner:docket_owner@127.0.0.1:5432/$${TEST_DB_NAME:-docket}} \
	CELERY_BROKER_URL=$${TEST_BROKER_URL:-redis://127.0.0.1:6379/15} \
	CELERY_RESULT_BACKEND=django-db \
	DOCKET_VAR_DIR=$(CURDIR)/var/test

.PHONY: run test lint format install services chromium migrate demo clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --progress-bar on -r requirements.txt
	touch $@

install: $(VENV)/.installed

migrate: install
	DOCKET_DEVELOPMENT=1 $(PY) manage.py migrate --noinput

demo: migrate
	DOCKET_DEVELOPMENT=1 $(PY) manage.py load_demo

# Web server and Celery worker together on the embedded defaults (SQLite, file-system broker); Ctrl-C stops both.
run: demo
	@echo ""
	@echo "Docket is starting at http://$(HOST):$(PORT)/  (Ctrl-C stops the web server and the worker)"
	@echo ""
	@DOCKET_DEVELOPMENT=1 DEBUG=1 bash -c 'trap "kill 0" INT TERM EXIT; \
		$(PY) -m celery -A config worker --loglevel=INFO --concurrency=2 & \
		$(PY) manage.py runserver $(HOST):$(PORT) & \
		wait'

services:
	bash .ci/ensure-services.sh

chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: install services chromium lint
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf var/test var/broker var/celery-results

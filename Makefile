# Tenure: the two commands are `make demo` and `make test`; both do all set-up themselves.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
PYTEST_ARGS ?=

.PHONY: install lint peers postgres test test-fast demo demo-stop ui-check stress bench bench-webhook clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	@touch $@

install: $(VENV)/.installed  ## create .venv and install Tenure with its test extras

lint: install  ## ruff (lint + format check) and mypy (strict) on lifecycle/, connectors/, engine/, models/
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy lifecycle connectors engine models

peers:  ## install the real local peers the tests run against (slapd, Request Tracker 5, Chromium)
	@bash scripts/install-peers.sh

postgres:  ## make sure the local PostgreSQL is up
	@bash scripts/ensure-postgres.sh

test: install lint peers postgres  ## the whole suite: unit, contract (real peers) and end-to-end (real Prefect server)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install  ## unit tests only
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

stress: install peers postgres  ## the reliability harness at full size (faults, crashes, fuzzing: TENURE_STRESS=1)
	TENURE_STRESS=1 $(PY) -m pytest tests/reliability -s $(PYTEST_ARGS)

demo: install peers  ## a day in the life: local Prefect server + UI, worker, scim2-server, RT; DEMO_ARGS=--once to stop at the end
	$(PY) -m sandbox.demo $(DEMO_ARGS)

demo-stop:  ## stop what `make demo` started
	-$(PY) -m sandbox.demo --stop

ui-check:  ## headless Chromium checks the Prefect UI shows the demo's runs (screenshot in test-artifacts/)
	$(PY) scripts/ui_check.py $(UI_CHECK_ARGS)

bench-webhook: install  ## webhook → account active latency through a real Prefect server: process worker and lifecycle runner (BENCH_ARGS=--hires 10 --poll-seconds 1,10 --runners worker,in-process)
	$(PY) bench/webhook_latency.py $(BENCH_ARGS)

clean:
	rm -rf .tenure .pytest_cache .hypothesis

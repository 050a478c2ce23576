# The two set-up commands are `make run` and `make test`; everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
NANOBOT_HOME ?= $(HOME)/.nanobot

.PHONY: run test lint format bench deploy-test clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## run: create the venv, install, onboard if there is no config yet, then chat
## (without a usable model it stops after onboarding with one line saying what to set)
run: $(BIN)/.installed
	@test -f "$(NANOBOT_HOME)/config.json" || NANOBOT_HOME="$(NANOBOT_HOME)" $(BIN)/nanobot onboard
	@if NANOBOT_HOME="$(NANOBOT_HOME)" $(BIN)/nanobot onboard --check; then \
		NANOBOT_HOME="$(NANOBOT_HOME)" $(BIN)/nanobot agent; \
	fi

## test: lint, format check and the whole test suite
test: lint
	$(BIN)/pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## bench: print the performance figures (see bench/)
bench: $(BIN)/.installed
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/sandbox.py
	$(BIN)/python bench/gateway.py
	$(BIN)/python bench/session_growth.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/mail_latency.py

## deploy-test: the Ansible role end-to-end in booted Debian 12 and 13 containers (needs root)
deploy-test: $(BIN)/.installed
	bash deploy/test/run.sh

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache

# One entry point for every task; the README names `make setup`, `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export LITELLM_LOCAL_MODEL_COST_MAP := True
export LITELLM_OFFLINE_MODE := true
RESULTS := $(CURDIR)/build/test-results

.PHONY: setup run test lint test-readme test-llm-api test-kongsim test-collection test-playbooks test-molecule bench bench-kongsim clean

## Install everything the project needs on this machine (apt, podman settings, venv, image).
setup:
	scripts/setup-host.sh

## Run llm_api locally on its embedded default (a demo model that needs no provider).
run:
	llm-api

## The whole test suite, as CI runs it (three lanes; see scripts/test-all.sh).
test: setup
	RESULTS=$(RESULTS) scripts/test-all.sh

lint:
	ruff check .
	ruff format --check .
	yamllint --strict .
	scripts/lint-extra.sh

## The READMEs' commands: the block runner (scripts/readme-run.py) and what every README names.
test-readme:
	scripts/pytest.sh readme tests/readme

test-llm-api:
	scripts/pytest.sh llm_api llm_api/tests

## llm_api's benchmark against LiteLLM's proxy (prints figures; see llm_api/bench/RESULTS.md).
bench-llm-api:
	llm_api/bench/run.sh

test-kongsim:
	scripts/pytest.sh kongsim tests/kongsim/tests

## Proxy-path benchmark of the Kong simulator (prints req/s and latency, asserts nothing).
bench-kongsim:
	python tests/kongsim/bench/run.py

test-collection:
	scripts/test-collection.sh

## site.yml refuses bad inventories before anything changes (ansible-playbook --check, local).
test-playbooks:
	scripts/pytest.sh playbooks tests/playbooks -q

test-molecule:
	scripts/test-molecule.sh

clean:
	rm -rf build .venv

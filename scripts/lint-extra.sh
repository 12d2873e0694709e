#!/usr/bin/env bash
# Linters that need more than one command: mypy on the service, ansible-lint on the Ansible side.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f llm_api/pyproject.toml ]; then
  (cd llm_api && mypy)
fi
if compgen -G "roles/*/tasks/main.yml" >/dev/null || compgen -G "playbooks/*.yml" >/dev/null; then
  ansible-lint --offline
fi

#!/usr/bin/env bash
# Tests the collection ai_gateway.kong (make test-collection):
#   1. ansible-test sanity, from an ansible_collections/<ns>/<name> copy as its docs require;
#   2. unit tests (pytest, HTTP mocked at the module_utils boundary);
#   3. integration tests: real ansible-playbook runs against the Kong simulator (postgres, DB-less);
#   4. ansible-lint (profile production) on the collection's playbooks.
# Usage: scripts/test-collection.sh [sanity|unit|integration|lint]...   (default: all four)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export ANSIBLE_CONFIG="$root/ansible.cfg"
results=${RESULTS:-$root/build/test-results}
export RESULTS=$results
mkdir -p "$results" build

cleanup=()
trap 'rm -rf "${cleanup[@]}"' EXIT

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(sanity unit integration lint)

sanity() {
  # ansible-test keeps its sanity virtualenvs (pinned pylint, voluptuous, ...) under
  # ~/.ansible/test; pointing HOME at build/ keeps them with the project and warm between runs.
  local home="$root/build/ansible-test-home" tmp pip_version
  # ansible-test --venv bootstraps pip in each virtualenv with a get-pip script downloaded from a
  # CI host that this network does not reach. Its cache slot gets a stand-in that does the same
  # from the interpreter's bundled ensurepip wheel; pip then installs the pinned tools from the
  # package index as usual.
  pip_version=$(python - <<'PY'
import re, ansible_test._internal.python_requirements as m
print(re.search(r"pip='([0-9.]+)'", open(m.__file__).read()).group(1))
PY
)
  mkdir -p "$home/.ansible/test/cache"
  cat >"$home/.ansible/test/cache/get_pip_${pip_version//./_}.py" <<'PY'
"""Stand-in for get-pip.py: bundled pip via ensurepip, then `pip install` of the same arguments."""
import ensurepip
import os
import subprocess
import sys

# ensurepip drops PIP_* and the pip config (certificates, index) from os.environ: keep a copy.
env = dict(os.environ)
ensurepip.bootstrap(upgrade=True)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args], env=env))
PY
  tmp=$(mktemp -d)
  cleanup+=("$tmp")
  mkdir -p "$tmp/ansible_collections/ai_gateway"
  # A copy, because ansible-test only runs from ansible_collections/<ns>/<name>/; without a .git
  # it tests every file of the copy, so leave out generated ones.
  cp -a collections/ai_gateway "$tmp/ansible_collections/ai_gateway/kong"
  rm -rf "$tmp/ansible_collections/ai_gateway/kong/tests/output"
  find "$tmp/ansible_collections" -depth \( -name __pycache__ -o -name .pytest_cache \) \
    -exec rm -rf {} +
  (
    cd "$tmp/ansible_collections/ai_gateway/kong"
    HOME="$home" PIP_CACHE_DIR="$root/build/pip-cache" \
      ansible-test sanity --python 3.11 --venv --requirements --color no
  )
}

unit() {
  scripts/pytest.sh collection-unit collections/ai_gateway/tests/unit -q
}

integration() {
  scripts/pytest.sh collection-integration collections/ai_gateway/tests/integration -q
}

lint() {
  ansible-lint --offline collections/ai_gateway
}

for step in "${steps[@]}"; do
  echo "== collection: $step"
  "$step"
done

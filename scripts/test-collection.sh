#!/usr/bin/env bash
# Tests the collection ai_gateway.kong (make test-collection):
#   1. ansible-test sanity, from an ansible_collections/<ns>/<name> copy as its docs require;
#   2. unit tests (pytest, HTTP mocked at the module_utils boundary);
#   3. integration tests: the `ansible-test integration` targets against the Kong simulator
#      (postgres, DB-less), started by scripts/collection-integration.py;
#   4. ansible-lint (profile production) on the collection's playbooks;
#   5. install: `ansible-galaxy collection build`, `install` into an empty directory, then
#      ansible-doc and a playbook that use that installed copy only (not this checkout).
# Usage: scripts/test-collection.sh [sanity|unit|integration|lint|install]...   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
root=$PWD
export ANSIBLE_CONFIG="$root/ansible.cfg"
results=${RESULTS:-$root/build/test-results}
export RESULTS=$results
mkdir -p "$results" build

# SANITY_ARGS: extra ansible-test options (e.g. `--test pylint`), for focused runs.
read -r -a SANITY_ARGS <<<"${SANITY_ARGS:-}"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(sanity unit integration lint install)

# collection_copy NAME: a fresh ansible_collections/ai_gateway/kong copy of the collection, one
# place per checkout and NAME (tests/output, with ansible-test's own files, is kept between runs).
collection_copy() {
  local work
  work="${TMPDIR:-/tmp}/ai-gateway-$1-$(printf %s "$root" | md5sum | cut -c1-8)"
  work="$work/ansible_collections/ai_gateway/kong"
  mkdir -p "$work/tests"
  find "$work" -mindepth 1 -maxdepth 1 ! -name tests -exec rm -rf {} +
  find "$work/tests" -mindepth 1 -maxdepth 1 ! -name output -exec rm -rf {} +
  tar -C collections/ai_gateway --exclude=./tests/output --exclude=__pycache__ \
    --exclude=.pytest_cache -cf - . | tar -C "$work" -xf -
  echo "$work"
}

sanity() {
  # ansible-test keeps its sanity virtualenvs (pinned pylint, voluptuous, ...) under
  # ~/.ansible/test; pointing HOME at build/ keeps them with the project and warm between runs.
  local home="$root/build/ansible-test-home" pip_version
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
  # ansible-test only runs from ansible_collections/<ns>/<name>/, so it runs on a copy, outside
  # this git work tree (inside it, ansible-test would list files with git, which ignores build/).
  # The copy keeps one place per checkout so that ansible-test's own virtualenv (in its
  # tests/output/.tmp) is reused; it tests every file of the copy, so generated ones stay out.
  local work
  work=$(collection_copy sanity)
  (
    cd "$work"
    HOME="$home" PIP_CACHE_DIR="$root/build/pip-cache" \
      ansible-test sanity --python 3.11 --venv --requirements --color no "${SANITY_ARGS[@]}"
  )
}

unit() {
  scripts/pytest.sh collection-unit collections/ai_gateway/tests/unit -q
}

integration() {
  # ansible-test integration targets (tests/integration/targets/) against the simulator.
  # INTEGRATION_ARGS: extra ansible-test options or target names, for focused runs.
  local work args
  read -r -a args <<<"${INTEGRATION_ARGS:-}"
  work=$(collection_copy integration)
  # ansible-test adds its reports to tests/output/junit: last run's must not count again.
  rm -rf "$work/tests/output/junit"
  scripts/collection-integration.py "$work" "${args[@]}"
  cp "$work"/tests/output/junit/*.xml "$results/" 2>/dev/null || true
  # pytest integration tests not converted to targets yet (real ansible-playbook runs as well).
  if compgen -G "collections/ai_gateway/tests/integration/test_*.py" >/dev/null; then
    scripts/pytest.sh collection-integration collections/ai_gateway/tests/integration -q
  fi
}

lint() {
  ansible-lint --offline collections/ai_gateway
}

install() {
  # As a user installs it: nothing of this checkout is visible (an empty ansible.cfg, another
  # directory, only the install directory on the collections path).
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  ansible-galaxy collection build collections/ai_gateway --output-path "$tmp/dist"
  local artifact
  artifact=$(ls "$tmp"/dist/ai_gateway-kong-*.tar.gz)
  python - "$artifact" collections/ai_gateway <<'PY'
"""The artifact ships what a user expects, and nothing of the test runs."""
import sys, tarfile, yaml
names = set(tarfile.open(sys.argv[1]).getnames())
version = yaml.safe_load(open(sys.argv[2] + "/galaxy.yml"))["version"]
changelog = yaml.safe_load(open(sys.argv[2] + "/changelogs/changelog.yaml"))
missing = {"MANIFEST.json", "FILES.json", "README.md", "CHANGELOG.rst", "COPYING",
           "meta/runtime.yml", "changelogs/changelog.yaml"} - names
assert not missing, f"the artifact lacks {sorted(missing)}"
assert not [n for n in names if n.startswith("tests/output") or "__pycache__" in n], names
assert version in changelog["releases"], f"galaxy.yml {version} has no changelog release"
print(f"artifact: {sys.argv[1].rsplit('/', 1)[1]}, {len(names)} entries, CHANGELOG for {version}")
PY
  touch "$tmp/ansible.cfg"
  (
    cd "$tmp"
    export ANSIBLE_CONFIG="$tmp/ansible.cfg" ANSIBLE_COLLECTIONS_PATH="$tmp/installed"
    ansible-galaxy collection install --offline "$artifact" -p "$tmp/installed"
    ansible-galaxy collection list ai_gateway.kong | grep -q "^ai_gateway.kong "
    ansible-doc ai_gateway.kong.kong_service | grep -q "installed/ansible_collections/ai_gateway/kong/plugins/modules/kong_service.py"
    ansible-doc -l ai_gateway.kong | grep -c "^ai_gateway.kong.kong_" >"$tmp/modules"
    [ "$(cat "$tmp/modules")" -eq "$(ls "$root"/collections/ai_gateway/plugins/modules/kong_*.py | wc -l)" ]
    # A playbook of the installed copy's action group, against the simulator (DB-less).
    python - "$tmp" <<'PY'
import json, os, subprocess, sys
from kongsim.testing import KongNode
tmp = sys.argv[1]
with KongNode({"database": "off"}) as node:
    with open(f"{tmp}/play.yml", "w") as fh:
        fh.write(f"""- hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    group/ai_gateway.kong.kong: {{admin_url: "{node.admin_url}"}}
  tasks:
    - ai_gateway.kong.kong_declarative:
        config: {{_format_version: "3.0", services: [{{name: s, url: "http://127.0.0.1:9/"}}]}}
    - ai_gateway.kong.kong_info: {{entities: [services]}}
      register: info
    - ansible.builtin.assert:
        that: info.entities.services | map(attribute='name') | list == ['s']
""")
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    proc = subprocess.run(["ansible-playbook", "-i", "localhost,", "-e",
                           f"ansible_python_interpreter={sys.executable}", f"{tmp}/play.yml"],
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stats = json.loads(proc.stdout)["stats"]["localhost"]
    assert stats["failures"] == 0 and stats["changed"] == 1, stats
    print("playbook with the installed collection:", stats)
PY
  )
  echo "collection: built, installed into an empty directory, ansible-doc and a playbook ran from it"
}

for step in "${steps[@]}"; do
  echo "== collection: $step"
  "$step"
done

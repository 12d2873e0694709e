#!/usr/bin/env bash
# `make test`: every suite, as CI runs it, in two lanes on the two cores. Molecule is mostly
# waiting on its containers, so the role scenarios (after the playbook checks and the simulator's
# suite) run beside lint and the llm_api and collection suites, which keep a core busy. Each lane
# then goes on with one end-to-end scenario, once its own suites have passed (no barrier between
# the lanes: the first lane, done earlier, starts the longer one):
# `default` as the README's container quick start, run as written
# (scripts/test-readme-containers.sh), and `dbless`.
# Ends with one summary line over every suite's report (build/test-results).
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
export RESULTS=${RESULTS:-$PWD/build/test-results}
rm -rf "$RESULTS" && mkdir -p "$RESULTS"
start=$(date +%s)

run() {
  scripts/build-artifacts.sh &&
    scripts/lanes.sh \
      "units=make --no-print-directory lint test-readme test-llm-api test-collection && scripts/test-readme-containers.sh" \
      "roles=make --no-print-directory test-playbooks test-kongsim && scripts/test-molecule.sh kong llm_api kong_gateway dbless"
}

run
rc=$?
echo "=== make test: $(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s"
scripts/test-summary.py "$RESULTS" || rc=1
exit "$rc"

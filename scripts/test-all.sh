#!/usr/bin/env bash
# `make test`: every suite, as CI runs it, in three lanes on the two cores. Most of a Molecule
# scenario's time is waiting (on its containers' services, on health checks, on a drain), so
# three lanes keep both cores busy where two left them idle half the time:
#   units    lint, the README, llm_api's and the collection's suites, then `default` as the
#            README's container quick start, run as written (scripts/test-readme-containers.sh);
#   roles    the playbook checks and the simulator's suite, then `kong_gateway` and `dbless`;
#   cluster  `cluster` (five containers, the rolling updates under load), `llm_api`, `kong`.
# The lanes are balanced by their measured length: from a fresh clone on the 2-core machine
# (2026-12-03) they ended after 24, 26 and 26.5 minutes. Each lane goes on only while its own
# suites pass.
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
      "roles=make --no-print-directory test-playbooks test-kongsim && scripts/test-molecule.sh kong_gateway dbless" \
      "cluster=scripts/test-molecule.sh cluster llm_api kong"
}

run
rc=$?
echo "=== make test: $(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s"
scripts/test-summary.py "$RESULTS" || rc=1
exit "$rc"

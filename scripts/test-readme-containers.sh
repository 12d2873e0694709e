#!/usr/bin/env bash
# The `default` end-to-end scenario, run as the README's container quick start is written
# (README.md, the block marked `containers`): converge, the README's curls with the statuses its
# comments promise, verify, destroy. It covers what `molecule test -s default` runs (create and
# prepare come with converge; verify's leak scan runs site.yml again and fails on any change, the
# idempotence check), so make test runs the scenario once, through the README. Recorded as
# molecule-default in the summary.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
# Containers left by an earlier, interrupted run; a fresh clone has none.
molecule destroy -s default >/dev/null 2>&1 || true
echo "=== README.md block 'containers' (molecule scenario default)"
start=$(date +%s)
scripts/readme-run.py --junit-name molecule-default README.md containers
rc=$?
echo "=== molecule scenario default (README quick start): $([ "$rc" -eq 0 ] && echo ok || echo failed) in $(($(date +%s) - start))s"
exit "$rc"

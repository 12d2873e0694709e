#!/usr/bin/env bash
# Runs one pytest suite and records its results for the summary. pytest exits 5 when it
# collects nothing; for a suite that must have tests that is a failure, said plainly.
set -uo pipefail
. "$(dirname "$0")/env.sh"
name=$1; shift
results=${RESULTS:-build/test-results}
mkdir -p "$results"
python -m pytest --junitxml="$results/$name.xml" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest: no tests were collected for $name ($*)" >&2
  exit 1
fi
exit "$rc"

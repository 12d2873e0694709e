#!/usr/bin/env bash
# Runs commands side by side and waits for all of them; each output line is prefixed with its
# lane's name. Exits non-zero when any lane failed, after every lane has finished.
#   scripts/lanes.sh NAME=COMMAND [NAME=COMMAND ...]
set -uo pipefail
declare -A pids=() started=()
for lane in "$@"; do
  name=${lane%%=*}
  cmd=${lane#*=}
  started[$name]=$(date +%s)
  (
    bash -c "$cmd" 2>&1 | sed -u "s/^/[$name] /"
    exit "${PIPESTATUS[0]}"
  ) &
  pids[$name]=$!
done
failed=0
for name in "${!pids[@]}"; do
  if wait "${pids[$name]}"; then status=passed; else status=FAILED; failed=1; fi
  echo "=== lane $name: $status ($(( $(date +%s) - started[$name] ))s since it started)"
done
exit "$failed"

#!/usr/bin/env bash
# Runs commands side by side and waits for all of them; each output line is prefixed with its
# lane's name, and each lane's end is reported as it happens, with how long that lane took.
# Exits non-zero when any lane failed, after every lane has finished.
#   scripts/lanes.sh NAME=COMMAND [NAME=COMMAND ...]
set -uo pipefail
declare -A names=()
start=$(date +%s)
for lane in "$@"; do
  name=${lane%%=*}
  cmd=${lane#*=}
  (
    bash -c "$cmd" 2>&1 | sed -u "s/^/[$name] /"
    exit "${PIPESTATUS[0]}"
  ) &
  names[$!]=$name
done
failed=0
while ((${#names[@]})); do
  if wait -n -p pid "${!names[@]}"; then status=passed; else status=FAILED; failed=1; fi
  echo "=== lane ${names[$pid]}: $status in $(($(date +%s) - start))s"
  unset "names[$pid]"
done
exit "$failed"

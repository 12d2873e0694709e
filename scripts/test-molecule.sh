#!/usr/bin/env bash
# Runs every Molecule scenario under molecule/ (role scenarios first, the end-to-end ones last),
# records each as a test case for the summary, and stops at the first failure.
set -uo pipefail
cd "$(dirname "$0")/.."
results=${RESULTS:-build/test-results}
mkdir -p "$results"
export MOLECULE_NO_LOG=false

# What the scenarios install: the simulator's Debian package and the llm_api wheelhouse.
scripts/build-artifacts.sh || exit 1

mapfile -t scenarios < <(
  for f in molecule/*/molecule.yml; do
    name=$(basename "$(dirname "$f")")
    # Order: role scenarios (kong, llm_api, kong_gateway), then dbless, then default (headline).
    case $name in
      default) echo "9 $name" ;; dbless) echo "8 $name" ;; *) echo "1 $name" ;;
    esac
  done | sort | cut -d' ' -f2)

cases=""
failed=0
ran=0
for s in "${scenarios[@]}"; do
  start=$(date +%s)
  ran=$((ran + 1))
  echo "=== molecule test -s $s"
  if molecule test -s "$s"; then status=ok; else status=failed; failed=1; fi
  secs=$(( $(date +%s) - start ))
  echo "=== molecule scenario $s: $status in ${secs}s"
  if [ "$status" = ok ]; then
    cases+="<testcase classname=\"molecule\" name=\"$s\" time=\"$secs\"/>"
  else
    cases+="<testcase classname=\"molecule\" name=\"$s\" time=\"$secs\"><failure message=\"molecule test -s $s failed\"/></testcase>"
  fi
  [ "$failed" -eq 0 ] || break
done
printf '<testsuite name="molecule" tests="%s" failures="%s">%s</testsuite>\n' \
  "$ran" "$failed" "$cases" >"$results/molecule.xml"
if [ "${#scenarios[@]}" -eq 0 ]; then
  echo "molecule: no scenarios found under molecule/" >&2
  exit 1
fi
exit "$failed"

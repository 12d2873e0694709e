#!/usr/bin/env bash
# Runs Molecule scenarios one after the other and stops at the first failure; each is recorded
# as a test case (build/test-results/molecule-<scenario>.xml) for the summary.
#   scripts/test-molecule.sh                 # every scenario under molecule/: the role ones,
#                                            # then cluster, dbless, default (the headline)
#   scripts/test-molecule.sh kong default    # just these, in this order
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
results=${RESULTS:-build/test-results}
mkdir -p "$results"
export MOLECULE_NO_LOG=false

# What the scenarios install: the simulator's Debian package and the llm_api wheelhouse.
scripts/build-artifacts.sh || exit 1

if (($#)); then
  scenarios=("$@")
else
  mapfile -t scenarios < <(
    for f in molecule/*/molecule.yml; do
      name=$(basename "$(dirname "$f")")
      case $name in
        default) echo "9 $name" ;; dbless) echo "8 $name" ;; cluster) echo "7 $name" ;; *) echo "1 $name" ;;
      esac
    done | sort | cut -d' ' -f2)
fi
if [ "${#scenarios[@]}" -eq 0 ]; then
  echo "molecule: no scenarios found under molecule/" >&2
  exit 1
fi

for s in "${scenarios[@]}"; do
  if [ ! -f "molecule/$s/molecule.yml" ]; then
    echo "molecule: no scenario '$s' under molecule/" >&2
    exit 1
  fi
  start=$(date +%s)
  echo "=== molecule test -s $s"
  if molecule test -s "$s"; then failed=0; else failed=1; fi
  secs=$(($(date +%s) - start))
  failure=""
  [ "$failed" -eq 0 ] || failure="<failure message=\"molecule test -s $s failed\"/>"
  echo "=== molecule scenario $s: $([ "$failed" -eq 0 ] && echo ok || echo failed) in ${secs}s"
  printf '<testsuite name="molecule-%s" tests="1" failures="%s"><testcase classname="molecule" name="%s" time="%s">%s</testcase></testsuite>\n' \
    "$s" "$failed" "$s" "$secs" "$failure" >"$results/molecule-$s.xml"
  [ "$failed" -eq 0 ] || exit 1
done

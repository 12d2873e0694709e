#!/usr/bin/env bash
# Builds what the Molecule scenarios install on their containers, into build/:
#   build/kongsim/kong_<version>_all.deb   the Kong simulator's Debian package (test equipment;
#                                          the kong role installs it through `package_file`)
#   build/wheelhouse/                      llm_api's wheel and its hash-locked dependencies, so
#                                          that containers install offline (the llm_api role's
#                                          `llm_api_wheelhouse` option for air-gapped sites)
# Each is rebuilt only when its inputs change.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build

inputs_hash() { find "$@" -type f ! -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16; }

if [ -x tests/kongsim/package/build-deb.sh ]; then
  h=$(inputs_hash tests/kongsim/src tests/kongsim/package tests/kongsim/pyproject.toml)
  if [ "$(cat build/kongsim/.inputs 2>/dev/null)" != "$h" ]; then
    rm -rf build/kongsim && mkdir -p build/kongsim
    tests/kongsim/package/build-deb.sh build/kongsim
    echo "$h" >build/kongsim/.inputs
  fi
fi

if [ -f llm_api/requirements.lock ]; then
  h=$(inputs_hash llm_api/src llm_api/pyproject.toml llm_api/requirements.lock)
  if [ "$(cat build/wheelhouse/.inputs 2>/dev/null)" != "$h" ]; then
    rm -rf build/wheelhouse && mkdir -p build/wheelhouse
    # Only wheels for the containers' Python (Debian 12: CPython 3.11 on x86_64 or aarch64).
    .venv/bin/pip download -q --require-hashes --only-binary=:all: --no-deps \
      --python-version 3.11 --implementation cp --abi cp311 \
      --platform "manylinux2014_$(uname -m)" --platform "manylinux_2_17_$(uname -m)" \
      --platform "manylinux_2_28_$(uname -m)" --platform any \
      -r llm_api/requirements.lock -d build/wheelhouse
    .venv/bin/pip wheel -q --no-deps -w build/wheelhouse ./llm_api
    echo "$h" >build/wheelhouse/.inputs
  fi
fi

#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian 12 machine (run as root):
# Debian packages (podman for Molecule, ssh to reach its containers, PostgreSQL for the Kong
# simulator's tests, Redis for llm_api's quota tests, wrk for the benchmarks, gnupg to sign the
# kong scenario's package mirror), the podman settings these machines need, the project's
# virtualenv, the collections of requirements.yml and the Debian 12 container image Molecule
# starts. Safe to re-run: every step skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  podman runc conmon netavark aardvark-dns iptables slirp4netns fuse-overlayfs uidmap catatonit
  debootstrap dpkg-dev fakeroot gnupg
  postgresql redis-server
  curl wrk jq openssh-client
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Podman on a host without systemd, with cgroups v1 "hybrid" and a hard nofile limit of 20000:
# runc (crun refuses that cgroup layout), cgroupfs, file events and ulimits under the hard limit.
install -d /etc/containers
conf=/etc/containers/containers.conf
desired=scripts/containers.conf
if ! cmp -s "$desired" "$conf" 2>/dev/null; then
  install -m 0644 "$desired" "$conf"
fi

# The container image (debootstrap, about a minute of one core) builds while pip fills the
# virtualenv (as long, on the other core); setup fails if either does. If pip fails, the build
# still ends before setup exits, so that no half-made root filesystem is left behind.
scripts/build-image.sh &
image_build=$!
trap 'wait "$image_build" 2>/dev/null || true' EXIT

PYTHON=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.setup-stamp
inputs=$(cat requirements-dev.txt llm_api/requirements.lock llm_api/pyproject.toml tests/kongsim/pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$inputs" ]; then
  .venv/bin/pip install -q -U pip
  if [ -f llm_api/requirements.lock ]; then
    .venv/bin/pip install -q --require-hashes -r llm_api/requirements.lock
    .venv/bin/pip install -q --no-deps -e llm_api
  fi
  .venv/bin/pip install -q -r requirements-dev.txt
  if [ -f tests/kongsim/pyproject.toml ]; then
    .venv/bin/pip install -q --no-deps -e tests/kongsim
  fi
  echo "$inputs" >"$stamp"
fi

# The collections the roles and scenarios use (requirements.yml). The full `ansible` package in
# the virtualenv bundles them, so this finds them installed and contacts no server; with
# ansible-core alone it installs them from Galaxy into ./collections (ansible.cfg's first path).
ANSIBLE_CONFIG=$PWD/ansible.cfg .venv/bin/ansible-galaxy collection install -r requirements.yml

trap - EXIT
wait "$image_build" || { echo "setup: building the container image failed" >&2; exit 1; }

#!/usr/bin/env bash
# Builds the Debian 12 image with systemd as PID 1 that the Molecule scenarios start.
# No registry is needed: the root filesystem comes from debootstrap against the host's own
# Debian mirror. The image carries fresh package lists, as a real Debian host does (the roles
# refresh lists older than an hour themselves), and the Debian packages the Kong simulator's
# package depends on: it is test equipment, and installing its Python libraries in every gateway
# container would only repeat the same work (Kong's own package, PostgreSQL, Redis and llm_api's
# Python still come from the roles). Molecule reaches the containers over SSH, as an inventory
# reaches real hosts (a `podman exec` per command costs seconds per task): root logs in with a
# key made here, in build/ssh/, for test containers only. Rebuilt only when this script, that key
# or the simulator's Depends change (the image carries their hash as a label).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${AI_GATEWAY_IMAGE:-localhost/ai-gateway-debian:12}
KEY=build/ssh/id_ed25519
SIMULATOR_CONTROL=tests/kongsim/package/debian/control.in
if [ ! -f "$KEY" ]; then
  mkdir -p "$(dirname "$KEY")"
  ssh-keygen -q -t ed25519 -N "" -C ai-gateway-molecule -f "$KEY"
fi
recipe=$(cat "$0" "$KEY.pub" "$SIMULATOR_CONTROL" | sha256sum | cut -c1-16)
current=$(podman image inspect --format '{{ index .Labels "ai-gateway.recipe" }}' "$IMAGE" 2>/dev/null || true)
if [ "$current" = "$recipe" ]; then
  exit 0
fi

mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
if [ -z "$mirror" ]; then
  mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
[ -n "$mirror" ] || { echo "build-image: cannot read the host's Debian mirror" >&2; exit 1; }

# The simulator package's Depends, without version constraints: "python3 (>= 3.11), passwd"
# becomes "python3 passwd".
simulator_depends=$(sed -n 's/^Depends: //p' "$SIMULATOR_CONTROL" | sed 's/ *([^)]*)//g; s/, */ /g')
[ -n "$simulator_depends" ] || { echo "build-image: no Depends in $SIMULATOR_CONTROL" >&2; exit 1; }

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
echo "build-image: debootstrap bookworm from the host's mirror (about a minute)"
debootstrap --variant=minbase \
  --include=python3,python3-apt,systemd,systemd-sysv,dbus,ca-certificates,iproute2,procps,sudo,curl,openssh-server \
  bookworm "$rootfs" "$mirror" >/dev/null

# The same apt sources as the host, so that apt works inside the containers.
rm -f "$rootfs/etc/apt/sources.list"
cp -a /etc/apt/sources.list.d/. "$rootfs/etc/apt/sources.list.d/" 2>/dev/null || true
[ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$rootfs/etc/apt/sources.list"
cp -a /usr/local/share/ca-certificates/. "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 || true
# Units that make no sense in a container and slow its boot.
for unit in systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
  chroot "$rootfs" systemctl mask "$unit" >/dev/null 2>&1 || true
done
install -d -m 0700 "$rootfs/root/.ssh"
install -m 0600 "$KEY.pub" "$rootfs/root/.ssh/authorized_keys"
chroot "$rootfs" apt-get -q update >/dev/null
# shellcheck disable=SC2086 # one word per package
DEBIAN_FRONTEND=noninteractive chroot "$rootfs" apt-get install -q -y --no-install-recommends \
  $simulator_depends >/dev/null
chroot "$rootfs" apt-get clean

tar -C "$rootfs" -c . | podman import \
  --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL=SIGRTMIN+3' \
  --change "LABEL ai-gateway.recipe=$recipe" - "$IMAGE" >/dev/null
echo "build-image: $IMAGE ready"

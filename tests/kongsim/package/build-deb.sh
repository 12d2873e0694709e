#!/usr/bin/env bash
# Builds the Kong simulator's Debian package, laid out like Kong's own `kong` package
# (Kong/kong build/package/nfpm.yaml at 3.9.3), into OUTDIR:
#
#   OUTDIR/kong_3.9.3~kongsim1_all.deb
#
# The version is Kong's plus `~kongsim1`: `~` sorts before anything, so 3.9.3~kongsim1 < 3.9.3
# and a real Kong 3.9.3 package supersedes the simulator on upgrade.
#
# Usage: build-deb.sh OUTDIR
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../src" && pwd)
mkdir -p "$1"
outdir=$(cd "$1" && pwd)

kong_version=3.9.3
version="${kong_version}~kongsim1"

if [ ! -f "$src/kongsim/cli.py" ]; then
  echo "build-deb.sh: $src/kongsim/cli.py is missing: nothing to package" >&2
  exit 1
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/root"

# The simulator's code, as a plain package directory on the launcher's sys.path (no pip, no
# wheel: its runtime dependencies come from Debian's python3-* packages).
install -d "$root/usr/local/lib/kongsim"
tar -C "$src" --exclude=__pycache__ --exclude='*.pyc' -cf - kongsim | tar -C "$root/usr/local/lib/kongsim" -xf -

install -D -m 0755 "$here/files/kong" "$root/usr/local/bin/kong"
install -D -m 0755 "$here/files/kong-health" "$root/usr/local/bin/kong-health"
install -D -m 0644 "$here/files/kong.service" "$root/lib/systemd/system/kong.service"
install -D -m 0644 "$here/files/kong.conf.default" "$root/etc/kong/kong.conf.default"
install -D -m 0644 "$here/files/kong.logrotate" "$root/etc/kong/kong.logrotate"
# Kong's package ships its prefix directory; postinst hands it to the kong user.
install -d "$root/usr/local/kong"
install -D -m 0644 "$here/files/README.Debian" "$root/usr/share/doc/kong/README.Debian"

install -d "$root/DEBIAN"
for script in postinst prerm postrm; do
  install -m 0755 "$here/debian/$script" "$root/DEBIAN/$script"
done
install -m 0644 "$here/debian/conffiles" "$root/DEBIAN/conffiles"
installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@INSTALLED_SIZE@/$installed_size/" \
  "$here/debian/control.in" >"$root/DEBIAN/control"

# Reproducible: every file dated like the newest input, owned by root.
epoch=$(find "$src/kongsim" "$here" -type f ! -path '*/__pycache__/*' -printf '%T@\n' | sort -n | tail -1 | cut -d. -f1)
find "$root" -exec touch -h -d "@$epoch" {} +
SOURCE_DATE_EPOCH=$epoch fakeroot dpkg-deb --root-owner-group -Zxz --build "$root" \
  "$outdir/kong_${version}_all.deb" >/dev/null
echo "$outdir/kong_${version}_all.deb"

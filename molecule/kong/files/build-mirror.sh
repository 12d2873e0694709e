#!/usr/bin/env bash
# Builds a package repository laid out like Kong's own for the 3.9 series (gateway-39), signed
# with a key generated here, so that the kong role's `repository` method runs for real against
# it (its key download, the deb822 source with Signed-By, apt's signature check, the version pin):
#
#   OUTDIR/gpg.key                                       the signing key (ASCII armour)
#   OUTDIR/deb/debian/dists/bookworm/{InRelease,Release,Release.gpg}
#   OUTDIR/deb/debian/dists/bookworm/main/binary-ARCH/Packages{,.gz}
#   OUTDIR/deb/debian/pool/main/k/kong/kong_3.9.3_all.deb   the Kong simulator's package ...
#   OUTDIR/deb/debian/pool/main/k/kong/kong_3.9.4_all.deb   ... and a newer one the pin must skip
#
# Both packages are the simulator's (test equipment) with the version Kong's would carry: the
# role installs `kong=<kong_version>`, and a newer package in the same repository proves the pin.
# Usage: build-mirror.sh SIMULATOR_DEB OUTDIR
set -euo pipefail
if [ $# -ne 2 ] || [ ! -f "$1" ]; then
  echo "usage: $0 SIMULATOR_DEB OUTDIR" >&2
  exit 2
fi
deb=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
mkdir -p "$2"
out=$(cd "$2" && pwd)
find "$out" -mindepth 1 -delete
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

export GNUPGHOME="$work/gnupg"
install -d -m 0700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' \
  --quick-gen-key 'ai-gateway test mirror <test-mirror@ai-gateway.invalid>' ed25519 sign never
gpg --batch --quiet --armor --export >"$out/gpg.key"

suite=bookworm
arch=$(dpkg --print-architecture)
repo="$out/deb/debian"
pool="pool/main/k/kong"
install -d "$repo/$pool" "$repo/dists/$suite/main/binary-$arch"
for version in 3.9.3 3.9.4; do
  rm -rf "$work/pkg"
  dpkg-deb -R "$deb" "$work/pkg"
  sed -i "s/^Version: .*/Version: $version/" "$work/pkg/DEBIAN/control"
  fakeroot dpkg-deb --root-owner-group -Zxz --build "$work/pkg" "$repo/$pool/kong_${version}_all.deb" >/dev/null
done

(
  cd "$repo"
  index="dists/$suite/main/binary-$arch/Packages"
  dpkg-scanpackages --multiversion "$pool" /dev/null 2>/dev/null >"$index"
  gzip -9kn "$index"
  cd "dists/$suite"
  {
    echo "Origin: ai-gateway test mirror"
    echo "Label: gateway-39"
    echo "Suite: $suite"
    echo "Codename: $suite"
    echo "Date: $(LC_ALL=C date -Ru)"
    echo "Architectures: $arch"
    echo "Components: main"
    echo "SHA256:"
    for f in "main/binary-$arch/Packages" "main/binary-$arch/Packages.gz"; do
      printf ' %s %s %s\n' "$(sha256sum "$f" | cut -d' ' -f1)" "$(stat -c %s "$f")" "$f"
    done
  } >Release
  gpg --batch --quiet --yes --clearsign -o InRelease Release
  gpg --batch --quiet --yes --armor --detach-sign -o Release.gpg Release
)
echo "$out"

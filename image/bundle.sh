#!/bin/bash
# A signed update bundle from `make image`'s outputs (`make bundle`).
#
#   image/bundle.sh [--out DIR] [--version VERSION] [--to FILE]
#
#   in:  DIR (default target/image): rootfs.erofs, slot-boot/,
#        skytime-rauc-hook and skytime-rpi4.manifest of one complete build
#        (skytime-rpi4.img.sha256 seals it); the host's skytime-ota-build
#        from the image's cargo directory (the binaries stage built it)
#   out: DIR/skytime-rpi4-VERSION.raucb   (RAUC verity format), or FILE;
#        its path on stdout
#
# VERSION defaults to the image's own (IMAGE_VERSION in its os-release, the
# manifest's image_version): the bundle then carries exactly what the image
# has in a slot. Another VERSION (ota/README.md, "Version format") makes the
# same content under a newer or older version, for tests.
#
# Signing is ota/bundle.sh's (SKYTIME_SIGNING_CERT/_KEY/_KEYRING, or the
# development CA in target/ota-dev-ca). The keyring it signs for must be the
# one the image was built with (the manifest's keyring line): otherwise the
# image would refuse the bundle, and this script refuses to make it. The
# result is read back by RAUC 1.13 (target/trixie-tools) against that keyring.
# Same inputs, same bytes (RSA keys; ota/README.md, "Same inputs, same
# bundle").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export ROOT
. "$ROOT/image/lib/common.sh"

OUT=$ROOT/target/image
version= to=
while [ $# -gt 0 ]; do
    case $1 in
    --out) OUT=$(realpath -m "$2"); shift 2 ;;
    --version) version=${2:?}; shift 2 ;;
    --to) to=$(realpath -m "$2"); shift 2 ;;
    *) echo "usage: $0 [--out DIR] [--version VERSION] [--to FILE]" >&2; exit 2 ;;
    esac
done

manifest=$OUT/skytime-rpi4.manifest
[ -f "$OUT/skytime-rpi4.img.sha256" ] && [ -f "$manifest" ] ||
    die "no complete image build in $OUT (run make image first)"
for f in rootfs.erofs slot-boot/vmlinuz skytime-rauc-hook; do
    [ -e "$OUT/$f" ] || die "$OUT/$f is missing: that build predates bundles (run make image)"
done
field() { awk -v k="$1" '$1 == k { $1 = ""; sub(/^ /, ""); print; exit }' "$manifest"; }
image_version=$(field image_version)
compatible=$(field compatible)
read -r keyring_kind keyring_sha < <(field keyring) || true
[ -n "$image_version" ] && [ -n "$compatible" ] && [ -n "${keyring_sha:-}" ] ||
    die "$manifest has no image_version, compatible or keyring line (run make image)"
# The manifest's hash of rootfs.erofs: the erofs beside it is that build's.
[ "$(field rootfs_sha256)" = "$(sha256_of "$OUT/rootfs.erofs")" ] ||
    die "$OUT/rootfs.erofs is not the one $manifest describes (run make image)"
: "${version:=$image_version}"

# The keyring the signature will be checked against, as ota/bundle.sh picks it.
if [ -n "${SKYTIME_SIGNING_CERT:-}${SKYTIME_SIGNING_KEY:-}${SKYTIME_SIGNING_KEYRING:-}" ]; then
    keyring=${SKYTIME_SIGNING_KEYRING:?SKYTIME_SIGNING_CERT, _KEY and _KEYRING go together}
    kind=release
else
    keyring=$ROOT/target/ota-dev-ca/ca.pem
    kind=development
fi
[ -f "$keyring" ] || die "keyring $keyring is missing (the image was built with a $keyring_kind keyring)"
[ "$(sha256_of "$keyring")" = "$keyring_sha" ] ||
    die "the image trusts a $keyring_kind keyring (sha256 $keyring_sha) but this bundle would be signed for the $kind keyring $keyring: set SKYTIME_SIGNING_* to the image's"

tool=$CARGO_TARGET/release/skytime-ota-build
[ -x "$tool" ] || die "no $tool (the image build's binaries stage makes it; run make image)"
rauc=${RAUC:-$ROOT/target/trixie-tools/bin/rauc}
[ -x "$rauc" ] || "$ROOT/tests/scripts/trixie-tools.sh" "$ROOT/target/trixie-tools" >&2

bundle=${to:-$OUT/$compatible-$version.raucb}
SKYTIME_OTA_BUILD=$tool RAUC=$rauc "$ROOT/ota/bundle.sh" \
    --rootfs "$OUT/rootfs.erofs" --bootfiles "$OUT/slot-boot" --hook "$OUT/skytime-rauc-hook" \
    --version "$version" --compatible "$compatible" \
    --build "skytime $(field skytime_commit) rootfs $(field rootfs_sha256)" \
    --out "$bundle" >&2

# Read back as the appliance will: its system.conf (check-purpose=codesign,
# bundle-formats=-plain) with the keyring the image has.
info=$("$rauc" --conf "$ROOT/ota/system.conf" --keyring "$keyring" info --output-format=shell "$bundle" 2>/dev/null) ||
    die "RAUC does not verify $bundle against $keyring"
grep -qx "RAUC_MF_VERSION='$version'" <<<"$info" || die "$bundle does not carry version $version"
grep -qx "RAUC_MF_FORMAT='verity'" <<<"$info" || die "$bundle is not a verity bundle"
echo "bundle: $bundle ($(stat -c %s "$bundle") bytes, $kind keyring)" >&2
echo "$bundle"

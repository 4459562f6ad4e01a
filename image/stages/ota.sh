#!/bin/bash
# Stage "ota": what RAUC needs in the root file system (ota/README.md).
#
#   in:  $WORK/rootfs (rauc and rauc-service installed by the base stage),
#        ota/system.conf, ota/de.pengutronix.rauc.conf,
#        $WORK/bin/host/skytime-ota-build, the signing keyring:
#        SKYTIME_SIGNING_KEYRING (release) or the development CA that
#        ota/dev-ca.sh makes once in target/ota-dev-ca
#   out: $WORK/rootfs/etc/rauc/{system.conf,keyring.pem}
#        $WORK/rootfs/usr/lib/os-release with IMAGE_ID and IMAGE_VERSION
#        RAUC's D-Bus policy replaced by skytime's (root and skytimed only)
#        $WORK/rootfs/boot/firmware  where the boot partition is automounted
#        $WORK/ota.txt  the image's version and keyring (for the manifest
#                       and `make bundle`)
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
: "${SOURCE_DATE_EPOCH:?}"

rootfs=$WORK/rootfs
tool=$WORK/bin/host/skytime-ota-build
[ -x "$rootfs/usr/bin/rauc" ] || die "rauc is not installed in $rootfs (image/packages.list)"
policy=$rootfs/usr/share/dbus-1/system.d/de.pengutronix.rauc.conf
[ -f "$policy" ] || die "no $policy: rauc-service's D-Bus policy moved; skytime's must replace it"

# The keyring: a release CA named from outside the tree, or the development
# CA (then the image trusts development bundles only).
if [ -n "${SKYTIME_SIGNING_KEYRING:-}" ]; then
    keyring=$SKYTIME_SIGNING_KEYRING
    kind=release
else
    "$ROOT/ota/dev-ca.sh" "$ROOT/target/ota-dev-ca" >&2
    keyring=$ROOT/target/ota-dev-ca/ca.pem
    kind=development
fi
[ -s "$keyring" ] || die "keyring $keyring is missing or empty"
openssl x509 -in "$keyring" -noout 2>/dev/null || die "keyring $keyring holds no PEM certificate"
echo "keyring: $kind ($keyring)" >&2

install -D -m 0644 "$ROOT/ota/system.conf" "$rootfs/etc/rauc/system.conf"
# The boot partition's automount point (/etc/fstab, /etc/fw_env.config);
# the slot-boot stage empties /boot, so it is made here.
install -d -m 0755 "$rootfs/boot/firmware"
install -m 0644 "$keyring" "$rootfs/etc/rauc/keyring.pem"
install -m 0644 "$ROOT/ota/de.pengutronix.rauc.conf" "$policy"

# The version every bundle is compared with (ota/README.md, "Version
# format"): the workspace's semantic version and the build time.
semver=$(cd "$ROOT" && cargo pkgid --locked -p skytime-ota | sed 's/.*[#@]//')
version=$("$tool" version "$semver" "$SOURCE_DATE_EPOCH")
compatible=$(sed -n 's/^compatible=//p' "$ROOT/ota/system.conf")
[ -n "$compatible" ] || die "no compatible= in ota/system.conf"
# os-release(5): IMAGE_ID, IMAGE_VERSION. /etc/os-release links here.
osr=$rootfs/usr/lib/os-release
sed -i '/^IMAGE_ID=/d; /^IMAGE_VERSION=/d' "$osr"
printf 'IMAGE_ID=%s\nIMAGE_VERSION=%s\n' "$compatible" "$version" >> "$osr"

printf 'image_version %s\ncompatible %s\nkeyring %s %s\n' \
    "$version" "$compatible" "$kind" "$(sha256_of "$keyring")" > "$WORK/ota.txt.new"
mv -f "$WORK/ota.txt.new" "$WORK/ota.txt"
echo "image version $version ($compatible)" >&2

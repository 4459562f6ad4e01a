#!/usr/bin/env bash
# Makes a signed skytime update bundle with RAUC 1.13.
#
#   ota/bundle.sh --rootfs ROOTFS.erofs --bootfiles DIR --hook HOOK \
#                 --version VERSION --out OUT.raucb [--build TEXT] [--format verity|plain]
#                 [--compatible NAME]
#
#   --rootfs     the slot's root file system (the image's rootfs.erofs)
#   --bootfiles  the slot's boot files: vmlinuz, initrd.img, dtbs/... (what
#                the image puts into slot-a/)
#   --hook       skytime-rauc-hook built for the appliance (static aarch64)
#   --version    MAJOR.MINOR.PATCH[-PRE]+YYYYMMDD.HHMMSS (ota/README.md);
#                `skytime-ota-build version SEMVER EPOCH` makes one
#   --build      free text for [update] build (default: none)
#   --format     verity (default; the appliance refuses plain bundles) or
#                plain (host tests only: no device-mapper there)
#   --compatible the device family (default skytime-rpi4; the tests make
#                one for another board)
#
# Signing: SKYTIME_SIGNING_CERT, SKYTIME_SIGNING_KEY and
# SKYTIME_SIGNING_KEYRING (the CA the appliances trust), optionally
# SKYTIME_SIGNING_INTERMEDIATE, name a release setup; without them a
# development CA is made once in target/ota-dev-ca (ota/dev-ca.sh).
# RAUC_KEY_PASSPHRASE unlocks an encrypted key.
# Tools: RAUC (default target/trixie-tools/bin/rauc, made by
# tests/scripts/trixie-tools.sh), SKYTIME_OTA_BUILD (default: built with
# cargo into target/release/skytime-ota-build), mksquashfs, openssl.
#
# Same inputs, same bytes: file times and modes inside are fixed, and the
# two random parts of `rauc bundle` (the verity salt, the signing time in
# the signature) are replaced: the hash tree is recomputed with a salt
# derived from the payload, and the manifest is signed without signed
# attributes by `openssl cms` (RSA: deterministic). RAUC checks the result.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)

die() { echo "bundle.sh: $*" >&2; exit 1; }

rootfs= bootfiles= hook= version= out= build= format=verity compatible=skytime-rpi4
while [ $# -gt 0 ]; do
    case "$1" in
    --rootfs) rootfs=${2:?}; shift 2 ;;
    --bootfiles) bootfiles=${2:?}; shift 2 ;;
    --hook) hook=${2:?}; shift 2 ;;
    --version) version=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --build) build=${2:?}; shift 2 ;;
    --format) format=${2:?}; shift 2 ;;
    --compatible) compatible=${2:?}; shift 2 ;;
    *) die "unknown argument $1 (see the header of $0)" ;;
    esac
done
[ -n "$rootfs" ] && [ -n "$bootfiles" ] && [ -n "$hook" ] && [ -n "$version" ] && [ -n "$out" ] \
    || die "--rootfs, --bootfiles, --hook, --version and --out are required"
[ -f "$rootfs" ] || die "--rootfs $rootfs is not a file"
[ -d "$bootfiles" ] || die "--bootfiles $bootfiles is not a directory"
[ -x "$hook" ] || die "--hook $hook is not an executable file"
case "$format" in verity|plain) ;; *) die "--format must be verity or plain" ;; esac

# --- tools
rauc=${RAUC:-$top/target/trixie-tools/bin/rauc}
[ -x "$rauc" ] || die "no RAUC 1.13 at $rauc (run tests/scripts/trixie-tools.sh target/trixie-tools, or set RAUC)"
rauc_version=$("$rauc" --version | awk '{print $2}')
case "$rauc_version" in
1.1[3-9]*|1.[2-9][0-9]*|[2-9].*) ;;
*) die "$rauc is RAUC $rauc_version; bundles need 1.13 (replace-signature, the appliance's version)" ;;
esac
command -v mksquashfs >/dev/null || die "mksquashfs is missing (apt-get install squashfs-tools)"
command -v openssl >/dev/null || die "openssl is missing (apt-get install openssl)"
tool=${SKYTIME_OTA_BUILD:-}
if [ -z "$tool" ]; then
    cargo build --quiet --release --locked --manifest-path "$top/Cargo.toml" -p skytime-ota --bin skytime-ota-build
    tool=$top/target/release/skytime-ota-build
fi

# --- signing material
if [ -n "${SKYTIME_SIGNING_CERT:-}${SKYTIME_SIGNING_KEY:-}${SKYTIME_SIGNING_KEYRING:-}" ]; then
    cert=${SKYTIME_SIGNING_CERT:?SKYTIME_SIGNING_CERT, _KEY and _KEYRING go together}
    key=${SKYTIME_SIGNING_KEY:?SKYTIME_SIGNING_CERT, _KEY and _KEYRING go together}
    keyring=${SKYTIME_SIGNING_KEYRING:?SKYTIME_SIGNING_CERT, _KEY and _KEYRING go together}
else
    "$here/dev-ca.sh" "$top/target/ota-dev-ca"
    cert=$top/target/ota-dev-ca/signing.pem
    key=$top/target/ota-dev-ca/signing.key
    keyring=$top/target/ota-dev-ca/ca.pem
fi
intermediate=${SKYTIME_SIGNING_INTERMEDIATE:-}
for f in "$cert" "$key" "$keyring" ${intermediate:+"$intermediate"}; do
    [ -r "$f" ] || die "cannot read $f"
done

# --- staging, next to the output so the last step is a rename
outdir=$(cd "$(dirname "$out")" && pwd)
stage=$(mktemp -d "$outdir/.bundle.XXXXXX")
trap 'rm -rf "$stage"' EXIT
content=$stage/content
mkdir -m 0755 "$content"

# --- content: rootfs.img, bootfiles.tar (their list first), the hook, the
# manifest; every time inside is the version's build time
epoch=$("$tool" epoch "$version")
cp "$rootfs" "$content/rootfs.img"
"$tool" bootfiles "$bootfiles" --mtime "$epoch" --out "$content/bootfiles.tar" > "$stage/bootfiles.list"
cp "$hook" "$content/hook"
"$tool" manifest "$here/manifest.raucm.in" --compatible "$compatible" --version "$version" \
    --format "$format" --build "$build" > "$content/manifest.raucm"
find "$content" -type d -exec chmod 0755 {} +
find "$content" -type f -exec chmod 0644 {} +
chmod 0755 "$content/hook"

# --- RAUC makes the bundle (its verity salt and signing time are random)
cat > "$stage/build.conf" <<EOF
[system]
compatible=skytime-rpi4
bootloader=noop
[keyring]
path=$keyring
check-purpose=codesign
EOF
rauc_args=(--conf "$stage/build.conf")
sign_args=(--cert "$cert" --key "$key")
[ -z "$intermediate" ] || sign_args+=(--intermediate "$intermediate")
"$rauc" "${rauc_args[@]}" bundle "${sign_args[@]}" \
    --mksquashfs-args "-all-time $epoch -mkfs-time $epoch" \
    "$content" "$stage/rauc.raucb" > "$stage/rauc-bundle.log" 2>&1 \
    || { cat "$stage/rauc-bundle.log" >&2; die "rauc bundle failed"; }

# --- deterministic hash tree (verity) and signature
passin=()
[ -z "${RAUC_KEY_PASSPHRASE:-}" ] || passin=(-passin env:RAUC_KEY_PASSPHRASE)
cms_args=(-sign -binary -noattr -md sha256 -outform DER -signer "$cert" -inkey "$key" "${passin[@]}")
[ -z "$intermediate" ] || cms_args+=(-certfile "$intermediate")
if [ "$format" = verity ]; then
    "$rauc" "${rauc_args[@]}" extract-signature "$stage/rauc.raucb" "$stage/rauc.cms" \
        > "$stage/extract.log" 2>&1 || { cat "$stage/extract.log" >&2; die "rauc extract-signature failed"; }
    openssl cms -verify -noverify -binary -inform DER -in "$stage/rauc.cms" \
        -out "$stage/signed.raucm" 2> "$stage/cms.log" \
        || { cat "$stage/cms.log" >&2; die "cannot read the manifest RAUC signed"; }
    "$tool" reseal --bundle "$stage/rauc.raucb" --manifest "$stage/signed.raucm" \
        --out-bundle "$stage/tree.raucb" --out-content "$stage/to-sign"
    cms_args+=(-nodetach)
else
    "$tool" reseal --bundle "$stage/rauc.raucb" --out-bundle "$stage/tree.raucb" --out-content "$stage/to-sign"
fi
openssl cms "${cms_args[@]}" -in "$stage/to-sign" -out "$stage/signature.cms"
"$rauc" "${rauc_args[@]}" replace-signature "$stage/tree.raucb" "$stage/signature.cms" \
    "$stage/final.raucb" > "$stage/replace.log" 2>&1 \
    || { cat "$stage/replace.log" >&2; die "rauc replace-signature failed"; }

# --- RAUC reads it back with the keyring, then it replaces OUT
"$rauc" "${rauc_args[@]}" info "$stage/final.raucb" > "$stage/info.log" 2>&1 \
    || { cat "$stage/info.log" >&2; die "rauc info refuses the bundle"; }
chmod 0644 "$stage/final.raucb"
mv -f "$stage/final.raucb" "$out"
echo "bundle.sh: $out ($format, version $version, $(stat -c %s "$out") bytes)" >&2

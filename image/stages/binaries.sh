#!/bin/bash
# Stage "binaries": skytime's programs cross-compiled for the appliance,
# and the build host's update tool.
#
#   in:  the workspace (Cargo.lock, daemon/, ota/)
#   out: $WORK/bin/skytimed            (aarch64-unknown-linux-musl, static, stripped)
#        $WORK/bin/skytime-mgmtd       the same: the management gateway
#        $WORK/bin/skytime-rauc-hook   the same: the hook every bundle carries
#                                      (install-check, the boot files)
#        $WORK/bin/skytime-update-guard  the same: fails a new slot that
#                                      skytimed does not confirm in time
#        $WORK/bin/host/skytime-ota-build  for the build host: the image's
#                                      version, and `make bundle` (ota/bundle.sh)
#
# The daemon and the gateway go into the root file system: with no shell
# on the appliance, skytimectl runs elsewhere (over the gateway, or D-Bus),
# and the hook travels in the bundles.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"

# Run from a test (`cargo test`), cargo's per-package variables leak in, and
# build scripts that track them (ring: CARGO_MANIFEST_DIR) would rebuild
# half the tree for nothing.
for v in $(compgen -e); do
    case $v in
    CARGO_MANIFEST_* | CARGO_PKG_* | CARGO_CRATE_* | CARGO_BIN_* | CARGO_PRIMARY_PACKAGE | \
        CARGO_TARGET_TMPDIR | CARGO_RUSTC_CURRENT_DIR | OUT_DIR) unset "$v" ;;
    esac
done
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld
export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
# No build-host paths in the binary.
export RUSTFLAGS="--remap-path-prefix=$ROOT=/skytime --remap-path-prefix=$HOME/.cargo=/cargo"

(cd "$ROOT" && CARGO_TARGET_DIR=$CARGO_TARGET nice -n 10 cargo build --quiet --release --locked \
    --target aarch64-unknown-linux-musl -p skytimed --bin skytimed \
    -p skytime-mgmtd --bin skytime-mgmtd \
    -p skytime-ota --bin skytime-rauc-hook --bin skytime-update-guard)
mkdir -p "$WORK/bin/host"
for bin in skytimed skytime-mgmtd skytime-rauc-hook skytime-update-guard; do
    aarch64-linux-gnu-strip -o "$WORK/bin/$bin.new" \
        "$CARGO_TARGET/aarch64-unknown-linux-musl/release/$bin"
    chmod 0755 "$WORK/bin/$bin.new"
    mv -f "$WORK/bin/$bin.new" "$WORK/bin/$bin"
done

# The host tool: no RUSTFLAGS change from above, so one target directory
# serves both (cargo keys host builds apart from the aarch64 ones).
(cd "$ROOT" && CARGO_TARGET_DIR=$CARGO_TARGET nice -n 10 cargo build --quiet --release --locked \
    -p skytime-ota --bin skytime-ota-build)
install -m 0755 "$CARGO_TARGET/release/skytime-ota-build" "$WORK/bin/host/skytime-ota-build.new"
mv -f "$WORK/bin/host/skytime-ota-build.new" "$WORK/bin/host/skytime-ota-build"

#!/bin/bash
# Stage "binaries": skytimed cross-compiled for the appliance.
#
#   in:  the workspace (Cargo.lock, daemon/)
#   out: $WORK/bin/skytimed  (aarch64-unknown-linux-musl, static, stripped)
#
# Only the daemon: with no shell on the appliance, skytimectl runs
# elsewhere (it talks D-Bus).
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
    --target aarch64-unknown-linux-musl -p skytimed --bin skytimed)
mkdir -p "$WORK/bin"
aarch64-linux-gnu-strip -o "$WORK/bin/skytimed.new" \
    "$CARGO_TARGET/aarch64-unknown-linux-musl/release/skytimed"
chmod 0755 "$WORK/bin/skytimed.new"
mv -f "$WORK/bin/skytimed.new" "$WORK/bin/skytimed"

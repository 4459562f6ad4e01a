#!/usr/bin/env bash
# Debian 13 (trixie) amd64 tools for the tests, beside the host's Debian 12
# ones and without touching them: QEMU 10 (its raspi4b machine) and RAUC
# 1.13 (the appliance's RAUC, with InspectBundle and min-bundle-version),
# or the packages and tools given (chrony 4.6 for the NTS tests: its
# AES-128-GCM-SIV and record 1024).
#
#   trixie-tools.sh DIR [PACKAGES TOOLS]   (PACKAGES comma-separated,
#                                          TOOLS space-separated)
#
# leaves DIR/root (the packages unpacked by `mmdebstrap --variant=extract`:
# nothing is installed, no maintainer script runs) and DIR/bin/ with one
# wrapper per tool that runs the trixie binary through trixie's own dynamic
# loader and libraries, so host paths work unchanged (no chroot, no mounts).
# Cached: a second run with the same package list does nothing.
set -euo pipefail

dir=${1:?usage: trixie-tools.sh DIR [PACKAGES TOOLS]}
packages=${2:-qemu-system-arm,rauc,rauc-service}
tools=${3:-"qemu-system-aarch64 rauc"}
stamp="$packages"

if [ -f "$dir/stamp" ] && [ "$(cat "$dir/stamp")" = "$stamp" ]; then
    exit 0
fi
command -v mmdebstrap >/dev/null || { echo "mmdebstrap missing (apt-get install mmdebstrap)" >&2; exit 1; }

mkdir -p "$dir"
work=$(mktemp -d "$dir/build.XXXXXX")
trap 'rm -rf "$work"' EXIT

mmdebstrap --quiet --variant=extract --architectures=amd64 --include="$packages" \
    trixie "$work/root.tar" http://deb.debian.org/debian
mkdir "$work/root"
tar -xf "$work/root.tar" -C "$work/root"
rm "$work/root.tar"

mkdir "$work/bin"
for t in $tools; do
    if [ -x "$work/root/usr/bin/$t" ]; then sub=bin
    elif [ -x "$work/root/usr/sbin/$t" ]; then sub=sbin
    else echo "trixie package set has no /usr/bin/$t or /usr/sbin/$t" >&2; exit 1
    fi
    # The wrapper finds the root beside it, so DIR may move.
    cat > "$work/bin/$t" <<EOF
#!/bin/sh
r=\$(dirname "\$(readlink -f "\$0")")/../root
exec "\$r/usr/lib64/ld-linux-x86-64.so.2" --library-path "\$r/usr/lib/x86_64-linux-gnu" "\$r/usr/$sub/$t" "\$@"
EOF
    chmod 0755 "$work/bin/$t"
    "$work/bin/$t" --version 2>&1 | head -n1 >&2
done

rm -rf "$dir/root" "$dir/bin"
mv "$work/root" "$dir/root"
mv "$work/bin" "$dir/bin"
echo "$stamp" > "$dir/stamp"

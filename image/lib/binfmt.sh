#!/bin/bash
# Make arm64 binaries runnable on the amd64 build host (qemu-user-static).
# Nothing registers binfmt handlers automatically in a container without
# systemd, so do what systemd-binfmt would do, once.
set -euo pipefail
if [ "$(uname -m)" = aarch64 ]; then exit 0; fi
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    conf=/usr/lib/binfmt.d/qemu-aarch64.conf
    [ -r "$conf" ] || { echo "$conf missing: install qemu-user-static (make image-deps)" >&2; exit 1; }
    grep -v '^#' "$conf" | head -n1 > /proc/sys/fs/binfmt_misc/register
fi

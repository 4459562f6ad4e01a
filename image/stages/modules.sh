#!/bin/bash
# Stage "modules": prune the kernel modules to image/keep-modules.list and
# what those need (modules.dep), then index what is left (depmod).
#
#   in:  $WORK/rootfs, image/keep-modules.list
#   out: $WORK/rootfs with the other modules removed
#        $WORK/modules-kept.txt  the modules kept (for the manifest)
#
# Debian 13's modules are xz-compressed (name.ko.xz); patterns name them
# without the compression suffix, so they keep working if that changes. A
# pattern that matches neither a module nor a built-in driver
# (modules.builtin) is an error: a renamed or moved module must not
# silently drop out of the image.
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"
shopt -s extglob

rootfs=$WORK/rootfs
kver=$(kernel_version "$rootfs")
moddir=$rootfs/usr/lib/modules/$kver
[ -s "$moddir/modules.dep" ] || die "$moddir/modules.dep missing"

mapfile -t patterns < <(grep -v '^#' "$IMAGE/keep-modules.list" | grep -v '^ *$')
# Every module, as modules.dep names it (kernel/fs/erofs/erofs.ko.xz).
mapfile -t all < <(cd "$moddir" && find kernel -name '*.ko' -o -name '*.ko.*' | sort)
[ "${#all[@]}" -gt 0 ] || die "no kernel modules under $moddir/kernel"

wanted=$WORK/modules-wanted.txt
: > "$wanted"
declare -A matched=()
for m in "${all[@]}"; do
    name=${m#kernel/}
    name=${name%.ko*}.ko
    for p in "${patterns[@]}"; do
        # shellcheck disable=SC2053 # the pattern is a glob on purpose
        if [[ $name == $p ]]; then
            echo "$m" >> "$wanted"
            matched[$p]=1
            break
        fi
    done
done
# A pattern for a driver this kernel has built in (modules.builtin) is met.
if [ -s "$moddir/modules.builtin" ]; then
    while read -r b; do
        name=${b#kernel/}
        for p in "${patterns[@]}"; do
            # shellcheck disable=SC2053
            [[ $name == $p ]] && matched[$p]=1
        done
    done < "$moddir/modules.builtin"
fi
for p in "${patterns[@]}"; do
    [ -n "${matched[$p]:-}" ] || die "image/keep-modules.list: '$p' matches no module of $kver"
done

# The wanted modules and, transitively, every module they depend on.
# modules.dep: "kernel/a.ko.xz: kernel/b.ko.xz kernel/c.ko.xz"
awk 'NR == FNR { queue[n++] = $0; next }
    { m = $1; sub(/:$/, "", m); deps[m] = ""; for (i = 2; i <= NF; i++) deps[m] = deps[m] " " $i }
    END {
        while (n > 0) {
            m = queue[--n]
            if (m in kept) continue
            if (!(m in deps)) { print "modules.dep has no " m > "/dev/stderr"; exit 1 }
            kept[m] = 1
            k = split(deps[m], d, " ")
            for (j = 1; j <= k; j++) queue[n++] = d[j]
        }
        for (m in kept) print m
    }' "$wanted" "$moddir/modules.dep" | sort > "$WORK/modules-kept.txt"

printf '%s\n' "${all[@]}" | comm -23 - "$WORK/modules-kept.txt" | (cd "$moddir" && xargs -r rm -f)
find "$moddir/kernel" -type d -empty -delete
depmod -b "$rootfs" "$kver"
echo "kept $(wc -l < "$WORK/modules-kept.txt") of ${#all[@]} kernel modules" >&2

#!/bin/bash
# Build the skytime Raspberry Pi 4 SD-card image (`make image`).
#
#   image/build.sh [--out DIR] [--reuse-base]
#
# Output (DIR defaults to target/image):
#   skytime-rpi4.img         the SD-card image (MBR: boot, rootfs A, rootfs B, data)
#   skytime-rpi4.img.sha256  its checksum
#   skytime-rpi4.manifest    every Debian package (version, source, .deb sha256),
#                            the skytime sources and binaries, the build inputs
#   rootfs.erofs, boot.vfat  the partition images (for OTA bundles and tests)
#
# Inputs: Debian 12 arm64 packages (mmdebstrap, image/packages.list), the
# skytime binaries (cargo, aarch64-unknown-linux-musl), overlays/, ota/,
# image/rootfs/ (units, config, D-Bus policy). Needs only the Debian archive
# and crates.io; .debs are cached under target/image/.
#
# Reproducible: the same sources, package versions and SOURCE_DATE_EPOCH
# (default: the last git commit's time) give a bit-identical image.
# --reuse-base skips mmdebstrap when DIR/work/base exists (development only).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=$root/target/image
reuse_base=no
while [ $# -gt 0 ]; do
    case $1 in
    --out) out=$(realpath -m "$2"); shift 2 ;;
    --reuse-base) reuse_base=yes; shift ;;
    *) echo "usage: $0 [--out DIR] [--reuse-base]" >&2; exit 2 ;;
    esac
done
work=$out/work
mkdir -p "$out" "$work"

export LC_ALL=C TZ=UTC
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 1700000000)
fi
export SOURCE_DATE_EPOCH
# Fixed identities, so two builds agree byte for byte.
disk_signature=0x5c7e0001           # MBR: PARTUUIDs are 5c7e0001-0N
fat_volid=5C7E0001
rootfs_uuid=5c7e0002-0000-4000-8000-000000000001
data_uuid=5c7e0003-0000-4000-8000-000000000001
slot_size_mib=512
data_size_mib=64
boot_size_mib=256

t0=$(date +%s)
step() { echo "== [$(($(date +%s) - t0))s] $*" >&2; }

step "checking build tools"
missing=
for tool in mmdebstrap mkfs.erofs mkfs.vfat mcopy mmd genimage mkimage mkenvimage \
    aarch64-linux-gnu-gcc aarch64-linux-gnu-strip qemu-aarch64-static dtc fdtoverlay \
    fdtget cpp mkfs.ext4 systemctl systemd-sysusers depmod cargo rustup; do
    command -v "$tool" >/dev/null || missing="$missing $tool"
done
[ -z "$missing" ] || { echo "missing build tools:$missing (run make image-deps)" >&2; exit 1; }
rustup target list --installed | grep -qx aarch64-unknown-linux-musl ||
    { echo "rust target aarch64-unknown-linux-musl missing (run make image-deps)" >&2; exit 1; }

# --- 1. skytime binaries -----------------------------------------------------
step "building skytime for aarch64-unknown-linux-musl"
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
export RUSTFLAGS="--remap-path-prefix=$root=/skytime --remap-path-prefix=$HOME/.cargo=/cargo"
# Only the daemon: with no shell on the appliance, skytimectl runs elsewhere
# (it talks D-Bus). Own target dir: no fight over the workspace's cargo lock.
bins=(skytimed)
CARGO_TARGET_DIR=$root/target/image/cargo nice -n 10 cargo build --quiet --release --locked \
    --target aarch64-unknown-linux-musl -p skytimed --bin skytimed
bindir=$root/target/image/cargo/aarch64-unknown-linux-musl/release

# --- 2. Debian root file system ----------------------------------------------
if [ "$reuse_base" = yes ] && [ -d "$work/base/usr" ]; then
    step "reusing $work/base"
else
    step "mmdebstrap (Debian arm64 packages, initramfs)"
    "$here/lib/rootfs-base.sh" "$work/base"
fi

step "customizing the root file system"
rootfs=$work/rootfs
rm -rf "$rootfs"
cp -a "$work/base" "$rootfs"
kver=$(ls "$rootfs/lib/modules")
[ "$(echo "$kver" | wc -w)" = 1 ] || { echo "expected one kernel, found: $kver" >&2; exit 1; }

# skytime files, binaries, the out-of-tree PPS driver
cp -a --no-preserve=ownership "$here/rootfs/." "$rootfs/"
# The daemon's own unit, D-Bus policy and sysusers entry, unchanged from
# daemon/skytimed/dist/ (image/rootfs/ only adds a drop-in to the unit).
dist=$root/daemon/skytimed/dist
install -m 0644 "$dist/skytimed.service" "$rootfs/usr/lib/systemd/system/skytimed.service"
install -D -m 0644 "$dist/org.skytime.Appliance1.conf" \
    "$rootfs/usr/share/dbus-1/system.d/org.skytime.Appliance1.conf"
install -D -m 0644 "$dist/skytime.sysusers" "$rootfs/usr/lib/sysusers.d/skytime.conf"
install -D -m 0644 "$dist/50-skytime.rules" "$rootfs/usr/share/polkit-1/rules.d/50-skytime.rules"
for b in "${bins[@]}"; do
    aarch64-linux-gnu-strip -o "$rootfs/usr/bin/$b" "$bindir/$b"
    chmod 0755 "$rootfs/usr/bin/$b"
done
mkdir -p "$rootfs/lib/modules/$kver/updates"
"$here/lib/pps-gpio.sh" "$kver" "$rootfs/lib/modules/$kver/updates/pps-gpio.ko"
mkdir -p "$rootfs/usr/share/doc/skytime"
cp "$here/README.md" "$rootfs/usr/share/doc/skytime/README.md"

# kernel, initramfs and DTBs go to the boot partition (U-Boot cannot read erofs)
slotboot=$work/slot-boot
rm -rf "$slotboot"
mkdir -p "$slotboot/dtbs"
cp "$rootfs/boot/vmlinuz-$kver" "$slotboot/vmlinuz"
cp "$rootfs/boot/initrd.img-$kver" "$slotboot/initrd.img"
# ota/boot.cmd gives the kernel 0x00200000-0x05f00000 on the Pi: the
# arm64 Image header's image_size (bytes 16-23) must fit.
kimage_size=$(od -An -t u8 -j 16 -N 8 "$slotboot/vmlinuz" | tr -d ' ')
[ "$kimage_size" -le $((0x05f00000 - 0x00200000)) ] ||
    { echo "kernel image_size $kimage_size does not fit ota/boot.cmd's Pi layout" >&2; exit 1; }
"$root/overlays/build.sh" --base-dtb "$rootfs/usr/lib/linux-image-$kver/broadcom/bcm2711-rpi-4-b.dtb" \
    --out "$work/overlays" >&2
cp "$work/overlays/dtbs/"*.dtb "$slotboot/dtbs/"
rm -rf "$rootfs/boot/"* "$rootfs/usr/lib/linux-image-$kver" "$rootfs/"{vmlinuz,initrd.img}{,.old}

# prune kernel modules to image/keep-modules.list and their dependencies
moddir=$rootfs/lib/modules/$kver
keep=$work/keep-modules
: > "$keep"
while read -r pat; do
    case $pat in '' | '#'*) continue ;; esac
    (cd "$moddir" && find kernel -path "kernel/$pat" -name '*.ko' >> "$keep")
done < "$here/keep-modules.list"
# modules.dep lines: "kernel/a.ko: kernel/b.ko kernel/c.ko"; add deps until stable
while :; do
    before=$(sort -u "$keep" | wc -l)
    grep -F -f <(sed 's/$/:/' "$keep") "$moddir/modules.dep" | cut -d: -f2 | tr ' ' '\n' | grep . >> "$keep" || true
    sort -u -o "$keep" "$keep"
    [ "$(wc -l < "$keep")" = "$before" ] && break
done
(cd "$moddir" && find kernel -name '*.ko' | sort) | comm -23 - "$keep" | (cd "$moddir" && xargs rm -f)
find "$moddir/kernel" -type d -empty -delete
depmod -b "$rootfs" "$kver"

# users, units, locked accounts
systemd-sysusers --root="$rootfs" >&2
systemctl --root="$rootfs" enable skytimed.service skytime-firstboot.service \
    skytime-mark-good.service skytime-identity.service \
    systemd-networkd.service >&2
# No logins of any kind; no first-boot prompts; nothing that writes /etc.
systemctl --root="$rootfs" mask getty@.service serial-getty@.service console-getty.service \
    getty.target systemd-firstboot.service systemd-machine-id-commit.service \
    systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
    dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer \
    systemd-pstore.service >&2
sed -i -E 's/^(root):[^:]*:/\1:!*:/' "$rootfs/etc/shadow"
: > "$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
echo skytime > "$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tskytime\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$rootfs/etc/hosts"
# mmdebstrap leaves the build host's resolv.conf; the appliance resolves no
# names (skytimed serves addresses), so it gets none of the host's.
printf '# skytime resolves no host names.\n' > "$rootfs/etc/resolv.conf"
chmod 0644 "$rootfs/etc/resolv.conf"

# what the image contains, before the package database is dropped
mv "$rootfs/.skytime-packages" "$work/packages.txt"

# Nothing at run time needs apt's or dpkg's databases, caches or logs.
rm -rf "$rootfs/var/lib/apt/lists/"* "$rootfs/var/cache/"* "$rootfs/var/log/"* \
    "$rootfs/var/lib/dpkg/"*-old "$rootfs/usr/share/initramfs-tools" \
    "$rootfs/etc/initramfs-tools" "$rootfs/usr/share/bug" "$rootfs/usr/share/lintian"
find "$rootfs/usr/share/doc" -mindepth 1 -maxdepth 1 ! -name skytime -exec rm -rf {} +
find "$rootfs" -xdev -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# --- 3. partition images ------------------------------------------------------
step "rootfs.erofs"
rm -f "$out/rootfs.erofs"
mkfs.erofs --quiet -zlz4 -T "$SOURCE_DATE_EPOCH" -U "$rootfs_uuid" \
    "$out/rootfs.erofs" "$rootfs" >&2
rootfs_size=$(stat -c %s "$out/rootfs.erofs")
[ "$rootfs_size" -lt $((slot_size_mib * 1024 * 1024)) ] ||
    { echo "rootfs.erofs ($rootfs_size bytes) does not fit a ${slot_size_mib} MiB slot" >&2; exit 1; }

step "boot.vfat (firmware, U-Boot, boot script, both slots' kernels)"
bootdir=$work/boot
rm -rf "$bootdir"
mkdir -p "$bootdir"
. "$here/lib/apt-private.sh"
apt_private_update
dpkg -x "$(apt_private_fetch raspi-firmware all)" "$work/raspi-firmware"
dpkg -x "$(apt_private_fetch u-boot-rpi arm64)" "$work/u-boot-rpi"
cp "$work/raspi-firmware/usr/lib/raspi-firmware/"{start4.elf,fixup4.dat,bootcode.bin} "$bootdir/"
cp "$work/raspi-firmware/usr/share/doc/raspi-firmware/copyright" "$bootdir/LICENCE.raspi-firmware"
cp "$work/u-boot-rpi/usr/lib/u-boot/rpi_arm64/u-boot.bin" "$bootdir/u-boot.bin"
cp "$slotboot/dtbs/bcm2711-rpi-4-b.dtb" "$bootdir/bcm2711-rpi-4-b.dtb"
cp "$here/boot/config.txt" "$here/boot/skytime.toml.example" \
    "$here/boot/skytime-identity.conf.example" "$here/boot/README.txt" "$bootdir/"
# mkimage stamps SOURCE_DATE_EPOCH (exported above) into the header.
mkimage -A arm64 -O linux -T script -C none \
    -n "skytime A/B boot" -d "$root/ota/boot.cmd" "$bootdir/boot.scr" >&2
printf 'BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n' > "$work/skytime.env.txt"
mkenvimage -s 0x4000 -o "$bootdir/skytime.env" "$work/skytime.env.txt"
cp -a "$slotboot" "$bootdir/slot-a"
cp -a "$slotboot" "$bootdir/slot-b"
find "$bootdir" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
rm -f "$out/boot.vfat"
mkfs.vfat -C -F 32 -n SKYTIME -i "$fat_volid" --invariant "$out/boot.vfat" $((boot_size_mib * 1024)) >&2
# mtools: fixed order (sorted), fixed times (-m keeps the epoch mtimes)
(cd "$bootdir" && find . -mindepth 1 -type d | sort | sed 's|^\./||') | while read -r d; do
    mmd -i "$out/boot.vfat" "::$d"
done
(cd "$bootdir" && find . -type f | sort | sed 's|^\./||') | while read -r f; do
    mcopy -m -i "$out/boot.vfat" "$bootdir/$f" "::$f"
done

step "data.ext4 (empty: first boot fills it)"
rm -f "$work/data.ext4"
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -L skytime-data -U "$data_uuid" \
    -E "hash_seed=$data_uuid,root_owner=0:0" "$work/data.ext4" "${data_size_mib}M"

step "skytime-rpi4.img (genimage)"
sed -e "s/@DISK_SIGNATURE@/$disk_signature/" -e "s/@SLOT_MIB@/$slot_size_mib/" \
    -e "s/@BOOT_MIB@/$boot_size_mib/" -e "s/@DATA_MIB@/$data_size_mib/" \
    "$here/genimage.cfg" > "$work/genimage.cfg"
cp "$out/boot.vfat" "$out/rootfs.erofs" "$work/"
rm -rf "$work/genimage-tmp" "$work/genimage-root"
mkdir -p "$work/genimage-root"
genimage --config "$work/genimage.cfg" --inputpath "$work" --outputpath "$out" \
    --tmppath "$work/genimage-tmp" --rootpath "$work/genimage-root" >&2
(cd "$out" && sha256sum skytime-rpi4.img > skytime-rpi4.img.sha256)

# --- 4. manifest ---------------------------------------------------------------
step "manifest"
{
    echo "# skytime-rpi4.img manifest"
    echo "source_date_epoch $SOURCE_DATE_EPOCH"
    echo "skytime_commit $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "skytime_tree_dirty $(git -C "$root" status --porcelain 2>/dev/null | grep -q . && echo yes || echo no)"
    echo "kernel $kver"
    echo "image_sha256 $(cut -d' ' -f1 "$out/skytime-rpi4.img.sha256")"
    echo "rootfs_sha256 $(sha256sum < "$out/rootfs.erofs" | cut -d' ' -f1)"
    echo "boot_sha256 $(sha256sum < "$out/boot.vfat" | cut -d' ' -f1)"
    echo
    echo "# skytime binaries (aarch64-unknown-linux-musl, stripped)"
    for b in "${bins[@]}"; do echo "binary /usr/bin/$b $(sha256sum < "$rootfs/usr/bin/$b" | cut -d' ' -f1)"; done
    echo "module pps-gpio.ko $(sha256sum < "$rootfs/lib/modules/$kver/updates/pps-gpio.ko" | cut -d' ' -f1)"
    echo
    echo "# build inputs from this repository (sha256 of each file)"
    (cd "$root" && find image ota overlays daemon/skytimed/dist -type f ! -name '*~' | sort | xargs sha256sum | sed 's/^/input /')
    echo "input Cargo.lock $(sha256sum < "$root/Cargo.lock" | cut -d' ' -f1)"
    echo
    echo "# Debian packages: name version arch source source-version sha256-of-.deb"
    while read -r name version arch src srcver; do
        deb=$(ls "$root/target/image/apt-cache/${name}_${version//:/%3a}_${arch}.deb" 2>/dev/null | head -n1 || true)
        sum=$([ -n "$deb" ] && sha256sum < "$deb" | cut -d' ' -f1 || echo unknown)
        echo "package $name $version $arch ${src:-$name} ${srcver:-$version} $sum"
    done < "$work/packages.txt"
    for extra in raspi-firmware u-boot-rpi; do
        deb=$(ls "$root/target/image/debs/${extra}_"*.deb | head -n1)
        echo "package $(basename "$deb" .deb | tr _ ' ') (boot partition) $(sha256sum < "$deb" | cut -d' ' -f1)"
    done
    for deb in "$root/target/image/debs/linux-"{source,headers,kbuild}*; do
        [ -e "$deb" ] && echo "build-input $(basename "$deb") $(sha256sum < "$deb" | cut -d' ' -f1)"
    done
} > "$out/skytime-rpi4.manifest"

step "done: $out/skytime-rpi4.img ($(du -h --apparent-size "$out/skytime-rpi4.img" | cut -f1), rootfs $((rootfs_size / 1024 / 1024)) MiB)"
cat "$out/skytime-rpi4.img.sha256"

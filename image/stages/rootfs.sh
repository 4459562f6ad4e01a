#!/bin/bash
# Stage "rootfs": the appliance's root file system tree, from the Debian
# base plus skytime.
#
#   in:  $WORK/base, $WORK/bin/skytimed, $WORK/bin/skytime-mgmtd,
#        $WORK/bin/skytime-update-guard,
#        image/rootfs/, daemon/skytimed/dist/, daemon/mgmtd/dist/
#   out: $WORK/rootfs/         the tree (kernel and initramfs still in /boot:
#                              the slot-boot stage takes them)
#        $WORK/packages.txt    what it contains (the manifest's package lines)
set -euo pipefail
. "$(dirname "$0")/../lib/common.sh"

rootfs=$WORK/rootfs
remove_tree "$rootfs"
cp -a "$WORK/base" "$rootfs"
mv "$rootfs/.skytime-packages" "$WORK/packages.txt"

# skytime's own files. The daemon's unit, D-Bus policy, polkit rule and
# sysusers entry come unchanged from daemon/skytimed/dist/ (image/rootfs/
# only adds a drop-in to the unit).
cp -a --no-preserve=ownership "$IMAGE/rootfs/." "$rootfs/"
dist=$ROOT/daemon/skytimed/dist
install -m 0644 "$dist/skytimed.service" "$rootfs/usr/lib/systemd/system/skytimed.service"
install -D -m 0644 "$dist/org.skytime.Appliance1.conf" \
    "$rootfs/usr/share/dbus-1/system.d/org.skytime.Appliance1.conf"
install -D -m 0644 "$dist/skytime.sysusers" "$rootfs/usr/lib/sysusers.d/skytime.conf"
install -D -m 0644 "$dist/50-skytime.rules" "$rootfs/usr/share/polkit-1/rules.d/50-skytime.rules"
install -m 0755 "$WORK/bin/skytimed" "$rootfs/usr/bin/skytimed"
# The management gateway, likewise from daemon/mgmtd/dist/ (image/rootfs/
# adds its configuration and the enrolment unit): off until enrolled.
mgmt=$ROOT/daemon/mgmtd/dist
install -m 0644 "$mgmt/skytime-mgmtd.service" "$mgmt/skytime-mgmtd.socket" \
    "$rootfs/usr/lib/systemd/system/"
install -D -m 0644 "$mgmt/skytime-mgmt.sysusers" "$rootfs/usr/lib/sysusers.d/skytime-mgmt.conf"
install -m 0755 "$WORK/bin/skytime-mgmtd" "$rootfs/usr/bin/skytime-mgmtd"
# The backstop of skytimed's health check after an update (ota/README.md,
# "The update guard"); its unit is in image/rootfs/.
install -m 0755 "$WORK/bin/skytime-update-guard" "$rootfs/usr/libexec/skytime/skytime-update-guard"
install -D -m 0644 "$IMAGE/README.md" "$rootfs/usr/share/doc/skytime/README.md"

# Users, units; no logins of any kind, no first-boot prompts, nothing that
# writes /etc. The image's own systemd tools do it (through qemu-user): the
# host's older ones misread newer sysusers.d and unit syntax.
"$IMAGE/lib/binfmt.sh"
mount -t proc proc "$rootfs/proc"
trap 'umount "$rootfs/proc"' EXIT
chroot "$rootfs" systemd-sysusers >&2
chroot "$rootfs" systemctl enable skytimed.service skytime-firstboot.service \
    skytime-mark-good.service skytime-update-guard.service skytime-identity.service \
    skytime-mgmt-enrol.service skytime-mgmtd.socket \
    systemd-networkd.service systemd-resolved.service >&2
chroot "$rootfs" systemctl mask getty@.service serial-getty@.service console-getty.service \
    getty.target systemd-firstboot.service systemd-machine-id-commit.service \
    systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
    dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer \
    systemd-pstore.service >&2
umount "$rootfs/proc"
trap - EXIT
sed -i -E 's/^(root):[^:]*:/\1:!*:/' "$rootfs/etc/shadow"
: > "$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
echo skytime > "$rootfs/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tskytime\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$rootfs/etc/hosts"
# Names resolve through the DNS servers of the links (DHCP's, or the
# [network] dns list), which systemd-resolved keeps in this file; none of
# the build host's resolv.conf comes in, and no stub listener is needed.
rm -f "$rootfs/etc/resolv.conf"
ln -s ../run/systemd/resolve/resolv.conf "$rootfs/etc/resolv.conf"

# Nothing at run time needs apt's or dpkg's caches, lists or logs, or the
# initramfs generator (the initramfs is built).
rm -rf "$rootfs/var/lib/apt/lists/"* "$rootfs/var/cache/"* "$rootfs/var/log/"* \
    "$rootfs/var/lib/dpkg/"*-old "$rootfs/usr/share/initramfs-tools" \
    "$rootfs/etc/initramfs-tools" "$rootfs/usr/share/bug" "$rootfs/usr/share/lintian"
find "$rootfs/usr/share/doc" -mindepth 1 -maxdepth 1 ! -name skytime -exec rm -rf {} +

# setuid and setgid bits: only those in image/setuid.allow stay (why, for
# each, is written there); tests/tests/image_root.rs checks the result.
allowed=$(grep -v '^#' "$IMAGE/setuid.allow" | awk 'NF { print $1 }')
find "$rootfs" -xdev -type f -perm /6000 -printf '/%P\n' | LC_ALL=C sort |
while read -r path; do
    if ! grep -qxF "$path" <<<"$allowed"; then
        chmod ug-s "$rootfs$path"
    fi
done

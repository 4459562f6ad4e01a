#!/bin/bash
# What a Debian root file system tree has installed, with the sha256 of the
# exact .deb each package was installed from.
#
#   image/lib/installed-debs.sh ROOTDIR > list
#
# One line per package, sorted: name version arch source source-version sha256.
# Run by mmdebstrap's customize hook (image/stages/base.sh), while the .debs
# apt used are still in ROOTDIR/var/cache/apt/archives: apt checks every file
# there against the signed index before it installs it, so these are the
# bytes that were installed. A package without its .deb is an error.
set -euo pipefail
tree=$1
archives=$tree/var/cache/apt/archives
# The host's dpkg-query reads the tree's database (no emulated chroot).
dpkg-query --admindir="$tree/var/lib/dpkg" -W \
    -f='${Package} ${Version} ${Architecture} ${source:Package} ${source:Version}\n' |
    LC_ALL=C sort |
    while read -r name version arch src srcver; do
        # apt names a cached .deb name_version_arch.deb, ':' (epoch) as %3a.
        deb=$archives/${name}_${version//:/%3a}_${arch}.deb
        [ -f "$deb" ] || { echo "installed-debs: no $deb for $name $version" >&2; exit 1; }
        sum=$(sha256sum < "$deb")
        echo "$name $version $arch ${src:-$name} ${srcver:-$version} ${sum%% *}"
    done

#!/bin/bash
# Private apt configuration for fetching single arm64 (and amd64) .debs from
# the Debian archive without touching the host's apt sources or dpkg
# architectures. Everything lives under $SKYTIME_APT_ROOT (default
# target/image/apt-$SKYTIME_SUITE: each suite keeps its own lists) and
# downloaded .debs are cached in $SKYTIME_DEB_CACHE.
#
# The suite defaults to the image's, Debian 13 (trixie); a caller that
# needs another one sets SKYTIME_SUITE (e.g. bookworm) before sourcing.
#
# Usage (sourced):  . image/lib/apt-private.sh; apt_private_update
#                   deb=$(apt_private_fetch linux-image-arm64 arm64)
set -euo pipefail

: "${SKYTIME_ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${SKYTIME_SUITE:=trixie}"
: "${SKYTIME_APT_ROOT:=$SKYTIME_ROOT/target/image/apt-$SKYTIME_SUITE}"
: "${SKYTIME_DEB_CACHE:=$SKYTIME_ROOT/target/image/debs}"
: "${SKYTIME_MIRROR:=http://deb.debian.org/debian}"
: "${SKYTIME_SECURITY_MIRROR:=http://deb.debian.org/debian-security}"

apt_private_opts() {
    local r=$SKYTIME_APT_ROOT
    echo -o "Dir::Etc::SourceList=$r/sources.list" \
        -o "Dir::Etc::SourceParts=$r/sources.list.d" \
        -o "Dir::Etc::Preferences=$r/preferences" \
        -o "Dir::Etc::PreferencesParts=$r/preferences.d" \
        -o "Dir::State=$r/state" \
        -o "Dir::State::status=$r/status" \
        -o "Dir::Cache=$r/cache" -o "Dir::Cache::pkgcache=pkgcache.bin" \
        -o "Dir::Cache::srcpkgcache=srcpkgcache.bin" \
        -o "APT::Architecture=amd64" \
        -o "APT::Architectures::=amd64" -o "APT::Architectures::=arm64" \
        -o "Acquire::Languages=none" -o "APT::Sandbox::User=root" \
        -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false" \
        -o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false" -o "Debug::NoLocking=1"
}

apt_private_setup() {
    local r=$SKYTIME_APT_ROOT k=/usr/share/keyrings/debian-archive-keyring.gpg
    mkdir -p "$r/sources.list.d" "$r/preferences.d" "$r/state/lists/partial" \
        "$r/cache/archives/partial" "$SKYTIME_DEB_CACHE"
    touch "$r/status" "$r/preferences"
    cat > "$r/sources.list" <<SRC
deb [signed-by=$k arch=amd64,arm64] $SKYTIME_MIRROR $SKYTIME_SUITE main non-free-firmware
deb [signed-by=$k arch=amd64,arm64] $SKYTIME_MIRROR $SKYTIME_SUITE-updates main non-free-firmware
deb [signed-by=$k arch=amd64,arm64] $SKYTIME_SECURITY_MIRROR $SKYTIME_SUITE-security main non-free-firmware
SRC
}

# Refresh the package lists at most once per hour (they are the slow part).
apt_private_update() {
    apt_private_setup
    local stamp=$SKYTIME_APT_ROOT/state/updated
    if [ -z "$(find "$stamp" -mmin -60 2>/dev/null)" ]; then
        # shellcheck disable=SC2046
        apt-get $(apt_private_opts) -q update >&2
        touch "$stamp"
    fi
}

# apt_private_version PKG ARCH -> candidate version
apt_spec() { if [ "$2" = all ]; then echo "$1"; else echo "$1:$2"; fi; }

apt_private_version() {
    # shellcheck disable=SC2046
    apt-cache $(apt_private_opts) policy "$(apt_spec "$1" "$2")" | awk '/Candidate:/ {print $2}'
}

# apt_private_depends PKG ARCH -> first "Depends:" package name matching REGEX
apt_private_dep() {
    # shellcheck disable=SC2046
    apt-cache $(apt_private_opts) depends "$1:$2" | awk -v re="$3" '$1=="Depends:" && $2 ~ re {sub(/:.*/,"",$2); print $2; exit}'
}

# apt_private_fetch PKG ARCH [VERSION] -> path of the cached .deb (downloads once)
apt_private_fetch() {
    local pkg=$1 arch=$2 ver=${3:-}
    [ -n "$ver" ] || ver=$(apt_private_version "$pkg" "$arch")
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || { echo "no candidate for $pkg:$arch" >&2; return 1; }
    local f="$SKYTIME_DEB_CACHE/${pkg}_${ver//:/%3a}_${arch}.deb"
    if [ ! -s "$f" ]; then
        # Some packages (linux-source, raspi-firmware) are Architecture: all.
        local tmp; tmp=$(mktemp -d "$SKYTIME_DEB_CACHE/dl.XXXXXX")
        # shellcheck disable=SC2046
        (cd "$tmp" && apt-get $(apt_private_opts) -q download "$(apt_spec "$pkg" "$arch")=$ver" >&2)
        mv "$tmp"/*.deb "$f"
        rmdir "$tmp"
    fi
    echo "$f"
}

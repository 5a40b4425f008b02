#!/bin/sh
# Builds (once) the base image of the real-host tier and a local Debian mirror
# holding Docker's packages, cached under CACHE_ROOT/<key>/ where <key> is the
# hash of this script (it holds every debootstrap argument and package list)
# and of the Debian release.
#
#   build-image.sh CACHE_ROOT [RELEASE]   prints CACHE_ROOT/<key> when ready
#
# RELEASE is bullseye (11), bookworm (12, the default) or trixie (13).
#
# The image is built in a temporary directory and renamed into place at the
# end, so a half-built cache is never used; concurrent callers wait on a lock.
# This is the only part of the tier that uses the network (debootstrap and
# `apt-get --download-only` in a chroot that shares the host's network); the
# containers booted from the image have no network at all.
set -eu

cache_root=$1
suite=${2:-bookworm}
case $suite in
bullseye | bookworm | trixie) ;;
*)
    echo "build-image.sh: unknown release '$suite' (bullseye, bookworm or trixie)" >&2
    exit 2
    ;;
esac
mirror=http://deb.debian.org/debian
include=systemd-sysv,udev,kmod,iproute2,dbus,procps,sudo
# Everything the tool may install from the distribution: Docker Engine with
# its Recommends (the tool may or may not pass --no-install-recommends), and
# what fetching a repository key needs; and what the network scenarios run
# inside a container: a forward proxy, an HTTP(S) server, openssl for a CA.
# man-db and bash-completion: the release scenarios read the package's man
# page and load its completion.
mirror_packages="docker.io ca-certificates curl gnupg apt-transport-https tinyproxy python3 openssl man-db bash-completion"

key=$( (cat "$0" && echo "$suite") | sha256sum | cut -c1-16)
final=$cache_root/$key
mkdir -p "$cache_root"

exec 9>"$cache_root/.lock"
flock 9
if [ -f "$final/ready" ]; then
    echo "$final"
    exit 0
fi

tmp=$cache_root/.tmp-$key-$$
rm -rf --one-file-system "$cache_root"/.tmp-* "$final"
mkdir -p "$tmp"
cleanup() { umount -R "$tmp/rootfs/proc" 2>/dev/null || true; }
trap cleanup EXIT

echo "building the test image in $tmp (debootstrap $suite, about a minute)" >&2
debootstrap --variant=minbase --include="$include" "$suite" "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
    { tail -20 "$tmp/debootstrap.log" >&2; exit 1; }

root=$tmp/rootfs
cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
# Only downloads: the image stays a fresh host without Docker. debootstrap
# leaves its own packages in the archive cache; the mirror gets only new ones.
chroot "$root" apt-get clean
chroot "$root" apt-get update -q >"$tmp/apt.log" 2>&1
# shellcheck disable=SC2086
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --download-only \
    $mirror_packages >>"$tmp/apt.log" 2>&1 || { tail -20 "$tmp/apt.log" >&2; exit 1; }
umount "$root/proc"

# A flat repository (`deb [trusted=yes] file:/srv/debian ./`) with a Packages
# index written from each package's control file (no dpkg-dev needed).
mkdir -p "$tmp/debian"
mv "$root"/var/cache/apt/archives/*.deb "$tmp/debian/"
(
    cd "$tmp/debian"
    for deb in *.deb; do
        dpkg-deb -f "$deb"
        echo "Filename: ./$deb"
        echo "Size: $(stat -c %s "$deb")"
        echo "SHA256: $(sha256sum "$deb" | cut -d' ' -f1)"
        echo
    done >Packages
)

# The image as a fresh host: no package lists, no network configuration, apt
# pointed only at the local mirror (bind-mounted read-only at boot).
apt-get -o Dir="$root" clean >/dev/null 2>&1 || true
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
rm -f "$root/etc/resolv.conf"
if [ "$suite" = trixie ]; then
    # As trixie installs it: deb822 sources, no sources.list.
    rm -f "$root/etc/apt/sources.list"
    printf 'Types: deb\nURIs: file:/srv/debian\nSuites: ./\nTrusted: yes\n' \
        >"$root/etc/apt/sources.list.d/debian.sources"
else
    echo 'deb [trusted=yes] file:/srv/debian ./' >"$root/etc/apt/sources.list"
fi
# An unprivileged login for the not-root scenario.
chroot "$root" useradd --create-home --shell /bin/bash tester
# Nothing in a test host needs these, and they slow down or break the boot.
for unit in systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer \
    e2scrub_all.timer fstrim.timer; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
echo "debootstrap --variant=minbase --include=$include $suite; mirror: $mirror_packages" >"$tmp/ready"

mv "$tmp" "$final"
echo "$final"

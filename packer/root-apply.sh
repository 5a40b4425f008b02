#!/bin/sh
# Runs `runner-provision --root ROOT ARGS...` on an image's root file system
# from outside it, the way an image builder's chroot step does: in a private
# mount and PID namespace (everything mounted or started there ends with it),
# with /proc, /dev and /sys of this machine, a tmpfs /run, and this
# machine's DNS for apt.
#
#   root-apply.sh ROOT [runner-provision arguments...]
#
# RUNNER_PROVISION   the tool (default: runner-provision on PATH)
# BIND_RO            "SRC:DST ..." folders bound read-only into ROOT first
#                    (local package mirrors)
#
# Packages' scripts and GitLab Runner's service installer look for
# /run/systemd/system to decide whether systemd runs; it is made in the
# private /run when this machine runs systemd (as image builders do), or
# when IMAGE_SYSTEMD=1 says the image's instances will.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 ROOT [runner-provision arguments...]" >&2; exit 2; }
root=$(cd "$1" && pwd)
shift
tool=${RUNNER_PROVISION:-runner-provision}
systemd=${IMAGE_SYSTEMD:-}
[ -d /run/systemd/system ] && systemd=1
exec unshare --mount --propagation private --pid --fork sh -eu -c '
root=$1; tool=$2; systemd=$3; binds=$4; shift 4
for bind in $binds; do
    src=${bind%%:*}; dst=$root/${bind#*:}
    mkdir -p "$dst"
    mount --bind "$src" "$dst"
    mount -o remount,bind,ro "$dst"
done
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
mount -t tmpfs tmpfs "$root/run"
if [ -n "$systemd" ]; then mkdir -p "$root/run/systemd/system"; fi
# The image names its resolver as a file, or as a link into /run.
if [ -L "$root/etc/resolv.conf" ]; then
    target=$(readlink "$root/etc/resolv.conf")
    case $target in
        /run/*|../run/*) link=$root/run/${target#*/run/}
                         mkdir -p "$(dirname "$link")"; cp /etc/resolv.conf "$link" ;;
    esac
elif [ -f "$root/etc/resolv.conf" ]; then
    mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
fi
exec "$tool" --root "$root" "$@"
' sh "$root" "$tool" "$systemd" "${BIND_RO:-}" "$@"

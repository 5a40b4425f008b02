#!/bin/sh
# Builds (once) the disk image of the VM tier: Debian bookworm with a kernel,
# systemd, cloud-init (NoCloud only) and the test's own plumbing, cached under
# CACHE_ROOT/vm-<key>/ where <key> is the hash of this script (it holds every
# package list and every file baked into the image).
#
#   build-image.sh CACHE_ROOT     prints CACHE_ROOT/vm-<key> when it is ready
#
# The cache directory holds:
#   disk.img          raw ext4 root file system (boot it through a qcow2 overlay)
#   vmlinuz, initrd.img   the image's kernel and initramfs, booted with -kernel
#   rootfs/           the tree disk.img was made from (for chroot checks such
#                     as `cloud-init schema`)
#   ready             written last; a directory without it is never used
#
# Built in a temporary directory and renamed into place at the end; concurrent
# callers wait on a lock. A missing or stale cache is rebuilt, never an error.
#
# What the image adds for the test, so that the user data stays exactly what
# `runner-provision cloud-init` printed:
#   - /mnt/payload: the disk labelled rp-payload (the tool binary and a local
#     apt repository) is mounted read-only at boot, before cloud-init runs;
#   - rp-results.service: at shutdown, before Docker stops, it gathers what the
#     test checks and writes it as a tar archive to the disk whose serial is
#     rp-results (/dev/disk/by-id/virtio-rp-results);
#   - rp-poweroff.service: only with `rp.poweroff` on the kernel command line,
#     powers the machine off once cloud-init has finished (for boots after the
#     first, where the user data's per-instance power_state does not run).
set -eu

cache_root=$1
suite=bookworm
mirror=http://deb.debian.org/debian
include=systemd-sysv,udev,kmod,iproute2,dbus,procps
# locales: else cloud-init's locale module fails. openssh-client: ssh-keygen,
# else cloud-init's ssh module logs a traceback per host key type.
packages="linux-image-amd64 initramfs-tools systemd-resolved cloud-init locales openssh-client"

key=$(sha256sum "$0" | cut -c1-16)
final=$cache_root/vm-$key
mkdir -p "$cache_root"

exec 9>"$cache_root/.vm-lock"
flock 9
if [ -f "$final/ready" ]; then
    echo "$final"
    exit 0
fi

rm -rf --one-file-system "$cache_root"/.tmp-vm-* "$final"
tmp=$cache_root/.tmp-vm-$key-$$
mkdir -p "$tmp"
root=$tmp/rootfs
cleanup() {
    for fs in dev/pts dev proc sys; do umount "$root/$fs" 2>/dev/null || true; done
}
trap cleanup EXIT

started=$(date +%s)
echo "building the VM image in $tmp (debootstrap $suite and a kernel, about 2 minutes)" >&2
debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" >"$tmp/build.log" 2>&1 ||
    { tail -20 "$tmp/build.log" >&2; exit 1; }

cp /etc/resolv.conf "$root/etc/resolv.conf"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
# shellcheck disable=SC2086
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    $packages >>"$tmp/build.log" 2>&1 || { tail -20 "$tmp/build.log" >&2; exit 1; }
chroot "$root" apt-get clean
cleanup

# A host as a cloud would hand it over: no package lists, a fresh machine-id.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
ln -sf /run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
echo "localhost" >"$root/etc/hostname"
echo "en_US.UTF-8 UTF-8" >"$root/etc/locale.gen"
chroot "$root" locale-gen >>"$tmp/build.log" 2>&1
echo "LANG=en_US.UTF-8" >"$root/etc/default/locale"

cat >"$root/etc/fstab" <<'EOF'
LABEL=root / ext4 defaults 0 1
# The test's payload: the tool binary and a local apt repository.
LABEL=rp-payload /mnt/payload ext4 ro,nofail,x-systemd.device-timeout=120s,x-systemd.before=cloud-init.service 0 0
EOF
mkdir -p "$root/mnt/payload"

cat >"$root/etc/systemd/network/50-dhcp.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=yes
EOF
chroot "$root" systemctl enable systemd-networkd.service systemd-resolved.service >>"$tmp/build.log" 2>&1

# cloud-init: NoCloud only (no probing of cloud metadata services under
# emulation) and the network left to networkd above. cloud-init validates the
# merged system and user config at boot, so this must pass its schema too
# (else every boot logs "Invalid cloud-config provided").
cat >"$root/etc/cloud/cloud.cfg.d/90-rp-vm-test.cfg" <<'EOF'
datasource_list: [ NoCloud, None ]
network: {config: disabled}
EOF
{ echo '#cloud-config'; cat "$root/etc/cloud/cloud.cfg.d/90-rp-vm-test.cfg"; } >"$root/tmp/rp-check.yaml"
chroot "$root" cloud-init schema --config-file /tmp/rp-check.yaml >>"$tmp/build.log" 2>&1 ||
    { tail -5 "$tmp/build.log" >&2; exit 1; }
rm "$root/tmp/rp-check.yaml"

# Timers that would run apt or disk jobs behind the tool's back.
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done

cat >"$root/usr/local/sbin/rp-collect-results" <<'EOF'
#!/bin/sh
# Gathers what tests/vm checks and writes it as a tar archive to the results
# disk. Runs at shutdown (rp-results.service), while Docker still runs.
out=/run/rp-results
rm -rf "$out"
mkdir -p "$out"
cd "$out" || exit 1
run() { # run NAME COMMAND...: NAME.out gets stdout and stderr, NAME.rc the exit status
    name=$1
    shift
    timeout 120 "$@" >"$name.out" 2>&1
    echo $? >"$name.rc"
}
run cloud-init-status cloud-init status --long
run overlay-initstate cat /sys/module/overlay/initstate
run proc-filesystems cat /proc/filesystems
run etc-modules cat /etc/modules
run modules-load-d sh -c 'for f in /etc/modules-load.d/*; do echo "== $f"; cat "$f"; done'
run docker-info runuser -l gitlab-runner -c 'docker info'
run docker-driver runuser -l gitlab-runner -c 'docker info --format "{{.Driver}}"'
run config-toml-stat stat -c '%a %U:%G' /etc/gitlab-runner/config.toml
run config-toml cat /etc/gitlab-runner/config.toml
run daemon-json cat /etc/docker/daemon.json
run id-gitlab-runner id gitlab-runner
run runner-provision-stat stat -c '%a %U:%G %s' /usr/local/bin/runner-provision
run per-boot-stat stat -c '%a %U:%G' /var/lib/cloud/scripts/per-boot/runner-provision
run token-file-stat stat -c '%a %U:%G' /run/runner-provision/token
run profile cat /etc/runner-provision/profile.toml
# The tool's own read-only views of the converged host.
run rp-verify /usr/local/bin/runner-provision --profile /etc/runner-provision/profile.toml verify
run rp-plan /usr/local/bin/runner-provision --profile /etc/runner-provision/profile.toml plan --detailed-exitcode
run boots journalctl --list-boots --no-pager
run cloud-final-journal journalctl -b -u cloud-final.service --no-pager -o cat
# Every place the token must not reach, copied whole for the test to search.
run journal journalctl --no-pager --all -o verbose
mkdir -p copies/var/log copies/var/lib copies/run
run copy-var-log cp -a --no-preserve=links /var/log/. copies/var/log/
rm -rf copies/var/log/journal
run copy-var-lib-cloud cp -a /var/lib/cloud copies/var/lib/
run copy-run-cloud-init cp -a /run/cloud-init copies/run/
date -u +%Y-%m-%dT%H:%M:%SZ >collected-at
tar -cf /dev/disk/by-id/virtio-rp-results .
sync
EOF
chmod 0755 "$root/usr/local/sbin/rp-collect-results"

# Started early and stopped late: stopping runs the collector before Docker,
# gitlab-runner, logind and the network stop (stop order is the reverse of
# the After= order), and whatever powers the machine off cannot race it.
cat >"$root/etc/systemd/system/rp-results.service" <<'EOF'
[Unit]
Description=Collect the VM test's results at shutdown
After=local-fs.target network.target systemd-logind.service systemd-user-sessions.service
After=docker.service docker.socket containerd.service gitlab-runner.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
ExecStop=/usr/local/sbin/rp-collect-results
TimeoutStopSec=300

[Install]
WantedBy=multi-user.target
EOF

cat >"$root/etc/systemd/system/rp-poweroff.service" <<'EOF'
[Unit]
Description=Power off once cloud-init has finished (rp.poweroff on the kernel command line)
ConditionKernelCommandLine=rp.poweroff
After=cloud-final.service
Wants=cloud-final.service

[Service]
Type=oneshot
ExecStart=/usr/bin/cloud-init status --wait
ExecStart=/bin/systemctl --no-block poweroff

[Install]
WantedBy=cloud-init.target
EOF
chroot "$root" systemctl enable rp-results.service rp-poweroff.service >>"$tmp/build.log" 2>&1

cp "$root"/boot/vmlinuz-* "$tmp/vmlinuz"
cp "$root"/boot/initrd.img-* "$tmp/initrd.img"
truncate -s 6G "$tmp/disk.img"
mkfs.ext4 -q -F -L root -d "$root" "$tmp/disk.img"

echo "debootstrap --variant=minbase --include=$include $suite; $packages; built in $(($(date +%s) - started)) s" >"$tmp/ready"
mv "$tmp" "$final"
# Images built from other versions of this script are stale.
for old in "$cache_root"/vm-*; do
    [ "$old" = "$final" ] || rm -rf --one-file-system "$old"
done
echo "$final"

#!/bin/sh
# Boot to ready, the fleet figure (issue 13): how long a new instance takes
# from container start until `runner-provision verify` passes, for
#   golden  an image built from outside with `runner-provision --root TREE
#           apply` (packer/root-apply.sh, as the real-host tier's
#           golden_image scenario builds it): the per-boot apply only
#           registers, and
#   plain   the tier's base image, whose per-boot apply installs
#           gitlab-runner and Docker Engine at boot,
# side by side in one run, ROUNDS rounds (default 5), medians. See
# bench/README.md.
#
#   bench/boot.sh                 (root; writes the "Boot to ready" section
#                                  of bench/RESULTS.md)
#   ROUNDS=3 bench/boot.sh
#   BENCH_LOCK=/tmp/rp-hosts.lock bench/boot.sh   holds that lock (flock)
#                                  while containers run, so nothing else
#                                  sharing it boots test hosts meanwhile
#
# Each instance is a systemd-nspawn container booted as the real-host tier
# boots them (--private-network: only `lo`; apt reads only the image's local
# Debian mirror and the stand-in's flat repository, both bind-mounted
# read-only; nothing is downloaded). Both images carry the same per-boot
# unit, ordered after multi-user.target as cloud-init's per-boot scripts
# are (cloud-final.service): it runs the tool the way the rendered per-boot
# script does (`apply --yes --token-file … --forget-token`), then `verify`,
# and stamps the wall clock (shared with this machine) at each point.
# "Start" is taken just before systemd-nspawn is started.
#
# Everything it makes goes under bench/work/boot/ and
# /var/tmp/runner-provision-bench/ (containers, removed at the end).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
work=$here/work
out=$work/boot
state=/var/tmp/runner-provision-bench/boot
rounds=${ROUNDS:-5}
export PATH="$HOME/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export LC_ALL=C.UTF-8
path_inside=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# A fake runner authentication token: the stand-in registers offline with
# it (gitlab.example.com is not on loopback, so nothing is contacted).
token=glrt-bench0fake0fleet0token

say() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'boot.sh: %s\n' "$*" >&2; exit 1; }

case $rounds in '' | *[!0-9]* | 0) die "ROUNDS must be a positive whole number, not '$rounds'" ;; esac
[ "$(id -u)" = 0 ] || die "run as root (systemd-nspawn, debootstrap, mounts)"
for t in systemd-nspawn debootstrap nsenter unshare flock python3 cargo; do
    command -v "$t" >/dev/null || die "$t not found (apt-get install systemd-container debootstrap util-linux python3; cargo from rustup)"
done
cd "$top"
rm -rf "$out"
mkdir -p "$out" "$state"

# --- what it needs: release build, the stand-in's repository, the image -------
say "cargo build --release (runner-provision, stand-in)"
cargo build --release -p runner-provision -p gitlab-runner-stand-in >"$out/build.log" 2>&1 ||
    { tail -30 "$out/build.log" >&2; die "cargo build --release failed"; }
tool=$top/target/release/runner-provision
say "stand-in .deb and flat apt repository in $out/repo"
sh tests/stand-in/build-deb.sh target/release/gitlab-runner "$out/debs" >/dev/null
sh tests/stand-in/build-repo.sh "$out/debs" "$out/repo" >/dev/null
say "the real-host tier's image (tests/hosts/build-image.sh; built once, about a minute)"
image=$(sh tests/hosts/build-image.sh /var/cache/runner-provision-tests)
[ -d "$image/rootfs" ] && [ -d "$image/debian" ] || die "no image at $image"
git rev-parse --short HEAD >"$out/commit.txt" 2>/dev/null || echo unknown >"$out/commit.txt"
echo "$image" >"$out/image.txt"

# --- the instances' per-boot unit ----------------------------------------------
# The profile: bench/profile.toml with the runner repository at the bind
# mount and the group risk accepted (the default `shell-docker` profile).
sed -e 's|^uri = .*|uri = "file:/srv/runner-repo/"|' \
    -e 's|^accept_group_risk = .*|accept_group_risk = true|' \
    "$here/profile.toml" >"$out/profile.toml"
cat >"$out/rp-bench-boot" <<'SCRIPT'
#!/bin/sh
# Per-boot apply, then verify; wall-clock stamps for bench/boot.sh.
out=/var/lib/rp-bench
mkdir -p "$out"
stamp() { echo "$1 $(date +%s.%N)" >>"$out/stamps"; }
stamp unit-start
status=0
runner-provision --profile /etc/runner-provision/profile.toml --output json \
    apply --yes --token-file /etc/runner-provision/token --forget-token \
    >"$out/apply.jsonl" 2>"$out/apply.stderr" || status=$?
stamp apply-end
echo "$status" >"$out/apply.exit"
status=0
runner-provision --profile /etc/runner-provision/profile.toml --output json verify \
    >"$out/verify.jsonl" 2>"$out/verify.stderr" || status=$?
stamp verify-end
echo "$status" >"$out/verify.exit"
systemctl show -p InactiveExitTimestampMonotonic -p ActiveEnterTimestampMonotonic \
    docker.service >"$out/docker.txt" 2>&1 || true
# systemd's own start and this unit's, on the monotonic clock (one clock
# with this unit's first stamp, which maps it to the wall clock).
systemctl show -p UserspaceTimestampMonotonic >"$out/systemd.txt" 2>&1 || true
systemctl show -p ExecMainStartTimestampMonotonic rp-bench-boot.service >>"$out/systemd.txt" 2>&1 || true
stamp done
SCRIPT
cat >"$out/rp-bench-boot.service" <<'UNIT'
[Unit]
Description=runner-provision per-boot apply and verify (bench/boot.sh)
Wants=network-online.target
After=multi-user.target network-online.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/rp-bench-boot

[Install]
WantedBy=multi-user.target
UNIT
# Docker needs writable cgroups; systemd-nspawn mounts them read-only (the
# tier remounts them from outside once booted; here dockerd starts during
# boot, so a unit does it first). Not part of a fleet's image.
cat >"$out/rp-bench-cgroups.service" <<'UNIT'
[Unit]
Description=Writable cgroups for Docker in systemd-nspawn (bench/boot.sh)
DefaultDependencies=no
Before=docker.service containerd.service sysinit.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'mount -o remount,rw /sys/fs/cgroup; for d in /sys/fs/cgroup/*/; do mount -o remount,rw,bind "$d"; done'

[Install]
WantedBy=sysinit.target
UNIT

# Puts the tool, its profile, the token and the per-boot unit into a tree.
furnish() {
    r=$1
    install -m 0755 "$tool" "$r/usr/local/sbin/runner-provision"
    install -D -m 0644 "$out/profile.toml" "$r/etc/runner-provision/profile.toml"
    install -m 0755 "$out/rp-bench-boot" "$r/usr/local/sbin/rp-bench-boot"
    install -m 0644 "$out/rp-bench-boot.service" "$r/etc/systemd/system/rp-bench-boot.service"
    install -m 0644 "$out/rp-bench-cgroups.service" "$r/etc/systemd/system/rp-bench-cgroups.service"
    mkdir -p "$r/etc/systemd/system/multi-user.target.wants" "$r/etc/systemd/system/sysinit.target.wants"
    ln -sf /etc/systemd/system/rp-bench-boot.service \
        "$r/etc/systemd/system/multi-user.target.wants/rp-bench-boot.service"
    ln -sf /etc/systemd/system/rp-bench-cgroups.service \
        "$r/etc/systemd/system/sysinit.target.wants/rp-bench-cgroups.service"
}

nspawn_pid=
leader=
dir=
cleanup() {
    poweroff_container
    rm -rf --one-file-system "$state"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- from here on, containers and timings ------------------------------------------
if [ -n "${BENCH_LOCK:-}" ]; then
    say "waiting for $BENCH_LOCK"
    exec 8>"$BENCH_LOCK"
    flock 8
fi
uptime >"$out/load-before.txt"

# --- the golden image: --root apply from outside, as an image builder does -------
say "golden image: packer/root-apply.sh TREE apply"
golden=$state/golden-image
rm -rf --one-file-system "$state"
mkdir -p "$state"
cp -a --reflink=auto "$image/rootfs" "$golden"
furnish "$golden"
plain=$state/plain-image
cp -a --reflink=auto "$image/rootfs" "$plain"
furnish "$plain"
t0=$(date +%s%N)
status=0
RUNNER_PROVISION=$tool IMAGE_SYSTEMD=1 \
    BIND_RO="$image/debian:/srv/debian $out/repo:/srv/runner-repo" \
    sh packer/root-apply.sh "$golden" --profile "$golden/etc/runner-provision/profile.toml" \
    --output json apply >"$out/golden-build.jsonl" 2>"$out/golden-build.stderr" || status=$?
t1=$(date +%s%N)
echo "$status $(((t1 - t0) / 1000000))" >"$out/golden-build.txt"
[ "$status" = 0 ] || { cat "$out/golden-build.stderr" >&2; die "--root apply on the golden image failed (exit $status)"; }
# The image's token goes in only now: the image itself is built without one.
for r in "$golden" "$plain"; do
    (umask 077 && printf '%s\n' "$token" >"$r/etc/runner-provision/token")
done

# --- one instance: copy, boot, wait for the per-boot unit, power off ----------------
poweroff_container() {
    if [ -n "$nspawn_pid" ]; then
        [ -n "$leader" ] && timeout 10 nsenter -t "$leader" -a systemctl poweroff >/dev/null 2>&1 || true
        i=0
        while kill -0 "$nspawn_pid" 2>/dev/null; do
            i=$((i + 1))
            if [ "$i" -ge 300 ]; then kill -KILL "$leader" 2>/dev/null || true; kill "$nspawn_pid" 2>/dev/null || true; fi
            [ "$i" -lt 400 ] || break
            sleep 0.1
        done
        wait "$nspawn_pid" 2>/dev/null || true
    fi
    nspawn_pid=
    leader=
    [ -z "$dir" ] || rm -rf --one-file-system "$dir"
    dir=
}
# The container's init: the child of systemd-nspawn in another PID namespace
# (nspawn forks helpers that are not).
find_leader() {
    leader=
    for pid in $(cat "/proc/$nspawn_pid/task/$nspawn_pid/children" 2>/dev/null); do
        if [ "$(readlink "/proc/$pid/ns/pid")" != "$(readlink /proc/self/ns/pid)" ]; then leader=$pid; fi
    done
    [ -n "$leader" ] || die "no init process found in $name"
}
instance() {
    kind=$1 round=$2
    name=rp-bench-$kind-$round
    dir=$state/$name
    result=$out/$kind-$round
    mkdir -p "$dir" "$result"
    cp -a --reflink=auto "$state/$kind-image" "$dir/rootfs"
    r=$dir/rootfs
    echo "$name" >"$r/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$name" >"$r/etc/hosts"
    sync
    start=$(date +%s.%N)
    SYSTEMD_NSPAWN_API_VFS_WRITABLE=1 systemd-nspawn --boot --directory "$r" \
        --register=no --keep-unit --console=pipe --capability=all \
        '--system-call-filter=add_key keyctl bpf' --private-network \
        --machine="$name" \
        --bind-ro="$image/debian:/srv/debian" --bind-ro="$out/repo:/srv/runner-repo" \
        </dev/null >"$result/console.log" 2>&1 &
    nspawn_pid=$!
    echo "start $start" >"$result/start"
    i=0
    until grep -q '^done ' "$r/var/lib/rp-bench/stamps" 2>/dev/null; do
        i=$((i + 1)); [ "$i" -lt 6000 ] || die "$name: the per-boot unit did not finish in 10 minutes (see $result/console.log)"
        kill -0 "$nspawn_pid" 2>/dev/null || die "$name stopped before its per-boot unit finished (see $result/console.log)"
        sleep 0.05
    done
    find_leader
    cp -a "$r/var/lib/rp-bench/." "$result/"
    cat "$result/start" "$r/var/lib/rp-bench/stamps" >"$result/stamps"
    nsenter -t "$leader" -a -- env -i PATH="$path_inside" \
        dpkg-query -W -f '${Package} ${Status}\n' gitlab-runner docker.io >"$result/packages.txt" 2>&1 || true
    poweroff_container
    printf '%s round %s: apply exit %s, verify exit %s\n' "$kind" "$round" \
        "$(cat "$result/apply.exit")" "$(cat "$result/verify.exit")" >&2
}

# --- the rounds ------------------------------------------------------------------------
round=1
while [ "$round" -le "$rounds" ]; do
    # Alternate which goes first, so neither always meets the colder cache.
    if [ $((round % 2)) = 1 ]; then order="golden plain"; else order="plain golden"; fi
    for kind in $order; do
        say "round $round/$rounds: $kind instance"
        instance "$kind" "$round"
    done
    round=$((round + 1))
done
uptime >"$out/load-after.txt"
if [ -n "${BENCH_LOCK:-}" ]; then flock -u 8; fi

say "bench/RESULTS.md (Boot to ready)"
python3 "$here/boot_report.py" "$out" "$here/RESULTS.md" "$rounds"

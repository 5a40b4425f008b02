#!/bin/sh
# Fresh-install comparison (issues 5 and 13): in systemd-nspawn containers
# booted from the real-host tier's image (tests/hosts/build-image.sh,
# cached under /var/cache/runner-provision-tests), time
#   A. a fresh `runner-provision apply` (every step, from nothing; it
#      installs gitlab-runner and Docker Engine in one apt transaction), and
#   B. the same package installs by hand in one command: the gitlab-runner
#      apt source, `apt-get update && apt-get install -y gitlab-runner
#      docker.io`, `usermod -aG docker gitlab-runner`, and
#   C. B with --no-install-recommends (as the tool installs),
# each in its own freshly booted container, one after the other, ROUNDS
# times (default 5), in the order A, B, C; medians.
#
#   bench/fresh.sh                 (root; builds what it needs, writes the
#                                   "Fresh install" section of bench/RESULTS.md)
#   ROUNDS=3 bench/fresh.sh
#   BENCH_LOCK=/tmp/rp-hosts.lock bench/fresh.sh   flock that file while
#                                   containers run
#   bench/fresh.sh TOOL WORK       (as bench/run.sh calls it: WORK/repo holds
#                                   the stand-in's flat repository)
#
# Containers are as the tier boots them: --private-network (Docker's bridge
# and iptables stay inside), apt reads only the image's local mirror and the
# stand-in repository, both bind-mounted read-only. Writes WORK/fresh/*.txt
# and WORK/fresh/times.tsv. Containers are powered off and removed at the end.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
rounds=${ROUNDS:-5}
state=/var/tmp/runner-provision-bench
path_inside=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH="$HOME/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

case $rounds in '' | *[!0-9]* | 0) echo "fresh.sh: ROUNDS must be a positive whole number, not '$rounds'" >&2; exit 2 ;; esac
for t in systemd-nspawn debootstrap nsenter; do
    command -v "$t" >/dev/null || { echo "fresh.sh: $t not found: skipped" >&2; exit 0; }
done
[ "$(id -u)" = 0 ] || { echo "fresh.sh: run as root (systemd-nspawn)" >&2; exit 1; }
if [ $# -ge 2 ]; then
    tool=$1
    work=$2
else
    # On its own: the release build and the stand-in's repository.
    work=$here/work
    mkdir -p "$work"
    echo "fresh.sh: cargo build --release (runner-provision, stand-in)" >&2
    (cd "$top" && cargo build --release -p runner-provision -p gitlab-runner-stand-in) >"$work/fresh-build.log" 2>&1 ||
        { tail -30 "$work/fresh-build.log" >&2; exit 1; }
    tool=$top/target/release/runner-provision
    rm -rf "$work/debs" "$work/repo"
    sh "$top/tests/stand-in/build-deb.sh" "$top/target/release/gitlab-runner" "$work/debs" >/dev/null
    sh "$top/tests/stand-in/build-repo.sh" "$work/debs" "$work/repo" >/dev/null
fi
out=$work/fresh
rm -rf "$out"
mkdir -p "$out" "$state"
image=$(sh "$top/tests/hosts/build-image.sh" /var/cache/runner-provision-tests)
[ -d "$image/rootfs" ] || { echo "fresh.sh: no image at $image" >&2; exit 1; }
echo "$image" >"$out/image.txt"
(cd "$top" && git rev-parse --short HEAD) >"$out/commit.txt" 2>/dev/null || echo unknown >"$out/commit.txt"

nspawn_pid=
leader=
dir=
boot() {
    name=$1
    dir=$state/$name
    rm -rf --one-file-system "$dir"
    mkdir -p "$dir"
    cp -a --reflink=auto "$image/rootfs" "$dir/rootfs"
    r=$dir/rootfs
    echo "$name" >"$r/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$name" >"$r/etc/hosts"
    install -m 0755 "$tool" "$r/usr/local/sbin/runner-provision"
    mkdir -p "$r/etc/runner-provision"
    sed -e 's|^uri = .*|uri = "file:/srv/runner-repo/"|' \
        -e 's|^accept_group_risk = .*|accept_group_risk = true|' \
        "$here/profile.toml" >"$r/etc/runner-provision/bench.toml"
    SYSTEMD_NSPAWN_API_VFS_WRITABLE=1 systemd-nspawn --boot --directory "$r" \
        --register=no --keep-unit --console=pipe --capability=all \
        '--system-call-filter=add_key keyctl bpf' --private-network \
        --machine="$name" \
        --bind-ro="$image/debian:/srv/debian" --bind-ro="$work/repo:/srv/runner-repo" \
        </dev/null >"$dir/console.log" 2>&1 &
    nspawn_pid=$!
    leader=
    i=0
    # The container's init is the child of systemd-nspawn in another PID
    # namespace (nspawn forks helpers that are not, and that go away).
    until [ -n "$leader" ] && [ -d "/proc/$leader" ] &&
        inside systemctl is-system-running 2>/dev/null | grep -Eq '^(running|degraded)$'; do
        i=$((i + 1))
        if [ "$i" -ge 900 ]; then
            cp "$dir/console.log" "$out/$name-console.log" 2>/dev/null || true
            echo "container $name did not boot (see $out/$name-console.log)" >&2
            return 1
        fi
        if [ -z "$leader" ] || [ ! -d "/proc/$leader" ]; then
            leader=
            for pid in $(cat "/proc/$nspawn_pid/task/$nspawn_pid/children" 2>/dev/null); do
                if [ "$(readlink "/proc/$pid/ns/pid")" != "$(readlink /proc/self/ns/pid)" ]; then leader=$pid; fi
            done
        fi
        sleep 0.1
    done
    inside sh -c 'mount -o remount,rw /sys/fs/cgroup; for d in /sys/fs/cgroup/*/; do mount -o remount,rw,bind "$d"; done'
}
inside() {
    env -i PATH="$path_inside" LANG=C.UTF-8 HOME=/root TERM=dumb \
        RUNNER_TOKEN=GR1348941bench0fake0legacy0token \
        timeout --kill-after=10 900 nsenter -t "$leader" -a -- "$@"
}
poweroff() {
    [ -n "$leader" ] && timeout 10 nsenter -t "$leader" -a systemctl poweroff >/dev/null 2>&1 || true
    i=0
    while kill -0 "$nspawn_pid" 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -ge 300 ]; then kill -KILL "$leader" 2>/dev/null || true; kill "$nspawn_pid" 2>/dev/null || true; fi
        [ "$i" -lt 400 ] || break
        sleep 0.1
    done
    wait "$nspawn_pid" 2>/dev/null || true
    rm -rf --one-file-system "$dir"
}
trap 'poweroff' EXIT INT TERM
now_ms() { date +%s%3N; }

if [ -n "${BENCH_LOCK:-}" ]; then
    echo "fresh.sh: waiting for $BENCH_LOCK" >&2
    exec 8>"$BENCH_LOCK"
    flock 8
fi
uptime >"$out/load-before.txt"
printf 'round\tmethod\tseconds\texit\n' >"$out/times.tsv"
round=1
while [ "$round" -le "$rounds" ]; do
    # A: the tool, from nothing (it writes the source and updates lists itself).
    boot "rp-bench-tool-$round"
    t0=$(now_ms)
    status=0
    inside runner-provision --profile /etc/runner-provision/bench.toml --output json apply --yes \
        >"$out/tool-$round.jsonl" 2>"$out/tool-$round.stderr" || status=$?
    t1=$(now_ms)
    echo "$status" >"$out/tool-$round.exit"
    inside runner-provision --profile /etc/runner-provision/bench.toml --output json apply --yes \
        >"$out/tool-$round-again.jsonl" 2>&1 || true
    printf '%s\ttool\t%s\t%s\n' "$round" "$(echo "$t0 $t1" | awk '{printf "%.1f", ($2-$1)/1000}')" "$status" >>"$out/times.tsv"
    poweroff
    # B: the package installs by hand, the way the GitLab docs say; and C:
    # the same with --no-install-recommends, as the tool installs.
    for method in manual manual-norec; do
        recommends=
        [ "$method" = manual-norec ] && recommends=--no-install-recommends
        boot "rp-bench-$method-$round"
        t0=$(now_ms)
        status=0
        inside sh -exc "
            printf 'Types: deb\\nURIs: file:/srv/runner-repo/\\nSuites: ./\\nTrusted: yes\\n' \\
                >/etc/apt/sources.list.d/gitlab-runner.sources
            apt-get update -q
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q $recommends gitlab-runner docker.io
            usermod -aG docker gitlab-runner
        " >"$out/$method-$round.txt" 2>&1 || status=$?
        t1=$(now_ms)
        echo "exit: $status" >>"$out/$method-$round.txt"
        printf '%s\t%s\t%s\t%s\n' "$round" "$method" "$(echo "$t0 $t1" | awk '{printf "%.1f", ($2-$1)/1000}')" "$status" >>"$out/times.tsv"
        poweroff
    done
    round=$((round + 1))
done
uptime >"$out/load-after.txt"
if [ -n "${BENCH_LOCK:-}" ]; then flock -u 8; fi
cat "$out/times.tsv"
python3 "$here/fresh_report.py" "$out" "$here/RESULTS.md" "$rounds"

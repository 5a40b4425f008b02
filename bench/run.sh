#!/bin/sh
# The benchmark of issue 5, in one command (root, on a disposable Debian or
# Ubuntu host: it installs docker.io and the stand-in gitlab-runner on the
# machine it runs on). See bench/README.md.
#
#   bench/run.sh            everything: set-up, converged timings, memory,
#                           process count, then bench/RESULTS.md
#   BENCH_FRESH=0 bench/run.sh   without the fresh-install comparison in
#                           systemd-nspawn containers (bench/fresh.sh)
#   BENCH_RUNS=N            hyperfine runs of the tool (default 30); the
#                           playbook gets BENCH_ANSIBLE_RUNS (default 10)
#
# Everything it makes goes under bench/work/ (git-ignored).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
work=$here/work
runs=${BENCH_RUNS:-30}
ansible_runs=${BENCH_ANSIBLE_RUNS:-10}
export PATH="$HOME/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
# A fake legacy (non-glrt-) registration token: the stand-in never sends it.
export RUNNER_TOKEN=GR1348941bench0fake0legacy0token
apt_get="apt-get -q -o DPkg::Lock::Timeout=600"

say() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and converges this host)"
mkdir -p "$work"
cd "$top"

# --- 1. what the benchmark needs ---------------------------------------------
say "installing hyperfine, time, strace, python3-venv, python3-apt, docker.io"
$apt_get install -y hyperfine time strace python3-venv python3-apt docker.io \
    >"$work/apt-install.log" 2>&1 || { tail -20 "$work/apt-install.log"; die "apt-get install failed"; }

if [ ! -x "$work/venv/bin/ansible-playbook" ]; then
    say "ansible-core from PyPI into $work/venv"
    /usr/bin/python3 -m venv "$work/venv"
    "$work/venv/bin/pip" install -q ansible-core
fi
"$work/venv/bin/ansible-playbook" --version | head -1 >"$work/ansible-version.txt"

say "cargo build --release (runner-provision, stand-in)"
built=0
for attempt in 1 2 3 4 5; do
    if cargo build --release -p runner-provision -p gitlab-runner-stand-in >"$work/build.log" 2>&1; then
        built=1; break
    fi
    # Others edit src/ concurrently; a half-written tree usually fixes itself.
    echo "build failed (attempt $attempt), retrying in 60 s; see $work/build.log" >&2
    sleep 60
done
[ "$built" = 1 ] || { tail -30 "$work/build.log"; die "cargo build --release failed"; }
tool=$top/target/release/runner-provision

say "stand-in .deb and flat apt repository in $work/repo"
rm -rf "$work/debs"
sh tests/stand-in/build-deb.sh target/release/gitlab-runner "$work/debs" >/dev/null
sh tests/stand-in/build-repo.sh "$work/debs" "$work/repo" >/dev/null

# The profile names this checkout's repository by absolute path.
profile=$work/profile.toml
sed "s|^uri = \"file:.*|uri = \"file:$work/repo/\"|" "$here/profile.toml" >"$profile"

# --- 2. a converged host -------------------------------------------------------
# Debian's /etc/init.d/docker runs `ulimit -n 1048576` under `set -e`; without
# CAP_SYS_RESOURCE (as on these sandboxed machines) that fails, so
# `service docker start|restart` fails, and so does the tool's restart after
# it writes daemon.json. Where it would fail, /etc/default/docker (sourced by
# the init script) gets a shim that makes a refused ulimit a warning.
if ! sh -c 'ulimit -n 1048576' 2>/dev/null && ! grep -q 'runner-provision bench' /etc/default/docker 2>/dev/null; then
    say "init-script shim in /etc/default/docker (ulimit -n 1048576 is refused here)"
    cat >>/etc/default/docker <<'SHIM'
# >>> runner-provision bench: this host refuses `ulimit -n 1048576` (no
# CAP_SYS_RESOURCE); let the init script go on with the current limits.
ulimit() { command ulimit "$@" 2>/dev/null || echo "docker init: ulimit $* refused, continuing" >&2; }
# <<< runner-provision bench
SHIM
fi
docker_up() { docker info >/dev/null 2>&1; }
if ! docker_up; then
    say "service docker start"
    service docker start
    i=0
    until docker_up; do
        i=$((i + 1)); [ "$i" -lt 150 ] || die "dockerd did not answer in 30 s (see /var/log/docker.log)"
        sleep 0.2
    done
fi

say "runner-provision apply, twice"
status=0
"$tool" --profile "$profile" apply --yes --accept-docker-group-risk >"$work/apply-1.txt" 2>&1 || status=$?
echo "exit: $status" >>"$work/apply-1.txt"
cat "$work/apply-1.txt" >&2
[ "$status" = 0 ] || die "first apply failed"
status=0
"$tool" --profile "$profile" apply --yes --accept-docker-group-risk >"$work/apply-2.txt" 2>&1 || status=$?
echo "exit: $status" >>"$work/apply-2.txt"
cat "$work/apply-2.txt" >&2
[ "$status" = 0 ] || die "second apply failed"
grep -Eq '^summary: (.*[^0-9])?0 changed' "$work/apply-2.txt" || die "second apply changed something (not converged)"
"$tool" --profile "$profile" --output json apply --yes >"$work/apply-converged.jsonl" 2>"$work/apply-converged.stderr"
"$tool" --profile "$profile" plan --detailed-exitcode >"$work/plan-converged.txt" 2>&1 ||
    die "converged plan did not exit 0 (see $work/plan-converged.txt)"

# --- the playbook must be green (changed=0) before it is timed -----------------
export ANSIBLE_CONFIG=$here/ansible.cfg ANSIBLE_NOCOLOR=1
playbook="$work/venv/bin/ansible-playbook -i localhost, -c local $here/playbook.yml"
say "ansible-playbook on the converged host"
green=0
for attempt in 1 2; do
    $playbook >"$work/ansible-check-$attempt.txt" 2>&1 || { cat "$work/ansible-check-$attempt.txt"; die "playbook failed"; }
    recap=$(grep -E '^localhost +:' "$work/ansible-check-$attempt.txt")
    echo "$recap" >&2
    case $recap in *" changed=0 "*) green=1; break ;; esac
done
[ "$green" = 1 ] || die "the playbook keeps changing the converged host"
# ...and the playbook must not have un-converged the tool's host.
"$tool" --profile "$profile" plan --detailed-exitcode >"$work/plan-after-ansible.txt" 2>&1 ||
    die "after the playbook, plan is no longer converged (see $work/plan-after-ansible.txt)"

# --- 3. timings ------------------------------------------------------------------
uptime >"$work/load-before.txt"
say "hyperfine: converged apply, plan ($runs runs), playbook ($ansible_runs runs)"
hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/hf-apply.json" \
    --command-name "runner-provision apply --yes" "$tool --profile $profile apply --yes"
hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/hf-plan.json" \
    --command-name "runner-provision plan" "$tool --profile $profile plan"
hyperfine -N --warmup 1 --runs "$ansible_runs" --export-json "$work/hf-ansible.json" \
    --command-name "ansible-playbook" "$playbook"
# Where a converged apply's time goes: the same apply without docker-verify,
# and docker-verify's one command alone (login shell, as the tool runs it;
# and without a login shell, for comparison).
hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/hf-apply-skip-verify.json" \
    --command-name "runner-provision apply --yes --skip docker-verify" \
    "$tool --profile $profile apply --yes --skip docker-verify"
hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/hf-docker-info-login.json" \
    --command-name "runuser -l gitlab-runner -c 'docker info'" \
    "runuser -l gitlab-runner -c 'docker info --format {{.Driver}}'"
hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/hf-docker-info-direct.json" \
    --command-name "runuser -u gitlab-runner -- docker info" \
    "runuser -u gitlab-runner -- docker info --format {{.Driver}}"
uptime >"$work/load-after.txt"

# --- 4. peak memory --------------------------------------------------------------
say "peak memory"
/usr/bin/time -v "$tool" --profile "$profile" apply --yes >/dev/null 2>"$work/time-apply.txt"
/usr/bin/time -v "$tool" --profile "$profile" plan >/dev/null 2>"$work/time-plan.txt"
/usr/bin/time -v $playbook >/dev/null 2>"$work/time-ansible.txt"
python3 "$here/peak_rss.py" "$work/rss-apply.json" "$tool" --profile "$profile" apply --yes
python3 "$here/peak_rss.py" "$work/rss-plan.json" "$tool" --profile "$profile" plan
python3 "$here/peak_rss.py" "$work/rss-ansible.json" $playbook
ls -l "$tool" >"$work/binary-size.txt"
file "$tool" >>"$work/binary-size.txt" 2>/dev/null || true

# --- 5. processes a converged apply spawns ----------------------------------------
say "processes spawned (strace -f -e trace=execve)"
strace -f -qq -s 256 -e trace=execve -e signal=none -o "$work/strace-apply.txt" \
    "$tool" --profile "$profile" apply --yes >/dev/null 2>&1
strace -f -qq -s 256 -e trace=execve -e signal=none -o "$work/strace-plan.txt" \
    "$tool" --profile "$profile" plan >/dev/null 2>&1
strace -f -qq -s 256 -e trace=execve -e signal=none -o "$work/strace-ansible.txt" \
    $playbook >/dev/null 2>&1

# --- 7. fresh installs in containers (optional) ------------------------------------
if [ "${BENCH_FRESH:-1}" = 1 ]; then
    say "fresh apply vs apt-get by hand, in systemd-nspawn containers"
    sh "$here/fresh.sh" "$tool" "$work" || echo "fresh comparison failed; see $work/fresh/" >&2
fi

# --- 6. the report ------------------------------------------------------------------
say "bench/RESULTS.md"
python3 "$here/report.py" "$work" "$here/RESULTS.md"
cat "$here/RESULTS.md"

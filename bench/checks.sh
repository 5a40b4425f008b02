#!/bin/sh
# What each check of `verify` costs on a converged host (issue 14). Run as
# root on a host that `runner-provision apply` converged; prints a Markdown
# table of wall times (median and range of RUNS runs) to stdout. Changes
# nothing: verify is read-only and the build check removes what it builds.
#
#   bench/checks.sh [TOOL]       TOOL: the runner-provision binary (default: on PATH)
#   RUNS=N bench/checks.sh       runs per check (default 10)
#   PROFILE=NAME|PATH            passed as --profile (default: the built-in one)
#
# tests/hosts runs it inside a converged systemd-nspawn host when
# RUNNER_PROVISION_BENCH_CHECKS=FILE is set, and writes its table to FILE.
set -eu
tool=${1:-runner-provision}
runs=${RUNS:-10}
profile=${PROFILE:+--profile $PROFILE}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# time_it LABEL ARGS...: RUNS runs of `TOOL ARGS`, median and range in ms.
time_it() {
    label=$1; shift
    times=""
    i=0
    while [ "$i" -lt "$runs" ]; do
        start=$(now_ms)
        # shellcheck disable=SC2086
        "$tool" $profile "$@" >/dev/null 2>&1 || true
        times="$times $(( $(now_ms) - start ))"
        i=$((i + 1))
    done
    sorted=$(printf '%s\n' $times | sort -n)
    min=$(printf '%s\n' "$sorted" | head -n1)
    max=$(printf '%s\n' "$sorted" | tail -n1)
    median=$(printf '%s\n' "$sorted" | sed -n "$(( (runs + 1) / 2 ))p")
    printf '| %s | %s | %s-%s |\n' "$label" "$median" "$min" "$max"
}

echo "| run | median ms | range ms |"
echo "|---|---|---|"
time_it "verify --only network (baseline: preflight and an empty step)" verify --only network
time_it "verify --only docker-group (groups of the running service)" verify --only docker-group
time_it "verify --only docker-verify (docker info as gitlab-runner)" verify --only docker-verify
time_it "verify --only docker-build (a job's build)" verify --only docker-build
time_it "verify --only runner-alive (gitlab-runner verify)" verify --only runner-alive
time_it "verify (every check)" verify
time_it "verify --skip-build" verify --skip-build
time_it "apply (converged)" apply --yes

#!/usr/bin/env bash
# Mutation pass (cargo-mutants) over the step engine and steps, the one
# command runner and the token's handling: each mutant is a small change to
# the code (a condition flipped, a function returning a default); a mutant
# the unit tests do not catch is a behaviour no test pins down. Not part of
# CI: about 8 s a mutant, 71 minutes for the 596 of the last pass
# (bench/MUTANTS.md).
# Usage:
#
#   cargo install --locked cargo-mutants
#   bench/mutants.sh                          # every file below, in order
#   bench/mutants.sh src/steps/docker_group.rs src/secret.rs   # these files
#   bench/mutants.sh src/secret.rs --list     # any cargo-mutants flag after
#   bench/mutants.sh src/steps/mod.rs -F 'Selection::includes'
#
# How a mutant is made cheap (measured on the shared 2-core machine, others
# building beside it): the tracked files are copied to target/mutants-tree
# (your checkout is never mutated) and mutated there in place, so its
# build directory is reused across files and runs; the `mutants` profile
# (Cargo.toml) builds without debug info; only the library's unit tests
# are built and run (`--lib` for both the build and the test phase, not
# the binary and the three integration-test crates). Measured over 519
# viable mutants (2026-12-04): 8.1 s a mutant on average, median 6.2 s
# (1-7 s of build, 3-9 s of tests), 1.2 s an unviable one; the first run
# (the default test profile, a fresh copy of the tree per run, every test
# target built) took 40-60 s. bench/MUTANTS.md has the last pass.
#
# Results, one directory per file: target/mutants-out/<file>/mutants.out/
# {caught,missed,timeout,unviable}.txt, and one line per file in
# target/mutants-out/summary.txt (counts and wall time). A timeout counts
# as caught: the mutant made a test hang. The unmutated baseline runs once,
# before the first file.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo mutants --version >/dev/null 2>&1; then
  echo "cargo-mutants is not installed: cargo install --locked cargo-mutants" >&2
  exit 1
fi
files=()
while [ $# -gt 0 ] && [[ "$1" != -* ]]; do
  files+=("$1")
  shift
done
if [ ${#files[@]} -eq 0 ]; then
  # Small and central first, so a stopped pass has the most useful part.
  files=(src/host/command.rs src/secret.rs src/steps/mod.rs
    src/steps/docker_driver.rs src/steps/overlay_module.rs
    src/steps/docker_group.rs src/steps/runner_install.rs
    src/steps/runner_register.rs src/steps/image_identity.rs
    src/steps/runner_alive.rs src/steps/packages.rs
    src/steps/docker_build.rs src/steps/runner_globals.rs
    src/steps/docker_verify.rs src/steps/docker_install.rs
    src/steps/shutdown_unregister.rs src/steps/prune_schedule.rs
    src/steps/network.rs)
  # Any later step file too (test modules have nothing to mutate).
  for file in src/steps/*.rs; do
    case " ${files[*]} " in *" $file "*) continue ;; esac
    [[ "$file" == *tests.rs ]] || files+=("$file")
  done
fi
tree=${MUTANTS_TREE:-target/mutants-tree}
out=$PWD/${MUTANTS_OUTPUT:-target/mutants-out}
mkdir -p "$tree" "$out"
# By content, and new times for what changed, so cargo rebuilds it.
git ls-files -z | rsync -rl --checksum --from0 --files-from=- ./ "$tree/"
cd "$tree"
baseline=run
for file in "${files[@]}"; do
  name=${file//\//_}
  started=$(date +%s)
  status=0
  nice -n "${MUTANTS_NICE:-15}" cargo mutants --in-place \
    --profile mutants --cargo-arg=--lib \
    --timeout "${MUTANTS_TIMEOUT:-60}" --build-timeout 300 \
    --baseline "$baseline" --output "$out/$name" --file "$file" "$@" ||
    status=$?
  # 0: all caught; 2: some missed; 3: some timed out; anything else is an error.
  case $status in 0 | 2 | 3) ;; *) exit "$status" ;; esac
  baseline=skip
  count() { grep -c . "$out/$name/mutants.out/$1.txt" 2>/dev/null || true; }
  printf '%s caught=%s missed=%s timeout=%s unviable=%s seconds=%s\n' \
    "$file" "$(count caught)" "$(count missed)" "$(count timeout)" \
    "$(count unviable)" "$(($(date +%s) - started))" | tee -a "$out/summary.txt"
done

#!/usr/bin/env bash
# Mutation pass (cargo-mutants) over the step engine and steps, the one
# command runner and the token's handling: each mutant is a small change to
# the code (a condition flipped, a function returning a default); a mutant
# the unit tests do not catch is a behaviour no test pins down. Not part of
# CI: it rebuilds the crate once per mutant (hours for src/steps on two
# cores). Usage:
#
#   cargo install --locked cargo-mutants
#   bench/mutants.sh                      # all three areas
#   bench/mutants.sh --file src/secret.rs # narrower; any cargo-mutants flag
#   bench/mutants.sh --list               # only list the mutants
#   bench/mutants.sh --file 'src/edit/*.rs'   # the pure text edits (fast)
#
# Results: target/mutants/mutants.out/{caught,missed,timeout,unviable}.txt
# (MUTANTS_OUTPUT=DIR puts them in DIR/mutants.out, so two runs can share a
# checkout). The README's Testing section lists the survivors and why they
# stay. A timeout counts as caught: the mutant made a test hang; the unit
# tests take 2-15 s here, so MUTANTS_TIMEOUT's 60 s leaves room for a
# loaded machine.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo mutants --version >/dev/null 2>&1; then
  echo "cargo-mutants is not installed: cargo install --locked cargo-mutants" >&2
  exit 1
fi
files=(--file 'src/steps/**/*.rs' --file src/host/command.rs --file src/secret.rs)
for arg in "$@"; do
  # A --file of the caller's replaces the default set.
  if [ "$arg" = --file ] || [[ "$arg" == --file=* ]]; then files=(); fi
done
exec cargo mutants \
  --jobs "${MUTANTS_JOBS:-1}" \
  --timeout "${MUTANTS_TIMEOUT:-60}" \
  --output "${MUTANTS_OUTPUT:-target/mutants}" \
  "${files[@]}" "$@" \
  -- --lib

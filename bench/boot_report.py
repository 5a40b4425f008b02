#!/usr/bin/env python3
"""Writes the "Boot to ready" section of bench/RESULTS.md from what
bench/boot.sh left in bench/work/boot/.

    boot_report.py BOOT_DIR RESULTS.md ROUNDS

Exits 1 (after writing) when an instance's apply or verify failed, or when a
golden instance's per-boot apply installed a package or did not register.
"""

import datetime
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sections  # noqa: E402

out, results_path, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
KINDS = ("golden", "plain")
GOAL_S = 2.0


def read(*parts, default=""):
    try:
        with open(os.path.join(out, *parts)) as f:
            return f.read()
    except OSError:
        return default


def events(*parts):
    found = []
    for line in read(*parts).splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            pass
    return found


def steps(evs):
    """{id: (status, seconds)} of step_finished/step_checked events, in order."""
    return {
        e["id"]: (e["status"], e.get("duration_ms", 0) / 1000)
        for e in evs
        if e.get("event") in ("step_finished", "step_checked")
    }


def summary(evs):
    return next((e for e in evs if e.get("event") == "summary"), {})


def instance(kind, n):
    d = f"{kind}-{n}"
    stamps = {}
    for line in read(d, "stamps").splitlines():
        key, _, value = line.partition(" ")
        stamps[key] = float(value)
    apply_evs, verify_evs = events(d, "apply.jsonl"), events(d, "verify.jsonl")
    docker = dict(
        line.split("=", 1) for line in read(d, "docker.txt").splitlines() if "=" in line
    )
    try:
        docker_start = (
            int(docker["ActiveEnterTimestampMonotonic"])
            - int(docker["InactiveExitTimestampMonotonic"])
        ) / 1e6
    except (KeyError, ValueError):
        docker_start = None
    systemd = dict(
        line.split("=", 1) for line in read(d, "systemd.txt").splitlines() if "=" in line
    )
    s = stamps.get("start")
    r = {
        "kind": kind,
        "round": n,
        "apply_exit": read(d, "apply.exit").strip() or "?",
        "verify_exit": read(d, "verify.exit").strip() or "?",
        "apply_steps": steps(apply_evs),
        "verify_steps": steps(verify_evs),
        "apply_ms": summary(apply_evs).get("duration_ms"),
        "verify_ms": summary(verify_evs).get("duration_ms"),
        "docker_start": docker_start,
        "packages": read(d, "packages.txt").strip(),
    }
    if s and all(k in stamps for k in ("unit-start", "apply-end", "verify-end")):
        r["ready"] = stamps["verify-end"] - s
        r["init"] = stamps["unit-start"] - s
        r["apply"] = stamps["apply-end"] - stamps["unit-start"]
        r["verify"] = stamps["verify-end"] - stamps["apply-end"]
        r["tool"] = r["apply"] + r["verify"]
        r["register"] = r["apply_steps"].get("runner-register", (None, None))[1]
        if r["apply_ms"] is not None:
            r["outside"] = (r["apply_ms"] / 1000) - sum(t for _, t in r["apply_steps"].values())
        try:
            # The unit's first stamp and systemd's record of its start are
            # the same moment on two clocks: that maps monotonic to wall.
            offset = stamps["unit-start"] - int(systemd["ExecMainStartTimestampMonotonic"]) / 1e6
            pid1 = int(systemd["UserspaceTimestampMonotonic"]) / 1e6 + offset
            if s <= pid1 <= stamps["unit-start"]:
                r["nspawn"] = pid1 - s
                r["systemd"] = stamps["unit-start"] - pid1
        except (KeyError, ValueError):
            pass
    return r


runs = [instance(k, n) for n in range(1, rounds + 1) for k in KINDS]
by = {k: [r for r in runs if r["kind"] == k] for k in KINDS}
problems = []
for r in runs:
    name = f"{r['kind']} round {r['round']}"
    if "ready" not in r:
        problems.append(f"{name}: no timestamps (the per-boot unit did not finish)")
    if r["apply_exit"] != "0":
        problems.append(f"{name}: per-boot apply exited {r['apply_exit']}")
    if r["verify_exit"] != "0":
        problems.append(f"{name}: verify exited {r['verify_exit']}")
    reg = r["apply_steps"].get("runner-register", ("missing",))[0]
    if reg != "changed":
        problems.append(f"{name}: runner-register {reg}, not changed")
    if r["kind"] == "golden":
        for sid in ("runner-install", "docker-install"):
            status = r["apply_steps"].get(sid, ("missing",))[0]
            if status != "ok":
                problems.append(f"{name}: {sid} {status} (a golden instance must install nothing)")
    else:
        status = r["apply_steps"].get("docker-install", ("missing",))[0]
        if status != "changed":
            problems.append(f"{name}: docker-install {status} (a plain instance installs at boot)")


def med(kind, key):
    vals = [r[key] for r in by[kind] if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def spread(kind, key):
    vals = [r[key] for r in by[kind] if r.get(key) is not None]
    if not vals:
        return "n/a"
    return f"**{statistics.median(vals):.2f}** ({min(vals):.2f}–{max(vals):.2f})"


def step_med(kind, which, sid):
    vals = [r[which][sid][1] for r in by[kind] if sid in r[which]]
    return statistics.median(vals) if vals else None


def step_status(kind, which, sid):
    found = sorted({r[which][sid][0] for r in by[kind] if sid in r[which]})
    return "/".join(found) or "–"


def fmt(v, digits=2):
    return "–" if v is None else f"{v:.{digits}f}"


date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
load_before, load_after = read("load-before.txt").strip(), read("load-after.txt").strip()
build_status, _, build_ms = read("golden-build.txt").strip().partition(" ")
build_evs = events("golden-build.jsonl")

lines = []
w = lines.append
w("## Boot to ready: golden image vs. installing at boot (issue 13)")
w("")
w(f"Generated by `bench/boot.sh` on {date}, commit `{read('commit.txt').strip()}`, "
  f"{rounds} round{'s' if rounds != 1 else ''} (each round one instance of each image, the order alternating). "
  f"Machine: {sections.machine()}.")
w("")
for line in sections.load_lines(load_before, load_after, "the two images"):
    w(line)
w(f"- image: the real-host tier's (`tests/hosts/build-image.sh`, "
  f"`{read('image.txt').strip()}`); Debian 12, docker.io from the image's local mirror, "
  f"the stand-in gitlab-runner from a flat repository, both bind-mounted read-only: "
  f"nothing is downloaded, so (b) is a lower bound of a real fleet's install at boot")
w(f"- golden image built once by `packer/root-apply.sh TREE … apply` (outside the "
  f"rounds): {int(build_ms) / 1000 if build_ms.isdigit() else '?'} s, exit {build_status or '?'}, "
  f"summary `{json.dumps(summary(build_evs), sort_keys=True)}`")
w("- an instance: a copy of the image booted with systemd-nspawn (`--boot "
  "--private-network`); a unit ordered after multi-user.target (as cloud-init's "
  "per-boot scripts are) runs `runner-provision --profile … --output json apply --yes "
  "--token-file … --forget-token` (a `glrt-` token; the stand-in registers offline, "
  "no HTTP round trip: a real GitLab adds one request), then `runner-provision "
  "--output json verify`. Times are wall-clock stamps from just before "
  "systemd-nspawn starts.")
w("")
w("Medians in seconds (min–max):")
w("")
w("| | (a) golden image | (b) plain image, installs at boot |")
w("|---|---:|---:|")
w(f"| **boot to ready** (container start → `verify` passed) | {spread('golden', 'ready')} | {spread('plain', 'ready')} |")
w(f"| init: container start → per-boot unit starts (nspawn, systemd to multi-user.target) | {spread('golden', 'init')} | {spread('plain', 'init')} |")
w(f"| of which systemd-nspawn: start → the container's systemd starts | {spread('golden', 'nspawn')} | {spread('plain', 'nspawn')} |")
w(f"| of which systemd: its start → the per-boot unit starts | {spread('golden', 'systemd')} | {spread('plain', 'systemd')} |")
w(f"| of which docker.service's start (systemd's own timestamps) | {spread('golden', 'docker_start')} | not at boot (installed by apply) |")
w(f"| the tool: per-boot `apply` (wall) | {spread('golden', 'apply')} | {spread('plain', 'apply')} |")
w(f"| of which registration (`runner-register`, stand-in, offline) | {spread('golden', 'register')} | {spread('plain', 'register')} |")
w(f"| of which in no step's `duration_ms` (the engine between steps; before 838a6c5 also the shared apt transaction, which now counts in runner-install's time) | {spread('golden', 'outside')} | {spread('plain', 'outside')} |")
w(f"| the tool: `verify` (wall) | {spread('golden', 'verify')} | {spread('plain', 'verify')} |")
w(f"| **the tool's part** (apply + verify) | {spread('golden', 'tool')} | {spread('plain', 'tool')} |")
ratio = None
if med("golden", "ready") and med("plain", "ready"):
    ratio = med("plain", "ready") / med("golden", "ready")
w("")
if ratio:
    w(f"- plain / golden, boot to ready (medians): **{ratio:.1f}×**")
tool_golden = med("golden", "tool")
if tool_golden is not None:
    verdict = "**pass**" if tool_golden < GOAL_S else "**FAIL**"
    w(f"- goal: the tool's part of (a) under {GOAL_S:.0f} s: {tool_golden:.2f} s (median), {verdict}")
    apply_only = med("golden", "apply")
    if apply_only is not None:
        w(f"  (its per-boot apply alone: {apply_only:.2f} s)")
w("")
w("Where the tool's time goes, per step (medians of `duration_ms` in its JSON "
  "output, seconds; status over all rounds):")
w("")
w("| step | (a) apply | (b) apply | (a) verify | (b) verify |")
w("|---|---:|---:|---:|---:|")
order = []
for r in runs:
    for sid in list(r["apply_steps"]) + list(r["verify_steps"]):
        if sid not in order:
            order.append(sid)
for sid in order:
    cells = []
    for which in ("apply_steps", "verify_steps"):
        for kind in KINDS:
            v = step_med(kind, which, sid)
            cells.append("–" if v is None else f"{v:.2f} {step_status(kind, which, sid)}")
    w(f"| `{sid}` | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |")
a_ms = [r["apply_ms"] for r in by["golden"] if r["apply_ms"] is not None]
b_ms = [r["apply_ms"] for r in by["plain"] if r["apply_ms"] is not None]
av = [r["verify_ms"] for r in by["golden"] if r["verify_ms"] is not None]
bv = [r["verify_ms"] for r in by["plain"] if r["verify_ms"] is not None]


def msmed(vals):
    return f"{statistics.median(vals) / 1000:.2f}" if vals else "–"


w(f"| summary `duration_ms` | {msmed(a_ms)} | {msmed(b_ms)} | {msmed(av)} | {msmed(bv)} |")
w("")
w("Every instance:")
w("")
w("| round | image | boot to ready | init | apply | verify | apply exit | verify exit | packages after |")
w("|---:|---|---:|---:|---:|---:|---:|---:|---|")
for r in runs:
    w(f"| {r['round']} | {r['kind']} | {fmt(r.get('ready'))} | {fmt(r.get('init'))} | "
      f"{fmt(r.get('apply'))} | {fmt(r.get('verify'))} | {r['apply_exit']} | {r['verify_exit']} | "
      f"{'; '.join(r['packages'].splitlines()) or '–'} |")
w("")
if problems:
    w("**Problems** (the run is not valid as a measurement):")
    w("")
    for p in problems:
        w(f"- {p}")
else:
    w("Checked in every round: apply and verify exited 0, the runner registered "
      "(`runner-register` changed); golden instances installed nothing "
      "(`runner-install`, `docker-install` ok), plain ones installed Docker at boot.")
w("")

sections.replace(results_path, "boot-to-ready", "bench/boot.sh", "\n".join(lines))
print("\n".join(lines))
if problems:
    sys.exit(1)

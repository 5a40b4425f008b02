#!/usr/bin/env python3
"""Peak memory of a command and of its process tree.

    peak_rss.py OUT.json CMD [ARG...]

Runs CMD under ptrace (fork, clone and exit events only, so every
descendant is followed) and records:

  root_hwm_kib      VmHWM of CMD's own process, read when it exits: its
                    peak resident set, children excluded (`/usr/bin/time -v`
                    reports the largest process of the tree instead)
  largest_kib       the largest VmHWM of any process in the tree, and which
  tree_peak_kib     the largest sum of Pss (proportional set size: shared
                    pages split between the processes sharing them) over the
                    tree's live processes, sampled every 2 ms from the exec
                    of CMD on (a lower bound of the true peak)
  processes         every process in the tree: pid, parent, comm, VmHWM

stdout and stderr of CMD go to /dev/null; the exit status is recorded and
returned. Linux only; needs ptrace (root, or ptrace_scope 0).
"""

import ctypes
import json
import os
import signal
import sys
import threading
import time

PTRACE_TRACEME = 0
PTRACE_CONT = 7
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
O_TRACEFORK, O_TRACEVFORK, O_TRACECLONE, O_TRACEEXEC, O_TRACEEXIT = 0x2, 0x4, 0x8, 0x10, 0x40
EVENT_FORK, EVENT_VFORK, EVENT_CLONE, EVENT_EXEC, EVENT_EXIT = 1, 2, 3, 4, 6
WALL = 0x40000000

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long


def ptrace(req, pid, addr=None, data=None):
    return libc.ptrace(req, pid, addr, data)


def status_fields(pid):
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
    except OSError:
        pass
    return fields


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def kib(value):
    return int(value.split()[0]) if value else 0


def main():
    out_path, argv = sys.argv[1], sys.argv[2:]
    child = os.fork()
    if child == 0:
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        ptrace(PTRACE_TRACEME, 0)
        os.execvp(argv[0], argv)

    live = {child}            # thread-group leaders and threads being traced
    leaders = {child}         # processes (not threads) alive
    procs = {}                # pid -> record
    parent_of = {child: os.getpid()}
    lock = threading.Lock()
    tree_peak = [0]
    done = threading.Event()

    def sampler():
        while not done.is_set():
            with lock:
                pids = list(leaders)
            total = sum(pss_kib(p) for p in pids)
            tree_peak[0] = max(tree_peak[0], total)
            time.sleep(0.002)

    thread = threading.Thread(target=sampler, daemon=True)
    started = time.monotonic()
    exit_status = None
    options_set = False
    new_pids = set()
    while live:
        try:
            pid, status = os.waitpid(-1, WALL)
        except ChildProcessError:
            break
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            with lock:
                live.discard(pid)
                leaders.discard(pid)
            if pid == child:
                exit_status = os.waitstatus_to_exitcode(status)
            continue
        if not os.WIFSTOPPED(status):
            continue
        sig = os.WSTOPSIG(status)
        event = status >> 16
        inject = 0
        if not options_set and pid == child and sig == signal.SIGTRAP:
            opts = O_TRACEFORK | O_TRACEVFORK | O_TRACECLONE | O_TRACEEXEC | O_TRACEEXIT
            ptrace(PTRACE_SETOPTIONS, pid, None, ctypes.c_void_p(opts))
            options_set = True
            thread.start()          # CMD is exec'd: sample from here on
        elif sig == signal.SIGTRAP and event in (EVENT_FORK, EVENT_VFORK, EVENT_CLONE):
            msg = ctypes.c_ulong()
            ptrace(PTRACE_GETEVENTMSG, pid, None, ctypes.byref(msg))
            new = msg.value
            with lock:
                live.add(new)
                if event != EVENT_CLONE:
                    leaders.add(new)
                    parent_of[new] = pid
            new_pids.add(new)
        elif sig == signal.SIGTRAP and event == EVENT_EXIT:
            fields = status_fields(pid)
            if fields.get("Tgid") == str(pid):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmdline = f.read().split(b"\0")[:-1]
                except OSError:
                    cmdline = []
                procs[pid] = {
                    "pid": pid,
                    "parent": parent_of.get(pid),
                    "comm": fields.get("Name", "?"),
                    "cmdline": [c.decode(errors="replace") for c in cmdline][:8],
                    "hwm_kib": kib(fields.get("VmHWM")),
                }
        elif sig == signal.SIGTRAP and event == EVENT_EXEC:
            pass
        elif sig == signal.SIGSTOP and pid in new_pids:
            new_pids.discard(pid)   # the initial stop of an auto-attached child
        elif event == 0:
            inject = sig            # a real signal: deliver it
        ptrace(PTRACE_CONT, pid, None, ctypes.c_void_p(inject))
    elapsed = time.monotonic() - started
    done.set()
    if thread.is_alive():
        thread.join()

    root = procs.get(child, {})
    largest = max(procs.values(), key=lambda p: p["hwm_kib"], default={})
    result = {
        "argv": argv,
        "exit_status": exit_status,
        "elapsed_s": round(elapsed, 3),
        "root_hwm_kib": root.get("hwm_kib"),
        "largest_kib": largest.get("hwm_kib"),
        "largest_comm": largest.get("comm"),
        "tree_peak_kib": max(tree_peak[0], root.get("hwm_kib") or 0),
        "process_count": len(procs),
        "processes": sorted(procs.values(), key=lambda p: p["pid"]),
    }
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"{' '.join(argv[:3])}...: root {result['root_hwm_kib']} KiB, "
          f"largest {result['largest_kib']} KiB ({result['largest_comm']}), "
          f"tree peak {result['tree_peak_kib']} KiB, {len(procs)} processes, "
          f"exit {exit_status}")
    return 0 if exit_status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

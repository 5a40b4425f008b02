"""Sections of bench/RESULTS.md that their own scripts write.

A section is the text between `<!-- begin NAME (written by SCRIPT) -->` and
`<!-- end NAME -->`. `replace` puts a new text in place of NAME's (or at the
end when there is none); `others` returns every section but the ones named,
so bench/report.py, which writes the rest of the file, keeps them.
"""

import os
import re

BEGIN = re.compile(r"^<!-- begin ([a-z0-9-]+) .*-->$", re.M)


def _spans(text):
    """(name, start, end) of each whole section, end after its end line."""
    found = []
    for m in BEGIN.finditer(text):
        name = m.group(1)
        end_line = f"<!-- end {name} -->"
        end = text.find(end_line, m.end())
        if end < 0:
            continue
        found.append((name, m.start(), end + len(end_line)))
    return found


def wrap(name, script, body):
    return f"<!-- begin {name} (written by {script}) -->\n{body.rstrip()}\n<!-- end {name} -->"


def replace(path, name, script, body):
    """Writes NAME's section into PATH (atomically), keeping everything else."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = "# Benchmark results\n"
    section = wrap(name, script, body)
    for found, start, end in _spans(text):
        if found == name:
            text = text[:start] + section + text[end:]
            break
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def others(path, exclude=()):
    """The text of every section in PATH but those named in EXCLUDE."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    return [text[start:end] for name, start, end in _spans(text) if name not in exclude]


def machine():
    """'Debian GNU/Linux 12 (bookworm), kernel K, N × CPU'."""
    import platform

    cpu = next(
        (l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
        "?",
    )
    os_name = next(
        (l.split("=", 1)[1].strip().strip('"') for l in open("/etc/os-release") if l.startswith("PRETTY_NAME=")),
        "?",
    )
    return f"{os_name}, kernel {platform.release()}, {os.cpu_count()} × {cpu}"


def _one_minute(uptime):
    try:
        return float(uptime.split("load average:")[1].split(",")[0])
    except (IndexError, ValueError):
        return 0.0


def load_lines(before, after, compared):
    """Markdown lines: whether the machine was loaded, and both `uptime`s."""
    if max(_one_minute(before), _one_minute(after)) >= 0.5:
        head = ("**Shared, loaded machine**: other work (builds, tests) was running "
                "while this ran (1-minute load average 0.5 or more before or after), "
                f"so absolute times are noisy; {compared} were measured in the same "
                "run, one after the other.")
    else:
        head = "The machine was quiet (1-minute load average under 0.5 before and after)."
    return [head, "", f"- load before: `{before}`", f"- load after:  `{after}`"]

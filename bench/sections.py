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

"""Profile the application under load with py-spy (the ``bench`` extra) and summarise it.

py-spy samples the running process from outside (``--nonblocking``: it never pauses it) and
writes collapsed stacks; only samples where the process was on the CPU are kept (py-spy
leaves idle ones out). Each sample is charged to the first category found from the leaf
up, so the shares add up to 100%.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# Leaf-first: the first pattern a frame matches names the sample's category.
CATEGORIES = (
    ("store (peewee, sqlite3)", re.compile(r"peewee|playhouse|sqlite3|fsrouter/store/")),
    ("logging (structlog)", re.compile(r"structlog|logging/")),
    ("ESL parsing (fsrouter/esl/protocol.py)", re.compile(r"fsrouter/esl/protocol\.py")),
    ("socket I/O (gevent sockets)", re.compile(r"gevent/_socket|gevent/socket")),
    ("ESL connection (fsrouter/esl/)", re.compile(r"fsrouter/esl/")),
    ("routing and config (fsrouter/routing, config)",
     re.compile(r"fsrouter/routing/|fsrouter/config/|phonenumbers|zoneinfo|holidays")),
    ("call flow (fsrouter/calls)", re.compile(r"fsrouter/calls/")),
    ("gevent hub and greenlets", re.compile(r"gevent/|greenlet")),
)


def py_spy() -> str | None:
    """The py-spy next to this Python (the venv), else on PATH."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    exe = py_spy()
    if exe is None:
        return None
    return subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--duration", str(max(int(seconds), 1)),
         "--rate", "250", "--format", "raw", "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def summarise(raw: Path, top: int = 12) -> dict[str, Any]:
    """Category shares and the functions with the most samples of their own."""
    categories: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text("utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        samples = int(count)
        total += samples
        own[re.sub(r":\d+\)$", ")", frames[-1])] += samples
        categories[_category(frames)] += samples
    share = {name: round(100 * n / total, 1) for name, n in categories.most_common()}
    functions = [{"function": name, "percent": round(100 * n / total, 1)}
                 for name, n in own.most_common(top)]
    return {"samples": total, "categories_percent": share, "top_self_functions": functions}


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in CATEGORIES:
            if pattern.search(frame):
                return name
    return "other"

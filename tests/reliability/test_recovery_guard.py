"""The hygiene guard of the whole suite (issue 12.7) can fail: an inner pytest run with the
plugin gets tests that leak a greenlet, a descriptor, a socket or die in a greenlet nobody
waits on, and tests that do everything right (or say why not); and the core-dump check finds
the file a crashing switch leaves.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from fsrouter.testing.pytest_plugin import core_dumps

INNER = textwrap.dedent('''
    import os
    import socket

    import gevent
    import pytest

    KEPT = []

    def test_leaks_a_greenlet():
        KEPT.append(gevent.spawn(gevent.sleep, 60))
        gevent.sleep(0)

    def test_leaks_a_descriptor():
        KEPT.append(open(os.devnull))

    def test_leaks_a_socket():
        KEPT.append(socket.socket())

    def test_a_greenlet_dies_unseen():
        gevent.spawn(lambda: 1 / 0)
        gevent.sleep(0.05)

    def test_a_greenlet_error_somebody_waits_for():
        with pytest.raises(ZeroDivisionError):
            gevent.spawn(lambda: 1 / 0).get(timeout=1)

    def test_clean():
        greenlet = gevent.spawn(gevent.sleep, 0.05)
        with open(os.devnull) as handle:
            handle.read()
        greenlet.join()

    def test_finishes_just_after_the_test():
        gevent.spawn(gevent.sleep, 0.3)  # the settle loop waits for it

    @pytest.mark.hygiene_exempt("keeps a socket on purpose")
    def test_exempt():
        KEPT.append(socket.socket())
''')
FAILING = {"test_leaks_a_greenlet": "greenlet(s) still alive",
           "test_leaks_a_descriptor": "more file descriptor",
           "test_leaks_a_socket": "socket:[",
           "test_a_greenlet_dies_unseen": "unhandled greenlet error"}
PASSING = ["test_a_greenlet_error_somebody_waits_for", "test_clean",
           "test_finishes_just_after_the_test", "test_exempt"]


def test_the_guard_fails_leaks_and_passes_clean_tests(tmp_path: Path):
    (tmp_path / "test_inner.py").write_text(INNER, "utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "fsrouter.testing.pytest_plugin", "-p",
         "no:cacheprovider", "-rA", "-q", str(tmp_path / "test_inner.py")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**{k: v for k, v in os.environ.items() if k != "FSROUTER_HYGIENE"},
             "FSROUTER_HYGIENE": "strict"})
    out = done.stdout
    for name, reason in FAILING.items():
        line = next((row for row in out.splitlines()
                     if row.startswith("ERROR") and name in row), "")
        assert line, f"{name} was not failed by the guard:\n{out[-3000:]}"
        assert reason in out, (name, reason)
    for name in PASSING:
        assert f"PASSED test_inner.py::{name}" in out, f"{name}:\n{out[-3000:]}"


def test_a_core_file_from_the_switch_is_found(tmp_path: Path):
    started = time.time() - 1
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "core.4242").write_bytes(b"\x7fELF")
    (tmp_path / "core_settings.txt").write_text("not a core", "utf-8")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    (elsewhere / "core").write_bytes(b"\x7fELF")
    assert sorted(p.name for p in core_dumps([tmp_path / "log", elsewhere], started)) == [
        "core", "core.4242"]
    assert core_dumps([tmp_path / "log"], time.time() + 60) == []  # older than the run

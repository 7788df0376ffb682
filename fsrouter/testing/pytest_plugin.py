"""pytest fixtures for the real FreeSWITCH (register with ``pytest_plugins``).

- ``real_switch`` (session scope): one running :class:`RealSwitch` for the whole session,
  skipped with the reason when no FreeSWITCH is found, a failure instead when env ``CI`` is
  set (a CI run must not pass by skipping its real-switch tier).
- ``fresh_id``: a new unique suffix for each test, so phones and numbers never collide.
- A failing test that used the switch gets the tail of the switch's log as a report section
  ("freeswitch log"), shown by pytest next to the captured output.
- ``hygiene`` (autouse): every test fails that leaves an unhandled greenlet error, a live
  greenlet or an extra file descriptor; the session fails if the switch left a core dump.
"""

from __future__ import annotations

import gc
import os
import re
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fsrouter.testing.realswitch import RealSwitch, SwitchError, find_freeswitch

LOG_TAIL_LINES = 60
_SWITCH_KEY = pytest.StashKey[RealSwitch]()


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"real FreeSWITCH required when CI is set: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def real_switch(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealSwitch]:
    """One real FreeSWITCH for the test session, ready; stopped at the end."""
    freeswitch = find_freeswitch()
    if freeswitch is None:
        _unavailable("no FreeSWITCH found (set FSROUTER_FREESWITCH to its folder or binary)")
    switch = RealSwitch(tmp_path_factory.mktemp("freeswitch"), freeswitch)
    try:
        switch.start()
    except (SwitchError, OSError) as exc:
        switch.stop(grace=0)
        _unavailable(f"FreeSWITCH did not start: {exc}")
    request.config.stash[_SWITCH_KEY] = switch
    started = time.time()
    cwd = _cwd_of(switch.pid)
    try:
        yield switch
    finally:
        # A polite stop takes ~5.5 s (measured) and saves nothing a test needs; SIGKILL ends
        # it at once and the folder is deleted with the session's tmp anyway.
        switch.stop(grace=0)
        del request.config.stash[_SWITCH_KEY]
        # The Asterisk testsuite's rule: a run that made the switch dump core fails.
        dumps = core_dumps([switch.workdir] + ([cwd] if cwd else []), started)
        if dumps:
            pytest.fail(f"FreeSWITCH dumped core: {[str(p) for p in dumps]}", pytrace=False)


def _cwd_of(pid: int | None) -> Path | None:
    """Where a process writes its core file (core_pattern ``core``: its working folder)."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")) if pid else None
    except OSError:
        return None


@pytest.fixture
def fresh_id(real_switch: RealSwitch) -> str:
    """A suffix no other test uses: ``f"answer-100-{fresh_id}"``, ``f"4930{n}"``..."""
    return real_switch.fresh_id()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.failed or "real_switch" not in getattr(item, "fixturenames", ()):
        return
    switch = item.config.stash.get(_SWITCH_KEY, None)
    if switch is not None:
        report.sections.append(("freeswitch log", switch.log_tail(LOG_TAIL_LINES)))


@pytest.fixture(scope="session")
def sim_switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The simulator behind the same driver as ``real_switch``, in real time (speed 1)."""
    from fsrouter.sim.driver import SimSwitch

    switch = SimSwitch(tmp_path_factory.mktemp("simswitch"), speed=1.0)
    switch.start()
    try:
        yield switch
    finally:
        switch.stop()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hygiene_exempt(reason): the hygiene guard does not "
                            "check this test (say why)")
    if os.environ.get("FSROUTER_HYGIENE") != "off":  # off: for timing runs only
        _install_hygiene_hooks()  # from the start: session fixtures' greenlets are known too


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the real switch is in the ``realswitch`` tier (``-m realswitch``)."""
    for item in items:
        if "real_switch" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realswitch)


# -- hygiene guard (issue 12.7) ------------------------------------------------------------
#
# Every test must leave the process as it found it: no greenlet that died with an unhandled
# exception (what gevent's hub reports through Hub.handle_error; GreenletExit and SystemExit
# are its NOT_ERROR; a greenlet somebody was waiting on, with get/join/link, hands its error
# to them), no greenlet still alive that the test started, no file descriptor or socket
# more than before. The baseline is taken when the test body starts (fixtures, session ones
# started lazily included) and compared after the test's fixtures are torn down; things that
# end just after a test (a socket in its linger, a greenlet finishing) get a settle loop.
# The switch's core dumps are checked when the session's switch stops (``real_switch``).
# FSROUTER_HYGIENE=errors-only skips the leak comparison, =off everything (timing runs).
#
# Greenlets are tracked with greenlet.settrace (every switch adds its target to a WeakSet),
# not by scanning gc.get_objects(): that costs ~20 ms per scan, the trace ~0.2 us a switch.
# A test that deliberately lets greenlets fail or keeps something alive says so with
# ``@pytest.mark.hygiene_exempt("reason")``.

HYGIENE_SETTLE_S = 2.0
_ran: weakref.WeakSet[Any] = weakref.WeakSet()
_greenlet_errors: list[str] = []
_previous_trace: Any = None


def _trace(event: str, args: Any) -> None:
    if event in ("switch", "throw"):
        _ran.add(args[1])
    if _previous_trace is not None:
        _previous_trace(event, args)


def _install_hygiene_hooks() -> None:
    global _previous_trace
    import gevent.hub
    import greenlet

    if getattr(gevent.hub.Hub.handle_error, "_fsrouter_guard", False):
        return
    original = gevent.hub.Hub.handle_error

    def handle_error(self: Any, context: Any, type_: Any, value: Any, tb: Any) -> Any:
        # A greenlet somebody waits on (get, join, link) hands its error to them: handled.
        waited_on = getattr(context, "has_links", None)
        if (type_ is not None and not issubclass(type_, self.NOT_ERROR)
                and not (waited_on is not None and waited_on())):
            _greenlet_errors.append(f"{context!r:.120}: {type_.__name__}: {value!s:.200}")
        return original(self, context, type_, value, tb)

    handle_error._fsrouter_guard = True  # type: ignore[attr-defined]
    gevent.hub.Hub.handle_error = handle_error  # type: ignore[method-assign]
    _previous_trace = greenlet.settrace(_trace)


def _alive_greenlets() -> set[int]:
    import gevent
    import greenlet

    skip = {id(gevent.get_hub()), id(greenlet.getcurrent())}
    return {id(g) for g in list(_ran) if not g.dead and id(g) not in skip}


def _descriptors() -> dict[str, str]:
    """fd -> what it is (``socket:[...]``, a path), for this process."""
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor, already closed
    return out


def _leaks(greenlets: set[int], fds: dict[str, str]) -> list[str]:
    problems = []
    new = _alive_greenlets() - greenlets
    new_greenlets = [g for g in list(_ran) if id(g) in new] if new else []
    if new_greenlets:
        problems.append(f"{len(new_greenlets)} greenlet(s) still alive: "
                        + ", ".join(repr(g)[:100] for g in new_greenlets[:5]))
    now = _descriptors()
    opened = sorted(target for fd, target in now.items() if fds.get(fd) != target)
    if len(now) > len(fds):
        problems.append(f"{len(now) - len(fds)} more file descriptor(s): {opened[:8]}")
    return problems


_BEFORE = pytest.StashKey[tuple[set[int], dict[str, str]]]()


def _guarded(item: pytest.Item) -> bool:
    return (item.get_closest_marker("hygiene_exempt") is None
            and os.environ.get("FSROUTER_HYGIENE") != "off")


@pytest.fixture(autouse=True)
def hygiene(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves an unhandled greenlet error (see also the leak hooks below)."""
    if not _guarded(request.node):
        yield
        return
    errors_before = len(_greenlet_errors)
    yield
    errors = _greenlet_errors[errors_before:]
    if errors:
        pytest.fail(f"hygiene: {len(errors)} unhandled greenlet error(s): {errors[:3]}",
                    pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """The leak baseline is taken when the test body starts: every fixture is set up by
    then, the session's lazily started ones (``request.getfixturevalue``) included."""
    if _guarded(item):
        import gevent

        gevent.sleep(0)  # what fixtures just spawned runs once, so it counts as "before"
        item.stash[_BEFORE] = (_alive_greenlets(), _descriptors())
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After the test's own fixtures are torn down: no greenlet or descriptor more than when
    its body started (a settle loop lets sockets in their linger and greenlets finish)."""
    result = yield
    before = item.stash.get(_BEFORE, None)
    if before is None or os.environ.get("FSROUTER_HYGIENE") == "errors-only":
        return result
    import gevent

    deadline = time.monotonic() + HYGIENE_SETTLE_S
    while (problems := _leaks(*before)) and time.monotonic() < deadline:
        # Unreachable objects in reference cycles (a database object dropped without being
        # closed, say) still hold their descriptors until the collector runs: not a leak.
        gc.collect()
        gevent.sleep(0.05)
    if problems:
        pytest.fail("hygiene: " + "; ".join(problems), pytrace=False)
    return result


def core_dumps(folders: list[Path], since: float) -> list[Path]:
    """``core`` / ``core.<pid>`` files in ``folders`` (the first one searched recursively)
    written after ``since`` (a time.time())."""
    found: list[Path] = []
    for index, folder in enumerate(folders):
        candidates = folder.rglob("core*") if index == 0 else folder.glob("core*")
        found += [p for p in candidates if p.is_file() and re.fullmatch(r"core(\.\d+)?", p.name)
                  and p.stat().st_mtime >= since]
    return found

"""pytest fixtures for the real FreeSWITCH (register with ``pytest_plugins``).

- ``real_switch`` (session scope): one running :class:`RealSwitch` for the whole session,
  skipped with the reason when no FreeSWITCH is found, a failure instead when env ``CI`` is
  set (a CI run must not pass by skipping its real-switch tier).
- ``fresh_id``: a new unique suffix for each test, so phones and numbers never collide.
- A failing test that used the switch gets the tail of the switch's log as a report section
  ("freeswitch log"), shown by pytest next to the captured output.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

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
    try:
        yield switch
    finally:
        # A polite stop takes ~5.5 s (measured) and saves nothing a test needs; SIGKILL ends
        # it at once and the folder is deleted with the session's tmp anyway.
        switch.stop(grace=0)
        del request.config.stash[_SWITCH_KEY]


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the real switch is in the ``realswitch`` tier (``-m realswitch``)."""
    for item in items:
        if "real_switch" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.realswitch)

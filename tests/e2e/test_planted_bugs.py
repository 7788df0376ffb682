"""Behaviour that planted one-line bugs once got past the suite (issue 22.10), end to end:
``fsrouter run`` as a process on both switches, checked on the switch and in the database.

(a) A caller who hangs up in the menu of a number whose ``on_no_key`` is ``default:N`` gets no
    incident (the "caller gone" check after each menu play; the default option applies only
    to a caller still on the line).
(b) ``resolve_abandoned``: a caller who hangs up while phones ring leaves the incident
    resolved as abandoned when set, open with ``caller_abandoned`` when not.
(busy) The busy tone is early media: the caller's call is never answered (never charged).
"""

from __future__ import annotations

import pytest

from fsrouter.testing.phones import phone_number
from fsrouter.testing.watcher import Watcher
from tests.e2e.test_call_routing import call_in, hotline, hotline_config  # noqa: F401
from tests.e2e.test_inbound_routes import (  # noqa: F401
    AGENT_NUMBER,
    call,
    center,
    finished,
    inbound_config,
    login,
    sip,
)

pytestmark = pytest.mark.realswitch


@pytest.fixture(params=["real", "sim"])
def switch(request):
    return request.getfixturevalue("real_switch" if request.param == "real" else "sim_switch")


def test_hangup_in_a_menu_with_a_default_option_makes_no_incident(hotline):  # noqa: F811
    start, switch, watcher = hotline
    config = hotline_config({"anna": phone_number("noanswer", 0, 1)}, ring_timeout=30)
    config["numbers"][0]["menu"]["on_no_key"] = "default:1"
    daemon = start(config)
    caller, b_leg = call_in(switch, watcher)
    watcher.wait("CHANNEL_EXECUTE", **{"Unique-ID": b_leg, "Application": "play_and_get_digits"})
    switch.hangup(b_leg)  # as a SIP BYE, during the first menu play
    record = daemon.wait_for("SELECT * FROM call_records WHERE outcome IS NOT NULL")[0]
    assert (record["outcome"], record["incident_id"]) == ("hangup_in_menu", None)
    assert daemon.rows("SELECT * FROM incidents") == []
    assert watcher.legs_to(phone_number("noanswer", 0, 1)) == []  # nobody was rung


@pytest.mark.parametrize(("resolve", "state", "reason"), [
    (True, "abandoned", "caller_abandoned"),
    (False, "open", "caller_abandoned"),
])
def test_resolve_abandoned_decides_the_state_of_an_abandoned_incident(hotline, resolve,  # noqa: F811
                                                                      state, reason):
    start, switch, watcher = hotline
    ringing = phone_number("noanswer", 0, 1)
    config = hotline_config({"anna": ringing}, ring_timeout=30)
    config["numbers"][0]["options"][0]["resolve_abandoned"] = resolve
    daemon = start(config)
    caller, b_leg = call_in(switch, watcher, digit="1")
    watcher.wait("CHANNEL_CREATE", timeout=20, **{"Channel-Name": f"loopback/{ringing}-a"})
    switch.hangup(b_leg)
    record = daemon.wait_for("SELECT * FROM call_records WHERE outcome IS NOT NULL")[0]
    assert record["outcome"] == "abandoned_in_queue"
    incident = daemon.rows("SELECT * FROM incidents")[0]
    assert (incident["state"], incident["outcome_reason"]) == (state, reason), incident
    assert (incident["resolved_at"] is not None) == resolve, incident


def test_the_busy_tone_never_answers_the_call(center, tmp_path):  # noqa: F811
    start, switch, watcher = center
    daemon = start(inbound_config(tmp_path, {"alice": sip("answer", 100, 3)}))
    # The agent watcher clears stale busy flags when it syncs: mark alice busy after that.
    daemon.wait_logged("agents.resynced")
    login(daemon, "alice", busy=True)
    answers = Watcher(switch.esl_endpoint(), events=["CHANNEL_ANSWER", "CHANNEL_PROGRESS_MEDIA"])
    try:
        caller, b_leg = call(switch, watcher, AGENT_NUMBER)
        record = finished(daemon, watcher, b_leg)
    finally:
        answers.close()
    assert (record["outcome"], record["hangup_cause"]) == ("busy_tone", "USER_BUSY")
    names = [e.name for e in answers.events if e.uuid in (caller, b_leg)]
    assert "CHANNEL_PROGRESS_MEDIA" in names, names  # the tone was heard as early media
    assert "CHANNEL_ANSWER" not in names, names  # and the call was never answered
    assert record["answered_at"] is None, record

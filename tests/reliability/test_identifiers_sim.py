"""A channel named by a path (issue 22.1), end to end on the simulator.

The simulated switch hands the daemon a voicemail call whose channel ``Unique-ID`` is
``abe/../../../victim/x`` (FreeSWITCH takes any ``origination_uuid`` a dialplan sets). Before,
the daemon built the recording path from it: the switch wrote its WAV over
``<tmp>/victim/x.wav`` (outside the voicemail directory) and the daemon filed a voicemail
pointing there (or deleted the file as an empty recording). Now the call socket is ended
right after ``connect`` with a logged reason: no command carries the name, no file outside the
voicemail directory is touched, no voicemail is filed.
"""

from __future__ import annotations

from fsrouter.sim import CallerScript
from fsrouter.sim import switch as sim_switch
from tests.reliability.conftest import VOICEMAIL_NUMBER, full_config, wait_for

PLANTED = b"not a recording: a file of someone else's"


def test_a_traversal_unique_id_ends_the_call_and_touches_no_file(sim_daemon, tmp_path,
                                                                 record_commands):
    victim = tmp_path / "victim" / "x.wav"
    victim.parent.mkdir()
    victim.write_bytes(PLANTED)
    stamp = victim.stat().st_mtime_ns
    run = sim_daemon(full_config(tmp_path), speed=10.0)
    # voicemail/vera/<stamp>-abe/../../../victim/x.wav is <tmp>/victim/x.wav
    traversal = "abe/../../../victim/x"
    real = sim_switch.new_uuid
    names = iter([real(), traversal])  # place_call: the caller's a-leg, then its b-leg
    sim_switch.new_uuid = lambda: next(names, None) or real()
    try:
        record = run.call(VOICEMAIL_NUMBER, script=CallerScript(hangup_at_s=8.0))
    finally:
        sim_switch.new_uuid = real
    assert record.caller_uuid == traversal
    assert run.caller(record).hungup.wait(20), "the caller's leg never ended"
    wait_for(lambda: [e for e in run.logs if e.get("event") == "esl.closed"
                      and "non-UUID" in str(e.get("reason"))], 10, "the logged reason")
    closed = [e for e in run.logs if e.get("event") == "esl.closed"
              and "non-UUID" in str(e.get("reason"))]
    assert "Unique-ID" in closed[0]["reason"], closed
    # The socket's start goes in one write (connect and the subscriptions, none naming the
    # channel); nothing after it: no application, no command carrying the name.
    lines = [r.command.line for r in record_commands if r.channel == traversal]
    assert lines[0] == "connect" and not [line for line in lines if line.startswith(
        ("sendmsg", "api", "bgapi"))], lines
    assert not any(traversal in r.command.line or traversal in str(r.command.headers)
                   or traversal in r.command.body for r in record_commands)
    assert victim.read_bytes() == PLANTED and victim.stat().st_mtime_ns == stamp
    assert run.rows("SELECT id FROM voicemails") == []

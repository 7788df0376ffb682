"""The calibration scenarios: each is run on the real FreeSWITCH and on the simulator."""

from fsrouter.testing.scenario import Scenario

HOSTILE_NAME = "${system(touch /tmp/fsrouter-pwned)} O'Brien, Jörg"

SCENARIOS = [
    Scenario("menu_valid_key_answered", digits=((0.3, "2"),), phones=("answer-300",),
             talk_ms=800),
    Scenario("menu_invalid_key", digits=((0.3, "7"),)),
    Scenario("menu_no_key"),
    Scenario("hangup_in_menu", hangup=("menu", 0.5)),
    Scenario("hangup_in_queue_while_phone_rings", digits=((0.3, "1"),), phones=("noanswer",),
             hangup=("ringing", 0.5), ring_timeout=5),
    Scenario("hangup_while_bridged", digits=((0.3, "1"),), phones=("answer-200",),
             hangup=("bridged", 0.5), talk_ms=20000),
    Scenario("no_answer_then_busy_then_answer", digits=((0.3, "2"),),
             phones=("noanswer", "busy", "answer-300"), talk_ms=800),
    Scenario("unallocated_then_answer", digits=((0.3, "3"),), phones=("gone", "answer-200"),
             talk_ms=600),
    Scenario("nobody_answers_busy_tone_fallback", digits=((0.3, "1"),),
             phones=("noanswer", "busy")),
    Scenario("press_to_accept_not_pressed_then_pressed", digits=((0.3, "1"),),
             phones=("answer-200", "press-1-200"), press_to_accept=True, ring_timeout=4,
             hangup=("bridged", 0.5)),
    Scenario("busy_tone", flow="busy_tone"),
    # The caller skips the greeting with # and hangs up while the box records.
    Scenario("voicemail_hangup_while_recording", flow="voicemail", digits=((0.5, "#"),),
             hangup=("menu", 4.0)),
    Scenario("unassigned_sit", flow="sit"),
    Scenario("agent_own_outbound_call", flow="agent_outbound", phones=("answer-200",),
             talk_ms=500),
    Scenario("hostile_caller_name", digits=((0.3, "1"),), phones=("answer-200",),
             caller_name=HOSTILE_NAME, talk_ms=500),
]

OK = "+OK <uuid>"

# What the real switch must show for each scenario (agent leg results in order, caller's cause).
EXPECTED = {
    "menu_valid_key_answered": {"results": [OK], "caller_cause": "NORMAL_CLEARING"},
    "menu_invalid_key": {"results": [], "caller_cause": "NORMAL_CLEARING"},
    "menu_no_key": {"results": [], "caller_cause": "NORMAL_CLEARING"},
    "hangup_in_menu": {"results": [], "caller_cause": "NORMAL_CLEARING"},
    "hangup_in_queue_while_phone_rings": {"results": ["-ERR NORMAL_CLEARING"],
                                          "caller_cause": "NORMAL_CLEARING"},
    "hangup_while_bridged": {"results": [OK], "caller_cause": "NORMAL_CLEARING"},
    "no_answer_then_busy_then_answer": {
        "results": ["-ERR NO_ANSWER", "-ERR USER_BUSY", OK], "caller_cause": "NORMAL_CLEARING"},
    "unallocated_then_answer": {"results": ["-ERR UNALLOCATED_NUMBER", OK],
                                "caller_cause": "NORMAL_CLEARING"},
    "nobody_answers_busy_tone_fallback": {"results": ["-ERR NO_ANSWER", "-ERR USER_BUSY"],
                                          "caller_cause": "NORMAL_CLEARING"},
    "press_to_accept_not_pressed_then_pressed": {"results": ["-ERR NORMAL_CLEARING", OK],
                                                 "caller_cause": "NORMAL_CLEARING"},
    "busy_tone": {"results": [], "caller_cause": "USER_BUSY"},
    "voicemail_hangup_while_recording": {"results": [], "caller_cause": "NORMAL_CLEARING"},
    "unassigned_sit": {"results": [], "caller_cause": "UNALLOCATED_NUMBER"},
    "agent_own_outbound_call": {"results": [OK], "caller_cause": None},
    "hostile_caller_name": {"results": [OK], "caller_cause": "NORMAL_CLEARING"},
}

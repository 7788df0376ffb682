"""The SIPp helper's pure parts: SIP quoting, scenario XML, the message log parser.

The scenarios themselves run against the real switch in tests/e2e/test_sip_callers.py; here
only what can be checked without SIPp: every scenario is well-formed XML with the steps in
order, hostile text is quoted as RFC 3261 says, and a ``-trace_msg`` log reads back.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from fsrouter.testing.sipp import (
    Dtmf,
    InfoDtmf,
    Pause,
    Speak,
    agent_scenario,
    caller_scenario,
    from_header,
    info_keys,
    parse_message_log,
    quote_display_name,
    register_scenario,
)

LOG = """----------------------------------------------- 2026-11-23 14:53:32.379163
UDP message received [120] bytes :

INVITE sip:1001@127.0.0.1:58258 SIP/2.0
From: "Erika
 Mustermann" <sip:+4915112345678@127.0.0.1>;tag=2pm4
CSeq: 7 INVITE
Content-Type: application/sdp

v=0

----------------------------------------------- 2026-11-23 14:53:32.379407
UDP message sent (45 bytes):

SIP/2.0 486 Busy Here
CSeq: 7 INVITE

"""


def test_display_names_are_quoted_strings():
    assert quote_display_name('a "b" c\\d') == '"a \\"b\\" c\\\\d"'
    # A line break can only be header folding: CRLF and a space, inside the quotes.
    assert quote_display_name("a\nb") == '"a\r\n b"'
    assert from_header("", "+4930") == "<sip:+4930@127.0.0.1>"
    assert from_header("O'Brien", "x") == "\"O'Brien\" <sip:x@127.0.0.1>"


def test_every_scenario_is_well_formed_xml_with_its_steps_in_order():
    steps = [Pause(100), Dtmf("#"), InfoDtmf("${x}"), Speak()]
    for end in ("bye", "wait_bye", "rejected"):
        root = ET.fromstring(caller_scenario(steps, end, finals=(486, 503)))
        assert root.tag == "scenario"
    caller = ET.fromstring(caller_scenario(steps, "bye"))
    kinds = [child.tag for child in caller]
    assert kinds[0] == "send" and "INVITE" in (caller[0].text or "")
    assert kinds.index("pause") < kinds.index("nop")
    plays = [e.get("play_pcap_audio") for e in caller.iter("exec")]
    assert plays[0].endswith("dtmf_2833_pound.pcap") and plays[1].endswith("g711a.pcap")
    assert "BYE" in (caller.findall("send")[-1].text or "")
    for answer in (200, 486):
        assert ET.fromstring(agent_scenario(answer)).tag == "scenario"
    register = register_scenario("1001", "secret", expires=0)
    assert "[authentication username=1001 password=secret]" in register
    assert "Expires: 0" in register


def test_info_signals_travel_as_keys_never_in_the_scenario():
    steps = [InfoDtmf("1${system(x)}"), Pause(10), InfoDtmf("]]>")]
    assert info_keys(steps) == {"fsr_info_2": "1${system(x)}", "fsr_info_3": "]]>"}
    assert "system" not in caller_scenario(steps)
    with pytest.raises(ValueError):
        Dtmf("x")
    with pytest.raises(ValueError):
        register_scenario("1001", "has space")


def test_the_message_log_reads_back():
    invite, busy = parse_message_log(LOG)
    assert (invite.direction, invite.method, invite.status) == ("received", "INVITE", None)
    assert invite.header("from") == '"Erika Mustermann" <sip:+4915112345678@127.0.0.1>;tag=2pm4'
    assert invite.body.strip() == "v=0"
    assert (busy.direction, busy.method, busy.status) == ("sent", None, 486)
    assert busy.first_line == "SIP/2.0 486 Busy Here"

"""Inbound routes: YAML entry vs run-time assignment, 2-way callbacks, presence."""

from __future__ import annotations

from typing import Any

import pytest

from fsrouter.config.schema import Config
from fsrouter.routing.destinations import (
    BusyTone,
    Custom,
    Destination,
    Hangup,
    RingAgent,
    RoutingMenu,
    ToQueue,
    ToVoicemail,
    Unassigned,
    agent_dial_string,
    choose_destination,
)
from fsrouter.store.queries import Assignment

CONFIG = Config.model_validate({
    "switch": {"password_env": "FSROUTER_TEST_PASSWORD"},
    "users": {
        "eva": {"name": "Eva", "email": "eva@example.de", "extension": "1001",
                "phones": [{"type": "sip", "dial_string": "user/1001"},
                           {"type": "mobile", "number": "+4915211223344"}],
                "voicemail": {"greeting": "/greetings/eva.wav"}},
        "felix": {"name": "Felix", "extension": "1002"},
        "greta": {"name": "Greta", "email": "greta@example.de", "extension": "1003",
                  "voicemail": {"enabled": False}},
        "hans": {"name": "Hans", "phones": [{"type": "mobile", "number": "+4915100000001"}]},
    },
    "queues": {"sales": {"agents": ["eva", "felix"]}, "support": {}},
    "policies": {"p": {"levels": [{"targets": [{"user": "hans"}]}]}},
    "numbers": [
        {"number": "+493023125201", "type": "agent", "agent": "eva"},
        {"number": "+493023125202", "type": "agent", "agent": "felix",
         "when_busy": "voicemail", "when_logged_out": "hangup"},
        {"number": "+493023125203", "type": "agent", "agent": "greta",
         "when_busy": "hangup", "when_logged_out": "busy_tone"},
        {"number": "+493023125200", "type": "queue", "queue": "sales"},
        {"number": "+493023125999", "type": "unassigned"},
        {"number": "+493023125998", "type": "unassigned", "behaviour": "404"},
        {"number": "+493023125100", "type": "custom", "extension": "1000", "context": "office"},
        {"number": "+493023125101", "type": "custom", "dial_string": "sofia/gateway/gw/110"},
        {"number": "+493023125000", "type": "call_routing",
         "options": [{"digit": 1, "label": "IT", "policy": "p"}]},
    ],
}, context={"region": "DE"})
EVA_NUMBER, FELIX_NUMBER, GRETA_NUMBER = "+493023125201", "+493023125202", "+493023125203"
QUEUE_NUMBER, MENU_NUMBER, CUSTOM_EXT, CUSTOM_DIAL = (
    "+493023125200", "+493023125000", "+493023125100", "+493023125101")
FREE, BUSY, OUT = (True, False), (True, True), (False, False)


def choose(number: str | None, assignment: Assignment | None = None,
           two_way: str | None = None, **presence: Any) -> Destination:
    entry = CONFIG.number_by_e164(number) if number else None
    return choose_destination(entry, assignment, two_way, presence,
                              users=CONFIG.users, queues=CONFIG.queues)


# --- agent numbers and presence ----------------------------------------------------------


def test_free_agent_is_rung_on_the_sip_phone() -> None:
    result = choose(EVA_NUMBER, eva=FREE)
    assert isinstance(result, RingAgent)
    assert (result.user_id, result.dial_string, result.when_unanswered) == \
        ("eva", "user/1001", "busy_tone")


def test_agent_without_sip_phone_is_rung_by_extension() -> None:
    result = choose(FELIX_NUMBER, felix=FREE)
    assert isinstance(result, RingAgent) and result.dial_string == "user/1002"
    assert result.when_unanswered == "voicemail"


def test_busy_agent_gives_busy_tone() -> None:
    result = choose(EVA_NUMBER, eva=BUSY)
    assert isinstance(result, BusyTone) and result.user_id == "eva"
    assert "eva is busy" in result.notes


def test_logged_out_agent_gives_voicemail_with_greeting_and_email() -> None:
    result = choose(EVA_NUMBER, eva=OUT)
    assert result == ToVoicemail(result.notes, "eva", "/greetings/eva.wav", "eva@example.de")


def test_unknown_presence_counts_as_logged_out() -> None:
    assert isinstance(choose(EVA_NUMBER), ToVoicemail)


def test_logged_out_but_busy_flag_still_counts_as_logged_out() -> None:
    assert isinstance(choose(EVA_NUMBER, eva=(False, True)), ToVoicemail)


def test_number_settings_when_busy_and_logged_out() -> None:
    busy = choose(FELIX_NUMBER, felix=BUSY)
    assert isinstance(busy, ToVoicemail) and busy.greeting is None and busy.email is None
    assert isinstance(choose(FELIX_NUMBER, felix=OUT), Hangup)
    assert isinstance(choose(GRETA_NUMBER, greta=BUSY), Hangup)
    assert isinstance(choose(GRETA_NUMBER, greta=OUT), BusyTone)


def test_voicemail_disabled_falls_back_to_busy_tone() -> None:
    result = choose(None, Assignment(GRETA_NUMBER, "agent", "greta"), greta=OUT)
    assert isinstance(result, BusyTone)
    assert any("voicemail disabled" in note for note in result.notes)


def test_logged_in_agent_without_phone_or_extension_is_treated_as_logged_out() -> None:
    result = choose(None, Assignment(EVA_NUMBER, "agent", "hans"), hans=FREE)
    assert isinstance(result, ToVoicemail) and result.user_id == "hans"


def test_agent_dial_string_prefers_sip_phone() -> None:
    assert agent_dial_string(CONFIG.users["eva"]) == "user/1001"
    assert agent_dial_string(CONFIG.users["felix"]) == "user/1002"
    assert agent_dial_string(CONFIG.users["hans"]) is None


# --- other number types ------------------------------------------------------------------


def test_queue_number() -> None:
    assert choose(QUEUE_NUMBER) == ToQueue((), "sales")


def test_unassigned_numbers_and_unknown_numbers() -> None:
    assert choose("+493023125999") == Unassigned((), "sit")
    assert choose("+493023125998") == Unassigned((), "404")
    assert choose(None) == Unassigned((), "sit")


def test_custom_numbers() -> None:
    assert choose(CUSTOM_EXT) == Custom((), None, "1000", "office")
    assert choose(CUSTOM_DIAL) == Custom((), "sofia/gateway/gw/110", None, "default")


def test_call_routing_number_gives_the_menu() -> None:
    result = choose(MENU_NUMBER)
    assert isinstance(result, RoutingMenu) and result.number.number == MENU_NUMBER


# --- run-time assignments ----------------------------------------------------------------


def test_assignment_beats_yaml() -> None:
    result = choose(EVA_NUMBER, Assignment(EVA_NUMBER, "agent", "felix"), felix=FREE)
    assert isinstance(result, RingAgent) and result.user_id == "felix"
    assert "assignment: agent felix" in result.notes
    assert choose(EVA_NUMBER, Assignment(EVA_NUMBER, "queue", "support")) == \
        ToQueue(("assignment: queue support",), "support")
    assert isinstance(choose(QUEUE_NUMBER, Assignment(QUEUE_NUMBER, "unassigned")), Unassigned)
    assert isinstance(choose(MENU_NUMBER, Assignment(MENU_NUMBER, "agent", "eva")), ToVoicemail)


def test_reassigned_agent_number_keeps_its_busy_settings() -> None:
    result = choose(FELIX_NUMBER, Assignment(FELIX_NUMBER, "agent", "eva"), eva=OUT)
    assert isinstance(result, Hangup) and result.user_id == "eva"


def test_assignment_for_a_number_not_in_yaml() -> None:
    result = choose(None, Assignment("+493099999999", "agent", "eva"), eva=FREE)
    assert isinstance(result, RingAgent) and result.user_id == "eva"


def test_custom_assignments() -> None:
    dial = choose(None, Assignment("+493099999999", "custom", "user/1000@example.de"))
    assert dial == Custom(dial.notes, "user/1000@example.de", None, "default")
    ext = choose(None, Assignment("+493099999999", "custom", "2000"))
    assert ext == Custom(ext.notes, None, "2000", "default")


@pytest.mark.parametrize("assignment, problem", [
    (Assignment(EVA_NUMBER, "agent", "nobody"), "unknown agent"),
    (Assignment(EVA_NUMBER, "agent", None), "needs a target"),
    (Assignment(EVA_NUMBER, "queue", "nope"), "unknown queue"),
    (Assignment(EVA_NUMBER, "queue", "Sales;x"), "unknown queue"),
    (Assignment(EVA_NUMBER, "custom", "user/${evil}"), "unsafe custom target"),
    (Assignment(EVA_NUMBER, "custom", "a,b"), "unsafe custom target"),
    (Assignment(EVA_NUMBER, "custom", ""), "needs a target"),
    (Assignment(EVA_NUMBER, "teleport", "x"), "unknown route type"),
])
def test_unusable_assignment_is_ignored_and_yaml_applies(assignment: Assignment,
                                                         problem: str) -> None:
    result = choose(EVA_NUMBER, assignment, eva=FREE)
    assert isinstance(result, RingAgent) and result.user_id == "eva"
    assert any(problem in note for note in result.notes)


# --- 2-way VoIP --------------------------------------------------------------------------


def test_callback_on_an_agent_number_goes_to_the_agent_who_called() -> None:
    result = choose(EVA_NUMBER, two_way="felix", felix=FREE, eva=FREE)
    assert isinstance(result, RingAgent) and result.user_id == "felix"
    assert any("2-way" in note for note in result.notes)


def test_callback_on_a_queue_number_goes_to_the_agent_not_a_colleague() -> None:
    result = choose(QUEUE_NUMBER, two_way="eva", eva=FREE)
    assert isinstance(result, RingAgent) and result.user_id == "eva"
    busy = choose(QUEUE_NUMBER, two_way="eva", eva=BUSY)
    assert isinstance(busy, BusyTone)
    assert isinstance(choose(QUEUE_NUMBER, two_way="eva", eva=OUT), ToVoicemail)


def test_callback_uses_the_numbers_busy_settings() -> None:
    assert isinstance(choose(FELIX_NUMBER, two_way="eva", eva=BUSY), ToVoicemail)


def test_callback_applies_after_an_assignment_to_agent_or_queue() -> None:
    assigned = Assignment(CUSTOM_EXT, "queue", "sales")
    result = choose(CUSTOM_EXT, assigned, two_way="felix", felix=FREE)
    assert isinstance(result, RingAgent) and result.user_id == "felix"


@pytest.mark.parametrize("number", [MENU_NUMBER, CUSTOM_EXT, "+493023125999", None])
def test_callback_does_not_apply_to_menus_custom_or_unassigned(number: str | None) -> None:
    result = choose(number, two_way="eva", eva=FREE)
    assert not isinstance(result, RingAgent)


def test_callback_to_unknown_agent_is_ignored() -> None:
    result = choose(EVA_NUMBER, two_way="ghost", eva=FREE)
    assert isinstance(result, RingAgent) and result.user_id == "eva"
    assert any("ghost" in note for note in result.notes)

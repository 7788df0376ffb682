"""The generated voice menu and the decision after each key press."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsrouter.config.schema import CallRoutingNumber
from fsrouter.routing.menu import Prompt, build_menu, menu_outcome, option_for
from tests.hypothesis_profiles import examples


def number(options: list[dict[str, Any]] | None = None, **data: Any) -> CallRoutingNumber:
    opts = options if options is not None else [
        {"digit": 2, "label": "die Datenbanken", "policy": "db"},
        {"digit": 1, "label": "die IT-Infrastruktur", "policy": "infra"},
    ]
    return CallRoutingNumber.model_validate(
        {"number": "+493023125000", "type": "call_routing", "options": opts, **data},
        context={"region": "DE"})


def test_prompts_in_digit_order_with_generated_german_sentences() -> None:
    plan = build_menu(number(greeting="/sounds/welcome.wav"), "de")
    assert plan.greeting == Prompt("file", "/sounds/welcome.wav")
    assert plan.items == (
        Prompt("tts", "Für die IT-Infrastruktur drücken Sie die 1.", "de"),
        Prompt("tts", "Für die Datenbanken drücken Sie die 2.", "de"),
    )
    assert plan.valid_digits == frozenset({"1", "2"})
    assert not plan.skip
    assert plan.tries == 3 and plan.timeout_s == 5


def test_english_sentences_and_language_variants() -> None:
    items = build_menu(number(), "en-GB").items
    assert items[0] == Prompt("tts", "For die IT-Infrastruktur, press 1.", "en-GB")
    assert build_menu(number(), "de-AT").items[1].value.startswith("Für die Datenbanken")
    # Languages without texts fall back to English.
    assert build_menu(number(), "fr").items[0].value.startswith("For ")


def test_file_prompt_beats_text_and_text_beats_generated_sentence() -> None:
    plan = build_menu(number([
        {"digit": 3, "label": "Netz", "policy": "p", "prompt": "/sounds/net.wav"},
        {"digit": 1, "label": "Server", "policy": "p", "prompt_text": "Server? Die Eins."},
        {"digit": 9, "label": "Rest", "policy": "p"},
    ]), "de")
    assert plan.items == (Prompt("tts", "Server? Die Eins.", "de"),
                          Prompt("file", "/sounds/net.wav"),
                          Prompt("tts", "Für Rest drücken Sie die 9.", "de"))
    assert plan.greeting is None
    assert plan.valid_digits == frozenset({"1", "3", "9"})


def test_single_option_skips_the_menu_unless_disabled() -> None:
    single = [{"digit": 4, "label": "Support", "policy": "p"}]
    assert build_menu(number(single), "de").skip
    assert not build_menu(number(single, skip_menu_if_single=False), "de").skip


def test_invalid_and_goodbye_prompts() -> None:
    plan = build_menu(number(menu={"invalid_prompt": "/sounds/invalid.wav"}), "de")
    assert plan.invalid == Prompt("file", "/sounds/invalid.wav")
    assert plan.goodbye == Prompt("tts", "Auf Wiederhören.", "de")
    assert build_menu(number(), "en").invalid == Prompt("tts", "That key is not valid.", "en")


def test_goodbye_and_greeting_can_be_recordings_or_texts() -> None:
    plan = build_menu(number(menu={"goodbye_prompt": "/sounds/bye.wav",
                                   "invalid_text": "Falsche Taste."},
                             greeting_text="Willkommen."), "de")
    assert plan.goodbye == Prompt("file", "/sounds/bye.wav")
    assert plan.invalid == Prompt("tts", "Falsche Taste.", "de")
    assert plan.greeting == Prompt("tts", "Willkommen.", "de")


def test_the_number_and_each_option_speak_their_own_language() -> None:
    plan = build_menu(number([
        {"digit": 1, "label": "Datenbanken", "policy": "p"},
        {"digit": 2, "label": "English support", "policy": "p", "language": "en"},
    ], language="de"), "en")
    assert plan.items == (Prompt("tts", "Für Datenbanken drücken Sie die 1.", "de"),
                          Prompt("tts", "For English support, press 2.", "en"))
    assert plan.goodbye == Prompt("tts", "Auf Wiederhören.", "de")


def test_valid_key_chooses_the_option() -> None:
    outcome = menu_outcome(number(), "2", tries_used=1)
    assert outcome.action == "choose"
    assert outcome.option is not None and outcome.option.policy == "db"
    assert menu_outcome(number(), "1", tries_used=3).option.policy == "infra"  # type: ignore


@pytest.mark.parametrize("digit", ["3", "0", "12", "#", "*", "\x00", "1\x00", " 1", "1 ",
                                   "١", "１", "x" * 10_000, "1" * 10_240, "\ud800", "\n"])
def test_hostile_keys_are_invalid_and_repeat_then_give_up(digit: str) -> None:
    menu = number(menu={"tries": 2})
    first = menu_outcome(menu, digit, tries_used=1)
    assert (first.action, first.invalid, first.option) == ("repeat", True, None)
    last = menu_outcome(menu, digit, tries_used=2)
    assert (last.action, last.invalid) == ("goodbye", True)


@pytest.mark.parametrize("digit", [None, ""])
def test_no_key_repeats_until_tries_are_used(digit: str | None) -> None:
    menu = number(menu={"tries": 3, "on_no_key": "repeat"})
    assert menu_outcome(menu, digit, 1).action == "repeat"
    assert menu_outcome(menu, digit, 2).action == "repeat"
    assert not menu_outcome(menu, digit, 2).invalid
    assert menu_outcome(menu, digit, 3).action == "goodbye"


def test_no_key_with_default_option() -> None:
    menu = number(menu={"on_no_key": "default:2"})
    outcome = menu_outcome(menu, None, 1)
    assert outcome.action == "choose" and outcome.option.digit == 2  # type: ignore[union-attr]
    assert menu_outcome(menu, "", 3).option.digit == 2  # type: ignore[union-attr]
    # A key that is pressed but invalid is not "no key": the default does not apply.
    assert menu_outcome(menu, "7", 1).action == "repeat"


def test_default_naming_a_missing_digit_behaves_like_repeat() -> None:
    menu = number(menu={"on_no_key": "default:8", "tries": 2})
    assert menu_outcome(menu, None, 1).action == "repeat"
    assert menu_outcome(menu, None, 2).action == "goodbye"


def test_no_key_goodbye_ends_at_once() -> None:
    outcome = menu_outcome(number(menu={"on_no_key": "goodbye"}), None, 1)
    assert outcome.action == "goodbye" and not outcome.invalid


def test_tries_beyond_the_limit_still_give_up() -> None:
    assert menu_outcome(number(), "9", 99).action == "goodbye"
    assert menu_outcome(number(), None, 99).action == "goodbye"


def test_option_for_refuses_non_strings() -> None:
    menu = number()
    for value in (1, b"1", None, ["1"], 1.0):
        assert option_for(menu, value) is None


@settings(max_examples=examples(300), deadline=None)
@given(digit=st.one_of(st.none(), st.text(max_size=50)), tries=st.integers(-5, 20))
def test_any_caller_input_gives_a_decision(digit: str | None, tries: int) -> None:
    menu = number()
    outcome = menu_outcome(menu, digit, tries)
    if digit in ("1", "2"):
        assert outcome.action == "choose" and str(outcome.option.digit) == digit  # type: ignore
    else:
        assert outcome.option is None and outcome.action in ("repeat", "goodbye")

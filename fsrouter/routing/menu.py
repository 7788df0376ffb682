"""The voice menu of a call-routing number: what the caller hears and what a key press means.

``build_menu`` turns the configuration into prompts; ``menu_outcome`` decides, for the key the
caller pressed (or did not press), whether an option is chosen, the menu is played again or the
call ends. The key comes from the caller and is hostile: anything that is not exactly one of the
menu's digits is an invalid key; no key at all (``None`` or ``''``, FreeSWITCH's timeout) is
handled by ``menu.on_no_key``. Nothing here raises on caller input.

``tries_used`` counts the menu plays so far, including the one the caller just answered; after
``menu.tries`` plays without a choice the caller hears goodbye.

Example::

    plan = build_menu(number, "de")
    outcome = menu_outcome(number, "2", tries_used=1)   # MenuOutcome(action="choose", ...)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fsrouter.config.schema import CallRoutingNumber, Option

# Sentences spoken by TTS when the configuration names no file. Unknown languages use English.
TEXTS = {
    "de": {
        "option": "Für {label} drücken Sie die {digit}.",
        "invalid": "Diese Eingabe ist ungültig.",
        "goodbye": "Auf Wiederhören.",
    },
    "en": {
        "option": "For {label}, press {digit}.",
        "invalid": "That key is not valid.",
        "goodbye": "Goodbye.",
    },
}


@dataclass(frozen=True)
class Prompt:
    """One thing to play: a sound file/stream (``file``) or text for TTS (``tts``)."""

    kind: Literal["file", "tts"]
    value: str
    # The language ``tts`` text is spoken in ("" for a file).
    language: str = ""


@dataclass(frozen=True)
class MenuPlan:
    """What the caller hears, in order, and which keys the menu accepts."""

    greeting: Prompt | None
    items: tuple[Prompt, ...]
    valid_digits: frozenset[str]
    skip: bool
    invalid: Prompt
    goodbye: Prompt
    timeout_s: int
    tries: int


@dataclass(frozen=True)
class MenuOutcome:
    """``choose`` an option, ``repeat`` the menu (after the invalid prompt if ``invalid``), or
    say ``goodbye`` and hang up."""

    action: Literal["choose", "repeat", "goodbye"]
    option: Option | None = None
    invalid: bool = False
    reason: str = ""


def _texts(language: str) -> dict[str, str]:
    base = language.split("-", 1)[0].lower() if isinstance(language, str) else ""
    return TEXTS.get(base, TEXTS["en"])


def _sorted_options(number: CallRoutingNumber) -> list[Option]:
    return sorted(number.options, key=lambda option: option.digit)


def option_prompt(option: Option, language: str) -> Prompt:
    """The prompt for one option: its file, its TTS text, or a generated sentence, spoken in
    the option's own language if it has one, else ``language``."""
    language = option.language or language
    if option.prompt is not None:
        return Prompt("file", option.prompt)
    if option.prompt_text is not None:
        return Prompt("tts", option.prompt_text, language)
    sentence = _texts(language)["option"].format(label=option.label, digit=option.digit)
    return Prompt("tts", sentence, language)


def _file_or_text(file: str | None, text: str | None, default: str, language: str) -> Prompt:
    """A recording if one is configured, else the configured text, else ``default``."""
    if file is not None:
        return Prompt("file", file)
    return Prompt("tts", text or default, language)


def build_menu(number: CallRoutingNumber, language: str) -> MenuPlan:
    """The menu for ``number`` in its own language, else ``language`` (``de``, ``en``,
    ``de-AT``...)."""
    language = number.language or language
    texts = _texts(language)
    menu = number.menu
    invalid = _file_or_text(menu.invalid_prompt, menu.invalid_text, texts["invalid"], language)
    goodbye = _file_or_text(menu.goodbye_prompt, menu.goodbye_text, texts["goodbye"], language)
    return MenuPlan(
        greeting=(_file_or_text(number.greeting, number.greeting_text, "", language)
                  if number.greeting or number.greeting_text else None),
        items=tuple(option_prompt(option, language) for option in _sorted_options(number)),
        valid_digits=frozenset(str(option.digit) for option in number.options),
        skip=number.skip_menu_if_single and len(number.options) == 1,
        invalid=invalid,
        goodbye=goodbye,
        timeout_s=number.menu.timeout_s,
        tries=number.menu.tries,
    )


def option_for(number: CallRoutingNumber, digit: object) -> Option | None:
    """The option for ``digit`` if it is exactly one of the menu's digits, else None."""
    if not isinstance(digit, str) or len(digit) != 1:
        return None
    for option in number.options:
        if str(option.digit) == digit:
            return option
    return None


def _no_key(number: CallRoutingNumber, tries_left: bool) -> MenuOutcome:
    rule = number.menu.on_no_key
    if rule.startswith("default:"):
        option = option_for(number, rule.partition(":")[2])
        if option is not None:
            return MenuOutcome("choose", option, reason=f"no key: default {option.digit}")
        # A default naming a digit the menu does not have: behave like ``repeat``.
    if rule == "goodbye":
        return MenuOutcome("goodbye", reason="no key: goodbye")
    if tries_left:
        return MenuOutcome("repeat", reason="no key: repeat")
    return MenuOutcome("goodbye", reason="no key: tries used up")


def menu_outcome(number: CallRoutingNumber, digit: str | None, tries_used: int) -> MenuOutcome:
    """What to do after menu play number ``tries_used`` (1-based) answered with ``digit``."""
    tries_left = tries_used < number.menu.tries
    if digit is None or digit == "":
        return _no_key(number, tries_left)
    option = option_for(number, digit)
    if option is not None:
        return MenuOutcome("choose", option, reason=f"key {option.digit}")
    if tries_left:
        return MenuOutcome("repeat", invalid=True, reason="invalid key")
    return MenuOutcome("goodbye", invalid=True, reason="invalid key: tries used up")

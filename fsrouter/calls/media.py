"""Turning prompts into what FreeSWITCH plays, and the menu's ``play_and_get_digits`` argument.

Only configuration text reaches these arguments (validated at load time: file paths, tone
streams, spoken text without ``${``); caller text never does.
"""

from __future__ import annotations

from collections.abc import Iterable

from fsrouter.config import Config
from fsrouter.prompts import playable as _playable
from fsrouter.routing.menu import MenuPlan, Prompt

# play_and_get_digits needs a file for the "invalid" slot; this one is silent and instant.
SILENCE = "silence_stream://250"


def playable(prompt: Prompt, config: Config) -> str:
    """A file or stream for ``playback``: recordings as they are, spoken text as the file
    rendered at start or reload (fsrouter.prompts): a call renders nothing."""
    return _playable(config, prompt)


def concatenated(prompts: Iterable[Prompt], config: Config) -> str:
    """Several prompts as one ``file_string://a!b`` so a key press interrupts all of them."""
    files = [playable(prompt, config) for prompt in prompts]
    if len(files) == 1:
        return files[0]
    return "file_string://" + "!".join(files)


def menu_prompts(plan: MenuPlan, first_play: bool) -> list[Prompt]:
    """The greeting (first play only), then one prompt per option in digit order."""
    greeting = [plan.greeting] if plan.greeting is not None and first_play else []
    return [*greeting, *plan.items]


def menu_argument(plan: MenuPlan, prompt_file: str, variable: str) -> str:
    """``play_and_get_digits`` arguments: one digit from the menu's set, ``#`` terminates."""
    if "'" in prompt_file:
        raise ValueError("a prompt must not contain a single quote")  # config refuses it too
    digits = "".join(sorted(plan.valid_digits))
    timeout_ms = plan.timeout_s * 1000
    # min max tries timeout terminators 'file' invalid_file var regex digit_timeout;
    # the file is quoted because spoken text has spaces (the app groups by single quotes).
    return (f"1 1 1 {timeout_ms} # '{prompt_file}' {SILENCE} {variable} ^[{digits}]$ "
            f"{timeout_ms}")


def finite_tone(tone: str, loops: int) -> str:
    """A tone stream that ends: ``loops=-1`` (for ever) becomes ``loops=<loops>``."""
    if "loops=-1" in tone:
        return tone.replace("loops=-1", f"loops={loops}")
    return tone

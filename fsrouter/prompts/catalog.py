"""Every prompt the configuration makes fsrouter play, each with a stable key.

A prompt is a :class:`~fsrouter.routing.menu.Prompt`: a recording (``file``) or text spoken in
a language (``tts``). The functions here build each prompt the same way for the catalog (what
is rendered at start and listed by ``fsrouter prompts``) and for the call that plays it, so
the two cannot disagree. Keys follow the configuration's paths::

    numbers[0].greeting              numbers[0].options[1].prompt
    numbers[0].menu.invalid          numbers[0].menu.goodbye
    numbers[0].options[1].accept     numbers[0].options[1].out_of_hours.accept
    numbers[0].options[1].out_of_hours
    numbers[0].options[1].fallback   queues.sales.announcement   queues.sales.fallback
    users.eva.voicemail.greeting     features.login.de  (login, logout, record_greeting,
                                                         refused; one per agents' language,
                                                         or features.login for a recording)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fsrouter.config import Config
from fsrouter.config.schema import CallRoutingNumber, Fallback, Option, Policy, User
from fsrouter.config.yamlmarks import Path
from fsrouter.prompts.texts import FEATURE_SENTENCES, sentence
from fsrouter.routing.menu import Prompt, build_menu, option_prompt


@dataclass(frozen=True)
class PromptSpec:
    """One prompt: its key, where the configuration sets it (for errors), what it plays."""

    key: str
    where: Path
    prompt: Prompt


def number_language(config: Config, number: CallRoutingNumber) -> str:
    return number.language or config.defaults.language


def option_language(config: Config, number: CallRoutingNumber, option: Option) -> str:
    return option.language or number_language(config, number)


def accept_prompt(config: Config, number: CallRoutingNumber, option: Option,
                  policy: Policy) -> Prompt:
    """What the called person hears before pressing the accept key."""
    if policy.accept_prompt is not None:
        return Prompt("file", policy.accept_prompt)
    language = option_language(config, number, option)
    text = sentence("accept", language, label=option.label, digit=policy.accept_digit)
    return Prompt("tts", text, language)


def out_of_hours_prompt(config: Config, number: CallRoutingNumber, option: Option) -> Prompt:
    """What ``out_of_hours: message`` (without a file) says."""
    language = option_language(config, number, option)
    text = option.out_of_hours_text or sentence("out_of_hours", language, label=option.label)
    return Prompt("tts", text, language)


def voicemail_greeting(user: User) -> Prompt:
    """The configured greeting of a user's voicemail (a greeting recorded by phone wins at
    call time, see fsrouter.calls.voicemail)."""
    if user.voicemail.greeting:
        return Prompt("file", user.voicemail.greeting)
    text = user.voicemail.greeting_text or sentence("voicemail", user.language)
    return Prompt("tts", text, user.language)


def queue_announcement(config: Config, name: str) -> Prompt | None:
    """What a caller hears on entering the queue ``name`` (None: nothing)."""
    queue = config.queues.get(name)
    if queue is None:
        return None
    if queue.announcement is not None:
        return Prompt("file", queue.announcement)
    if queue.announcement_text is not None:
        return Prompt("tts", queue.announcement_text, config.defaults.language)
    return None


def feature_prompt(config: Config, name: str, language: str) -> Prompt:
    """The spoken confirmation of a feature code (``login``... or ``refused``): the
    configured recording (``features.<name>_prompt``) or the sentence in ``language``."""
    recording = getattr(config.features, f"{name}_prompt")
    if recording is not None:
        return Prompt("file", recording)
    return Prompt("tts", sentence(name, language), language)


def feature_languages(config: Config) -> list[str]:
    """The languages feature confirmations are needed in: the agents' and the default."""
    languages = {config.defaults.language}
    languages.update(user.language for user in config.users.values() if user.extension)
    return sorted(languages)


def catalog(config: Config) -> list[PromptSpec]:
    """Every prompt of ``config``, in configuration order."""
    specs: list[PromptSpec] = []
    for index, number in enumerate(config.numbers):
        if isinstance(number, CallRoutingNumber):
            specs.extend(_number_prompts(config, index, number))
    for name, queue in config.queues.items():
        where: Path = ("queues", name)
        announcement = queue_announcement(config, name)
        if announcement is not None:
            field = "announcement" if announcement.kind == "file" else "announcement_text"
            specs.append(PromptSpec(f"queues.{name}.announcement", where + (field,),
                                    announcement))
        specs.extend(_fallback(f"queues.{name}.fallback", where + ("fallback",),
                               queue.fallback))
    for user_id, user in config.users.items():
        if user.voicemail.enabled:
            field = "greeting" if user.voicemail.greeting else "greeting_text"
            specs.append(PromptSpec(f"users.{user_id}.voicemail.greeting",
                                    ("users", user_id, "voicemail", field),
                                    voicemail_greeting(user)))
    for name in FEATURE_SENTENCES:
        if getattr(config.features, f"{name}_prompt") is not None:
            specs.append(PromptSpec(f"features.{name}", ("features", f"{name}_prompt"),
                                    feature_prompt(config, name, "")))
            continue
        for language in feature_languages(config):
            specs.append(PromptSpec(f"features.{name}.{language}", ("features",),
                                    feature_prompt(config, name, language)))
    return specs


def _number_prompts(config: Config, index: int, number: CallRoutingNumber
                    ) -> Iterator[PromptSpec]:
    base: Path = ("numbers", index)
    key = f"numbers[{index}]"
    plan = build_menu(number, config.defaults.language)
    if plan.greeting is not None:
        field = "greeting" if number.greeting else "greeting_text"
        yield PromptSpec(f"{key}.greeting", base + (field,), plan.greeting)
    for position, option in enumerate(number.options):
        where = base + ("options", position)
        field = "prompt" if option.prompt else "prompt_text" if option.prompt_text else "label"
        yield PromptSpec(f"{key}.options[{position}].prompt", where + (field,),
                         option_prompt(option, number_language(config, number)))
    menu = number.menu
    yield PromptSpec(f"{key}.menu.invalid", base + ("menu", _menu_field(
        menu.invalid_prompt, "invalid")), plan.invalid)
    yield PromptSpec(f"{key}.menu.goodbye", base + ("menu", _menu_field(
        menu.goodbye_prompt, "goodbye")), plan.goodbye)
    for position, option in enumerate(number.options):
        yield from _option_extras(config, number, option, base + ("options", position),
                                  f"{key}.options[{position}]")


def _menu_field(file: str | None, name: str) -> str:
    return f"{name}_prompt" if file else f"{name}_text"


def _option_extras(config: Config, number: CallRoutingNumber, option: Option, where: Path,
                   key: str) -> Iterator[PromptSpec]:
    policy = config.policies.get(option.policy)
    if policy is not None and policy.press_to_accept:
        yield PromptSpec(f"{key}.accept", ("policies", option.policy, "accept_prompt"),
                         accept_prompt(config, number, option, policy))
    action = option.out_of_hours
    if action is not None and action.kind == "policy" and action.target:
        other = config.policies.get(action.target)
        if other is not None and other.press_to_accept:
            yield PromptSpec(f"{key}.out_of_hours.accept",
                             ("policies", action.target, "accept_prompt"),
                             accept_prompt(config, number, option, other))
    if action is not None and action.kind == "message":
        if action.target:
            yield PromptSpec(f"{key}.out_of_hours", where + ("out_of_hours",),
                             Prompt("file", action.target))
        else:
            field = "out_of_hours_text" if option.out_of_hours_text else "out_of_hours"
            yield PromptSpec(f"{key}.out_of_hours", where + (field,),
                             out_of_hours_prompt(config, number, option))
    yield from _fallback(f"{key}.fallback", where + ("fallback",), option.fallback)


def _fallback(key: str, where: Path, spec: Fallback) -> Iterator[PromptSpec]:
    if spec.kind == "message" and spec.target:
        yield PromptSpec(key, where, Prompt("file", spec.target))

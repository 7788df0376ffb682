"""The configuration schema (pydantic v2): what an operator may write in the YAML file.

Models forbid unknown keys and are frozen; lists are tuples. Phone numbers are normalised to
E.164 with the ``region`` passed in the validation context (``defaults.country``). Cross-checks
between sections (unknown ids, duplicate numbers) live in :mod:`fsrouter.config.crosscheck`.
"""

from __future__ import annotations

import os
import re
from ipaddress import ip_network
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    SecretStr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fsrouter.config.errors import ConfigError, ConfigIssue
from fsrouter.config.fields import (
    Clock,
    DialString,
    Digits,
    Duration,
    Email,
    Id,
    IPAddress,
    Key,
    Language,
    Moment,
    Name,
    Network,
    QueueName,
    Region,
    SafePath,
    Sound,
    SpokenText,
    TimeZone,
    ToneString,
    Word,
    check_dial,
    check_id,
    check_sound,
    check_timezone,
    non_empty,
    ranged,
)
from fsrouter.config.holidays import HolidaysSpec
from fsrouter.config.numbers import normalise_number

DEFAULT_TONES = {
    # German busy tone: 425 Hz, 480 ms on / 480 ms off (freeswitch-facts.md §5).
    "busy": "tone_stream://%(480,480,425);loops=-1",
    # Special information tone, the "number not in service" triple (vars.xml).
    "sit": "tone_stream://%(274,0,913.8);%(274,0,1370.6);%(380,0,1776.7)",
    # German ringback: 425 Hz, 1 s on / 4 s off.
    "ringback": "tone_stream://%(1000,4000,425);loops=-1",
    # Before a voicemail recording starts.
    "beep": "tone_stream://%(800,0,1000)",
    # A feature code worked (rising) or did not (falling).
    "confirm": "tone_stream://%(150,50,600);%(150,50,800);%(300,0,1000)",
    "refuse": "tone_stream://%(150,50,1000);%(150,50,800);%(300,0,600)",
}
# The public default and the placeholder shipped in freeswitch_conf/event_socket.conf.xml.
REFUSED_PASSWORDS = {"cluecon": "the public default password 'ClueCon'",
                     "change-me": "the placeholder password 'CHANGE-ME'"}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
_HOST = re.compile(r"[A-Za-z0-9.:-]{1,253}")
_EVENT = re.compile(r"\*|[a-z_]+(\.[a-z_*]+)*")
_URL = re.compile(r"https?://[A-Za-z0-9.\-:\[\]]+(/[A-Za-z0-9._~/%?&=+-]*)?")
_ON_NO_KEY = re.compile(r"repeat|goodbye|default:[1-9]")


class Strict(BaseModel):
    """Base of every section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


def _region(info: ValidationInfo) -> str | None:
    context = info.context if isinstance(info.context, dict) else {}
    region = context.get("region")
    return str(region) if region else None


def _e164(value: str, info: ValidationInfo) -> str:
    return normalise_number(value, _region(info))


E164 = Annotated[str, AfterValidator(_e164)]


def _env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(f"must be an environment variable name like FSROUTER_ESL_PASSWORD, "
                         f"got {value[:40]!r}")
    return value


EnvName = Annotated[str, AfterValidator(_env_name)]
Port = Annotated[int, ranged(1, 65535)]


def _host(value: str) -> str:
    if not _HOST.fullmatch(value):
        raise ValueError(f"must be a host name or IP address, got {value[:40]!r}")
    return value


Host = Annotated[str, AfterValidator(_host)]


# --- listener, switch, database, defaults -------------------------------------------------


class Listener(Strict):
    """The outbound-socket server FreeSWITCH connects to (dialplan ``socket`` app)."""

    bind: IPAddress = "127.0.0.1"
    port: Port = 8084
    max_calls: Annotated[int, ranged(1, 100_000)] = 500
    allow: tuple[Network, ...] = (ip_network("127.0.0.1/32"), ip_network("::1/128"))
    # SIGTERM: seconds the calls in progress may take to finish before the daemon exits anyway
    # (new calls get the dialplan's fallback at once; callers still waiting then are adopted
    # by the next start, see fsrouter.recovery). 0 exits at once.
    drain_seconds: Annotated[int, ranged(0, 86_400)] = 30
    # Seconds a peer that is not one of switch_addresses has for the whole session start
    # (connect, myevents, linger, event): FreeSWITCH answers each in ~0.3 ms (the recorded
    # traces); a socket that connects and never answers holds a slot this long (issue 22.4:
    # it was 10 s). The switch's own addresses keep 10 s: the time counts this process's own
    # delays too, and a busy daemon must not turn the switch's calls away.
    setup_timeout: Annotated[int, ranged(1, 60)] = 2
    # The switches' own addresses (default: every switch's host when all are allowed addresses,
    # with 127.0.0.1 and ::1 for a loopback one; else every allowed peer). They may use every
    # slot; any other allowed peer at most max_setups_per_peer connections in setup at once,
    # all of them together at most max_calls - reserved_calls.
    switch_addresses: tuple[Network, ...] | None = None
    max_setups_per_peer: Annotated[int, ranged(1, 100_000)] = 10
    # Default: a fifth of max_calls.
    reserved_calls: Annotated[int, ranged(0, 100_000)] | None = None

    @field_validator("allow", mode="after")
    @classmethod
    def _allow_not_empty(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        if not value:
            raise ValueError("must list at least one address, or nobody can connect")
        return value

    @field_validator("switch_addresses", mode="after")
    @classmethod
    def _switches_allowed(cls, value: tuple[Any, ...] | None, info: ValidationInfo
                          ) -> tuple[Any, ...] | None:
        allow = info.data.get("allow") or ()
        for net in value or ():
            if not any(net.version == a.version and net.subnet_of(a) for a in allow):
                raise ValueError(f"{net} is not within listener.allow: the switch could not "
                                 "connect")
        return value

    @field_validator("reserved_calls", mode="after")
    @classmethod
    def _reserve_below_max(cls, value: int | None, info: ValidationInfo) -> int | None:
        max_calls = info.data.get("max_calls")
        if value is not None and max_calls is not None and value >= max_calls:
            raise ValueError(f"must be smaller than max_calls ({max_calls}), got {value}")
        return value

    @property
    def reserve(self) -> int:
        """The calls kept for the switch's own addresses."""
        return self.max_calls // 5 if self.reserved_calls is None else self.reserved_calls


class SecretSource(Strict):
    """A password given inline, by environment variable or by file, read only when needed."""

    password: SecretStr | None = None
    password_env: EnvName | None = None
    password_file: SafePath | None = None
    # (file, line, column, path) of this section, so a missing secret names where it is set.
    _origin: tuple[str, int, int, str] = PrivateAttr(default=("<config>", 1, 1, "?"))
    # (line, column) of each key as written, so the error points at password_env's own line.
    _key_marks: dict[str, tuple[int, int]] = PrivateAttr(default_factory=dict)

    def _sources(self) -> list[str]:
        names = ("password", "password_env", "password_file")
        return [name for name in names if getattr(self, name) is not None]

    def _resolve(self) -> str | None:
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_env is not None:
            value = os.environ.get(self.password_env, "")
            if not value:
                self._fail("password_env",
                           f"environment variable {self.password_env} is not set or empty")
            return value
        if self.password_file is not None:
            return self._read_file(self.password_file)
        return None

    def _read_file(self, path: str) -> str:
        try:
            with open(path, encoding="utf-8") as handle:
                value = handle.read(4096).strip()
        except (OSError, UnicodeDecodeError) as exc:
            self._fail("password_file", f"cannot read password file {path}: {exc}")
        if not value:
            self._fail("password_file", f"password file {path} is empty")
        return value

    def _fail(self, key: str, message: str) -> None:
        file, line, column, path = self._origin
        line, column = self._key_marks.get(key, (line, column))
        raise ConfigError([ConfigIssue(file, line, column, f"{path}.{key}", message)])


def _refuse_public_default(value: SecretStr | None) -> SecretStr | None:
    refused = value is not None and REFUSED_PASSWORDS.get(value.get_secret_value().casefold())
    if refused:
        raise ValueError(f"{refused} is refused (exploits log in with published passwords); "
                         "set a strong one via password_env or password_file")
    return value


class Switch(SecretSource):
    """The inbound Event Socket connection to FreeSWITCH (``api``/``bgapi`` commands)."""

    host: Host = "127.0.0.1"
    port: Port = 8021

    _check_password = field_validator("password")(_refuse_public_default)

    @model_validator(mode="after")
    def _exactly_one_password(self) -> Switch:
        if len(self._sources()) != 1:
            raise ValueError("give exactly one of password, password_env or password_file")
        return self

    def resolve_password(self) -> str:
        """The ESL password, read from env/file now; raises :class:`ConfigError` if missing."""
        value = self._resolve() or ""
        refused = REFUSED_PASSWORDS.get(value.casefold())
        if refused:
            self._fail(self._sources()[0], f"{refused} is refused")
        return value


# The name the single ``switch:`` form gets in logs, /health and metrics.
DEFAULT_SWITCH = "default"


class NamedSwitch(Switch):
    """One entry of ``switches:`` (several switches served by one daemon)."""

    name: Id


def _database_url(value: str) -> str:
    if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ValueError("must start with sqlite:/// or postgresql://")
    if any(ord(ch) < 32 for ch in value):
        raise ValueError("must not contain control characters")
    return value


class Database(Strict):
    """Where incidents, call records and run-time assignments live."""

    # repr=False: a postgresql:// URL may carry a password.
    url: Annotated[str, AfterValidator(_database_url)] = Field(
        default="sqlite:////var/lib/fsrouter/fsrouter.db", repr=False)
    # A new call while the database refuses its record (docs/two-nodes.md): "reject"
    # refuses it unanswered (NORMAL_TEMPORARY_FAILURE, SIP 503: the carrier tries the other
    # node or route); "yaml" routes it from the YAML alone and writes its rows later.
    unavailable: Literal["reject", "yaml"] = "reject"

    @property
    def redacted_url(self) -> str:
        """The URL with any password replaced by ``***``, safe for logs."""
        return re.sub(r"(://[^/:@]*:)[^@/]*@", r"\1***@", self.url)


class Cluster(Strict):
    """This daemon's lease in the shared database (fsrouter/cluster, docs/two-nodes.md):
    renewed every ``heartbeat_seconds``; its agent claims are free for other nodes
    ``lease_seconds`` after the last renewal (a killed daemon)."""

    heartbeat_seconds: float = Field(default=2.0, gt=0, le=60)
    lease_seconds: float = Field(default=10.0, gt=0, le=600)

    @model_validator(mode="after")
    def _lease_outlives_beats(self) -> Cluster:
        if self.lease_seconds < 2 * self.heartbeat_seconds:
            raise ValueError("lease_seconds must be at least twice heartbeat_seconds "
                             "(one late heartbeat must not end the lease)")
        return self


def _dial_template(value: str) -> str:
    if value.count("{number}") != 1:
        raise ValueError(f"must contain {{number}} exactly once, got {value[:60]!r}")
    check_dial(value.replace("{number}", "0"))
    return value


class Defaults(Strict):
    # How national numbers (0676 ...) are read; without it only +43 ... / 0043 ... are numbers.
    country: Region | None = None
    timezone: TimeZone = "Europe/Berlin"
    # How a mobile or landline number (E.164) is dialled: the gateway to the phone network.
    dial_template: Annotated[str, AfterValidator(_dial_template)] = (
        "sofia/gateway/default/{number}")
    # The TTS engine speaks generated prompts ("for the database team press 2").
    language: Language = "de"
    # The FreeSWITCH directory domain of the voicemail boxes (``voicemail default <domain>``).
    voicemail_domain: Host = "fsrouter"

    def dial_string(self, number: str) -> str:
        """The dial string for an E.164 number (already validated: digits and a leading +)."""
        return self.dial_template.replace("{number}", number)


# --- users ------------------------------------------------------------------------------------


class Phone(Strict):
    """A phone a person is called on: ``mobile``/``landline`` by number, ``sip`` by dial string."""

    type: Literal["mobile", "landline", "sip"]
    number: E164 | None = None
    dial_string: DialString | None = None

    @model_validator(mode="after")
    def _number_or_dial(self) -> Phone:
        if self.type == "sip" and (self.dial_string is None or self.number is not None):
            raise ValueError("a sip phone needs dial_string (e.g. user/1001), not number")
        if self.type != "sip" and (self.number is None or self.dial_string is not None):
            raise ValueError(f"a {self.type} phone needs number, not dial_string")
        return self


class Voicemail(Strict):
    enabled: bool = True
    greeting: Sound | None = None
    # Spoken instead of the generated "... not available, leave a message" (no greeting file).
    greeting_text: SpokenText | None = None


class User(Strict):
    name: Name
    phones: tuple[Phone, ...] = ()
    email: Email | None = None
    voicemail: Voicemail = Voicemail()
    extension: Digits | None = None
    language: Language = "de"  # default: defaults.language (filled in by Config)

    @property
    def callable_phones(self) -> tuple[Phone, ...]:
        """Mobile and landline phones: on-call staff are always called on these."""
        return tuple(phone for phone in self.phones if phone.type != "sip")


# --- schedules -----------------------------------------------------------------------------


def _expand_days(value: object) -> object:
    """Accept ``mon-fri`` and ``[mon-wed, sat]`` as well as plain lists of days."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        return value
    days: list[object] = []
    for item in items:
        if isinstance(item, str) and "-" in item:
            first, _, last = item.partition("-")
            if first in DAYS and last in DAYS and DAYS.index(first) <= DAYS.index(last):
                days.extend(DAYS[DAYS.index(first): DAYS.index(last) + 1])
                continue
        days.append(item)
    return days


class Window(Strict):
    """A weekly window, e.g. business hours ``{days: mon-fri, from: "08:00", to: "18:00"}``."""

    days: Annotated[tuple[Day, ...], BeforeValidator(_expand_days)]
    from_: Clock = Field(alias="from")
    to: Clock

    @model_validator(mode="after")
    def _not_empty(self) -> Window:
        if self.from_ == self.to:
            raise ValueError("from and to are equal: the window is empty")
        if not self.days:
            raise ValueError("days must list at least one day")
        return self


class Handoff(Strict):
    day: Day
    time: Clock


class Rotation(Strict):
    """People taking turns; ``start`` is read in the schedule's time zone if it has none."""

    users: Annotated[tuple[Id, ...], non_empty("user")]
    start: Moment
    length: Duration | None = None
    handoff: Handoff | None = None
    restrictions: tuple[Window, ...] = ()

    @model_validator(mode="after")
    def _length_or_handoff(self) -> Rotation:
        if (self.length is None) == (self.handoff is None):
            raise ValueError("give exactly one of length (e.g. 1w) or handoff (day and time)")
        return self


class Override(Strict):
    user: Id
    from_: Moment = Field(alias="from")
    to: Moment

    @model_validator(mode="after")
    def _ordered(self) -> Override:
        if (self.from_.tzinfo is None) != (self.to.tzinfo is None):
            raise ValueError("from and to must both have a UTC offset or both have none")
        if self.to <= self.from_:
            raise ValueError("to must be after from")
        return self


class Schedule(Strict):
    timezone: TimeZone = "Europe/Berlin"
    rotations: tuple[Rotation, ...] = ()
    overrides: tuple[Override, ...] = ()
    # Public holidays (AT-9, CH-ZH; a bare German state code BY is DE-BY) and closure days.
    holidays: HolidaysSpec | None = None


# --- escalation policies --------------------------------------------------------------------


class Target(Strict):
    user: Id | None = None
    schedule: Id | None = None

    @model_validator(mode="after")
    def _one(self) -> Target:
        if (self.user is None) == (self.schedule is None):
            raise ValueError("give exactly one of user or schedule")
        return self


class Level(Strict):
    targets: Annotated[tuple[Target, ...], non_empty("target")]
    strategy: Literal["in_order", "all_at_once", "round_robin"] = "in_order"
    ring_timeout: Annotated[int, ranged(5, 120)] = 20


class Policy(Strict):
    levels: Annotated[tuple[Level, ...], non_empty("level")]
    repeat: Annotated[int, ranged(0, 9)] = 0
    press_to_accept: bool = True
    accept_digit: Key = "1"
    accept_timeout: Annotated[int, ranged(1, 60)] = 10
    # What the called person hears before pressing the key; default: a TTS sentence naming
    # the option ("Anruf für Datenbank. Zum Annehmen drücken Sie die 1.").
    accept_prompt: Sound | None = None


# --- fallbacks and queues -------------------------------------------------------------------


class Fallback(Strict):
    """What happens when nobody answers: ``voicemail:<user>``, ``message:<file>``, ``hangup``."""

    kind: Literal["voicemail", "message", "hangup"]
    target: str | None = None

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}:{self.target}"


def _parse_fallback(value: object) -> object:
    if isinstance(value, Fallback):
        return value
    if not isinstance(value, str):
        raise ValueError("must be voicemail:<user>, message:<file> or hangup")
    kind, sep, target = value.partition(":")
    if value == "hangup":
        return Fallback(kind="hangup")
    if sep and kind == "voicemail":
        return Fallback(kind="voicemail", target=check_id(target))
    if sep and kind == "message":
        return Fallback(kind="message", target=check_sound(target))
    raise ValueError(f"must be voicemail:<user>, message:<file> or hangup, got {value[:40]!r}")


FallbackSpec = Annotated[Fallback, BeforeValidator(_parse_fallback)]
HANGUP = Fallback(kind="hangup")
Seconds = Annotated[int, ranged(10, 86400)]


class Queue(Strict):
    """A mod_fifo queue served by agents (contact center) on their SIP extensions."""

    hold_music: Sound = "local_stream://moh"
    max_wait: Seconds = 300
    exit_key: Key | None = None
    announce_every: Annotated[int, ranged(10, 3600)] | None = None
    announcement: Sound | None = None
    announcement_text: SpokenText | None = None
    strategy: Literal["longest_idle", "round_robin", "ring_all"] = "longest_idle"
    agents: tuple[Id, ...] = ()
    fallback: FallbackSpec = HANGUP
    # Seconds one agent rings before the next one is tried (contact-center queues).
    ring_timeout: Annotated[int, ranged(5, 120)] = 20


# --- tones, tts, smtp, metrics, webhooks ----------------------------------------------------


class Tts(Strict):
    """How generated prompts are spoken (see :mod:`fsrouter.prompts`).

    ``espeak-ng`` (the default): fsrouter renders every prompt to WAV files itself, at start
    and reload, in each prompt's language. ``flite``: the switch speaks the text at call time
    with its own mod_flite (English voices only; the module must be loaded on the switch).
    """

    engine: Literal["espeak-ng", "flite"] = "espeak-ng"
    # espeak-ng: a voice variant added to the language's voice (f3, m2, klatt...);
    # flite: the voice (slt, kal, rms, awb).
    voice: Word | None = None
    # espeak-ng: words per minute (its default is 175; slower is clearer on the phone).
    speed: Annotated[int, ranged(80, 300)] = 150


class PromptSettings(Strict):
    """Where rendered prompts are written, and which recordings only the switch host has."""

    # fsrouter writes here; FreeSWITCH must be able to read it (same host or shared mount).
    directory: SafePath = "/var/lib/fsrouter/prompts"
    # Folders whose sound files exist only on the switch host: check-config does not look
    # for files under them (e.g. /usr/share/freeswitch/sounds).
    switch_only: tuple[SafePath, ...] = ()


class Smtp(SecretSource):
    host: Host = "localhost"
    port: Port = 25
    from_: Email = Field(default="fsrouter@localhost", alias="from")
    starttls: bool = False
    username: Name | None = None

    @model_validator(mode="after")
    def _at_most_one_password(self) -> Smtp:
        if len(self._sources()) > 1:
            raise ValueError("give at most one of password, password_env or password_file")
        return self

    def resolve_password(self) -> str | None:
        """The SMTP password read now (None when none is configured)."""
        return self._resolve()


class Metrics(Strict):
    enabled: bool = True
    bind: IPAddress = "127.0.0.1"
    port: Port = 9464


def _url(value: str) -> str:
    if not _URL.fullmatch(value):
        raise ValueError(f"must be an http:// or https:// URL, got {value[:60]!r}")
    return value


def _event(value: str) -> str:
    if not _EVENT.fullmatch(value):
        raise ValueError(f"must be an event name like incident.created or *, got {value[:40]!r}")
    return value


class Webhook(Strict):
    url: Annotated[str, AfterValidator(_url)]
    events: tuple[Annotated[str, AfterValidator(_event)], ...] = ("*",)
    secret_env: EnvName | None = None
    # Seconds for a whole try (connect, send, response); a slower receiver, even one that
    # drips its answer a byte at a time, counts as a failed try. The row's lease is derived
    # from it (notify/webhooks.py attempt_lease), so a try ends before another node may retry.
    timeout: Annotated[int, ranged(1, 60)] = 5
    # Tries before a delivery is marked failed (kept in the outbox, logged); backoff between.
    max_attempts: Annotated[int, ranged(1, 100)] = 12


# --- numbers --------------------------------------------------------------------------------


def _on_no_key(value: str) -> str:
    if not _ON_NO_KEY.fullmatch(value):
        raise ValueError(f"must be repeat, goodbye or default:<digit 1-9>, got {value[:40]!r}")
    return value


class Menu(Strict):
    tries: Annotated[int, ranged(1, 9)] = 3
    timeout_s: Annotated[int, ranged(1, 60)] = 5
    invalid_prompt: Sound | None = None
    invalid_text: SpokenText | None = None
    goodbye_prompt: Sound | None = None
    goodbye_text: SpokenText | None = None
    on_no_key: Annotated[str, AfterValidator(_on_no_key)] = "repeat"

    @model_validator(mode="after")
    def _one_prompt_each(self) -> Menu:
        for name in ("invalid", "goodbye"):
            if getattr(self, f"{name}_prompt") is not None and \
                    getattr(self, f"{name}_text") is not None:
                raise ValueError(f"give {name}_prompt (a file) or {name}_text, not both")
        return self


class BusinessHours(Strict):
    """When an option is staffed; outside these windows its ``out_of_hours`` action applies."""

    timezone: TimeZone | None = None  # default: defaults.timezone
    windows: Annotated[tuple[Window, ...], non_empty("window")]
    holidays: HolidaysSpec | None = None


class OutOfHours(Strict):
    """``policy:<id>`` (another escalation), ``voicemail:<user>`` or ``message:<file>``."""

    kind: Literal["policy", "voicemail", "message"]
    # None for a plain ``message``: the generated sentence (or the option's out_of_hours_text)
    target: str | None = None

    def __str__(self) -> str:
        return self.kind if self.target is None else f"{self.kind}:{self.target}"


def _parse_out_of_hours(value: object) -> object:
    if isinstance(value, OutOfHours):
        return value
    if not isinstance(value, str):
        raise ValueError("must be policy:<id>, voicemail:<user> or message:<file>")
    if value == "message":  # spoken: "... is not staffed now" (out_of_hours_text)
        return OutOfHours(kind="message")
    kind, sep, target = value.partition(":")
    if sep and kind in ("policy", "voicemail"):
        return OutOfHours(kind=kind, target=check_id(target))
    if sep and kind == "message":
        return OutOfHours(kind="message", target=check_sound(target))
    raise ValueError(f"must be policy:<id>, voicemail:<user> or message:<file>, "
                     f"got {value[:40]!r}")


OutOfHoursSpec = Annotated[OutOfHours, BeforeValidator(_parse_out_of_hours)]


class Option(Strict):
    """One key of a call-routing menu: which policy is called, how the caller waits."""

    digit: Annotated[int, ranged(1, 9)]
    label: SpokenText
    prompt: Sound | None = None
    prompt_text: SpokenText | None = None
    # The language this option's prompts are spoken in (default: the number's).
    language: Language | None = None
    policy: Id
    queue: QueueName | None = None
    hold_music: Sound | None = None
    max_wait: Seconds | None = None
    fallback: FallbackSpec = HANGUP
    # A caller who hangs up while waiting leaves the incident open for follow-up, unless this
    # says to close it (state "abandoned").
    resolve_abandoned: bool = False
    hours: BusinessHours | None = None
    out_of_hours: OutOfHoursSpec | None = None
    # What ``out_of_hours: message`` says instead of the generated sentence.
    out_of_hours_text: SpokenText | None = None

    @model_validator(mode="after")
    def _hours_need_an_action(self) -> Option:
        if (self.hours is None) != (self.out_of_hours is None):
            raise ValueError("give hours and out_of_hours together")
        return self

    @model_validator(mode="after")
    def _one_prompt(self) -> Option:
        if self.prompt is not None and self.prompt_text is not None:
            raise ValueError("give prompt (a file) or prompt_text (spoken by TTS), not both")
        return self


def _option_count(value: tuple[Option, ...]) -> tuple[Option, ...]:
    if not 1 <= len(value) <= 9:
        raise ValueError(f"must have 1-9 options, got {len(value)}")
    return value


class NumberBase(Strict):
    number: E164
    name: Name | None = None


class CallRoutingNumber(NumberBase):
    type: Literal["call_routing"]
    greeting: Sound | None = None
    greeting_text: SpokenText | None = None
    # The language the menu is spoken in (default: defaults.language).
    language: Language | None = None
    options: Annotated[tuple[Option, ...], AfterValidator(_option_count)]
    skip_menu_if_single: bool = True
    menu: Menu = Menu()

    @model_validator(mode="after")
    def _one_greeting(self) -> CallRoutingNumber:
        if self.greeting is not None and self.greeting_text is not None:
            raise ValueError("give greeting (a file) or greeting_text, not both")
        return self


class AgentNumber(NumberBase):
    type: Literal["agent"]
    agent: Id
    when_busy: Literal["busy_tone", "voicemail", "hangup"] = "busy_tone"
    when_logged_out: Literal["voicemail", "busy_tone", "hangup"] = "voicemail"
    # A caller an agent called recently goes to that agent (2-way VoIP).
    two_way: bool = False
    # Seconds the agent's phone rings before ``when_busy`` applies.
    ring_timeout: Annotated[int, ranged(5, 120)] = 20


class QueueNumber(NumberBase):
    type: Literal["queue"]
    queue: QueueName
    two_way: bool = False


class UnassignedNumber(NumberBase):
    type: Literal["unassigned"]
    behaviour: Literal["sit", "404"] = "sit"


class CustomNumber(NumberBase):
    type: Literal["custom"]
    dial_string: DialString | None = None
    extension: Word | None = None
    context: Word = "default"

    @model_validator(mode="after")
    def _dial_or_extension(self) -> CustomNumber:
        if (self.dial_string is None) == (self.extension is None):
            raise ValueError("give exactly one of dial_string or extension")
        return self


NUMBER_TYPES = ("call_routing", "agent", "queue", "unassigned", "custom")
TAG_PREFIX = "type="  # union tags show up in error locations; the prefix tells them from keys


def _number_tag(value: object) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return f"{TAG_PREFIX}{kind}" if isinstance(kind, str) else None


Number = Annotated[
    Annotated[CallRoutingNumber, Tag("type=call_routing")]
    | Annotated[AgentNumber, Tag("type=agent")]
    | Annotated[QueueNumber, Tag("type=queue")]
    | Annotated[UnassignedNumber, Tag("type=unassigned")]
    | Annotated[CustomNumber, Tag("type=custom")],
    Discriminator(_number_tag),
]


# --- contact center: feature codes, voicemail recording, 2-way VoIP --------------------------

FeatureCode = Annotated[str, AfterValidator(lambda v: _feature_code(v))]


def _feature_code(value: str) -> str:
    if not re.fullmatch(r"\*[0-9]{1,6}|#[0-9]{1,6}", value):
        raise ValueError(f"a feature code is * or # and 1-6 digits, got {value[:20]!r}")
    return value


class Features(Strict):
    """Codes an agent dials from their own extension (the dialplan sends them to fsrouter)."""

    login: FeatureCode = "*21"
    logout: FeatureCode = "*22"
    record_greeting: FeatureCode = "*23"
    # Recordings said after the confirm/refuse tone instead of the rendered sentences.
    login_prompt: Sound | None = None
    logout_prompt: Sound | None = None
    record_greeting_prompt: Sound | None = None
    refused_prompt: Sound | None = None

    @model_validator(mode="after")
    def _distinct(self) -> Features:
        codes = [self.login, self.logout, self.record_greeting]
        if len(set(codes)) != len(codes):
            raise ValueError("feature codes must differ from each other")
        return self

    def action(self, dialled: str) -> str | None:
        """``login``/``logout``/``record_greeting`` for a dialled code, else None."""
        table = {self.login: "login", self.logout: "logout",
                 self.record_greeting: "record_greeting"}
        return table.get(dialled)


class VoicemailSettings(Strict):
    """Where recordings go (a directory FreeSWITCH can write and fsrouter can read)."""

    directory: SafePath = "/var/lib/fsrouter/voicemail"
    max_seconds: Annotated[int, ranged(5, 3600)] = 180
    # Seconds of silence that end a recording, and the energy level counted as silence.
    silence_seconds: Annotated[int, ranged(1, 60)] = 5
    silence_threshold: Annotated[int, ranged(1, 10000)] = 200
    # Recordings shorter than this are dropped (a caller who hung up at the beep).
    min_seconds: Annotated[int, ranged(0, 60)] = 1


class TwoWay(Strict):
    """How long a customer number stays mapped to the agent who last called it."""

    max_age_hours: Annotated[int, ranged(1, 24 * 365)] = 24 * 30


# --- root -----------------------------------------------------------------------------------


def _is_zone(value: object) -> bool:
    try:
        check_timezone(value)  # type: ignore[arg-type]
    except (ValueError, TypeError, AttributeError):
        return False
    return True


def _with_default_tones(value: dict[str, str]) -> dict[str, str]:
    return {**DEFAULT_TONES, **value}


class Config(Strict):
    """The whole configuration. Build it with :func:`fsrouter.config.load_config`."""

    listener: Listener = Listener()
    # One switch (``switch:``) or several (``switches:``, each with a name): exactly one of
    # the two (config/crosscheck.py says which is missing or doubled, with its line).
    switch: Switch | None = None
    switches: tuple[NamedSwitch, ...] = ()
    database: Database = Database()
    cluster: Cluster = Cluster()
    defaults: Defaults = Defaults()
    users: dict[Id, User] = {}
    schedules: dict[Id, Schedule] = {}
    policies: dict[Id, Policy] = {}
    queues: dict[QueueName, Queue] = {}
    tones: Annotated[dict[Word, ToneString], AfterValidator(_with_default_tones)] = Field(
        default_factory=lambda: dict(DEFAULT_TONES))
    tts: Tts = Tts()
    prompts: PromptSettings = PromptSettings()
    smtp: Smtp = Smtp()
    metrics: Metrics = Metrics()
    webhooks: tuple[Webhook, ...] = ()
    features: Features = Features()
    voicemail: VoicemailSettings = VoicemailSettings()
    two_way: TwoWay = TwoWay()
    numbers: tuple[Number, ...] = ()

    _by_e164: dict[str, Any] = PrivateAttr(default_factory=dict)
    # (file, yaml marks) set by the loader: later checks (prompt files, rendering) name lines.
    _source: tuple[str, Any] = PrivateAttr(default=("<config>", None))

    @model_validator(mode="before")
    @classmethod
    def _schedule_timezones(cls, data: Any) -> Any:
        """Schedules without a time zone use ``defaults.timezone``."""
        if not isinstance(data, dict) or not isinstance(data.get("schedules"), dict):
            return data
        defaults = data.get("defaults") if isinstance(data.get("defaults"), dict) else {}
        zone = defaults.get("timezone", "Europe/Berlin")
        if not _is_zone(zone):
            return data  # defaults.timezone reports its own error; do not repeat it
        schedules = {
            key: ({"timezone": zone, **value} if isinstance(value, dict) else value)
            for key, value in data["schedules"].items()
        }
        return {**data, "schedules": schedules}

    @model_validator(mode="before")
    @classmethod
    def _user_languages(cls, data: Any) -> Any:
        """Users without a language speak ``defaults.language`` (their voicemail greeting)."""
        if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
            return data
        defaults = data.get("defaults") if isinstance(data.get("defaults"), dict) else {}
        language = defaults.get("language")
        if not isinstance(language, str):
            return data  # absent (the users keep "de", as defaults.language), or invalid
        users = {key: ({"language": language, **value} if isinstance(value, dict) else value)
                 for key, value in data["users"].items()}
        return {**data, "users": users}

    def model_post_init(self, context: Any, /) -> None:
        self._by_e164 = {}
        for entry in self.numbers:
            self._by_e164.setdefault(entry.number, entry)

    def named_switches(self) -> tuple[tuple[str, Switch], ...]:
        """Every switch this daemon serves, by name (``switch:`` is named "default")."""
        if self.switches:
            return tuple((entry.name, entry) for entry in self.switches)
        return ((DEFAULT_SWITCH, self.switch),) if self.switch is not None else ()

    def number_by_e164(self, e164: str) -> CallRoutingNumber | AgentNumber | QueueNumber | \
            UnassignedNumber | CustomNumber | None:
        """The ``numbers`` entry for an E.164 number, or None."""
        return self._by_e164.get(e164)

    def tone(self, name: str) -> str:
        """A tone string by name (``busy``, ``sit``, ``ringback`` or a custom one)."""
        return self.tones[name]

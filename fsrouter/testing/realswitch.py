"""A real FreeSWITCH for tests and benchmarks: configured from ``freeswitch_conf/``, loopback only.

The switch is built from the same snippet files operators install (``freeswitch_conf/``), plus
a test overlay: its own event socket, SIP and RTP ports on 127.0.0.1, a ``public`` context that
is the shipped dialplan extension, and an ``agents`` context of scripted phones. Example::

    switch = RealSwitch(tmp_path / "fs")
    switch.start()
    switch.route_to(daemon_port)             # the daemon listens on 127.0.0.1:<port 0 pick>
    caller = switch.place_call("+493012345678", "+4915112345678", "O'Brien, Jörg")
    switch.send_dtmf(caller, "2")
    switch.stop()

Scripted phones (destinations in the ``agents`` context; ``<id>`` from :meth:`fresh_id`):

==========================  =================================================================
``answer-<ms>-<id>``        rings, answers after <ms>, stays until the other side hangs up
                            (or for ``${talk_ms}`` ms when the originate sets ``talk_ms``)
``noanswer-<id>``           rings forever (the originator's timeout gives ``NO_ANSWER``)
``busy-<id>``               ``USER_BUSY``
``gone-<id>``               ``UNALLOCATED_NUMBER``
``press-<d>-<ms>-<id>``     answers after <ms>, sends DTMF <d> 300 ms later, stays
``hangup-<ms>-<id>``        answers at once, hangs up ``NORMAL_CLEARING`` after <ms>
``listen-<d>-<ms>-<id>``    answers at once and records what it hears into
                            :meth:`RealSwitch.heard_by_phone`, sends DTMF <d> after <ms>, stays
                            (as a mobile number: :func:`listen_number`)
==========================  =================================================================

Dial them as ``loopback/<destination>/agents`` (see :meth:`RealSwitch.phone`).

What a caller hears: ``place_call(..., record=path)`` records the audio that reaches the
caller leg into a WAV file (8 kHz, 16 bit; see :meth:`RealSwitch._recording`);
fsrouter.testing.audio finds prompts in it.

Voicemail works as on a real installation: box ``1000@fsrouter.test`` (``VOICEMAIL_BOX``,
``VOICEMAIL_DOMAIN``) takes ``voicemail default fsrouter.test 1000``; the phrase macros come
from the switch's ``conf/lang`` and short generated prompt WAVs (:func:`install_prompts`).
Messages land in :meth:`RealSwitch.voicemail_messages`; the mail to the agent is kept in
:attr:`RealSwitch.mail_dir` (:meth:`RealSwitch.mails`), never sent.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape as xml_escape

import gevent
import structlog

from fsrouter.esl import ESLError, Event, InboundClient, Job
from fsrouter.testing import ports as rtp_ports
from fsrouter.testing.phones import dialplan_extensions
from fsrouter.testing.switchfiles import SwitchError, install_prompts, write_mail_catcher

log = structlog.get_logger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONF = REPO_ROOT / "freeswitch_conf"
# Fresh TLS certificates cost ~3 s per start; one copy is reused by every run on this host.
CERT_CACHE = Path(tempfile.gettempdir()) / "fsrouter-freeswitch-certs"
# Until a test calls route_to(), public calls go to a loopback port nobody listens on, so they
# take the dialplan's dead-daemon fallback instead of reaching a developer's daemon on 8084.
UNROUTED_TARGET = "127.0.0.1:1"
EVENTS = ["BACKGROUND_JOB", "CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE", "DTMF"]
_MAX_TRACKED_UUIDS = 20_000

_UUID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_NUMBER = re.compile(r"^\+?[A-Za-z0-9*#_.-]{1,64}$")
_DIGITS = re.compile(r"^[0-9*#A-Da-d]{1,64}$")
_CAUSE = re.compile(r"^[A-Z_]{1,64}$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# In an originate {...} block a newline ends the ESL command, NUL cuts the string and a
# backslash is mangled (freeswitch-facts.md §8). Braces are found by nesting, quotes ignored:
# balanced ones pass (`${system(x)}`, `{x}` measured byte-exact), a lone `{` or `}` breaks
# the originate (DESTINATION_OUT_OF_ORDER / CHAN_NOT_IMPLEMENTED, measured on 1.11.1).
_UNQUOTABLE = ("\n", "\r", "\x00", "\\")


def find_freeswitch() -> Path | None:
    """The FreeSWITCH to run: a folder with ``run-switch``, or a ``freeswitch`` binary.

    Order: env ``FSROUTER_FREESWITCH`` (folder or binary), ``<repo>/../shared/freeswitch``,
    ``/work/shared/freeswitch``, then ``freeswitch`` on PATH. None when there is none, or
    when ``FSROUTER_FREESWITCH`` names something that is neither.
    """
    env = os.environ.get("FSROUTER_FREESWITCH")
    if env:
        # An explicit choice that does not exist is an error to report, not to paper over.
        return _runnable(Path(env))
    for path in (REPO_ROOT.parent / "shared" / "freeswitch", Path("/work/shared/freeswitch")):
        if _runnable(path):
            return path.resolve()
    on_path = shutil.which("freeswitch")
    return Path(on_path) if on_path else None


def _runnable(path: Path) -> Path | None:
    if (path / "run-switch").is_file() or (path.is_file() and os.access(path, os.X_OK)):
        return path.resolve()
    return None


def quote_originate_value(value: str, what: str = "value") -> str:
    """Quote text for an originate ``{var=...}`` block so it arrives byte-exact.

    Single quotes around it, ``'`` as ``\\'`` and ``,`` as ``\\,`` (measured on 1.11.1 for
    names such as ``O'Brien, Jörg`` and ``${system(...)}``, which stays inert text). Line
    breaks, NUL, backslashes and unmatched braces have no safe spelling: they are refused with
    ValueError rather than silently changed.
    """
    bad = [char for char in _UNQUOTABLE if char in value]
    if bad:
        raise ValueError(f"{what} {value!r} contains {bad[0]!r}, which cannot be passed safely")
    if not _braces_balanced(value):
        raise ValueError(f"{what} {value!r} has an unmatched brace, which breaks an originate")
    return "'" + value.replace("'", "\\'").replace(",", "\\,") + "'"


def _braces_balanced(value: str) -> bool:
    depth = 0
    for char in value:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def _check(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"invalid {what}: {value!r}")
    return value


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _free_sip_port() -> int:
    """A port free for both UDP and TCP (sofia binds both)."""
    for _ in range(50):
        port = _free_tcp_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise SwitchError("no free loopback port for SIP")


def _free_rtp_range(size: int = 1000) -> tuple[int, int]:
    """A random even-started UDP range whose first ports are free: free-ish, not reserved."""
    for _ in range(50):
        start = random.randrange(20000, 60000 - size, 2)
        try:
            for port in range(start, start + 10):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return start, start + size - 1
    raise SwitchError("no free loopback RTP range")


@dataclass(frozen=True)
class Ports:
    esl: int
    sip: int
    rtp_start: int
    rtp_end: int


@dataclass
class Origination:
    """One ``bgapi originate``: ``uuid`` is the originated (a-)leg, ``job`` its result."""

    uuid: str
    job: Job

    def result(self, timeout: float = 10.0) -> str:
        """``+OK <uuid>`` or ``-ERR <CAUSE>``, stripped."""
        return self.job.wait(timeout).strip()


# -- configuration --------------------------------------------------------------------------


def _param_config(path: Path, overrides: Mapping[str, str]) -> str:
    """A shipped ``<configuration>`` file with some ``<param>`` values replaced or added."""
    root = ET.parse(path).getroot()
    settings = root.find("settings")
    if settings is None:
        raise SwitchError(f"{path} has no <settings>")
    left = dict(overrides)
    for param in settings.findall("param"):
        name = param.get("name", "")
        if name in left:
            param.set("value", left.pop(name))
    for name, value in left.items():
        ET.SubElement(settings, "param", {"name": name, "value": value})
    return ET.tostring(root, encoding="unicode")


def _sofia_conf(ports: Ports) -> str:
    params = {
        "sip-ip": "127.0.0.1",
        "rtp-ip": "127.0.0.1",
        "ext-sip-ip": "127.0.0.1",
        "ext-rtp-ip": "127.0.0.1",
        "sip-port": str(ports.sip),
        "context": "public",
        "dialplan": "XML",
        "auth-calls": "false",
        "inbound-codec-prefs": "PCMA,PCMU",
        "outbound-codec-prefs": "PCMA,PCMU",
        "dtmf-type": "rfc2833",
        "rfc2833-pt": "101",
        # Keys by SIP INFO too (phones that send them): without it the profile answers the
        # INFO 200 but drops the key ("IGNORE INFO DTMF", 1.11.1).
        "liberal-dtmf": "true",
        # Media paced by a timer, as in FreeSWITCH's stock profiles: without one, reading a
        # SIP leg blocks until RTP arrives, so a tone to a phone that sends none in early
        # media (most do not) never ends (measured with SIPp on 1.11.1).
        "rtp-timer-name": "soft",
        # No unsolicited MWI NOTIFY to a phone that just registered: a test phone waiting
        # for its INVITE would take it for a call.
        "send-message-query-on-register": "false",
        "manage-presence": "false",
        "tls": "false",
    }
    lines = "".join(f'<param name="{k}" value="{v}"/>' for k, v in params.items())
    return (
        '<configuration name="sofia.conf"><global_settings>'
        '<param name="log-level" value="0"/></global_settings><profiles>'
        f'<profile name="{SIP_PROFILE}"><settings>{lines}</settings></profile>'
        "</profiles></configuration>"
    )


_LOGFILE_CONF = (
    '<configuration name="logfile.conf"><profiles><profile name="default"><mappings>'
    '<map name="all" value="info,notice,warning,err,crit,alert"/>'
    "</mappings></profile></profiles></configuration>"
)

# The scripted phones. $1/$2 are the regex captures of the condition they sit in.
_PHONES = r"""
<context name="agents">
  <extension name="phone-answer">
    <condition field="destination_number" expression="^answer-([0-9]+)-.+$">
      <action application="ring_ready"/>
      <action application="sleep" data="$1"/>
      <action application="answer"/>
    </condition>
    <condition field="${talk_ms}" expression="^([0-9]+)$" break="never">
      <action application="sleep" data="$1"/>
      <action application="hangup" data="NORMAL_CLEARING"/>
      <anti-action application="park"/>
    </condition>
  </extension>
  <extension name="phone-noanswer">
    <condition field="destination_number" expression="^noanswer-.+$">
      <action application="ring_ready"/>
      <action application="sleep" data="86400000"/>
    </condition>
  </extension>
  <extension name="phone-busy">
    <condition field="destination_number" expression="^busy-.+$">
      <action application="hangup" data="USER_BUSY"/>
    </condition>
  </extension>
  <extension name="phone-gone">
    <condition field="destination_number" expression="^gone-.+$">
      <action application="hangup" data="UNALLOCATED_NUMBER"/>
    </condition>
  </extension>
  <extension name="phone-press">
    <condition field="destination_number" expression="^press-([0-9*#])-([0-9]+)-.+$">
      <action application="ring_ready"/>
      <action application="sleep" data="$2"/>
      <action application="answer"/>
      <action application="sleep" data="300"/>
      <action application="send_dtmf" data="$1"/>
      <action application="park"/>
    </condition>
  </extension>
  <extension name="phone-listen">
    <condition field="destination_number" expression="^listen-([0-9*#])-([0-9]+)-([A-Za-z0-9]+)$">
      <action application="pre_answer"/>
      <action application="set" data="RECORD_READ_ONLY=true"/>
      <action application="record_session" data="{recordings}/listen-$3.wav"/>
      <action application="answer"/>
      <action application="sleep" data="$2"/>
      <action application="send_dtmf" data="$1"/>
      <action application="park"/>
    </condition>
  </extension>
  <extension name="phone-listen-number">
    <condition field="destination_number" expression="^\+?4915197([0-9]{4})([0-9]{2})$">
      <action application="transfer" data="listen-1-$1-n$2 XML agents"/>
    </condition>
  </extension>
  <extension name="phone-hangup">
    <condition field="destination_number" expression="^hangup-([0-9]+)-.+$">
      <action application="answer"/>
      <action application="sleep" data="$1"/>
      <action application="hangup" data="NORMAL_CLEARING"/>
    </condition>
  </extension>
</context>
"""


def _phones(recordings: Path) -> str:
    """The ``agents`` context; the listening phone records into ``recordings``."""
    folder = xml_escape(str(recordings), {'"': "&quot;"})
    phones = _PHONES.replace("{recordings}", folder)
    return phones.replace("</context>", dialplan_extensions() + "</context>")


def listen_number(ms: int, number: int) -> str:
    """The mobile number of a ``listen-1-<ms>-n<number>`` phone (dialled by the daemon)."""
    if not 0 <= ms <= 9999 or not 0 <= number <= 99:
        raise ValueError("ms must be 0-9999 and number 0-99")
    return f"+4915197{ms:04d}{number:02d}"


# One voicemail box, as an agent who is logged out has: vm-enabled, message by e-mail.
VOICEMAIL_DOMAIN = "fsrouter.test"
VOICEMAIL_BOX = "1000"
# SIP phones that REGISTER with a password (digest auth) on profile SIP_PROFILE and are
# dialled as ``user/<id>@fsrouter.test``: extensions for contact-center agents, E.164 ids for
# on-call staff reached through ``defaults.dial_template: user/{number}@fsrouter.test``.
SIP_PROFILE = "fsrouter-test"
SIP_PASSWORD = "sip-test-secret"
SIP_EXTENSIONS = tuple(str(n) for n in range(1001, 1013))
SIP_NUMBERS = tuple(f"+49309999{n}" for n in range(1001, 1007))
SIP_DIAL_TEMPLATE = f"user/{{number}}@{VOICEMAIL_DOMAIN}"
_SIP_USERS = "".join(
    f'<user id="{uid}"><params><param name="password" value="{SIP_PASSWORD}"/></params></user>'
    for uid in SIP_EXTENSIONS + SIP_NUMBERS)
# Where the user endpoint sends a call: the phone's registration on our profile (``%``:
# look the user up among the registrations). Not ${sofia_contact(...)}: that is an API call
# in an expansion, which the shipped api-expansion=false turns off.
_DIAL_STRING = f"sofia/{SIP_PROFILE}/${{dialed_user}}%${{dialed_domain}}"
_DIRECTORY = f"""
<section name="directory">
  <domain name="{VOICEMAIL_DOMAIN}">
    <params><param name="dial-string" value="{_DIAL_STRING}"/></params>
    {_SIP_USERS}
    <user id="{VOICEMAIL_BOX}">
      <params>
        <param name="vm-enabled" value="true"/>
        <param name="vm-mailto" value="agent@fsrouter.test"/>
        <param name="vm-email-all-messages" value="true"/>
        <param name="vm-attach-file" value="true"/>
      </params>
    </user>
  </domain>
</section>
"""


def write_config(
    conf_dir: Path,
    ports: Ports,
    password: str,
    lang_dir: Path | None = None,
    mailer: Path | None = None,
    target: str = UNROUTED_TARGET,
    switch_params: Mapping[str, str] | None = None,
) -> Path:
    """Write ``conf_dir/freeswitch.xml`` from the shipped snippets plus the test overlay.

    The shipped files are copied unchanged into ``conf_dir/fsrouter/`` and included from
    there; switch.conf and event_socket.conf are the shipped files with test params replaced.
    ``lang_dir`` (the switch's ``conf/lang``) gives the voicemail its phrase macros;
    ``mailer`` replaces the shipped ``sendmail`` (see :func:`write_mail_catcher`);
    ``target`` is where the dialplan sends calls (``fsrouter_target``) from the start;
    ``switch_params`` are more switch.conf params (the benchmark's ``1ms-timer``).
    """
    shipped = conf_dir / "fsrouter"
    if shipped.exists():
        shutil.rmtree(shipped)
    shutil.copytree(SHIPPED_CONF, shipped)
    languages = ""
    if lang_dir is not None and lang_dir.is_dir():
        # The voicemail app speaks through phrase macros; without them it gives up at once.
        shutil.copytree(lang_dir, conf_dir / "lang", dirs_exist_ok=True)
        # One tag a line: the pre-processor drops the whole line an X-PRE-PROCESS sits on.
        languages = ('<section name="languages">\n'
                     '<X-PRE-PROCESS cmd="include" data="lang/en/en.xml"/>\n</section>')
    configs = shipped / "autoload_configs"
    switch_conf = _param_config(
        configs / "switch.conf.xml",
        {
            "max-sessions": "5000",
            "sessions-per-second": "2000",
            "rtp-start-port": str(ports.rtp_start),
            "rtp-end-port": str(ports.rtp_end),
            "loglevel": "info",
            "colorize-console": "false",
            # The switch runs `/bin/cat <mail> | <mailer-app> -f <from> <args> <to>` in a shell.
            **({"mailer-app": shlex.quote(str(mailer)), "mailer-app-args": ""} if mailer else {}),
            **(switch_params or {}),
        },
    )
    event_socket = _param_config(
        configs / "event_socket.conf.xml",
        {"listen-ip": "127.0.0.1", "listen-port": str(ports.esl), "password": password},
    )
    document = f"""<?xml version="1.0"?>
<document type="freeswitch/xml">
  <X-PRE-PROCESS cmd="include" data="fsrouter/vars.fsrouter.xml"/>
  <X-PRE-PROCESS cmd="set" data="fsrouter_target={target}"/>
  <section name="configuration">
    {switch_conf}
    {event_socket}
    <X-PRE-PROCESS cmd="include" data="fsrouter/autoload_configs/modules.conf.xml"/>
    <X-PRE-PROCESS cmd="include" data="fsrouter/autoload_configs/fifo.conf.xml"/>
    <X-PRE-PROCESS cmd="include" data="fsrouter/autoload_configs/voicemail.conf.xml"/>
    {_LOGFILE_CONF}
    {_sofia_conf(ports)}
  </section>
  <section name="dialplan">
    <context name="public">
      <X-PRE-PROCESS cmd="include" data="fsrouter/dialplan/fsrouter_features.xml"/>
      <X-PRE-PROCESS cmd="include" data="fsrouter/dialplan/fsrouter.xml"/>
    </context>
    {_phones(conf_dir.parent / "recordings")}
  </section>
  {_DIRECTORY}
  {languages}
</document>
"""
    path = conf_dir / "freeswitch.xml"
    path.write_text(document, encoding="utf-8")
    return path


# -- the switch -----------------------------------------------------------------------------


class RealSwitch:
    """One FreeSWITCH process in its own ``workdir``; see the module docstring."""

    speed = 1.0  # real time (the simulator's SimSwitch can run faster; scenarios scale by it)

    def __init__(self, workdir: Path, freeswitch: Path | None = None,
                 switch_params: Mapping[str, str] | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self.freeswitch = freeswitch or find_freeswitch()
        self.switch_params = dict(switch_params or {})
        self.password = uuidlib.uuid4().hex
        self.ports: Ports | None = None
        self._rtp_slot: rtp_ports.RtpSlot | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.client: InboundClient | None = None
        self.ready_seconds: float | None = None
        self._events: OrderedDict[str, list[Event]] = OrderedDict()
        self._jobs: dict[str, Job] = {}
        self._drain: gevent.Greenlet | None = None
        self._counter = 0
        self._target = UNROUTED_TARGET

    def __repr__(self) -> str:  # never show the password
        return f"RealSwitch({str(self.workdir)!r}, ports={self.ports})"

    def __enter__(self) -> RealSwitch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def esl_endpoint(self) -> tuple[str, int, str]:
        """(host, port, password) of the event socket, for a second client of one's own."""
        if self.ports is None:
            raise SwitchError("the switch was never started")
        return "127.0.0.1", self.ports.esl, self.password

    @property
    def log_path(self) -> Path:
        return self.workdir / "log" / "freeswitch.log"

    @property
    def mail_dir(self) -> Path:
        """Where the switch's outgoing mail (voicemail to e-mail) is kept, one ``.eml`` each."""
        return self.workdir / "mail"

    def voicemail_messages(
        self, domain: str = VOICEMAIL_DOMAIN, box: str = VOICEMAIL_BOX
    ) -> list[Path]:
        """Message files in a box of profile ``default``, where mod_voicemail puts them.

        Its default is ``<storage>/voicemail/<profile>/<domain>/<box>/msg_<uuid>.<ext>``
        (mod_voicemail.c voicemail_leave_main, no storage-dir params set).
        """
        _check(_NUMBER, box, "voicemail box")
        _check(re.compile(r"^[A-Za-z0-9.-]{1,253}$"), domain, "voicemail domain")
        folder = self.workdir / "storage" / "voicemail" / "default" / domain / box
        return sorted(folder.glob("msg_*"))

    def mails(self) -> list[Path]:
        """The mails kept so far, oldest first."""
        return sorted(self.mail_dir.glob("*.eml"), key=lambda path: path.stat().st_mtime_ns)

    @property
    def output_path(self) -> Path:
        return self.workdir / "freeswitch.out"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- life cycle -------------------------------------------------------------------------

    def _command(self) -> list[str]:
        if self.freeswitch is None:
            raise SwitchError("no FreeSWITCH found (set FSROUTER_FREESWITCH)")
        if self.freeswitch.is_dir():
            # -core: a crash leaves a core file (in workdir, its cwd), which fails the session.
            return [str(self.freeswitch / "run-switch"), str(self.workdir), "-core"]
        folders = ["log", "db", "run", "storage", "recordings", "cache", "certs", "scripts"]
        folders += ["grammar", "htdocs", "temp", "sounds"]
        cmd = [str(self.freeswitch), "-nc", "-nf", "-nonat", "-core",
               "-conf", str(self.workdir / "conf")]
        modules = self.freeswitch.parent.parent / "mod"
        if modules.is_dir():  # a self-contained build (bin/ next to mod/), like run-switch's
            cmd += ["-mod", str(modules)]
        for name in folders:
            (self.workdir / name).mkdir(parents=True, exist_ok=True)
            cmd += [f"-{name}", str(self.workdir / name)]
        return cmd

    def _lang_dir(self) -> Path | None:
        """The phrase macros that ship with the switch (``conf/lang``), when we can find them."""
        if self.freeswitch is None:
            return None
        folder = self.freeswitch if self.freeswitch.is_dir() else self.freeswitch.parent.parent
        return folder / "conf" / "lang"

    def start(self, timeout: float = 20.0) -> None:
        """Write the config, run the switch, wait until ``api status`` says it is ready.

        A second start (after :meth:`stop` or :meth:`kill`) is a restart, as of a real switch:
        the same ports and the target of the last :meth:`route_to`, so a daemon configured
        for the first run finds it again.
        """
        if self.running:
            raise SwitchError("already running")
        began = time.monotonic()
        self._claim_rtp()
        (self.workdir / "conf").mkdir(parents=True, exist_ok=True)
        (self.workdir / "recordings").mkdir(exist_ok=True)  # the listening phones' files
        mailer = write_mail_catcher(self.workdir / "bin" / "catch-mail", self.mail_dir)
        write_config(self.workdir / "conf", self.ports, self.password, self._lang_dir(), mailer,
                     self._target, self.switch_params)
        self._restore_certs()
        install_prompts(self.workdir / "sounds", self._lang_dir())
        with contextlib.suppress(FileNotFoundError):
            self.log_path.unlink()  # log_text() is this run's log only
        with open(self.output_path, "ab") as out:
            self.process = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends all of it
                cwd=self.workdir,  # where a core file lands (core_pattern "core")
            )
        atexit.register(self._kill)
        log.info("realswitch.started", pid=self.process.pid, workdir=str(self.workdir))
        try:
            self._wait_ready(began + timeout)
        except BaseException:
            self.stop(grace=0)
            raise
        self.ready_seconds = time.monotonic() - began
        self._save_certs()

    def _wait_ready(self, deadline: float) -> None:
        assert self.ports is not None
        last_error = "not tried"
        while time.monotonic() < deadline:
            if not self.running:
                raise SwitchError(f"FreeSWITCH exited at start:\n{self.output_tail()}")
            try:
                if self.client is None:
                    self._connect()
                if "is ready" in self.api("status", timeout=2.0):
                    return
                last_error = "status is not ready yet"
            except (ESLError, OSError) as exc:
                last_error = str(exc)
                self._drop_client()
            gevent.sleep(0.05)
        raise SwitchError(f"FreeSWITCH not ready in time ({last_error}):\n{self.output_tail()}")

    def _connect(self) -> None:
        assert self.ports is not None
        client = InboundClient(
            "127.0.0.1", self.ports.esl, self.password, events=EVENTS, connect_timeout=2.0
        )
        client.connect()
        self.client = client
        self._drain = gevent.spawn(self._drain_events, client)

    def _drop_client(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None
        if self._drain is not None:
            self._drain.kill(block=False)
            self._drain = None

    def _claim_rtp(self) -> None:
        """Ports for the first start (an RTP range no other test switch on the machine
        uses: fsrouter.testing.ports); a restart takes the same ones again."""
        if self.ports is None:
            slot = rtp_ports.claim()
            rtp = (slot.start, slot.end) if slot is not None else _free_rtp_range()
            self.ports = Ports(_free_tcp_port(), _free_sip_port(), *rtp)
        elif self._rtp_slot is None:
            slot = rtp_ports.claim(self.ports.rtp_start)
        else:
            return
        self._rtp_slot = slot

    def _release_rtp(self) -> None:
        if self._rtp_slot is not None:
            self._rtp_slot.release()
            self._rtp_slot = None

    def stop(self, grace: float = 3.0) -> None:
        """Ask politely (SIGTERM to the process group), SIGKILL after ``grace`` seconds.

        1.11.1 needs ~5.5 s to shut down cleanly (measured, SIGTERM or ``fsctl shutdown``),
        so with the default grace the SIGKILL usually does it; ``grace=0`` kills at once,
        which leaves a folder that starts again cleanly.
        """
        self._drop_client()
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        self._kill()
        atexit.unregister(self._kill)
        self._release_rtp()
        log.info("realswitch.stopped", pid=proc.pid, returncode=proc.returncode)

    def kill(self) -> None:
        """SIGKILL the switch now, as a crash would (no hang-ups sent, sockets just close)."""
        self._drop_client()
        self._kill()
        atexit.unregister(self._kill)
        self._release_rtp()
        log.info("realswitch.killed", pid=self.pid)

    def _signal(self, signum: int) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    def _kill(self) -> None:
        """SIGKILL the whole group; children too, even if the leader is already gone."""
        if self.process is None:
            return
        self._signal(signal.SIGKILL)
        self.process.wait()

    def _restore_certs(self) -> None:
        certs = self.workdir / "certs"
        if CERT_CACHE.is_dir() and not (certs.exists() and any(certs.iterdir())):
            shutil.copytree(CERT_CACHE, certs, dirs_exist_ok=True)

    def _save_certs(self) -> None:
        certs = self.workdir / "certs"
        if CERT_CACHE.exists() or not certs.is_dir() or not any(certs.iterdir()):
            return
        staging = Path(tempfile.mkdtemp(prefix="fsrouter-certs-", dir=CERT_CACHE.parent))
        shutil.copytree(certs, staging, dirs_exist_ok=True)
        try:
            staging.rename(CERT_CACHE)  # atomic: a parallel run sees all of it or nothing
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)

    # -- events -----------------------------------------------------------------------------

    def _drain_events(self, client: InboundClient) -> None:
        conn = client.conn
        while conn is not None and not conn.closed:
            try:
                event = conn.next_event(None)
            except ESLError:
                return
            key = event.uuid or event.job_uuid
            if not key:
                continue
            self._events.setdefault(key, []).append(event)
            if len(self._events) > _MAX_TRACKED_UUIDS:
                self._events.popitem(last=False)

    def events(self, uuid: str) -> list[Event]:
        """Events seen so far for a channel (subscribed: BACKGROUND_JOB, answer, hangup, DTMF)."""
        return list(self._events.get(uuid, []))

    def wait_event(self, uuid: str, name: str, timeout: float = 10.0) -> Event:
        """The first ``name`` event of channel ``uuid``, waiting for it if needed."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self._events.get(uuid, []):
                if event.name == name:
                    return event
            if time.monotonic() >= deadline:
                raise SwitchError(f"no {name} for {uuid} within {timeout} s")
            gevent.sleep(0.01)

    def wait_hangup(self, uuid: str, timeout: float = 10.0) -> Event:
        """CHANNEL_HANGUP_COMPLETE of ``uuid``; its ``Hangup-Cause`` says why."""
        return self.wait_event(uuid, "CHANNEL_HANGUP_COMPLETE", timeout)

    # -- commands ---------------------------------------------------------------------------

    def _client(self) -> InboundClient:
        if self.client is None:
            raise SwitchError("the switch is not running")
        return self.client

    def api(self, cmd: str, timeout: float = 10.0) -> str:
        """``api <cmd>``; the response body as the switch sent it."""
        return self._client().api(cmd, timeout)

    def route_to(self, port: int, host: str = "127.0.0.1",
                 failover: tuple[tuple[str, int], ...] = ()) -> None:
        """Send calls to ``public`` from now on to the daemon at host:port, and to the
        ``failover`` daemons in order when it cannot be reached (``a:1|b:2``, see
        freeswitch_conf/README.md)."""
        target = "|".join(f"{where}:{int(number)}" for where, number in ((host, port), *failover))
        _check(re.compile(r"^[0-9A-Za-z.:-]+(\|[0-9A-Za-z.:-]+)*$"), target, "target")
        reply = self.api(f"global_setvar fsrouter_target={target}")
        if reply.startswith("-ERR"):
            raise SwitchError(f"global_setvar failed: {reply.strip()}")
        self._target = target  # kept across a restart

    def originate(
        self,
        dial: str,
        app: str = "&park()",
        variables: Mapping[str, str] | None = None,
        uuid: str | None = None,
    ) -> Origination:
        """``bgapi originate {vars}<dial> <app>``; variables are quoted, names checked.

        ``app`` goes in as given: quote it yourself when its arguments have spaces, e.g.
        ``"'&fifo(q1 out nowait)'"`` (unquoted, the API splits it at the first space).
        """
        uuid = _check(_UUID, uuid or str(uuidlib.uuid4()), "uuid")
        block = {"origination_uuid": uuid, **(variables or {})}
        pairs = [
            f"{_check(_VAR_NAME, name, 'variable name')}={quote_originate_value(value, name)}"
            for name, value in block.items()
        ]
        if any(char in dial + app for char in "\n\r\x00"):
            raise ValueError("dial string or app contains a line break")
        job = self._client().bgapi(f"originate {{{','.join(pairs)}}}{dial} {app}")
        self._jobs[uuid] = job
        return Origination(uuid, job)

    def phone(
        self, destination: str, timeout_s: int = 60, variables: Mapping[str, str] | None = None
    ) -> Origination:
        """Originate to a scripted phone (``answer-100-<id>``...), parked on our side."""
        _check(_NUMBER, destination, "phone destination")
        extra = {"originate_timeout": str(int(timeout_s)), **(variables or {})}
        return self.originate(f"loopback/{destination}/agents", variables=extra)

    def place_call(
        self,
        number: str,
        caller_number: str = "+4915112345678",
        caller_name: str = "",
        uuid: str | None = None,
        record: Path | None = None,
    ) -> str:
        """A caller dialling ``number`` (into ``public``); returns the caller leg's uuid.

        Caller ID name and number reach the switch byte-exact (hostile text included); line
        breaks, NUL, backslashes and unmatched braces are refused with ValueError.
        ``record``: a WAV file that gets what the caller hears (see :meth:`_recording`).
        """
        _check(_NUMBER, number, "number")
        uuid = _check(_UUID, uuid or str(uuidlib.uuid4()), "uuid")
        variables = {"origination_caller_id_number": caller_number}
        if caller_name:
            variables["origination_caller_id_name"] = caller_name
        if record is not None:
            variables.update(self._recording(uuid, record))
        return self.originate(f"loopback/{number}/public", variables=variables, uuid=uuid).uuid

    @staticmethod
    def _recording(uuid: str, path: Path) -> dict[str, str]:
        """Originate variables that record what the caller leg hears into ``path``.

        The caller is the loopback a-leg; what the daemon plays on the b-leg arrives as the
        a-leg's read stream (mod_loopback hands each side's writes to the other's read), so
        ``uuid_record`` with ``RECORD_READ_ONLY`` keeps exactly that (switch_ivr_async.c: the
        flag drops the write stream; measured: a tone the caller leg itself plays is not in
        the file). It starts when the leg first has media, early (pre-answer) or at the
        answer (``api_on_media``, switch_channel.c). mod_loopback copies every originate
        variable to the b-leg too, so the b-leg runs the same command when it gets media; it
        names the caller leg and the same file, and the switch refuses a second recording of
        one file on one channel ("Already recording"), so there is one recording either way
        (``${...}`` to tell the legs apart is refused in api_on_* variables, 1.11.1).
        Early media (the busy tone before any answer) is recorded too: the API originate
        returns at the pre-answer and the caller leg's ``park`` reads from then on (measured).
        """
        text = str(path)
        if not re.fullmatch(r"/[A-Za-z0-9_./-]{1,512}\.wav", text) or ".." in text:
            raise ValueError(f"recording path {text!r} must be an absolute .wav path, plain")
        return {"api_on_media": f"uuid_record {uuid} start {text} 0 {{RECORD_READ_ONLY=true}}"}

    def heard_by_phone(self, number: int) -> Path:
        """The recording of listening phone ``listen-<d>-<ms>-n<number>``."""
        return self.workdir / "recordings" / f"listen-n{int(number):02d}.wav"

    def call_result(self, uuid: str, timeout: float = 10.0) -> str:
        """The originate result of a call placed here: ``+OK <uuid>`` or ``-ERR <CAUSE>``."""
        job = self._jobs.get(uuid)
        if job is None:
            raise SwitchError(f"no call {uuid} was placed here")
        return job.wait(timeout).strip()

    def send_dtmf(self, uuid: str, digits: str) -> None:
        """The caller presses ``digits`` (sent out of the caller leg to the far side)."""
        cmd = f"uuid_send_dtmf {_check(_UUID, uuid, 'uuid')} {_check(_DIGITS, digits, 'digits')}"
        reply = self.api(cmd)
        if not reply.startswith("+OK"):
            raise SwitchError(f"{cmd}: {reply.strip()}")

    def hangup(self, uuid: str, cause: str = "NORMAL_CLEARING") -> str:
        """``uuid_kill``; returns the switch's reply (``-ERR No such channel!`` if gone)."""
        return self.api(f"uuid_kill {_check(_UUID, uuid, 'uuid')} {_check(_CAUSE, cause, 'cause')}")

    def channels(self) -> list[dict[str, str]]:
        """``show channels``, one dict per channel (empty list when idle).

        It reads the switch's core database, which trails live channels by up to ~0.5 s
        (measured): poll for a new or vanished channel, or use :meth:`wait_event`.
        """
        reply = self.api("show channels as json")
        try:
            return list(json.loads(reply).get("rows", []))
        except ValueError as exc:
            raise SwitchError(f"show channels: unexpected reply {reply[:200]!r}") from exc

    def fresh_id(self) -> str:
        """A suffix unique per call of this method in this process, for numbers and phones."""
        self._counter += 1
        return f"{self._counter}x{uuidlib.uuid4().hex[:8]}"

    # -- logs -------------------------------------------------------------------------------

    def log_text(self) -> str:
        """The switch's log file so far (empty when there is none yet)."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def output_tail(self, lines: int = 40) -> str:
        """The last lines the process wrote to stdout/stderr (start-up errors land here)."""
        try:
            text = self.output_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

"""SIPp (Debian package ``sip-tester``) as real SIP phones for tests: install, script, run.

A test writes what a phone does as a scenario (:func:`caller_scenario` for a caller who dials
a number and then pauses, presses keys, talks or hangs up; :func:`agent_scenario` for a phone
that answers or rejects one call), runs it against the switch's SIP port with :class:`SippRun`
and then reads every SIP message the phone sent and received (:attr:`SippRun.messages`).
:class:`SipPhone` is an agent's phone: the UAS on a port of its own, REGISTERed (digest auth)
as a directory user by a second, short run. Example::

    phone = SipPhone("anna", tmp_path, sip_port, "1001", SIP_PASSWORD, "fsrouter.test",
                     answer=200, talk_ms=1500).start()          # registered when it returns
    caller = SippRun("caller", caller_scenario([Pause(1000), Dtmf("1")], end="wait_bye"),
                     tmp_path, sip_port, service="+493040001000",
                     keys={"fsr_from": from_header("Erika", "+4915112345678")}).start()
    caller.check(); phone.call.check()                          # both went as scripted
    phone.invites()[0].header("From")                           # what the phone was shown
    phone.close()                                               # unregisters, stops

Caller-controlled text (display name, user part) goes in through SIPp's ``-key`` values,
which SIPp inserts as they are (never parsed for ``[keywords]``): :func:`from_header` builds
the header with RFC 3261 quoting, so hostile names reach the switch exactly as a hostile SIP
client would send them. Media: a caller sends real RTP from the pcap files the package ships
(``dtmf_2833_<key>.pcap``: an RFC 2833 key press, payload type 101; ``g711a.pcap``: 7 s of
speech, PCMA), so the SDP offers PCMA and telephone-event/101. Every run is bounded
(``-timeout``) and killed at teardown; ports are picked free on 127.0.0.1 (SIPp binds them
itself, so they are chosen just before it starts).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import gevent
import structlog

log = structlog.get_logger(__name__)

PACKAGE = "sip-tester"
PCAP_DIR = Path("/usr/share/sip-tester")
SPEECH_PCAP = PCAP_DIR / "g711a.pcap"
_APT_TIMEOUT_S = 600
_START_TRIES = 5
_EXIT_BIND_FAILED = 254  # SIPp's exit code for "fatal error binding a socket"
_DTMF_FILES = {**{str(d): f"dtmf_2833_{d}.pcap" for d in range(10)},
               "#": "dtmf_2833_pound.pcap", "*": "dtmf_2833_star.pcap"}


class SippUnavailable(RuntimeError):
    """SIPp is not here and this machine cannot install it (no apt-get, not root)."""


class SippError(RuntimeError):
    """A SIPp run did not go as its scenario says (the message has its log)."""


# -- install ----------------------------------------------------------------------------------


def find_sipp() -> Path | None:
    on_path = shutil.which("sipp")
    return Path(on_path) if on_path else None


def ensure_sipp() -> Path:
    """The ``sipp`` binary, installing Debian's ``sip-tester`` when it is missing and we may.

    Raises :class:`SippUnavailable` when there is no apt-get to use (a reason to skip), and
    :class:`SippError` when apt-get is there but the install failed (a reason to fail).
    """
    found = find_sipp()
    if found is not None:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SippUnavailable("sipp not found and apt-get is not usable here (install the "
                              "Debian package sip-tester)")
    _apt_install()
    found = find_sipp()
    if found is None:
        raise SippError("apt-get installed sip-tester but sipp is still missing")
    return found


def _apt(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Another process (a parallel test run, unattended upgrades) may hold the dpkg lock.
    command = ["apt-get", "-q", "-o", "DPkg::Lock::Timeout=300", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False,
                          timeout=_APT_TIMEOUT_S)


def _apt_install() -> None:
    install = ["install", "-y", "--no-install-recommends", PACKAGE]
    log.info("sipp.installing", package=PACKAGE)
    if _apt(install).returncode == 0:
        return
    _apt(["update"])  # a fresh machine may have no package lists yet
    result = _apt(install)
    if result.returncode != 0:
        raise SippError(f"apt-get install {PACKAGE} failed: {result.stderr[-500:]}")


# -- SIP text ---------------------------------------------------------------------------------


def quote_display_name(name: str) -> str:
    """``name`` as an RFC 3261 quoted-string: ``"`` and ``\\`` escaped as quoted-pairs.

    Line breaks cannot be quoted-pairs (RFC 3261 §25.1 leaves out CR and LF); a CRLF followed
    by a space is header folding, which is allowed inside the quotes and means one space.
    Other line breaks are sent as that folding.
    """
    text = name.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n ")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def from_header(display_name: str, user: str, host: str = "127.0.0.1") -> str:
    """The value of a ``From:`` header (without the tag): ``"name" <sip:user@host>``."""
    name = quote_display_name(display_name) + " " if display_name else ""
    return f"{name}<sip:{user}@{host}>"


@dataclass(frozen=True)
class SipMessage:
    """One SIP message a SIPp phone sent or received, as it went over the wire."""

    direction: str  # "sent" or "received"
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\r\n", 1)[0].split("\n", 1)[0].strip()

    @property
    def method(self) -> str | None:
        """The request method (``INVITE``), or None for a response."""
        word = self.first_line.split(" ", 1)[0]
        return None if word.startswith("SIP/") else word

    @property
    def status(self) -> int | None:
        """The response code (``486``), or None for a request."""
        parts = self.first_line.split(" ", 2)
        if parts[0].startswith("SIP/") and len(parts) > 1 and parts[1].isdigit():
            return int(parts[1])
        return None

    def headers(self) -> list[tuple[str, str]]:
        """(name, value) pairs in order; folded lines joined with one space."""
        head = self.text.replace("\r\n", "\n").split("\n\n", 1)[0]
        pairs: list[tuple[str, str]] = []
        for line in head.split("\n")[1:]:
            if line[:1] in (" ", "\t") and pairs:
                name, value = pairs[-1]
                pairs[-1] = (name, value + " " + line.strip())
            elif ":" in line:
                name, value = line.split(":", 1)
                pairs.append((name.strip(), value.strip()))
        return pairs

    def header(self, name: str) -> str | None:
        """The first header ``name`` (case-insensitive; compact forms ``f``/``t`` too)."""
        compact = {"from": "f", "to": "t", "call-id": "i", "contact": "m", "via": "v",
                   "content-type": "c", "content-length": "l"}
        wanted = {name.lower(), compact.get(name.lower(), name.lower())}
        for key, value in self.headers():
            if key.lower() in wanted:
                return value
        return None

    @property
    def body(self) -> str:
        parts = self.text.replace("\r\n", "\n").split("\n\n", 1)
        return parts[1] if len(parts) > 1 else ""


def parse_message_log(text: str) -> list[SipMessage]:
    """The messages of a SIPp ``-trace_msg`` file, in order."""
    messages: list[SipMessage] = []
    for block in ("\n" + text).split("\n----------------------------------------------- ")[1:]:
        lines = block.split("\n")
        # lines[0]: the time stamp; lines[1]: "UDP message sent (N bytes):" or "received".
        kind = lines[1] if len(lines) > 1 else ""
        direction = "sent" if " sent " in kind else "received" if "received" in kind else ""
        if not direction:
            continue
        body = "\n".join(lines[2:]).strip("\n")
        messages.append(SipMessage(direction, body.replace("\n", "\r\n")))
    return messages


# -- scenarios --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pause:
    """Wait ``ms`` milliseconds (RTP being played goes on meanwhile)."""

    ms: int


@dataclass(frozen=True)
class Dtmf:
    """Press ``key`` (0-9, ``*``, ``#``) as RFC 2833 telephone-events in the RTP stream
    (about 140 ms; the pcap files the package ships)."""

    key: str

    def __post_init__(self) -> None:
        if self.key not in _DTMF_FILES:
            raise ValueError(f"no RFC 2833 recording for key {self.key!r}")


@dataclass(frozen=True)
class InfoDtmf:
    """Press a key by SIP INFO (``application/dtmf-relay``); ``signal`` is sent as it is."""

    signal: str


@dataclass(frozen=True)
class Speak:
    """Send ``g711a.pcap`` (7 s of speech, PCMA) as RTP; it plays while later steps run."""

    pcap: Path = SPEECH_PCAP


Step = Pause | Dtmf | InfoDtmf | Speak

_HEAD = '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="{name}">\n'
_VIA = "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]"
_SDP = (
    "v=0\n"
    "o=sipp 53655765 2353687637 IN IP[local_ip_type] [local_ip]\n"
    "s=-\n"
    "c=IN IP[media_ip_type] [media_ip]\n"
    "t=0 0\n"
    "m=audio [media_port] RTP/AVP 8 101\n"
    "a=rtpmap:8 PCMA/8000\n"
    "a=rtpmap:101 telephone-event/8000\n"
    "a=fmtp:101 0-15\n"
    "a=ptime:30\n"  # g711a.pcap carries 30 ms frames
)


def _send(message: str, retrans: bool = False) -> str:
    attrs = ' retrans="500"' if retrans else ""
    return f"<send{attrs}><![CDATA[\n{message.strip()}\n\n]]></send>\n"


def _recv(what: str, optional: bool = False, timeout_ms: int | None = None,
          extra: str = "") -> str:
    kind = "response" if what.isdigit() else "request"
    attrs = f' {kind}="{what}"'
    attrs += ' optional="true"' if optional else ""
    attrs += f' timeout="{timeout_ms}"' if timeout_ms else ""
    return f"<recv{attrs}{extra}/>\n"


def _in_dialog(method: str, cseq: int, body_type: str = "", body: str = "") -> str:
    """A request of ours inside the dialog the INVITE made (we are the caller)."""
    content = f"Content-Type: {body_type}\n" if body_type else ""
    return _send(
        f"{method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n{_VIA}\n"
        "[last_From:]\n[last_To:]\nCall-ID: [call_id]\n"
        f"CSeq: {cseq} {method}\nContact: <sip:sipp@[local_ip]:[local_port]>\n"
        f"Max-Forwards: 70\n{content}Content-Length: [len]\n\n{body}", retrans=True)


def _steps_xml(steps: Sequence[Step]) -> tuple[str, int]:
    parts: list[str] = []
    cseq = 2
    for step in steps:
        if isinstance(step, Pause):
            parts.append(f'<pause milliseconds="{int(step.ms)}"/>\n')
        elif isinstance(step, Dtmf):
            parts.append(f'<nop><action><exec play_pcap_audio="{PCAP_DIR / _DTMF_FILES[step.key]}"'
                         "/></action></nop>\n")
        elif isinstance(step, Speak):
            parts.append(f'<nop><action><exec play_pcap_audio="{step.pcap}"/></action></nop>\n')
        else:
            body = f"Signal=[fsr_info_{cseq}]\nDuration=160\n"
            parts.append(_in_dialog("INFO", cseq, "application/dtmf-relay", body))
            parts.append(_recv("200", timeout_ms=10000))
            cseq += 1
    return "".join(parts), cseq


def info_keys(steps: Sequence[Step]) -> dict[str, str]:
    """The ``-keys`` that carry the INFO signals of ``steps`` (they may be any text)."""
    keys = {}
    cseq = 2
    for step in steps:
        if isinstance(step, InfoDtmf):
            keys[f"fsr_info_{cseq}"] = step.signal
            cseq += 1
    return keys


def caller_scenario(steps: Sequence[Step] = (), end: str = "bye",
                    finals: Sequence[int] = (486,), answer_timeout_ms: int = 30000,
                    bye_timeout_ms: int = 60000) -> str:
    """A caller: INVITE ``[service]`` with From ``[fsr_from]``; what follows depends on ``end``.

    - ``"bye"``: answered (200), ACK, the ``steps``, then we hang up (BYE).
    - ``"wait_bye"``: answered, ACK, the ``steps``, then the far end hangs up (we get BYE).
    - ``"rejected"``: early media may come (183), then one of the final error responses
      ``finals``, which we ACK (an answer fails the run).
    Provisional responses (100, 180, 183) are optional in every case.
    """
    invite = _send(
        f"INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n{_VIA}\n"
        "From: [fsr_from];tag=[pid]SIPpTag00[call_number]\n"
        "To: <sip:[service]@[remote_ip]:[remote_port]>\nCall-ID: [call_id]\n"
        "CSeq: 1 INVITE\nContact: <sip:sipp@[local_ip]:[local_port]>\nMax-Forwards: 70\n"
        "User-Agent: fsrouter-test-sipp\nContent-Type: application/sdp\n"
        f"Content-Length: [len]\n\n{_SDP}", retrans=True)
    early = "".join(_recv(code, optional=True) for code in ("100", "180", "183", "180"))
    body = _HEAD.format(name=f"fsrouter caller ({end})") + invite + early
    if end == "rejected":
        codes = [str(int(code)) for code in finals]
        for code in codes[:-1]:
            body += _recv(code, optional=True, extra=' next="final"')
        body += _recv(codes[-1], timeout_ms=answer_timeout_ms)
        body += '<label id="final"/>\n' + _ack_error()
        return body + "</scenario>\n"
    ack = _send(
        f"ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n{_VIA}\n"
        "[last_From:]\n[last_To:]\nCall-ID: [call_id]\nCSeq: 1 ACK\n"
        "Contact: <sip:sipp@[local_ip]:[local_port]>\nMax-Forwards: 70\nContent-Length: 0")
    body += _recv("200", timeout_ms=answer_timeout_ms) + ack
    steps_xml, cseq = _steps_xml(steps)
    body += steps_xml
    if end == "bye":
        body += _in_dialog("BYE", cseq) + _recv("200", timeout_ms=10000)
    elif end == "wait_bye":
        body += _recv("BYE", timeout_ms=bye_timeout_ms) + _reply_200()
    else:
        raise ValueError(f"unknown end {end!r}")
    return body + "</scenario>\n"


def _reply_200() -> str:
    """``200 OK`` to the in-dialog request just received (BYE)."""
    return _send("SIP/2.0 200 OK\n[last_Via:]\n[last_From:]\n[last_To:]\n[last_Call-ID:]\n"
                 "[last_CSeq:]\nContent-Length: 0")


def _ack_error() -> str:
    """The ACK for a final error response: the INVITE's branch (``[last_Via:]``)."""
    return _send(
        "ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n[last_Via:]\n"
        "[last_From:]\n[last_To:]\nCall-ID: [call_id]\nCSeq: 1 ACK\n"
        "Contact: <sip:sipp@[local_ip]:[local_port]>\nMax-Forwards: 70\nContent-Length: 0")


def _register(cseq: int, expires: int, credentials: tuple[str, str] | None) -> str:
    # SIPp takes the credentials literally (no [keywords] inside [authentication]).
    authorization = ""
    if credentials is not None:
        user, password = (_sipp_literal(value) for value in credentials)
        authorization = f"[authentication username={user} password={password}]\n"
    return _send(
        f"REGISTER sip:[fsr_domain] SIP/2.0\n{_VIA}\n"
        "From: <sip:[fsr_user]@[fsr_domain]>;tag=[pid]SIPpTag02[call_number]\n"
        "To: <sip:[fsr_user]@[fsr_domain]>\nCall-ID: [call_id]\n"
        f"CSeq: {cseq} REGISTER\nContact: <sip:[fsr_user]@[local_ip]:[fsr_contact_port]>\n"
        f"Expires: {expires}\nMax-Forwards: 70\nUser-Agent: fsrouter-test-sipp\n"
        f"{authorization}Content-Length: 0", retrans=True)


def register_scenario(user: str, password: str, expires: int = 120) -> str:
    """REGISTER ``[fsr_user]@[fsr_domain]`` with contact port ``[fsr_contact_port]`` (where
    the phone's :func:`agent_scenario` listens), answering the digest challenge as
    ``user``/``password``. ``expires=0`` unregisters."""
    return (_HEAD.format(name=f"fsrouter register ({expires})")
            + _register(1, expires, None) + _recv("401", extra=' auth="true"')
            + _register(2, expires, (user, password)) + _recv("200") + "</scenario>\n")


def _sipp_literal(value: str) -> str:
    if not value or any(char in value for char in " []<>&\"\r\n"):
        raise ValueError(f"{value!r} cannot be written into a SIPp scenario as it is")
    return value


# What the phone keeps from the INVITE: the To it sent (ours, without tag yet) and, to hang
# up later, the switch's contact and its From (with tag: our To of the BYE). SIPp refuses a
# scenario that stores a variable it never uses, so the last two only for an answer.
_KEEP_TO = '<ereg regexp="[^ \t].*" search_in="hdr" header="To:" assign_to="fsr_local"/>'
_KEEP_FOR_BYE = (
    '<ereg regexp="sip:[^>;]*" search_in="hdr" header="Contact:" assign_to="fsr_contact"/>'
    # Only the URI and tag of the switch's From (the first tagged URI of an INVITE): its
    # display name is the caller's, maybe folded over lines (SIPp reads a header's first line
    # only) or full of quotes, and has no place in our BYE.
    '<ereg regexp="&lt;sip:[^&lt;>]*>;tag=[A-Za-z0-9._~+-]+" search_in="msg" '
    'assign_to="fsr_remote"/>')


def agent_scenario(answer: int = 200, ring_ms: int = 300, talk_ms: int = 1500) -> str:
    """A SIP phone (SIPp in server mode): one INVITE, rings ``ring_ms``, then answers (200:
    sends speech, talks ``talk_ms``, hangs up with BYE) or rejects with ``answer`` (486 busy,
    480, 603 ...). Register it first with :func:`register_scenario` (see :class:`SipPhone`).
    """
    to_tag = "[$fsr_local];tag=[pid]SIPpTag01[call_number]"
    provisional = _send(
        f"SIP/2.0 180 Ringing\n[last_Via:]\n[last_From:]\nTo: {to_tag}\n[last_Call-ID:]\n"
        "[last_CSeq:]\nContact: <sip:[fsr_user]@[local_ip]:[local_port]>\nContent-Length: 0")
    parts = [
        _HEAD.format(name=f"fsrouter agent phone ({answer})"),
        f'<recv request="INVITE"><action>{_KEEP_TO}{_KEEP_FOR_BYE if answer == 200 else ""}'
        '</action></recv>\n',
        provisional,
        f'<pause milliseconds="{int(ring_ms)}"/>\n',
    ]
    if answer == 200:
        parts += [
            _send(f"SIP/2.0 200 OK\n[last_Via:]\n[last_From:]\nTo: {to_tag}\n"
                  "[last_Call-ID:]\n[last_CSeq:]\n"
                  "Contact: <sip:[fsr_user]@[local_ip]:[local_port]>\n"
                  f"Content-Type: application/sdp\nContent-Length: [len]\n\n{_SDP}",
                  retrans=True),
            _recv("ACK", timeout_ms=10000),
            f'<nop><action><exec play_pcap_audio="{SPEECH_PCAP}"/></action></nop>\n',
            f'<pause milliseconds="{int(talk_ms)}"/>\n',
            _send(f"BYE [$fsr_contact] SIP/2.0\n{_VIA}\nFrom: {to_tag}\nTo: [$fsr_remote]\n"
                  "Call-ID: [call_id]\nCSeq: 1 BYE\n"
                  "Contact: <sip:[fsr_user]@[local_ip]:[local_port]>\nMax-Forwards: 70\n"
                  "Content-Length: 0", retrans=True),
            _recv("200", timeout_ms=10000),
        ]
    else:
        parts += [
            _send(f"SIP/2.0 {int(answer)} Rejected\n[last_Via:]\n[last_From:]\nTo: {to_tag}\n"
                  "[last_Call-ID:]\n[last_CSeq:]\nContent-Length: 0", retrans=True),
            _recv("ACK", timeout_ms=10000),
        ]
    return "".join(parts) + "</scenario>\n"


# -- running ----------------------------------------------------------------------------------


def free_udp_port(pair: bool = False) -> int:
    """A UDP port free on 127.0.0.1 right now (the kernel picks it); ``pair``: an even port
    whose port + 2 is free too (SIPp's media sockets: audio and video)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            if not pair:
                return port
            if port % 2 or port + 2 > 65535:
                continue
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                    other.bind(("127.0.0.1", port + 2))
            except OSError:
                continue
            return port
    raise SippError("no free UDP port on 127.0.0.1")


def udp_ports_in_use() -> set[int]:
    """Local UDP ports bound on this host right now (from /proc/net/udp, without binding:
    a probe that binds would itself take the port from the process starting up)."""
    ports: set[int] = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 1 and ":" in fields[1]:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class SippRun:
    """One SIPp process running one scenario for one call, with its message log.

    ``remote`` is the switch's SIP port (client scenarios); ``port`` the local SIP port
    (a server scenario needs one known in advance; otherwise a free one is picked).
    ``keys`` become ``-key name value`` (used as ``[name]`` in the scenario).
    """

    def __init__(self, name: str, scenario: str, workdir: Path, remote: int | None = None,
                 *, port: int | None = None, service: str = "sipp",
                 keys: Mapping[str, str] | None = None, timeout_s: float = 60.0) -> None:
        self.name = name
        self.workdir = Path(workdir) / f"sipp-{name}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.scenario_path = self.workdir / "scenario.xml"
        self.scenario_path.write_text(scenario, encoding="utf-8")
        self.message_path = self.workdir / "messages.log"
        self.error_path = self.workdir / "errors.log"
        self.output_path = self.workdir / "output.log"
        self.remote = remote
        self.port = port
        self.fixed_port = port  # a server's port, known to others; None: any free port
        self.control_port = 0
        self.service = service
        self.keys = dict(keys or {})
        self.timeout_s = timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self.media_port = 0
        self.started_at = 0.0

    def command(self) -> list[str]:
        """The command line, with ports picked now (see :meth:`start`)."""
        self.media_port = free_udp_port(pair=True)
        self.control_port = free_udp_port()
        # Never SIPp's own default (5060 when free): every run gets a port of its own.
        self.port = self.port or free_udp_port()
        cmd = [str(ensure_sipp()), "-sf", str(self.scenario_path), "-m", "1",
               "-i", "127.0.0.1", "-p", str(self.port), "-mi", "127.0.0.1",
               "-mp", str(self.media_port), "-cp", str(self.control_port), "-bind_local",
               "-nostdin", "-aa", "-trace_msg", "-message_file", str(self.message_path),
               "-trace_err", "-error_file", str(self.error_path),
               "-timeout", f"{int(self.timeout_s)}s", "-timeout_error", "-s", self.service]
        for key, value in self.keys.items():
            cmd += ["-key", key, value]
        if self.remote is not None:
            cmd.append(f"127.0.0.1:{int(self.remote)}")
        return cmd

    def start(self) -> SippRun:
        """Start SIPp; return once it holds its ports (or has already finished).

        The ports are free when picked, but another process may take one before SIPp binds
        it (the kernel hands a just-released port out again). SIPp then exits at once with
        254 ("fatal error binding a socket"): it is started again on new ports.
        """
        for _ in range(_START_TRIES):
            with open(self.output_path, "wb") as out:
                self.process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                                stdout=out, stderr=subprocess.STDOUT,
                                                cwd=self.workdir, start_new_session=True)
            self.started_at = time.monotonic()
            if self._bound_or_done():
                log.info("sipp.started", name=self.name, pid=self.process.pid, port=self.port)
                return self
            log.warning("sipp.port_taken", name=self.name, port=self.port)
            if self.fixed_port is None:
                self.port = None
            else:
                self.port = self.fixed_port = free_udp_port()  # the caller reads .port
        raise SippError(f"{self.name}: no free ports in {_START_TRIES} tries\n{self.report()}")

    def _bound_or_done(self, timeout: float = 10.0) -> bool:
        """False when SIPp could not bind a port; True once it holds all three, or ended
        otherwise (its exit code is for :meth:`wait` to report)."""
        assert self.process is not None
        ports = {self.port, self.media_port, self.control_port}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                return code != _EXIT_BIND_FAILED
            if ports <= udp_ports_in_use():
                return True
            gevent.sleep(0.005)
        return True  # still starting after 10 s: let the scenario's own timeouts judge

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        """SIPp's exit code: 0 when the call went as scripted, 1 when it failed."""
        if self.process is None:
            raise SippError(f"{self.name}: never started")
        limit = timeout if timeout is not None else self.timeout_s + 10
        deadline = time.monotonic() + limit
        # Polled, not Popen.wait(): the test's greenlets (event watchers) go on meanwhile.
        while (code := self.process.poll()) is None:
            if time.monotonic() > deadline:
                self.stop()
                raise SippError(f"{self.name}: still running after {limit} s\n{self.report()}")
            gevent.sleep(0.05)
        return code

    def check(self, timeout: float | None = None) -> SippRun:
        """Wait; raise :class:`SippError` with the logs unless the scenario succeeded."""
        code = self.wait(timeout)
        if code != 0:
            raise SippError(f"{self.name}: sipp exited {code}\n{self.report()}")
        return self

    def stop(self) -> None:
        """Kill it if it still runs (teardown)."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    @property
    def messages(self) -> list[SipMessage]:
        try:
            text = self.message_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return parse_message_log(text)

    def received(self, what: str | int) -> list[SipMessage]:
        """Received requests of method ``what`` or responses with status ``what``."""
        return [m for m in self.messages if m.direction == "received"
                and (m.method == what or m.status == what)]

    def received_statuses(self) -> list[int]:
        return [m.status for m in self.messages
                if m.direction == "received" and m.status is not None]

    def report(self) -> str:
        """The tail of SIPp's errors and message log, for a failure message."""
        parts = []
        for path in (self.error_path, self.message_path):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                continue
            parts.append(f"--- {path.name}\n{text[-3000:]}")
        try:
            output = self.output_path.read_text(encoding="utf-8", errors="replace")
            parts.append(f"--- output\n{output[-1500:]}")
        except FileNotFoundError:
            pass
        return "\n".join(parts)


class SipPhone:
    """A registered SIP phone: a SIPp UAS on its own port, REGISTERed as ``user@domain``.

    ``start()`` starts the UAS and registers it (digest auth); ``close()`` unregisters and
    stops it. ``call`` is the UAS run: its messages say what INVITE arrived.
    """

    def __init__(self, name: str, workdir: Path, switch_port: int, user: str, password: str,
                 domain: str, answer: int = 200, ring_ms: int = 300, talk_ms: int = 1500,
                 timeout_s: float = 60.0) -> None:
        self.name = name
        self.workdir = Path(workdir)
        self.switch_port = switch_port
        self.keys = {"fsr_user": user, "fsr_password": password, "fsr_domain": domain}
        self.call = SippRun(name, agent_scenario(answer, ring_ms, talk_ms), self.workdir,
                            port=free_udp_port(), keys=self.keys, timeout_s=timeout_s)
        self.registered = False

    def start(self) -> SipPhone:
        self.call.start()
        self._register(120, "register")
        self.registered = True
        return self

    def _register(self, expires: int, label: str) -> None:
        keys = {**self.keys, "fsr_contact_port": str(self.call.port)}
        user, password = self.keys["fsr_user"], self.keys["fsr_password"]
        run = SippRun(f"{self.name}-{label}", register_scenario(user, password, expires),
                      self.workdir,
                      self.switch_port, keys=keys, timeout_s=15)
        run.start().check()

    def invites(self) -> list[SipMessage]:
        return self.call.received("INVITE")

    def close(self) -> None:
        """Unregister (best effort) and stop the UAS."""
        try:
            if self.registered:
                self._register(0, "unregister")
                self.registered = False
        except SippError as error:
            log.warning("sipp.unregister_failed", phone=self.name, error=str(error)[:300])
        finally:
            self.call.stop()

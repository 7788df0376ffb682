"""Caller names intact and harmless on the real switch (issue 12.5).

A corpus of real caller-name shapes (CNAM listings: ``CINCINNATI, OH``, ``Wood's Homes``;
names with quotes, commas, umlauts, ``&``) and of attacks on each parser on the way (``|``,
``^^:``, ``{}``, ``[]``, ``%[``, ``${system(touch <file>)}``, 300 characters, bytes that are
not UTF-8) goes through the hotline menu, the queue (fsrouter's own originate), the agent
route (``bridge``), the voicemail mail and the webhook. Checked on the switch: the agent leg
carries no variable a plain name does not give it (``uuid_dump``), the phone shows the name
byte-exact (the documented replacements aside), nothing is executed; and in the mail and
the webhook body the name is what the caller sent.

The shipped ``freeswitch_conf/`` adds a second wall (api-expansion off, the shell commands
off, ``app_disable_expand_variables``). The last test takes all of it away on a switch of its
own, shows the hole is then open (``${system(...)}`` runs), and that the first wall
(fsrouter.esl.escape, no caller text in any argument) holds by itself.
"""

from __future__ import annotations

import os
import re
import uuid as uuidlib
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import gevent
import gevent.socket
import pytest

from fsrouter.esl.escape import PAD_VARIABLE
from fsrouter.notify.mail import NAME_LIMIT
from fsrouter.store.queries import clean_caller_text
from fsrouter.testing import realswitch
from fsrouter.testing.realswitch import RealSwitch, find_freeswitch
from tests.notify.servers import HookServer, SmtpServer
from tests.reliability.conftest import (
    AGENT_NUMBER,
    HOTLINE,
    QUEUE_NUMBER,
    VOICEMAIL_NUMBER,
    SwitchDaemon,
    full_config,
    sip,
    wait_for,
)

LEGITIMATE = ["CINCINNATI, OH", "Wood's Homes", "Müller, Jörg", "O'Brien & Söhne"]
SHAPES = ["|", "^^:", "{}", "[]", "%[", "${system(touch {pwned})}", "L" * 300]
NOT_UTF8 = b"M\xfcller \xff\xfe"  # a Latin-1 PBX's "Müller" and two stray bytes
PLAIN = "Plain Name"
# What the daemon itself adds to a leg besides what a plain name gives it: escape.py's
# padding variables (unbalanced brackets are balanced with them).
OURS = {f"variable_{PAD_VARIABLE}"}


def corpus(tmp_path: Path) -> list[str | bytes]:
    pwned = str(tmp_path / "pwned")
    return [*LEGITIMATE, *[s.replace("{pwned}", pwned) for s in SHAPES], NOT_UTF8]


def as_text(name: str | bytes) -> str:
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name


def shown(name: str | bytes) -> str:
    """What the phone must show: the name itself; invalid UTF-8 as U+FFFD; ``${`` as
    ``＄{`` (escape.py's documented replacement: the switch would expand it later)."""
    text = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
    return text.replace("${", "\uff04{")


def place(switch: RealSwitch, number: str, name: str | bytes) -> str:
    """A caller with this name; bytes go over a raw event socket (not UTF-8 on purpose)."""
    if isinstance(name, str):
        return switch.place_call(number, "+4915112345678", name, uuid=str(uuidlib.uuid4()))
    uuid = str(uuidlib.uuid4())
    quoted = b"'" + name.replace(b"'", b"\\'").replace(b",", b"\\,") + b"'"
    command = (f"bgapi originate {{origination_uuid={uuid},origination_caller_id_number="
               f"+4915112345678,origination_caller_id_name=").encode() + quoted + \
        f"}}loopback/{number}/public &park()\n\n".encode()
    host, port, password = switch.esl_endpoint()
    with gevent.socket.create_connection((host, port), timeout=10) as sock:
        sock.recv(1024)
        sock.sendall(f"auth {password}\n\n".encode())
        assert b"+OK" in sock.recv(1024)
        sock.sendall(command)
        assert b"+OK" in sock.recv(1024)
    return uuid


def dump(switch: RealSwitch, uuid: str) -> dict[str, str]:
    data = realswitch.json.loads(switch.api(f"uuid_dump {uuid} json"))
    assert isinstance(data, dict), data
    return data


def ringing_legs(run: SwitchDaemon, switch: RealSwitch, callers: list[str]
                 ) -> list[tuple[dict[str, str], dict[str, str]]]:
    """(our leg, the phone's leg) for each caller's first attempt, while it rings."""
    legs = []
    for caller in callers:
        call = run.daemon_leg(caller)
        [attempt] = wait_for(lambda c=call: run.rows(
            "SELECT leg_uuid FROM attempts a JOIN call_records r ON a.call_id = r.id "
            "WHERE r.call_uuid = ? ORDER BY a.seq LIMIT 1", c), 15, "the agent leg")
        ours = wait_for(lambda a=attempt: _dump_or_none(switch, a["leg_uuid"]), 10,
                        "the agent leg on the switch (both halves)")
        phone = dump(switch, ours["variable_other_loopback_leg_uuid"])
        legs.append((ours, phone))
    return legs


def _dump_or_none(switch: RealSwitch, uuid: str) -> dict[str, str] | None:
    """The leg once the switch has made its loopback partner (the phone's side) too."""
    reply = switch.api(f"uuid_dump {uuid} json")
    data = realswitch.json.loads(reply) if reply.startswith("{") else None
    return data if data and "variable_other_loopback_leg_uuid" in data else None


def variables(leg: dict[str, str]) -> set[str]:
    return {key for key in leg if key.startswith("variable_")}


def through(run: SwitchDaemon, switch: RealSwitch, number: str, names: list[Any],
            digits: str = "") -> list[tuple[dict[str, str], dict[str, str]]]:
    """Every name (and a plain one first) to ``number``; the ringing legs; then hang up.

    The hotline rings its on-call person for every caller at once; an agent or a queue's
    agent takes one caller at a time (busy meanwhile), so those calls go one by one."""
    if digits:
        return _at_once(run, switch, number, [PLAIN, *names], digits)
    return [leg for name in [PLAIN, *names]
            for leg in _at_once(run, switch, number, [name], digits)]


def _at_once(run: SwitchDaemon, switch: RealSwitch, number: str, names: list[Any],
             digits: str) -> list[tuple[dict[str, str], dict[str, str]]]:
    callers = [place(switch, number, name) for name in names]
    if digits:
        gevent.sleep(1.0)  # the menu is playing
        for caller in callers:
            switch.send_dtmf(caller, digits)
    try:
        return ringing_legs(run, switch, callers)
    finally:
        for caller in callers:
            switch.hangup(caller)
        wait_for(lambda: not run.rows("SELECT id FROM call_records WHERE ended_at IS NULL")
                 and not run.busy("alice") and not run.busy("bob"), 20, "every record final")


def check_legs(legs: list[tuple[dict[str, str], dict[str, str]]], names: list[Any],
               prefix: str = "", copied: bool = False) -> None:
    """``copied``: ``bridge`` (the switch copies the caller's ID itself, fsrouter passes no
    caller text), so the name arrives as sent; otherwise through escape.py."""
    (plain, _), rest = legs[0], legs[1:]
    allowed = variables(plain) | OURS
    for name, (ours, phone) in zip(names, rest, strict=True):
        assert variables(ours) <= allowed, (name, sorted(variables(ours) - allowed))
        expected = as_text(name) if copied else shown(name)
        assert phone.get("Caller-Caller-ID-Name", "") == prefix + expected, (
            name, phone.get("Caller-Caller-ID-Name"))
        for key in ("variable_execute_on_answer", "variable_api_on_answer", "variable_fsr_z"):
            assert key not in ours
        shown_at_phone = phone.get("Caller-Caller-ID-Name", "")
        print(f"  sent {as_text(name)[:40]!r} -> phone shows {shown_at_phone[:48]!r}"
              f" ({len(variables(ours))} variables, none extra)")


@pytest.fixture
def hostile_run(switch_daemon, tmp_path):
    config = full_config(tmp_path, {"olga": realswitch_phone("noanswer", 92)},
                         agent_phone=sip("noanswer", 0, 93), queue_phone=sip("noanswer", 0, 94))
    run = switch_daemon(config)
    run.login("alice", "bob")
    return run


def realswitch_phone(behaviour: str, n: int) -> str:
    from fsrouter.testing.phones import phone_number

    return phone_number(behaviour, 0, n)


ROUTES = [(QUEUE_NUMBER, "", "", False), (AGENT_NUMBER, "", "", True),
          (HOTLINE, "1", "Datenbank - ", False)]


@pytest.mark.parametrize(("number", "digits", "prefix", "copied"), ROUTES,
                         ids=["queue-originate", "agent-bridge", "hotline-menu"])
def test_names_reach_the_phone_exact_and_set_nothing(hostile_run, real_switch, tmp_path,
                                                     number, digits, prefix, copied):
    names = corpus(tmp_path)
    legs = through(hostile_run, real_switch, number, names, digits)
    check_legs(legs, names, prefix, copied)
    assert not (tmp_path / "pwned").exists()
    rows = {r["caller_name"] for r in hostile_run.rows("SELECT caller_name FROM call_records")}
    for name in LEGITIMATE:
        assert name in rows  # stored byte-exact too


def test_names_in_the_voicemail_mail_and_the_webhook(switch_daemon, real_switch, tmp_path):
    smtp, hooks = SmtpServer().start(), HookServer().start()
    try:
        config = full_config(tmp_path, {"olga": realswitch_phone("answer", 95)},
                             smtp={"host": "127.0.0.1", "port": smtp.port,
                                   "from": "fsr@example.test"},
                             webhooks=[{"url": hooks.url, "events": ["incident.created"]}])
        run = switch_daemon(config)
        names = corpus(tmp_path)
        mails = [place(real_switch, VOICEMAIL_NUMBER, name) for name in names]
        hotline = [place(real_switch, HOTLINE, name) for name in names]
        gevent.sleep(1.0)
        for caller in hotline:
            real_switch.send_dtmf(caller, "1")
        wait_for(lambda: len(run.rows("SELECT id FROM incidents")) == len(names), 20,
                 "every incident")
        wait_for(lambda: len(run.rows("SELECT id FROM call_records WHERE route_type = 'agent'"
                                      " AND call_uuid IN (SELECT call_uuid FROM call_records)"))
                 == len(names), 20, "every voicemail call")
        gevent.sleep(1.5)  # recording
        for caller in mails + hotline:
            real_switch.hangup(caller)
        wait_for(lambda: len(smtp.handler.messages) == len(names), 30, "every mail")
        wait_for(lambda: len(hooks.received) == len(names), 30, "every webhook")
    finally:
        smtp.stop()
        hooks.stop()
    texts = [_mail_text(raw) for raw in smtp.handler.messages]
    for name in names:
        expected = as_text(name)  # the mail is no argument: nothing to replace
        if len(expected) > NAME_LIMIT:  # absurd lengths are cut there, visibly
            expected = expected[:NAME_LIMIT - 5]
        assert any(expected in text for text in texts), (name, [t[:200] for t in texts])
    shown_names = [r.document["data"]["caller_name"] for r in hooks.received]
    for name in names:
        text = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
        assert clean_caller_text(text) in shown_names, (name, shown_names)
    assert not (tmp_path / "pwned").exists()


def _mail_text(raw: bytes) -> str:
    message = message_from_bytes(raw, policy=policy.default)
    body = message.get_body(("plain",))
    return str(message["Subject"]) + "\n" + (body.get_content() if body is not None else "")


# -- the first wall alone ---------------------------------------------------------------------


def without_second_wall(conf_dir: Path) -> None:
    """Take the shipped hardening out of a written test config (``RealSwitch`` overlays the
    shipped files into ``conf/fsrouter/``; switch.conf's params are inline)."""
    main = conf_dir / "freeswitch.xml"
    text = main.read_text("utf-8")
    text = re.sub(r'name="api-expansion" value="false"', 'name="api-expansion" value="true"',
                  text)
    main.write_text(text, "utf-8")
    variables_file = conf_dir / "fsrouter" / "vars.fsrouter.xml"
    lines = [line for line in variables_file.read_text("utf-8").splitlines()
             if "disable_system_" not in line or "X-PRE-PROCESS" not in line]
    variables_file.write_text("\n".join(lines), "utf-8")
    dialplan = conf_dir / "fsrouter" / "dialplan" / "fsrouter.xml"
    text = dialplan.read_text("utf-8")
    text = re.sub(r'<action application="set" data="app_disable_expand_variables=true"/>',
                  "", text)
    dialplan.write_text(text, "utf-8")


@pytest.fixture
def open_switch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    if find_freeswitch() is None:
        if os.environ.get("CI"):
            pytest.fail("real FreeSWITCH required when CI is set")
        pytest.skip("no FreeSWITCH found")
    original = realswitch.write_config

    def write(conf_dir: Path, *args: Any, **kwargs: Any) -> Path:
        path = original(conf_dir, *args, **kwargs)
        without_second_wall(conf_dir)
        return path

    monkeypatch.setattr(realswitch, "write_config", write)
    switch = RealSwitch(tmp_path / "open-fs")
    switch.start()
    try:
        yield switch
    finally:
        switch.stop(grace=0)


def test_the_first_wall_holds_without_the_second(open_switch, tmp_path, capture_logs):
    switch = open_switch
    probe = tmp_path / "probe"
    # The second wall is really down here: the switch runs ${system(...)} while expanding.
    switch.api(f"expand log INFO ${{system(touch {probe})}}")
    assert wait_for(probe.exists, 5, "the hole to be open")
    config = full_config(tmp_path, {"olga": realswitch_phone("noanswer", 96)},
                         agent_phone=sip("noanswer", 0, 97), queue_phone=sip("noanswer", 0, 98))
    run = SwitchDaemon(tmp_path, switch, config, logs=capture_logs).start()
    try:
        run.login("alice", "bob")
        names = corpus(tmp_path)
        for number, digits, prefix, copied in ROUTES:
            check_legs(through(run, switch, number, names, digits), names, prefix, copied)
        gevent.sleep(0.5)
    finally:
        run.stop()
    assert not (tmp_path / "pwned").exists()  # nothing ran, with every other wall down

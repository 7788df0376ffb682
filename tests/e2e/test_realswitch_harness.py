"""The real-FreeSWITCH harness and the shipped freeswitch_conf/ snippets, on the real switch."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import unquote

import pytest

from fsrouter.testing.realswitch import (
    REPO_ROOT,
    SHIPPED_CONF,
    RealSwitch,
    find_freeswitch,
    quote_originate_value,
)

HOSTILE_NAME = "O'Brien, Jörg & Söhne ${system(touch %s)} a^^:b,c [y] %%[z=1] {x} | \"q\";:"


# -- the shipped files ----------------------------------------------------------------------


def _shipped_xml() -> list[Path]:
    return sorted(SHIPPED_CONF.rglob("*.xml"))


def test_shipped_files_exist():
    names = {p.relative_to(SHIPPED_CONF).as_posix() for p in _shipped_xml()}
    assert {
        "dialplan/fsrouter.xml",
        "autoload_configs/event_socket.conf.xml",
        "autoload_configs/fifo.conf.xml",
        "autoload_configs/switch.conf.xml",
        "autoload_configs/modules.conf.xml",
        "autoload_configs/voicemail.conf.xml",
        "vars.fsrouter.xml",
    } <= names
    assert (SHIPPED_CONF / "README.md").is_file()


@pytest.mark.parametrize("path", _shipped_xml(), ids=lambda p: p.name)
def test_shipped_xml_is_well_formed_and_has_no_hidden_preprocess(path: Path):
    root = ET.parse(path).getroot()
    # FreeSWITCH's pre-processor acts on its tags even inside comments: every one in the text
    # must be a real element, or a comment would silently include or set something.
    in_text = len(re.findall(r"<X-PRE-PROCESS", path.read_text(encoding="utf-8")))
    assert in_text == len(root.findall(".//X-PRE-PROCESS"))


def _params(path: Path) -> dict[str, str]:
    root = ET.parse(path).getroot()
    return {p.get("name"): p.get("value") for p in root.iter("param")}


def test_event_socket_is_loopback_with_a_placeholder_password():
    params = _params(SHIPPED_CONF / "autoload_configs/event_socket.conf.xml")
    assert params["listen-ip"] == "127.0.0.1"
    assert params["listen-port"] == "8021"
    assert params["password"] == "CHANGE-ME"
    assert params["apply-inbound-acl"] == "loopback.auto"


def test_fifo_conf_has_no_members():
    root = ET.parse(SHIPPED_CONF / "autoload_configs/fifo.conf.xml").getroot()
    assert root.findall(".//member") == []
    assert root.findall(".//fifo") == []


def test_dialplan_sends_to_8084_after_disabling_expansion_then_falls_back():
    actions = [
        (a.tag, a.get("application"), a.get("data"))
        for a in ET.parse(SHIPPED_CONF / "dialplan/fsrouter.xml").getroot().iter()
        if a.tag in ("action", "anti-action")
    ]
    apps = [app for _tag, app, _data in actions]
    assert apps[0] == "set" and actions[0][2] == "app_disable_expand_variables=true"
    assert ("anti-action", "socket", "127.0.0.1:8084 async full") in actions
    assert apps[-1] == "hangup" and actions[-1][2] == "NORMAL_TEMPORARY_FAILURE"
    assert apps.index("playback") > max(i for i, app in enumerate(apps) if app == "socket")


# -- quoting (no switch needed) -------------------------------------------------------------


def test_quote_originate_value_escapes_quote_and_comma():
    assert quote_originate_value("O'Brien, Jörg") == "'O\\'Brien\\, Jörg'"


def test_quote_originate_value_keeps_balanced_braces():
    assert quote_originate_value("${x} {a {b}}") == "'${x} {a {b}}'"


@pytest.mark.parametrize("bad", ["a}b", "{x", "}{", "a\nb", "a\rb", "a\\b", "a\x00b"])
def test_quote_originate_value_refuses_what_cannot_pass(bad: str):
    with pytest.raises(ValueError):
        quote_originate_value(bad, "caller name")


# -- the switch itself ----------------------------------------------------------------------


def _processes_using(path: Path) -> list[int]:
    """Pids whose command line mentions ``path`` (a leftover switch would)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if str(path).encode() in cmdline:
            found.append(int(entry.name))
    return found


def test_second_switch_is_ready_fast_and_stop_leaves_no_process(real_switch, tmp_path):
    # The session switch has cached the certificates, so this start skips making them.
    switch = RealSwitch(tmp_path / "fs2")
    switch.start()
    try:
        assert switch.ready_seconds is not None and switch.ready_seconds < 5
        assert "is ready" in switch.api("status")
        host, port, password = switch.esl_endpoint()
        with socket.create_connection((host, port), timeout=5) as raw:
            assert b"auth/request" in raw.recv(1024)
            raw.sendall(f"auth {password}\n\n".encode())
            assert b"+OK accepted" in raw.recv(1024)
        pid = switch.pid
        assert pid is not None and _processes_using(switch.workdir)
    finally:
        began = time.monotonic()
        switch.stop()
    assert time.monotonic() - began < 5
    assert switch.process is not None and switch.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert _processes_using(switch.workdir) == []


def test_hardening_from_the_shipped_files_is_active(real_switch):
    # vars.fsrouter.xml: no shell from the API.
    assert "Command not found" in real_switch.api("system echo hi")
    # switch.conf.xml api-expansion=false: ${md5(...)} is not run while expanding.
    assert "5d41402abc4b2a76b9719d911017c592" not in real_switch.api("eval ${md5(hello)}")


# -- scripted phones ------------------------------------------------------------------------


def _timed(real_switch, destination: str, timeout_s: int = 5, **variables: str):
    began = time.monotonic()
    call = real_switch.phone(destination, timeout_s=timeout_s, variables=variables or None)
    result = call.result(timeout_s + 5)
    return call, result, time.monotonic() - began


def test_phone_answer_after_delay_stays_until_hung_up(real_switch, fresh_id):
    call, result, took = _timed(real_switch, f"answer-300-{fresh_id}")
    assert result == f"+OK {call.uuid}"
    assert 0.25 <= took < 2
    time.sleep(0.5)
    assert real_switch.api(f"uuid_exists {call.uuid}").strip() == "true"
    real_switch.hangup(call.uuid)
    assert real_switch.wait_hangup(call.uuid).get("Hangup-Cause") == "NORMAL_CLEARING"


def test_phone_answer_with_talk_ms_hangs_up_itself(real_switch, fresh_id):
    call, result, _took = _timed(real_switch, f"answer-0-{fresh_id}", talk_ms="400")
    assert result == f"+OK {call.uuid}"
    answered = time.monotonic()
    hangup = real_switch.wait_hangup(call.uuid, timeout=5)
    assert 0.3 <= time.monotonic() - answered < 2
    assert hangup.get("Hangup-Cause") == "NORMAL_CLEARING"


def test_phone_noanswer_rings_until_the_timeout(real_switch, fresh_id):
    # originate_timeout counts whole wall-clock seconds: 2 s ends after 1 to 2 s.
    _call, result, took = _timed(real_switch, f"noanswer-{fresh_id}", timeout_s=2)
    assert result == "-ERR NO_ANSWER"
    assert 0.9 <= took < 3


@pytest.mark.parametrize(
    ("kind", "cause"), [("busy", "USER_BUSY"), ("gone", "UNALLOCATED_NUMBER")]
)
def test_phone_refuses_with_its_cause(real_switch, fresh_id, kind: str, cause: str):
    _call, result, took = _timed(real_switch, f"{kind}-{fresh_id}")
    assert result == f"-ERR {cause}"
    assert took < 1


def test_phone_press_sends_its_digit_after_answer(real_switch, fresh_id):
    call, result, took = _timed(real_switch, f"press-7-200-{fresh_id}")
    assert result == f"+OK {call.uuid}"
    assert 0.15 <= took < 2
    answered = time.monotonic()
    dtmf = real_switch.wait_event(call.uuid, "DTMF", timeout=5)
    assert dtmf.get("DTMF-Digit") == "7"
    assert time.monotonic() - answered < 2
    real_switch.hangup(call.uuid)


def test_phone_hangup_answers_then_hangs_up(real_switch, fresh_id):
    call, result, took = _timed(real_switch, f"hangup-300-{fresh_id}")
    assert result == f"+OK {call.uuid}"
    assert took < 0.3
    answered = time.monotonic()
    hangup = real_switch.wait_hangup(call.uuid, timeout=5)
    assert hangup.get("Hangup-Cause") == "NORMAL_CLEARING"
    assert 0.2 <= time.monotonic() - answered < 2


# -- calls into public ----------------------------------------------------------------------


def _read_frame(conn: socket.socket, buffer: bytearray) -> bytes:
    """One header block (up to the blank line); enough for a body-less command/reply."""
    while b"\n\n" not in buffer:
        data = conn.recv(65536)
        if not data:
            raise ConnectionError("switch closed the socket")
        buffer += data
    end = buffer.index(b"\n\n") + 2
    frame = bytes(buffer[:end])
    del buffer[:end]
    return frame


def _execute(conn: socket.socket, buffer: bytearray, app: str, arg: str) -> None:
    command = f"sendmsg\ncall-command: execute\nexecute-app-name: {app}\n"
    command += f"execute-app-arg: {arg}\nevent-lock: true\n\n"
    conn.sendall(command.encode())
    assert _headers(_read_frame(conn, buffer))["Reply-Text"].startswith("+OK")


def _headers(frame: bytes) -> dict[str, str]:
    lines = frame.decode("utf-8").strip().split("\n")
    return {k: unquote(v.strip()) for k, _sep, v in (line.partition(":") for line in lines)}


def _eventually(check, timeout: float = 3.0) -> bool:
    """``show channels`` reads the core database, which trails the switch by a moment."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def listener():
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(10)
        yield server


def test_public_call_reaches_the_daemon_with_exact_caller_id(
    real_switch, fresh_id, listener, tmp_path
):
    real_switch.route_to(listener.getsockname()[1])
    number = "49301" + re.sub(r"\D", "", fresh_id)[:8].ljust(4, "0")
    marker = tmp_path / "pwned"
    name = HOSTILE_NAME % marker
    caller = real_switch.place_call(number, "+4915112345678", name)
    conn, _addr = listener.accept()
    with conn:
        conn.settimeout(10)
        buffer = bytearray()
        conn.sendall(b"connect\n\n")
        channel = _headers(_read_frame(conn, buffer))
        assert channel["Content-Type"] == "command/reply"
        assert channel["Reply-Text"] == "+OK\n" or channel["Reply-Text"].startswith("+OK")
        assert channel["Socket-Mode"] == "async" and channel["Control"] == "full"
        assert channel["Caller-Destination-Number"] == number
        assert channel["Caller-Caller-ID-Name"] == name
        assert channel["Caller-Caller-ID-Number"] == "+4915112345678"
        assert channel["variable_app_disable_expand_variables"] == "true"
        assert _eventually(lambda: any(r["uuid"] == caller for r in real_switch.channels()))
        # app_disable_expand_variables (shipped dialplan): the core leaves ${...} in an app
        # argument alone, so `log` writes it literally.
        _execute(conn, buffer, "log", f"NOTICE probe-{fresh_id} ${{caller_id_name}}")
        literal = f"probe-{fresh_id} ${{caller_id_name}}"
        assert _eventually(lambda: literal in real_switch.log_text())
        # But `set` expands its own argument, recursively: the caller's ${system(...)} is
        # evaluated, and only api-expansion=false (shipped switch.conf) stops it running.
        _execute(conn, buffer, "set", "fsr_probe=${caller_id_name}")
        probe = f"uuid_getvar {channel['Unique-ID']} fsr_probe"
        assert _eventually(lambda: real_switch.api(probe) != "_undef_")
        value = real_switch.api(probe)
        assert "${system(" not in value and "Permission Denied" in value
        # The caller presses a key: it reaches the daemon's channel as a DTMF event.
        conn.sendall(b"myevents\n\n")
        assert _headers(_read_frame(conn, buffer))["Reply-Text"] == "+OK Events Enabled"
        real_switch.send_dtmf(caller, "5")
        deadline = time.monotonic() + 5
        while b"DTMF-Digit: 5" not in buffer and time.monotonic() < deadline:
            buffer += conn.recv(65536)
        assert b"DTMF-Digit: 5" in buffer
    # The daemon went away with the caller still there: the fallback ends the call.
    hangup = real_switch.wait_hangup(caller, timeout=10)
    assert hangup.get("Hangup-Cause") == "NORMAL_TEMPORARY_FAILURE"
    assert not marker.exists()


def test_public_call_with_no_daemon_gets_the_fallback_quickly(real_switch, fresh_id):
    with socket.create_server(("127.0.0.1", 0)) as server:
        closed_port = server.getsockname()[1]
    real_switch.route_to(closed_port)
    began = time.monotonic()
    caller = real_switch.place_call("4930" + "9" * 6, "+4915112345678", "Nobody Home")
    hangup = real_switch.wait_hangup(caller, timeout=10)
    assert hangup.get("Hangup-Cause") == "NORMAL_TEMPORARY_FAILURE"
    assert time.monotonic() - began < 3  # the SIT tone is about 0.9 s


def test_caller_hangup_reaches_the_daemon(real_switch, listener):
    real_switch.route_to(listener.getsockname()[1])
    caller = real_switch.place_call("4930777777", "+4915112345678")
    conn, _addr = listener.accept()
    with conn:
        conn.settimeout(10)
        buffer = bytearray()
        conn.sendall(b"connect\n\n")
        _read_frame(conn, buffer)
        conn.sendall(b"myevents\n\n")
        _read_frame(conn, buffer)
        assert real_switch.hangup(caller).startswith("+OK")
        deadline = time.monotonic() + 5
        while b"CHANNEL_HANGUP" not in buffer and time.monotonic() < deadline:
            data = conn.recv(65536)
            if not data:
                break
            buffer += data
        assert b"CHANNEL_HANGUP" in buffer
    real_switch.wait_hangup(caller, timeout=5)
    assert _eventually(lambda: all(r["uuid"] != caller for r in real_switch.channels()))


def test_place_call_refuses_unsafe_caller_text(real_switch):
    for name in ["a}b", "{a", "line\nbreak", "back\\slash"]:
        with pytest.raises(ValueError):
            real_switch.place_call("4930123456", "+4915112345678", name)
    with pytest.raises(ValueError):
        real_switch.place_call("4930 123", "+4915112345678", "ok")


# -- find_freeswitch and the pytest plugin --------------------------------------------------


def test_find_freeswitch_honours_the_env_even_when_it_is_wrong(monkeypatch, tmp_path):
    monkeypatch.setenv("FSROUTER_FREESWITCH", str(tmp_path / "nothing-here"))
    assert find_freeswitch() is None
    fake = tmp_path / "fs"
    fake.mkdir()
    (fake / "run-switch").write_text("#!/bin/sh\n")
    monkeypatch.setenv("FSROUTER_FREESWITCH", str(fake))
    assert find_freeswitch() == fake.resolve()


def test_switch_runs_from_a_bare_binary(real_switch, tmp_path, monkeypatch):
    binary = real_switch.freeswitch / "bin" / "freeswitch"
    if not binary.is_file():
        pytest.skip("the session switch is not a run-switch folder")
    monkeypatch.setenv("FSROUTER_FREESWITCH", str(binary))
    switch = RealSwitch(tmp_path / "fs-bin")
    switch.start()
    try:
        assert "is ready" in switch.api("status")
    finally:
        switch.stop(grace=0)
    assert _processes_using(switch.workdir) == []


def _run_pytest(tmp_path: Path, body: str, **env: str) -> subprocess.CompletedProcess[str]:
    test_file = tmp_path / "test_inner.py"
    test_file.write_text(body)
    environment = {k: v for k, v in os.environ.items() if k != "CI"}  # only when asked
    environment.update(PYTHONPATH=str(REPO_ROOT), **env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "fsrouter.testing.pytest_plugin",
         "-p", "no:cacheprovider", str(test_file)],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60,
    )


USES_SWITCH = "def test_inner(real_switch):\n    assert real_switch.api('status')\n"


def test_plugin_skips_without_a_switch_but_fails_under_ci(tmp_path):
    missing = str(tmp_path / "no-freeswitch")
    skipped = _run_pytest(tmp_path, USES_SWITCH, FSROUTER_FREESWITCH=missing)
    assert skipped.returncode == 0, skipped.stdout
    assert "1 skipped" in skipped.stdout and "no FreeSWITCH found" in skipped.stdout
    failed = _run_pytest(tmp_path, USES_SWITCH, FSROUTER_FREESWITCH=missing, CI="1")
    assert failed.returncode != 0
    assert "real FreeSWITCH required when CI is set" in failed.stdout


def test_plugin_attaches_the_switch_log_to_a_failing_test(tmp_path):
    body = (
        "def test_inner(real_switch, fresh_id):\n"
        "    real_switch.api('log CRIT marker-' + fresh_id)\n"
        "    assert False, 'on purpose'\n"
    )
    result = _run_pytest(tmp_path, body)
    assert result.returncode == 1
    assert "freeswitch log" in result.stdout
    assert re.search(r"\[CRIT\].*marker-1x", result.stdout)


def test_sip_profile_answers_on_loopback(real_switch):
    assert real_switch.ports is not None
    port = real_switch.ports.sip
    status = real_switch.api("sofia status")
    assert f"sip:mod_sofia@127.0.0.1:{port}" in status and "RUNNING" in status
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(5)
        me = udp.getsockname()[1]
        options = (
            f"OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK-{os.getpid()}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:test@127.0.0.1:{me}>;tag=1\r\n"
            f"To: <sip:ping@127.0.0.1:{port}>\r\n"
            f"Call-ID: harness-{os.getpid()}@127.0.0.1\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        udp.sendto(options.encode(), ("127.0.0.1", port))
        reply, _addr = udp.recvfrom(65536)
    assert reply.startswith(b"SIP/2.0 ")

"""Security checks (issue 7.4) with real sockets, real processes and real files.

- The outbound listener binds to loopback unless told otherwise, and a peer outside its
  allow-list is cut off before a single byte is sent (a second loopback address, 127.0.0.2,
  plays the foreign host); refused peers cost no descriptor or greenlet.
- The event-socket password never appears in a log line or an error message: ``fsrouter run``
  with a wrong password, and ``check-config`` with refused ones, have their whole output
  searched for it.
- Files fsrouter writes (the database with its -wal/-shm, the voicemail folders) are private
  even under ``umask 000``.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import gevent
import gevent.socket
import pytest

from fsrouter.config import Config
from fsrouter.sim import CallerScript, Simulator
from tests.e2e.daemon import Daemon as ProcessDaemon
from tests.reliability.conftest import (
    QUEUE_NUMBER,
    VOICEMAIL_NUMBER,
    SimDaemon,
    full_config,
    wait_for,
)

SECRET = "Wr0ng-but-Secret-4711-esl"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_the_listener_binds_to_loopback_by_default(sim_daemon, tmp_path):
    assert str(Config.model_validate({"switch": {"password": "x-secret-1"}}).listener.bind) \
        == "127.0.0.1"
    run: SimDaemon = sim_daemon(full_config(tmp_path))
    host, port = run.daemon.server._server.address[:2]
    assert host == "127.0.0.1"
    outside = _non_loopback_address()
    if outside is None:
        pytest.skip("this host has no non-loopback IPv4 address to try from")
    with pytest.raises(ConnectionRefusedError):
        gevent.socket.create_connection((outside, port), timeout=2).close()


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent; picks the outgoing address
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def connect_from(source: str, port: int) -> gevent.socket.socket:
    """A gevent socket (the daemon runs in this process: a blocking one would stall it)."""
    sock = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    return sock


def test_a_peer_outside_the_allow_list_is_cut_off_and_costs_nothing(sim_daemon, tmp_path):
    config = full_config(tmp_path, listener={"allow": ["127.0.0.1/32"]})
    run = sim_daemon(config, speed=10.0)
    server = run.daemon.server
    foreign = connect_from("127.0.0.2", run.port)
    foreign.sendall(b"Content-Type: command/reply\nReply-Text: +OK\n\n")
    assert cut_off(foreign)  # closed at once: not even "connect" was sent
    assert server.refused == 1
    assert any(e.get("event") == "esl.outbound.refused" and e.get("peer") == "127.0.0.2"
               for e in run.logs)
    # A crowd of refused peers costs no descriptor and no greenlet.
    baseline_fds, baseline_greenlets = open_fds(), _greenlets()
    for _ in range(200):
        assert cut_off(connect_from("127.0.0.2", run.port))
    wait_for(lambda: server.refused == 201, 10, "every foreign peer refused")
    gevent.sleep(0.2)
    assert open_fds() <= baseline_fds + 2
    assert _greenlets() <= baseline_greenlets + 2
    # The switch itself (127.0.0.1) is served as before.
    run.login("bob")
    record = run.call(QUEUE_NUMBER)
    assert run.wait_ended(record)["outcome"] == "bridged"


def cut_off(sock: gevent.socket.socket) -> bool:
    """The peer closed on us without sending anything (FIN, or RST if we had sent data)."""
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    finally:
        sock.close()


def _greenlets() -> int:
    import gc

    import greenlet

    return sum(1 for obj in gc.get_objects()
               if isinstance(obj, greenlet.greenlet) and not obj.dead)


def test_the_password_never_appears_in_the_daemon_log(tmp_path):
    """``fsrouter run`` with a wrong password against a switch that refuses it: the log says
    why (several tries, with backoff) and never shows the password."""
    sim = Simulator(speed=1.0, password="the-right-one-1234")
    port = sim.start_inbound()
    config = {"metrics": {"enabled": False}, "numbers": []}
    daemon = ProcessDaemon(tmp_path, config, ("127.0.0.1", port, SECRET))
    daemon.env["FSROUTER_TEST_ESL"] = SECRET
    try:
        daemon.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            tries = [e for e in daemon.log_lines()
                     if e.get("event") == "esl.inbound.connect_failed"]
            if len(tries) >= 2:
                break
            gevent.sleep(0.1)
        assert len(tries) >= 2, daemon.log()[-2000:]
        assert "refused the password" in tries[0]["error"]
    finally:
        assert daemon.stop() == 0
        sim.stop_inbound()
    text = daemon.log_path.read_bytes()
    assert SECRET.encode() not in text
    assert SECRET[:8].encode() not in text  # not even a prefix


@pytest.mark.parametrize("how", ["inline", "file", "env", "two", "public"])
def test_the_password_never_appears_in_config_errors(tmp_path, how):
    secret_file = tmp_path / "esl-password"
    secret_file.write_text(f"{SECRET}\n", "utf-8")
    switch = {"inline": {"password": SECRET, "port": "not-a-port"},
              "file": {"password_file": str(secret_file), "port": 70000},
              "env": {"password_env": "FSR_TEST_SECRET", "host": "bad host!"},
              "two": {"password_env": "FSR_TEST_SECRET", "password": SECRET},
              # The published default is named (it is public); a real one never is.
              "public": {"password": "ClueCon", "port": 0}}[how]
    path = tmp_path / "config.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"switch": switch, "numbers": [{"number": "x"}]}), "utf-8")
    env = {**os.environ, "FSR_TEST_SECRET": SECRET}
    done = subprocess.run([sys.executable, "-m", "fsrouter", "check-config", str(path)],
                          capture_output=True, text=True, env=env, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert SECRET not in output and SECRET[:8] not in output, output
    assert str(path) in output  # the errors still say where


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask():
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_files_written_are_private_even_under_umask_000(sim_daemon, tmp_path, open_umask):
    data = tmp_path / "var" / "lib" / "fsrouter"
    run = sim_daemon(full_config(tmp_path), speed=10.0, db_dir=data)
    record = run.call(VOICEMAIL_NUMBER, script=CallerScript(hangup_at_s=10.0))
    assert run.wait_ended(record)["outcome"] == "voicemail"
    for name in ("fsrouter.db", "fsrouter.db-wal", "fsrouter.db-shm"):
        assert mode(data / name) == 0o600, (name, oct(mode(data / name)))
    for folder in (data, data.parent, data.parent.parent):
        assert mode(folder) == 0o700, (folder, oct(mode(folder)))
    [message] = run.rows("SELECT path FROM voicemails")
    voicemail_root = tmp_path / "voicemail"
    folder = Path(message["path"]).parent
    while True:  # every folder fsrouter made: nothing for "others", not even traversal
        assert mode(folder) & 0o007 == 0, (folder, oct(mode(folder)))
        if folder == voicemail_root:
            break
        folder = folder.parent

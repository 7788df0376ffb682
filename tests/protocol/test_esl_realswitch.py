"""A small, self-contained check against the real FreeSWITCH 1.11.1 in /work/shared/freeswitch.

One switch per module on free loopback ports (its own scratch folder, a non-default
password), killed at teardown (SIGTERM, then SIGKILL after 3 s).
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import gevent
import gevent.queue
import gevent.socket
import pytest

from fsrouter.esl import AuthError, InboundClient, OutboundServer, OutboundSession

FS_HOME = Path("/work/shared/freeswitch")
pytestmark = [
    pytest.mark.realswitch,
    pytest.mark.skipif(not (FS_HOME / "run-switch").exists(), reason="no FreeSWITCH build"),
]

SOCKET_EXTENSION = """
    <context name="fsr">
      <extension name="to_fsrouter">
        <condition field="destination_number" expression="^7777$">
          <action application="socket" data="127.0.0.1:{port} async full"/>
          <action application="hangup" data="NORMAL_TEMPORARY_FAILURE"/>
        </condition>
      </extension>
    </context>
  </section>
</document>"""


def free_port() -> int:
    sock = gevent.socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def write_config(folder: Path, esl_port: int, password: str, outbound_port: int) -> None:
    shutil.copytree(FS_HOME / "example", folder)
    conf = folder / "conf" / "freeswitch.xml"
    text = conf.read_text()
    text = text.replace('value="18021"', f'value="{esl_port}"')
    text = text.replace('value="ClueCon"', f'value="{password}"')
    text = text.replace("  </section>\n</document>", SOCKET_EXTENSION.format(port=outbound_port))
    assert str(esl_port) in text and password in text and "to_fsrouter" in text
    conf.write_text(text)


def wait_ready(port: int, password: str, proc: subprocess.Popen, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert proc.poll() is None, "FreeSWITCH exited during start-up"
        client = InboundClient("127.0.0.1", port, password)
        try:
            client.connect(timeout=1)
            if "is ready" in client.api("status", timeout=2):
                return
        except Exception:
            pass
        finally:
            client.close()
        gevent.sleep(0.2)
    raise AssertionError("FreeSWITCH did not become ready")


class Switch:
    def __init__(self, port: int, password: str, calls: gevent.queue.Queue) -> None:
        self.port = port
        self.password = password
        self.calls = calls


@pytest.fixture(scope="module")
def switch(tmp_path_factory):
    calls: gevent.queue.Queue = gevent.queue.Queue()
    server = OutboundServer("127.0.0.1", 0, lambda session: calls.get()(session), max_calls=5)
    server.start()
    folder = tmp_path_factory.mktemp("fs") / "switch"
    port, password = free_port(), "t-" + secrets.token_hex(8)
    write_config(folder, port, password, server.port)
    log = open(folder.parent / "switch.out", "wb")
    proc = subprocess.Popen([str(FS_HOME / "run-switch"), str(folder)], stdout=log, stderr=log)
    try:
        wait_ready(port, password, proc)
        yield Switch(port, password, calls)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        server.stop()
        server.close_all()


def test_connect_status_and_bgapi(switch) -> None:
    client = InboundClient("127.0.0.1", switch.port, switch.password, events=["BACKGROUND_JOB"])
    client.connect(timeout=5)
    try:
        assert "is ready" in client.api("status", timeout=5)
        job = client.bgapi("eval fsrouter-job-check", timeout=5)
        assert job.wait(timeout=5) == "fsrouter-job-check"
        failing = client.bgapi("originate loopback/0000/nosuchcontext &park()", timeout=5)
        assert failing.wait(timeout=10).startswith("-ERR ")
    finally:
        client.close()


def test_wrong_password(switch) -> None:
    client = InboundClient("127.0.0.1", switch.port, "not-" + switch.password)
    with pytest.raises(AuthError) as info:
        client.connect(timeout=5)
    assert switch.password not in str(info.value)


def test_outbound_call_with_execute_correlation(switch) -> None:
    results: gevent.queue.Queue = gevent.queue.Queue()

    def handler(session: OutboundSession) -> None:
        answer = session.execute("answer", timeout=5)
        # Two queued runs of the SAME app: each wait gets its own completion.
        first = session.execute("playback", "silence_stream://200", event_lock=True, timeout=5)
        second = session.execute("playback", "silence_stream://100", event_lock=True, timeout=5)
        done = [answer.wait(10), first.wait(10), second.wait(10)]
        results.put((session.uuid, done))
        session.hangup("NORMAL_CLEARING", timeout=5)

    switch.calls.put(handler)
    client = InboundClient("127.0.0.1", switch.port, switch.password)
    client.connect(timeout=5)
    try:
        reply = client.api("originate loopback/7777/fsr &park()", timeout=15)
        uuid, done = results.get(timeout=15)
    finally:
        client.close()
    assert reply.startswith("+OK ")
    assert [e.get("Application") for e in done] == ["answer", "playback", "playback"]
    assert [e.get("Application-Data") for e in done[1:]] == [
        "silence_stream://200",
        "silence_stream://100",
    ]
    assert all(e.uuid == uuid for e in done)
    assert done[1].app_uuid != done[2].app_uuid

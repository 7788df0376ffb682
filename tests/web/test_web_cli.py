"""``fsrouter web user|token ...`` and ``fsrouter web`` itself, as the operator runs them: the
installed script, real processes, the real SQLite file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import WebEnv

FSROUTER = Path(sys.executable).parent / "fsrouter"


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def run(env: WebEnv, *args: str, stdin: str | None = None) -> Result:
    # Either input or stdin, never both keys: gevent's patched subprocess.run (this worker
    # may have monkey-patched it) refuses `stdin=None` next to `input`.
    feed: dict[str, object] = ({"input": stdin} if stdin is not None
                               else {"stdin": subprocess.DEVNULL})
    done = subprocess.run([str(FSROUTER), *args, "-c", str(env.config_path)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "SUDO_USER": "olga"}, **feed)  # type: ignore[call-overload]
    return Result(done.returncode, done.stdout, done.stderr)


def test_user_add_passwd_remove_with_the_audit_trail(web_env, client, web_app):
    added = run(web_env, "web", "user", "add", "anna", "--role", "supervisor",
                "--password-stdin", stdin="anna-Password-1\n")
    assert added.code == 0, added.err
    listed = run(web_env, "web", "user", "list")
    assert "anna  supervisor" in listed.out and "vera" in listed.out
    from tests.web.conftest import logged_in

    anna = logged_in(web_app, web_env, None)
    assert anna.log_in("anna", "anna-Password-1").status_code == 302
    assert anna.get("/account").status_code == 200
    changed = run(web_env, "web", "user", "passwd", "anna", "--password-stdin",
                  stdin="anna-Password-2\n")
    assert changed.code == 0, changed.err
    assert anna.get("/account").status_code == 302  # the old session ended
    assert logged_in(web_app, web_env, None).log_in("anna", "anna-Password-2"
                                                    ).status_code == 302
    assert run(web_env, "web", "user", "remove", "anna").code == 0
    trail = [(e.who, e.kind, e.subject) for e in web_env.audit("web_user.")
             if e.subject == "anna"]
    assert trail == [("cli:olga", "web_user.add", "anna"), ("cli:olga", "web_user.passwd", "anna"),
                     ("cli:olga", "web_user.remove", "anna")]
    shown = run(web_env, "audit", "--kind", "web_user.")
    assert "anna-Password" not in shown.out + shown.err


def test_passwords_never_come_from_the_command_line(web_env):
    on_argv = run(web_env, "web", "user", "add", "bob", "--password", "bob-Password-1")
    assert on_argv.code == 2 and "unrecognized arguments" in on_argv.err
    no_terminal = run(web_env, "web", "user", "add", "bob")
    assert no_terminal.code == 2 and "--password-stdin" in no_terminal.err
    short = run(web_env, "web", "user", "add", "bob", "--password-stdin", stdin="short\n")
    assert short.code == 2 and "at least 10 characters" in short.err
    assert "bob" not in run(web_env, "web", "user", "list").out


@pytest.mark.parametrize(("args", "message"), [
    (("user", "add", "Bad Name"), "use 1-64 characters"),
    (("user", "add", "vera"), "already exists"),
    (("user", "passwd", "nobody"), "no web account 'nobody'"),
    (("user", "remove", "nobody"), "no web account 'nobody'"),
    (("token", "remove", "nobody"), "no API token 'nobody'"),
    (("user", "add", "zed", "--role", "admin"), "invalid choice"),
])
def test_refusals_change_nothing(web_env, args, message):
    before = len(web_env.audit())
    done = run(web_env, "web", *args, "--password-stdin", stdin="long-enough-Pw-1\n") \
        if args[0] == "user" and args[1] != "remove" else run(web_env, "web", *args)
    assert done.code == 2 and message in done.err, done.err
    assert len(web_env.audit()) == before


def test_tokens_are_shown_once(web_env, web_app):
    made = run(web_env, "web", "token", "add", "nightly", "--role", "supervisor")
    assert made.code == 0, made.err
    token = made.out.strip()
    assert token.startswith("fsr_") and len(token) > 40
    listed = run(web_env, "web", "token", "list")
    assert "nightly" in listed.out and "supervisor" in listed.out and "cli:olga" in listed.out
    assert token not in listed.out
    as_json = run(web_env, "web", "token", "list", "--json")
    assert '"last_used": null' in as_json.out
    api = web_app.test_client()
    assert api.get("/account", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert run(web_env, "web", "token", "remove", "nightly").code == 0
    assert api.get("/account", headers={"Authorization": f"Bearer {token}"}).status_code == 302
    kinds = [(e.kind, e.subject, e.who) for e in web_env.audit("web_token.")]
    assert kinds == [("web_token.add", "nightly", "cli:olga"),
                     ("web_token.remove", "nightly", "cli:olga")]


def test_the_server_logs_its_port_and_stops_on_sigterm(web_server):
    ready = [line for line in web_server.log_lines() if line.get("event") == "web.ready"]
    assert ready[0]["host"] == "127.0.0.1" and ready[0]["port"] == web_server.port > 0
    with socket.create_connection(("127.0.0.1", web_server.port), timeout=10) as sock:
        sock.sendall(b"GET /login HTTP/1.0\r\nHost: x\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
    assert web_server.stop() == 0


def test_exit_codes(web_env, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = run(web_env, "web", "--port", str(taken.getsockname()[1]),
                   "--secret-file", str(web_env.secret_file))
    assert busy.code == 4 and "cannot listen" in busy.err
    behind = run(web_env, "web", "--database", f"sqlite:///{tmp_path}/missing.db")
    assert behind.code == 3 and "db upgrade" in behind.err
    broken = web_env.config_path.read_text().replace("numbers:", "numbers: [", 1)
    web_env.config_path.write_text(broken)
    assert run(web_env, "web", "--port", "0").code == 2


def test_a_broken_config_file_keeps_the_last_good_one_with_a_banner(web_env, client):
    sam = client("supervisor")
    assert "configuration file has errors" not in sam.get("/account").get_data(as_text=True)
    good = web_env.config_path.read_text()
    web_env.config_path.write_text(good.replace("timezone: Europe/Berlin",
                                                "timezone: Mars/Olympus", 1))
    os.utime(web_env.config_path, ns=(1, 1))  # a new mtime even within the clock's step
    page = sam.get("/account").get_data(as_text=True)
    assert "configuration file has errors" in page and "Mars/Olympus" in page
    web_env.config_path.write_text(good)
    os.utime(web_env.config_path, ns=(2, 2))
    assert "configuration file has errors" not in sam.get("/account").get_data(as_text=True)



def test_attempts_at_the_same_moment_cannot_pass_the_limit_together(web_server):
    """12 wrong passwords for one name sent at once to the real server: exactly 5 are
    checked (401), the rest refused (429); checking the count and counting the attempt are
    one transaction, taken before the slow password hash."""
    import http.client
    import re
    from concurrent.futures import ThreadPoolExecutor
    from urllib.parse import urlencode

    def request(method: str, path: str, body: str = "", cookie: str = "") -> tuple[int, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", web_server.port, timeout=120)
        try:
            connection.request(method, path, body, {
                "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
            response = connection.getresponse()
            return response.status, (response.getheader("Set-Cookie") or "",
                                      response.read().decode())
        finally:
            connection.close()

    _, (set_cookie, page) = request("GET", "/login")
    cookie = set_cookie.split(";")[0]
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
    form = urlencode({"name": "sam", "password": "wrong-password-x", "csrf_token": token})
    with ThreadPoolExecutor(12) as pool:
        statuses = sorted(pool.map(lambda _: request("POST", "/login", form, cookie)[0],
                                   range(12)))
    assert statuses == [401] * 5 + [429] * 7


def test_a_silent_client_is_disconnected_and_others_are_served(web_env):
    """Every read has a deadline (io_timeout): a client that stops in the middle of its
    headers is closed without an answer, and the console answers others meanwhile."""
    import gevent
    import gevent.socket

    from fsrouter.web.app import create_app
    from fsrouter.web.server import start

    settings = web_env.settings(io_timeout=1.0)
    server = start(create_app(settings), settings)
    try:
        silent = gevent.socket.create_connection(("127.0.0.1", server.server_port), timeout=60)
        silent.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        other = gevent.socket.create_connection(("127.0.0.1", server.server_port), timeout=60)
        other.sendall(b"GET /login HTTP/1.0\r\nHost: x\r\n\r\n")
        assert other.recv(100).startswith(b"HTTP/1.1 200")
        with gevent.Timeout(30, AssertionError("the silent client was never disconnected")):
            assert silent.recv(100) == b""
        silent.close()
        other.close()
    finally:
        server.stop()


def test_the_daemon_does_not_load_the_console():
    """The console is another process: nothing of it (Flask, fsrouter.web) is in the
    daemon's, so a bug there cannot touch a call."""
    code = ("import sys, fsrouter.cli, fsrouter.daemon; "
            "print(sorted(m for m in sys.modules if m == 'flask' or m.startswith('fsrouter.web')"
            " or m.startswith('argon2')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip() == "[]"

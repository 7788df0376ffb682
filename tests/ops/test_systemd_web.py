"""The console's unit (systemd/fsrouter-web.service, issue 20 point 1): a separate service with
the daemon's hardening, `systemd-analyze verify` and `security`, and ``fsrouter web`` serving a
log-in for real under the seccomp filter the unit's settings make (MemoryDenyWriteExecute:
Flask, Jinja2's compiled templates, argon2 in the thread pool)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.ops.test_systemd import (
    EXAMPLE,
    INSTALLED_BINARY,
    MAX_EXPOSURE,
    UNIT,
    cli_constant,
    last,
    parse_unit,
    run_sandboxed,
    seconds,
    systemd_analyze,
)

WEB_UNIT = UNIT.with_name("fsrouter-web.service")
# Keys whose values the two units share: the sandbox, the user, the state directory.
SHARED = ("User", "Group", "StateDirectory", "StateDirectoryMode", "UMask", "NoNewPrivileges",
          "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
          "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
          "ProtectControlGroups", "ProtectClock", "ProtectHostname", "ProtectProc",
          "PrivateMounts", "RemoveIPC", "RestrictAddressFamilies", "RestrictNamespaces",
          "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality", "MemoryDenyWriteExecute",
          "SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber",
          "CapabilityBoundingSet", "AmbientCapabilities")


@pytest.fixture(scope="module")
def daemon() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]


@pytest.fixture(scope="module")
def web() -> dict[str, list[str]]:
    return parse_unit(WEB_UNIT.read_text(encoding="utf-8"))["Service"]


def test_the_same_hardening_user_and_state_as_the_daemon(daemon, web):
    assert {key: web.get(key) for key in SHARED} == {key: daemon.get(key) for key in SHARED}


def test_a_separate_service_on_loopback(web):
    start = last(web, "ExecStart").split()
    assert start[0] == INSTALLED_BINARY and "web" in start and "run" not in start
    assert start[start.index("--bind") + 1] == "127.0.0.1"
    assert start[start.index("--trusted-proxy") + 1] == "127.0.0.1"
    assert int(start[start.index("--port") + 1]) >= 1024  # no CAP_NET_BIND_SERVICE
    assert last(web, "Type") == "notify" and 0 < seconds(last(web, "WatchdogSec")) <= 60
    assert last(web, "Restart") == "on-failure"
    assert last(web, "RestartPreventExitStatus") == str(cli_constant("EXIT_USAGE"))
    assert "EnvironmentFile" not in web  # the console needs no switch password


def runnable_copy(tmp_path: Path) -> Path:
    binary = Path(sys.executable).parent / "fsrouter"
    copy = tmp_path / "fsrouter-web.service"
    copy.write_text(WEB_UNIT.read_text(encoding="utf-8").replace(INSTALLED_BINARY, str(binary)))
    return copy


def test_systemd_analyze_verify_and_security(tmp_path):
    tool = systemd_analyze()
    copy = runnable_copy(tmp_path)
    verify = subprocess.run([tool, "verify", str(copy)], capture_output=True, text=True,
                            timeout=60)
    assert verify.returncode == 0, verify.stderr
    assert [line for line in (verify.stdout + verify.stderr).splitlines()
            if "fsrouter" in line] == []
    security = subprocess.run([tool, "security", "--offline=true", "--no-pager", str(copy)],
                              capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout)
    assert found, security.stdout[-500:] + security.stderr[-500:]
    assert float(found[1]) <= MAX_EXPOSURE


CONSOLE = textwrap.dedent("""
    import re, subprocess, sys, urllib.parse, urllib.request, http.cookiejar
    import fsrouter.cli  # monkey.patch_all(), as `fsrouter web` starts
    from fsrouter.cli import main

    config, folder = sys.argv[1], sys.argv[2]
    text = open(config).read().replace("/var/lib/fsrouter", folder)
    open(f"{folder}/config.yaml", "w").write(text)
    assert main(["db", "upgrade", "-c", f"{folder}/config.yaml"]) == 0
    sys.stdin = open(f"{folder}/password", "r")
    assert main(["web", "user", "add", "sam", "--role", "supervisor", "--password-stdin",
                 "-c", f"{folder}/config.yaml"]) == 0

    import gevent
    from fsrouter.store import open_database
    from fsrouter.web.app import create_app
    from fsrouter.web.server import start
    from fsrouter.web.settings import WebSettings
    from pathlib import Path

    settings = WebSettings(Path(f"{folder}/config.yaml"), port=0,
                           secret_key_file=Path(f"{folder}/web-secret"))
    open_database(f"sqlite:///{folder}/fsrouter.db")
    server = start(create_app(settings), settings)
    base = f"http://127.0.0.1:{server.server_port}"
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(f"{base}/login", timeout=30).read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)[1]
    form = urllib.parse.urlencode({"name": "sam", "password": open(f"{folder}/password").read()
                                   .strip(), "csrf_token": token, "next": "/account"}).encode()
    account = opener.open(f"{base}/login", data=form, timeout=30).read().decode()
    assert "supervisor" in account, account[:500]
    server.stop()
    print("console ok")
""")


def test_the_console_runs_in_the_sandbox(web, tmp_path):
    (tmp_path / "console.py").write_text(CONSOLE)
    (tmp_path / "password").write_text("sandbox-Password-1\n")
    result = run_sandboxed(web, tmp_path, sys.executable, str(tmp_path / "console.py"),
                           str(EXAMPLE), str(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "console ok" in result.stdout

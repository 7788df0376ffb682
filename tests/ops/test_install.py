"""Issue 19, point 5: the README's host install, followed line by line in a throwaway root.

The commands are read from README.md ("Install on a telephony host") and run as written, with
three differences a throwaway root needs, each checked to be the line the README shows:
- absolute paths (/etc, /usr, /var, /opt) point into the root, and systemd-sysusers and
  systemd-tmpfiles get ``--root=``;
- ``python3 -m venv`` and ``pip install`` are replaced by a wrapper at /opt/fsrouter/bin/fsrouter
  that runs this checkout's fsrouter (installing from the network is not the point here);
- ``runuser -u fsrouter`` becomes ``setpriv`` with the uid and gid systemd-sysusers gave the
  user in the root's /etc/passwd (the host does not know that user); ``systemctl`` needs
  systemd as PID 1 and is left out; ``systemd-analyze verify`` and ``security`` check the unit
  as installed in the root instead (the root gets the host's systemd units, as a host with
  systemd has them).
The operator's edits ("put the password into secrets.env", paths of the example pointing into
the root) are done the way the README says.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
TOOLS = ("systemd-sysusers", "systemd-tmpfiles", "systemd-analyze", "setpriv")
HOST_DIRS = re.compile(r"(?<![\w./-])/(etc|usr|var|opt)/")
MAX_EXPOSURE = 2.0  # as tests/ops/test_systemd.py
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's: any user may run it


def install_section() -> tuple[list[str], str, list[str]]:
    """The README's install commands, the secrets file's lines, and the check commands."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Install on a telephony host"):]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 3, "expected: the commands, the secrets file, the check"
    commands, secrets, check = (
        [line.strip() for line in block.splitlines() if line.strip()] for block in blocks)
    secret_lines = "\n".join(line for line in secrets if not line.startswith("#")) + "\n"
    return commands, secret_lines, check


def tools_or_skip() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not Path(SYSTEM_PYTHON).exists():
        missing.append(SYSTEM_PYTHON)
    if missing and os.geteuid() == 0 and Path("/etc/debian_version").exists():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        lock = ["-o", "DPkg::Lock::Timeout=300"]
        subprocess.run(["apt-get", *lock, "install", "-y", "--no-install-recommends",
                        "systemd", "util-linux"], env=env, capture_output=True, check=False)
        missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    reason = None
    if missing:
        reason = f"needs {', '.join(missing)} (Debian: apt-get install systemd util-linux)"
    elif os.geteuid() != 0:
        reason = "needs root: systemd-tmpfiles sets owners, setpriv switches user"
    if reason and os.environ.get("CI"):
        pytest.fail(f"under CI this test must run: {reason}")
    if reason:
        pytest.skip(reason)


@pytest.fixture
def root() -> Iterator[Path]:
    """A throwaway root the service user can reach (pytest's tmp dirs are 0700)."""
    tools_or_skip()
    directory = Path(tempfile.mkdtemp(prefix="fsrouter-root-", dir="/tmp"))
    directory.chmod(0o755)
    # What every host with systemd has: /etc, /etc/systemd/system and systemd's own units.
    (directory / "etc/systemd/system").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", directory / "usr/lib/systemd/system",
                    symlinks=True)
    opened = reachable(Path(sysconfig.get_paths()["purelib"]))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        for folder, mode in opened:
            folder.chmod(mode)


def reachable(path: Path) -> list[tuple[Path, int]]:
    """Let other users pass through every folder above ``path`` (this checkout's installed
    packages, which the service user runs): a checkout under ``mktemp -d`` sits in a 0700
    folder. Only the search bit is added; returns what to put back."""
    opened = []
    for folder in reversed(path.parents):
        mode = stat.S_IMODE(folder.stat().st_mode)
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)
            opened.append((folder, mode))
    return opened


def in_root(line: str, root: Path) -> str:
    return HOST_DIRS.sub(lambda m: f"{root}/{m[1]}/", line)


def sh(line: str, **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["sh", "-c", line], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False, **kwargs)
    assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
    return done


def ids(root: Path, name: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2]), int(fields[3])
    raise AssertionError(f"no user {name} in {root}/etc/passwd")


def as_user(uid: int, gid: int, argv: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *argv]


def venv(root: Path) -> None:
    """``python3 -m venv /opt/fsrouter`` with the system's python3 (the service user cannot
    reach the interpreter of this test run), then, for ``pip install``, this checkout's
    installed packages on its path and the ``fsrouter`` console script."""
    target = root / "opt/fsrouter"
    sh(f"{SYSTEM_PYTHON} -m venv --without-pip {target}")
    packages = sysconfig.get_paths()["purelib"]  # this run's, with fsrouter installed
    site = next((target / "lib").glob("python3*/site-packages"))
    (site / "checkout.pth").write_text(f"import site; site.addsitedir({packages!r})\n")
    script = target / "bin/fsrouter"
    script.write_text(f"#!{target}/bin/python\nimport sys\nfrom fsrouter.cli import main\n"
                      "sys.exit(main())\n")
    script.chmod(0o755)


def operator_edits(root: Path, secrets: str) -> None:
    """What the README tells the operator to edit: the secret, and (for the root) paths."""
    config = root / "etc/fsrouter/config.yaml"
    config.write_text(config.read_text().replace("/var/lib/fsrouter", f"{root}/var/lib/fsrouter"))
    (root / "etc/fsrouter/secrets.env").write_text(secrets)


def run_line(line: str, root: Path, secrets: str) -> str:
    """One README line in the root; returns what was done (for the failure message)."""
    words = shlex.split(line)
    if words[:3] == ["python3", "-m", "venv"]:
        assert words[3] == "/opt/fsrouter"
        venv(root)
        return "venv: made with the system's python3"
    if words[0] == "/opt/fsrouter/bin/pip":
        assert words[1] == "install"
        return "pip install: skipped (this checkout is installed)"
    if words[0] == "apt-get":
        assert words[1] == "install", line
        # The test set-up installed them on this host (fsrouter.prompts.install): check it.
        names = shlex.split(line, comments=True)[2:]
        missing = [name for name in names if shutil.which(name) is None]
        assert not missing, f"{line}: not installed here: {missing}"
        return "apt-get install: present on this host"
    if words[0] == "systemctl":
        return "systemctl: skipped (no systemd as PID 1)"
    if words[0] in ("systemd-sysusers", "systemd-tmpfiles"):
        sh(f"{words[0]} --root={root} {shlex.join(words[1:])}")
        return line
    if words[0] == "runuser":
        assert words[1:4] == ["-u", "fsrouter", "--"], line
        uid, gid = ids(root, "fsrouter")
        rest = [in_root(word, root) for word in words[4:]]
        done = subprocess.run(as_user(uid, gid, rest), cwd="/", capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{line}\n{done.stdout}{done.stderr}"
        return done.stdout
    assert words[0] == "install", f"a README line this test does not know: {line}"
    sh(in_root(line, root))
    if line.endswith("/etc/fsrouter/secrets.env"):
        operator_edits(root, secrets)
    return line


def mode_owner(path: Path) -> tuple[str, int, int]:
    info = path.stat()
    return oct(stat.S_IMODE(info.st_mode)), info.st_uid, info.st_gid


def test_the_readme_install_in_a_throwaway_root(root):
    commands, secrets, check = install_section()
    assert secrets.startswith("FSROUTER_ESL_PASSWORD=")
    for line in commands:
        run_line(line, root, secrets)
    uid, gid = ids(root, "fsrouter")
    passwd = (root / "etc/passwd").read_text()
    assert re.search(rf"^fsrouter:x:{uid}:{gid}:[^:]*:/var/lib/fsrouter:/usr/sbin/nologin$",
                     passwd, re.M), passwd
    assert uid < 1000 and uid != 0  # a system user

    # Owners and modes: root owns the configuration, the service's group reads it.
    assert mode_owner(root / "etc/fsrouter") == ("0o750", 0, gid)
    assert mode_owner(root / "etc/fsrouter/config.yaml") == ("0o640", 0, gid)
    assert mode_owner(root / "etc/fsrouter/secrets.env") == ("0o640", 0, gid)
    assert mode_owner(root / "var/lib/fsrouter") == ("0o750", uid, gid)
    assert mode_owner(root / "var/lib/fsrouter/voicemail") == ("0o2770", uid, gid)
    # `db upgrade` ran as the service user and made its database.
    assert (root / "var/lib/fsrouter/fsrouter.db").stat().st_uid == uid

    # The check, as the README shows it: the service's user and environment.
    assert check[-1] == "systemctl enable --now fsrouter"
    assert "OK (" in run_line(check[0], root, secrets)
    # Other users cannot read the configuration.
    config = f"{root}/etc/fsrouter/config.yaml"
    other = subprocess.run(as_user(NOBODY, NOBODY, [f"{root}/opt/fsrouter/bin/fsrouter",
                                                    "check-config", "-c", config]),
                           capture_output=True, text=True, timeout=120, check=False)
    assert other.returncode == 2 and "Permission denied" in other.stderr, other.stderr

    # The units as installed (the daemon's, and the console's when the README installs it):
    # verify and security against the root.
    units = sorted(path.name for path in (root / "etc/systemd/system").glob("fsrouter*.service"))
    assert "fsrouter.service" in units
    for name in units:
        verify_unit(root, name)


def verify_unit(root: Path, name: str) -> None:
    verify = subprocess.run(["systemd-analyze", "verify", f"--root={root}", name],
                            capture_output=True, text=True, timeout=120, check=False)
    assert verify.returncode == 0 and verify.stdout + verify.stderr == "", verify.stderr
    security = subprocess.run(["systemd-analyze", "security", f"--root={root}",
                               "--offline=true", "--no-pager", name],
                              capture_output=True, text=True, timeout=120, check=False)
    found = re.search(rf"Overall exposure level for {re.escape(name)}: (\d+\.\d+)",
                      security.stdout)
    assert found, security.stdout[-500:] + security.stderr[-500:]
    assert float(found[1]) <= MAX_EXPOSURE


def test_verify_in_the_root_notices_a_missing_binary(root):
    """The verify above is not vacuous: without /opt/fsrouter/bin/fsrouter it complains."""
    shutil.copy(REPO / "systemd/fsrouter.service", root / "etc/systemd/system")
    verify = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "fsrouter.service"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert "/opt/fsrouter/bin/fsrouter" in verify.stderr and verify.returncode != 0

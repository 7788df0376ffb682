"""Issue 19, point 6: small things the trial found, through the ``fsrouter`` script as a real
process on real files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import EXAMPLE, FSROUTER, example_config, run_fsrouter


def run_without_secret(*args: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FSROUTER_ESL_PASSWORD"}
    return subprocess.run([str(FSROUTER), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def test_check_config_takes_dash_c_like_every_other_command(tmp_path):
    for args in (("-c", EXAMPLE), ("--config", EXAMPLE), (EXAMPLE,)):
        result = run_fsrouter("check-config", *args)
        assert result.code == 0, result.err
        assert result.out.startswith(f"{EXAMPLE}: OK (")
    broken = tmp_path / "broken.yaml"
    broken.write_text("switch: {password_env: FSROUTER_ESL_PASSWORD}\nlistener: {port: 0}\n")
    result = run_fsrouter("check-config", "-c", broken)
    assert result.code == 2
    assert f"{broken}:2:12: listener.port: must be 1-65535, got 0" in result.err


def test_an_unset_password_env_is_reported_at_its_own_line():
    result = run_without_secret("check-config", "-c", EXAMPLE)
    assert result.returncode == 2, result.stdout
    line = next(number for number, text in enumerate(
        EXAMPLE.read_text(encoding="utf-8").splitlines(), start=1)
        if text.strip().startswith("password_env:"))
    assert result.stderr.splitlines() == [
        f"{EXAMPLE}:{line}:3: switch.password_env: environment variable FSROUTER_ESL_PASSWORD "
        "is not set or empty"]


def test_an_unreadable_smtp_password_file_is_reported_too(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("switch: {password_env: FSROUTER_ESL_PASSWORD}\n"
                      f"smtp:\n  host: localhost\n  password_file: {tmp_path}/missing\n")
    result = run_fsrouter("check-config", config)
    assert result.code == 2
    assert result.err.startswith(f"{config}:4:3: smtp.password_file: cannot read password file")


READERS = [
    (("routes", "list"), ()),
    (("agents", "list"), ()),
    (("two-way", "list"), ()),
    (("simulate",), ("--number", "030 23125 000", "--caller", "+491715550001", "--with-db")),
]
WRITERS = [
    (("routes", "set"), ("030 23125 202", "--agent", "eva")),
    (("agents", "login"), ("eva",)),
]


@pytest.mark.parametrize(("words", "rest"), READERS + WRITERS,
                         ids=[" ".join(words) for words, _ in READERS + WRITERS])
def test_operator_commands_never_create_a_database_or_its_folders(tmp_path, words, rest):
    config = example_config(tmp_path)
    missing = tmp_path / "not" / "there"
    config.write_text(config.read_text().replace(f"sqlite:///{tmp_path}/fsrouter.db",
                                                 f"sqlite:///{missing}/fsrouter.db"))
    result = run_fsrouter(*words, "-c", config, *rest)
    assert result.code == 3, result.out + result.err
    assert result.err.strip() == (f"database: SQLite database {missing}/fsrouter.db does not "
                                  "exist: run `fsrouter db upgrade -c CONFIG` first")
    assert not (tmp_path / "not").exists()
    # db upgrade is the one command that creates it.
    assert run_fsrouter("db", "upgrade", "-c", config).code == 0
    assert (missing / "fsrouter.db").is_file()
    assert run_fsrouter(*words, "-c", config, *rest).code == 0


def test_a_users_language_defaults_to_defaults_language(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("switch: {password_env: FSROUTER_ESL_PASSWORD}\n"
                      "defaults: {language: en}\n"
                      "users:\n  ann: {name: Ann}\n  bo: {name: Bo, language: fr}\n")
    code = ("import sys; from fsrouter.config import load_config; c = load_config(sys.argv[1]);"
            " print(c.users['ann'].language, c.users['bo'].language)")
    done = subprocess.run([str(Path(FSROUTER).parent / "python"), "-c", code, str(config)],
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.splitlines()[-1].split() == ["en", "fr"]

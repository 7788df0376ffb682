"""``switches:``: one daemon serving several switches (issue 18.1); ``switch:`` stays valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from fsrouter.config import ConfigError, load_config

TWO = """\
switches:
  - name: a
    host: 127.0.0.1
    port: 8021
    password_env: ESL_A
  - name: b
    host: 127.0.0.2
    port: 8021
    password_file: {secret}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(issue) for issue in caught.value.issues]


def test_two_switches_load_with_their_names_and_passwords(tmp_path, monkeypatch):
    secret = tmp_path / "b.secret"
    secret.write_text("pw-of-b\n", encoding="utf-8")
    config = load_config(_write(tmp_path, TWO.format(secret=secret)))
    monkeypatch.setenv("ESL_A", "pw-of-a")
    named = config.named_switches()
    assert [(name, s.host, s.port) for name, s in named] == [
        ("a", "127.0.0.1", 8021), ("b", "127.0.0.2", 8021)]
    assert [s.resolve_password() for _, s in named] == ["pw-of-a", "pw-of-b"]
    assert config.switch is None


def test_single_switch_form_is_one_switch_named_default(tmp_path):
    config = load_config(_write(tmp_path, "switch: {password_env: ESL_PW, port: 8022}\n"))
    assert [(name, s.port) for name, s in config.named_switches()] == [("default", 8022)]


def test_missing_password_names_the_list_entry_and_its_line(tmp_path, monkeypatch):
    secret = tmp_path / "b.secret"
    secret.write_text("x\n", encoding="utf-8")
    config = load_config(_write(tmp_path, TWO.format(secret=secret)))
    monkeypatch.delenv("ESL_A", raising=False)
    with pytest.raises(ConfigError, match=r"c.yaml:5:5: switches\[0\].password_env: "
                                          r"environment variable ESL_A is not set"):
        config.named_switches()[0][1].resolve_password()


def test_duplicate_names_and_addresses_are_refused_with_their_lines(tmp_path):
    text = ("switches:\n"
            "  - {name: a, host: 127.0.0.1, port: 8021, password_env: A}\n"
            "  - {name: a, host: 127.0.0.1, port: 8022, password_env: B}\n"
            "  - {name: c, host: 127.0.0.1, port: 8021, password_env: C}\n")
    problems = _problems(_write(tmp_path, text))
    assert any("c.yaml:3:" in p and "switches[1].name" in p
               and "already used by switches[0]" in p for p in problems), problems
    assert any("c.yaml:4:" in p and "switches[2].port" in p
               and "127.0.0.1:8021 is already switches[0]" in p for p in problems), problems


def test_both_forms_or_neither_is_refused(tmp_path):
    both = ("switch: {password_env: A}\n"
            "switches:\n  - {name: a, password_env: A}\n")
    assert any("c.yaml:2:" in p and "switches: give either switch: or switches:" in p
               for p in _problems(_write(tmp_path, both)))
    neither = "database: {url: 'sqlite:///x.db'}\n"
    assert any("switch: required field missing" in p for p in _problems(_write(tmp_path, neither)))


def test_each_entry_is_validated_like_switch(tmp_path):
    text = ("switches:\n"
            "  - {name: a, password: ClueCon}\n"
            "  - {name: 'bad name!', password_env: B, port: 70000}\n")
    problems = _problems(_write(tmp_path, text))
    assert any("switches[0].password" in p and "refused" in p for p in problems), problems
    assert any("switches[1].name" in p for p in problems), problems
    assert any("switches[1].port" in p for p in problems), problems


def test_the_listeners_switch_addresses_cover_every_switch(tmp_path):
    from ipaddress import ip_network

    from fsrouter.switches.wiring import switch_networks

    text = ("listener: {allow: [127.0.0.0/8, 10.0.0.0/8]}\n"
            "switches:\n  - {name: a, host: 10.0.0.1, password_env: A}\n"
            "  - {name: b, host: 10.0.0.2, password_env: B}\n")
    config = load_config(_write(tmp_path, text))
    assert switch_networks(config) == [ip_network("10.0.0.1/32"), ip_network("10.0.0.2/32")]
    named = text.replace("10.0.0.2", "switch-b.example")  # a name: not resolved here
    assert switch_networks(load_config(_write(tmp_path, named))) is None

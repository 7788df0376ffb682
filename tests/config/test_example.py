"""The shipped example loads; lookups work; secrets never show."""

import time
from datetime import time as clock
from datetime import timedelta
from pathlib import Path

import pytest

from fsrouter.config import Config, ConfigError, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


@pytest.fixture
def example() -> Config:
    return load_config(EXAMPLE)


def test_example_loads_with_expected_content(example):
    assert sorted(example.users) == ["anna", "bernd", "carla", "dirk", "eva", "felix", "greta"]
    assert [n.type for n in example.numbers] == [
        "call_routing", "agent", "agent", "agent", "queue", "unassigned", "custom"]
    hotline = example.number_by_e164("+493023125000")
    assert hotline is not None and hotline.type == "call_routing"
    assert [o.digit for o in hotline.options] == [1, 2]
    assert str(hotline.options[0].fallback) == "voicemail:anna"
    assert example.number_by_e164("+493023125201").agent == "eva"
    assert example.number_by_e164("+490000") is None
    assert example.users["eva"].extension == "1001"
    assert [p.type for p in example.users["anna"].callable_phones] == ["mobile", "landline"]
    assert example.users["anna"].phones[1].number == "+493023125101"


def test_example_schedules_and_policies(example):
    database = example.schedules["database"]
    window = database.rotations[1].restrictions[0]
    assert window.days == ("mon", "tue", "wed", "thu", "fri")
    assert (window.from_, window.to) == (clock(8, 0), clock(18, 0))
    assert example.schedules["it_infra"].rotations[0].length == timedelta(weeks=1)
    assert example.schedules["it_infra"].holidays == "BE"
    assert example.policies["database"].levels[1].strategy == "all_at_once"
    assert example.policies["it_infra"].levels[1].ring_timeout == 20
    assert example.tone("busy") == "tone_stream://%(480,480,425);loops=-1"
    assert example.queues["sales"].agents == ("eva", "felix", "greta")


def test_example_loads_quickly():
    load_config(EXAMPLE)
    best = min(_timed_load() for _ in range(5))
    assert best < 0.050


def _timed_load() -> float:
    start = time.perf_counter()
    load_config(EXAMPLE)
    return time.perf_counter() - start


def test_password_from_env_resolves_lazily(example, monkeypatch):
    monkeypatch.setenv("FSROUTER_ESL_PASSWORD", "Tr0ub4dor&3")
    assert example.switch.resolve_password() == "Tr0ub4dor&3"
    monkeypatch.delenv("FSROUTER_ESL_PASSWORD")
    with pytest.raises(ConfigError) as caught:
        example.switch.resolve_password()
    line = EXAMPLE.read_text().splitlines().index("switch:") + 1  # the section's line
    assert [str(i) for i in caught.value.issues] == [
        f"{EXAMPLE}:{line}:1: switch.password_env: environment variable FSROUTER_ESL_PASSWORD "
        "is not set or empty"]


def test_public_default_from_env_is_refused(example, monkeypatch):
    monkeypatch.setenv("FSROUTER_ESL_PASSWORD", "ClueCon")
    with pytest.raises(ConfigError, match="public default password 'ClueCon' is refused"):
        example.switch.resolve_password()


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_password_file(tmp_path):
    secret = tmp_path / "esl.secret"
    secret.write_text("s3cr3t-from-file\n", encoding="utf-8")
    config = load_config(_write(tmp_path, f"switch:\n  password_file: {secret}\n"))
    assert config.switch.resolve_password() == "s3cr3t-from-file"
    secret.unlink()
    with pytest.raises(ConfigError, match=r"c.yaml:1:1: switch.password_file: cannot read"):
        config.switch.resolve_password()


def test_password_never_printed(tmp_path):
    path = _write(tmp_path, "switch: {password: Sup3rSecretESL}\n"
                  "smtp: {username: mailer, password: Sup3rSecretSMTP}\n"
                  "database: {url: 'postgresql://fs:Sup3rSecretDB@db/fsrouter'}\n")
    config = load_config(path)
    for text in (repr(config), str(config), repr(config.switch), str(config.smtp),
                 repr(config.database), config.database.redacted_url):
        assert "Sup3rSecret" not in text
    assert config.switch.resolve_password() == "Sup3rSecretESL"
    assert config.smtp.resolve_password() == "Sup3rSecretSMTP"
    assert config.database.redacted_url == "postgresql://fs:***@db/fsrouter"


def test_public_default_password_is_not_echoed_in_other_errors(tmp_path):
    path = _write(tmp_path, "switch: {password: Sup3rSecretESL, port: x}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "Sup3rSecret" not in str(caught.value)


def test_config_is_frozen(example):
    with pytest.raises(ValueError, match="frozen"):
        example.listener.port = 1  # type: ignore[misc]


def test_minimal_config_gets_defaults(tmp_path):
    config = load_config(_write(tmp_path, "switch: {password_env: ESL_PW}\n"))
    assert (config.listener.bind, config.listener.port, config.listener.max_calls) == (
        "127.0.0.1", 8084, 500)
    assert [str(n) for n in config.listener.allow] == ["127.0.0.1/32", "::1/128"]
    assert (config.switch.host, config.switch.port) == ("127.0.0.1", 8021)
    assert config.database.url == "sqlite:////var/lib/fsrouter/fsrouter.db"
    assert (config.defaults.country, config.defaults.timezone) == ("DE", "Europe/Berlin")
    assert (config.metrics.bind, config.metrics.port) == ("127.0.0.1", 9464)
    assert config.tone("sit") == "tone_stream://%(274,0,913.8);%(274,0,1370.6);%(380,0,1776.7)"


def test_national_numbers_use_configured_country(tmp_path):
    config = load_config(_write(tmp_path, "switch: {password_env: ESL_PW}\n"
                                "defaults: {country: AT}\n"
                                "numbers: [{number: 01 5871234, type: unassigned}]\n"))
    assert config.numbers[0].number == "+4315871234"
    assert config.number_by_e164("+4315871234") is config.numbers[0]


def test_schedule_without_timezone_uses_default(tmp_path):
    config = load_config(_write(tmp_path, "switch: {password_env: ESL_PW}\n"
                                "defaults: {timezone: Europe/Vienna}\n"
                                "schedules: {s: {}, t: {timezone: UTC}}\n"))
    assert config.schedules["s"].timezone == "Europe/Vienna"
    assert config.schedules["t"].timezone == "UTC"

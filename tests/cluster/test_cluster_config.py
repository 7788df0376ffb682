"""The ``cluster:`` section: defaults, and errors naming file, line and key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from fsrouter.config import ConfigError, load_config

SWITCH = "switch:\n  password_env: FSROUTER_ESL_PASSWORD\n"


def _load(tmp_path: Path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(SWITCH + text, encoding="utf-8")
    return load_config(path)


def test_defaults_two_and_ten_seconds(tmp_path: Path) -> None:
    config = _load(tmp_path, "")
    assert (config.cluster.heartbeat_seconds, config.cluster.lease_seconds) == (2.0, 10.0)
    config = _load(tmp_path, "cluster: {heartbeat_seconds: 0.5, lease_seconds: 3}\n")
    assert (config.cluster.heartbeat_seconds, config.cluster.lease_seconds) == (0.5, 3.0)


@pytest.mark.parametrize(("text", "message"), [
    ("cluster:\n  heartbeat_seconds: 5\n  lease_seconds: 8\n",
     r"c.yaml:3:1: cluster: lease_seconds must be at least twice heartbeat_seconds"),
    ("cluster:\n  heartbeat_seconds: 0\n",
     r"c.yaml:4:3: cluster.heartbeat_seconds: Input should be greater than 0"),
    ("cluster:\n  lease: 10\n", r"c.yaml:4:3: cluster.lease: unknown key"),
])
def test_a_lease_shorter_than_two_heartbeats_is_refused(tmp_path: Path, text: str,
                                                         message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, text)

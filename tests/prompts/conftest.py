"""A small configuration whose prompts render into tmp_path, with real espeak-ng and sox
(installed by the test set-up when missing: fsrouter.prompts.install)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from fsrouter.config import Config, load_config
from fsrouter.prompts.install import ToolsUnavailable, ensure_tools


@pytest.fixture(scope="session", autouse=True)
def speech_tools() -> None:
    try:
        ensure_tools()
    except ToolsUnavailable as error:
        pytest.fail(str(error))


def hotline(directory: Path, **option_two: Any) -> dict[str, Any]:
    """A German hotline with an English option; prompts go to ``directory``."""
    return {
        "switch": {"password": "s3cret-Esl-pw"},
        "prompts": {"directory": str(directory)},
        "users": {"anna": {"name": "Anna", "phones": [{"type": "mobile",
                                                      "number": "+4915111111111"}]}},
        "policies": {"db": {"levels": [{"targets": [{"user": "anna"}]}],
                            "press_to_accept": False}},
        "numbers": [{
            "number": "+493040001000", "type": "call_routing", "language": "de",
            "options": [
                {"digit": 1, "label": "die Datenbanken", "policy": "db"},
                {"digit": 2, "label": "English support", "policy": "db", "language": "en",
                 **option_two},
            ],
        }],
    }


def write(tmp_path: Path, data: dict[str, Any], name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def load(tmp_path: Path, data: dict[str, Any]) -> Config:
    return load_config(write(tmp_path, data))

"""fsrouter configuration: YAML with line marks, a strict schema, E.164 numbers.

Typical use::

    from fsrouter.config import ConfigError, load_config

    try:
        config = load_config("/etc/fsrouter/config.yaml")
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue)        # config.yaml:14:7: numbers[1].options[0].digit: must be 1-9, got 12
"""

from fsrouter.config.errors import ConfigError, ConfigIssue
from fsrouter.config.loader import load_config
from fsrouter.config.numbers import normalise_number
from fsrouter.config.schema import Config

__all__ = ["Config", "ConfigError", "ConfigIssue", "load_config", "normalise_number"]

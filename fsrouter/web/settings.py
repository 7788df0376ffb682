"""What ``fsrouter web`` is started with (command-line options, not the YAML: the console is a
separate process and its settings are the unit's, see systemd/fsrouter-web.service)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from ipaddress import ip_address
from pathlib import Path

from fsrouter.store.db import make_private_dirs

DEFAULT_PORT = 8080
SECRET_BYTES = 32


@dataclass(frozen=True)
class WebSettings:
    config_path: Path
    database_url: str | None = None  # None: the configuration's database.url
    host: str = "127.0.0.1"  # loopback: put a TLS reverse proxy in front (README)
    port: int = DEFAULT_PORT  # 0 picks a free port (tests); the log says which
    secret_key_file: Path | None = None  # None: web-secret next to the SQLite database
    secure_cookies: bool = False  # the cookie only over HTTPS (behind a TLS proxy: on)
    trusted_proxy: str | None = None  # the proxy's address; its X-Forwarded-* are believed
    session_idle: timedelta = timedelta(hours=8)  # no request for this long: log in again
    session_max: timedelta = timedelta(hours=24)  # log in again at least this often

    def __post_init__(self) -> None:
        if self.trusted_proxy is not None:
            ip_address(self.trusted_proxy)  # ValueError: not an address


def secret_key(path: Path) -> bytes:
    """The key that signs session cookies, made (0600, folders 0700) on first use.

    Kept in a file, not the database: a copy of the database must not let anyone forge a
    session. Deleting the file logs everybody out.
    """
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        make_private_dirs(path.parent, 0o700)
        key = secrets.token_bytes(SECRET_BYTES)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:  # another process made it first: use that one
            return secret_key(path)
        with os.fdopen(fd, "wb") as file:
            file.write(key)
    if len(key) < SECRET_BYTES:
        raise ValueError(f"{path}: the session key must have at least {SECRET_BYTES} bytes")
    return key

"""``fsrouter web``: serve the console; ``fsrouter web user|token ...``: its accounts.

Passwords are read from a prompt (twice, not echoed) or, with ``--password-stdin``, from the
first line of standard input; never from the command line (``ps`` and shell history show
it). API tokens are printed once, when made.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from fsrouter.commands import EXIT_BIND, EXIT_OK, EXIT_STORE, EXIT_USAGE
from fsrouter.commands.common import (
    Failure,
    emit,
    emit_json,
    iso,
    load,
    local_text,
    operator_name,
    shown,
    store,
    table,
    utc_now,
)
from fsrouter.store.db import SqliteTarget, parse_url
from fsrouter.store.errors import StoreError


def run_serve(args: argparse.Namespace) -> int:
    from fsrouter.web import server
    from fsrouter.web.app import create_app
    from fsrouter.web.settings import WebSettings

    config = load(args.config)
    url = args.database or config.database.url
    try:
        settings = WebSettings(
            config_path=args.config, database_url=url, host=args.bind, port=args.port,
            secret_key_file=args.secret_file or default_secret_file(url),
            secure_cookies=args.secure_cookies, trusted_proxy=args.trusted_proxy)
    except ValueError as error:
        raise Failure(EXIT_USAGE, f"--trusted-proxy: {error}") from None
    with store(config, url):
        try:
            app = create_app(settings)
        except (OSError, ValueError) as error:
            raise Failure(EXIT_USAGE, f"session key {settings.secret_key_file}: {error}") \
                from None
        try:
            server.run(app, settings)
        except OSError as error:
            print(f"cannot listen on {args.bind}:{args.port}: {error.strerror or error}",
                  file=sys.stderr)
            return EXIT_BIND
    return EXIT_OK


def default_secret_file(database_url: str) -> Path:
    """systemd's StateDirectory, else next to the SQLite database; else --secret-file."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state) / "web-secret"
    try:
        target = parse_url(database_url)
    except StoreError as error:
        raise Failure(EXIT_STORE, f"database: {error}") from None
    if isinstance(target, SqliteTarget) and target.path != ":memory:":
        return Path(target.path).parent / "web-secret"
    raise Failure(EXIT_USAGE, "--secret-file is needed: where to keep the key that signs "
                  "session cookies (e.g. /var/lib/fsrouter/web-secret)")


def read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise Failure(EXIT_USAGE, "no terminal to ask for the password: use --password-stdin")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Again: ") != first:
        raise Failure(EXIT_USAGE, "the passwords differ; nothing was changed")
    return first


def run_user_add(args: argparse.Namespace) -> int:
    from fsrouter.web import accounts

    config = load(args.config)
    accounts.check_name(args.name)
    accounts.check_role(args.role)
    password = read_password(args)
    with store(config, args.database):
        accounts.add_user(args.name, args.role, password, operator_name(), utc_now())
    print(f"web account {args.name} added ({args.role})")
    return EXIT_OK


def run_user_passwd(args: argparse.Namespace) -> int:
    from fsrouter.web import accounts

    config = load(args.config)
    accounts.check_name(args.name)
    password = read_password(args)
    with store(config, args.database):
        accounts.change_password(args.name, password, operator_name(), utc_now())
    print(f"password of {args.name} changed; its sessions have ended")
    return EXIT_OK


def run_user_remove(args: argparse.Namespace) -> int:
    from fsrouter.web import accounts

    config = load(args.config)
    with store(config, args.database):
        accounts.remove_user(args.name, operator_name(), utc_now())
    print(f"web account {args.name} removed")
    return EXIT_OK


def run_user_list(args: argparse.Namespace) -> int:
    from fsrouter.store import accounts as stored

    config = load(args.config)
    zone = config.defaults.timezone
    with store(config, args.database):
        rows = stored.list_accounts()
    if args.json:
        emit_json([{"name": row.name, "role": row.role,
                    "password_changed": iso(row.changed_at, zone)} for row in rows])
    else:
        emit(table(("NAME", "ROLE", "PASSWORD CHANGED"),
                   [(shown(row.name), row.role, local_text(row.changed_at, zone))
                    for row in rows]))
    return EXIT_OK


def run_token_add(args: argparse.Namespace) -> int:
    from fsrouter.web import accounts

    config = load(args.config)
    with store(config, args.database):
        token = accounts.add_token(args.name, args.role, operator_name(), utc_now())
    print(token)
    print(f"API token {args.name} ({args.role}): shown only now; send it as "
          "'Authorization: Bearer <token>'", file=sys.stderr)
    return EXIT_OK


def run_token_list(args: argparse.Namespace) -> int:
    from fsrouter.store import accounts as stored

    config = load(args.config)
    zone = config.defaults.timezone
    with store(config, args.database):
        rows = stored.list_tokens()
    if args.json:
        emit_json([{"name": row.name, "role": row.role, "created_by": row.created_by,
                    "created": iso(row.created_at, zone),
                    "last_used": iso(row.last_used_at, zone)} for row in rows])
    else:
        emit(table(("NAME", "ROLE", "CREATED BY", "CREATED", "LAST USED"),
                   [(shown(row.name), row.role, shown(row.created_by),
                     local_text(row.created_at, zone), local_text(row.last_used_at, zone))
                    for row in rows]))
    return EXIT_OK


def run_token_remove(args: argparse.Namespace) -> int:
    from fsrouter.web import accounts

    config = load(args.config)
    with store(config, args.database):
        accounts.remove_token(args.name, operator_name(), utc_now())
    print(f"API token {args.name} removed")
    return EXIT_OK

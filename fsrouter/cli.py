"""The ``fsrouter`` command: thin sub-commands that parse, call and print.

Exit codes (also in the README):
  0  success
  1  unexpected error (a bug: the traceback is logged)
  2  usage error or invalid configuration
  3  the database cannot be opened or migrated
  4  the call listener cannot be bound
"""

from gevent import monkey

# Before anything imports socket, ssl or threading: the daemon is gevent all the way.
monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

from fsrouter import __version__, logs  # noqa: E402

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_STORE = 3
EXIT_BIND = 4

DEFAULT_CONFIG = os.environ.get("FSROUTER_CONFIG", "/etc/fsrouter/config.yaml")


def _print_config_error(error: Exception) -> int:
    for issue in getattr(error, "issues", [error]):
        print(issue, file=sys.stderr)
    return EXIT_USAGE


def cmd_check_config(args: argparse.Namespace) -> int:
    from fsrouter.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as error:
        return _print_config_error(error)
    print(f"{args.config}: OK ({len(config.numbers)} numbers, {len(config.users)} users)")
    return EXIT_OK


def cmd_version(_args: argparse.Namespace) -> int:
    print(f"fsrouter {__version__}")
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from fsrouter.config import ConfigError, load_config
    from fsrouter.store import StoreError, migrations, open_database

    try:
        config = load_config(args.config)
    except ConfigError as error:
        return _print_config_error(error)
    try:
        db = open_database(args.database or config.database.url)
        applied = migrations.upgrade(db)
        version = migrations.current_version(db)
    except StoreError as error:
        print(f"database: {error}", file=sys.stderr)
        return EXIT_STORE
    if applied:
        print(f"applied migrations {', '.join(map(str, applied))}; schema version {version}")
    else:
        print(f"schema is up to date (version {version})")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from fsrouter.daemon import run_daemon

    return run_daemon(args.config, database_url=args.database)


def cmd_demo(args: argparse.Namespace) -> int:
    from fsrouter.demo import run_demo

    if not args.log_level_given:
        logs.configure("error", json=False)  # the demo prints its own readable story
    return run_demo(args.config)


def _add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", type=Path, default=Path(DEFAULT_CONFIG),
        help="configuration file (default: $FSROUTER_CONFIG or /etc/fsrouter/config.yaml)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fsrouter",
        description="Inbound call routing for FreeSWITCH.",
        epilog="exit codes: 0 ok, 1 unexpected error, 2 usage or invalid configuration, "
        "3 database unavailable, 4 listener cannot bind",
    )
    parser.add_argument("--log-level", default=None, choices=logs.LEVELS,
                        help="default: info (error for the demo)")
    parser.add_argument(
        "--log-format", default="auto", choices=("auto", "json", "console"),
        help="auto: console on a terminal, JSON lines otherwise",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run the daemon (outbound ESL listener and call handling)")
    _add_config_arg(run)
    run.add_argument("--database", help="database URL, overrides the configuration")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("config", type=Path, nargs="?", default=Path(DEFAULT_CONFIG))
    check.set_defaults(func=cmd_check_config)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)
    upgrade = db_sub.add_parser("upgrade", help="create or migrate the schema (idempotent)")
    _add_config_arg(upgrade)
    upgrade.add_argument("--database", help="database URL, overrides the configuration")
    upgrade.set_defaults(func=cmd_db_upgrade)

    demo = sub.add_parser("demo", help="run the daemon against the built-in simulator")
    demo.add_argument("--config", type=Path, default=None,
                      help="configuration (default: the shipped config.example.yaml)")
    demo.set_defaults(func=cmd_demo)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.log_level_given = args.log_level is not None
    json = {"auto": None, "json": True, "console": False}[args.log_format]
    logs.configure(args.log_level or "info", json=json)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return EXIT_ERROR

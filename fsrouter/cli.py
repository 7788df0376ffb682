"""The ``fsrouter`` command: thin sub-commands that parse, call and print.

Exit codes (also in the README):
  0  success
  1  unexpected error (a bug: the traceback is logged)
  2  usage error or invalid configuration
  3  the database cannot be opened or migrated
  4  the call listener cannot be bound
  5  ``fsrouter oncall`` found gaps (times when an option has nobody to ring)

The operator commands (routes, agents, two-way, simulate, oncall, incidents, calls,
voicemails, deliveries, audit) live in
:mod:`fsrouter.commands`; this module only parses their arguments and dispatches.
"""

from gevent import monkey

# Before anything imports socket, ssl or threading: the daemon is gevent all the way.
monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from fsrouter import __version__, logs  # noqa: E402
from fsrouter.commands import (  # noqa: E402
    EXIT_BIND,
    EXIT_ERROR,
    EXIT_GAPS,
    EXIT_OK,
    EXIT_STORE,
    EXIT_USAGE,
)

__all__ = ["EXIT_BIND", "EXIT_ERROR", "EXIT_GAPS", "EXIT_OK", "EXIT_STORE", "EXIT_USAGE",
           "build_parser", "main"]

DEFAULT_CONFIG = os.environ.get("FSROUTER_CONFIG", "/etc/fsrouter/config.yaml")


def _print_config_error(error: Exception) -> int:
    for issue in getattr(error, "issues", [error]):
        print(issue, file=sys.stderr)
    return EXIT_USAGE


def cmd_check_config(args: argparse.Namespace) -> int:
    from fsrouter.config import ConfigError, load_config

    path = args.config_file or args.config
    try:
        config = load_config(path)
        # What `run` reads at start: an unset password_env is reported now, at its own line.
        for _name, switch in config.named_switches():
            switch.resolve_password()
        config.smtp.resolve_password()
    except ConfigError as error:
        return _print_config_error(error)
    from fsrouter.prompts import check_files

    missing = check_files(config)  # recordings named as prompts, by key
    if missing:
        return _print_config_error(ConfigError(missing))
    print(f"{path}: OK ({len(config.numbers)} numbers, {len(config.users)} users)")
    return EXIT_OK


def cmd_version(_args: argparse.Namespace) -> int:
    print(f"fsrouter {__version__}")
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from fsrouter.config import ConfigError, load_config
    from fsrouter.store import StoreError, migrations, open_database
    from fsrouter.store.db import close_database

    try:
        config = load_config(args.config)
    except ConfigError as error:
        return _print_config_error(error)
    try:
        db = open_database(args.database or config.database.url)
    except StoreError as error:
        print(f"database: {error}", file=sys.stderr)
        return EXIT_STORE
    try:
        applied = migrations.upgrade(db)
        version = migrations.current_version(db)
    except StoreError as error:
        print(f"database: {error}", file=sys.stderr)
        return EXIT_STORE
    finally:
        close_database(db)  # every pooled connection: main() may run inside a process
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


def _command(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    """Run ``fsrouter.commands.<module>.<function>``, imported only when it is used."""
    def call(args: argparse.Namespace) -> int:
        from importlib import import_module

        run: Callable[[argparse.Namespace], int] = getattr(
            import_module(f"fsrouter.commands.{module}"), function)
        return run(args)
    return call


def _add_store_args(parser: argparse.ArgumentParser, json: bool = False) -> None:
    _add_config_arg(parser)
    parser.add_argument("--database", help="database URL, overrides the configuration")
    if json:
        parser.add_argument("--json", action="store_true", help="machine-readable output")


def _add_routes(sub: Any) -> None:
    routes = sub.add_parser("routes", help="the route table; run-time number assignments")
    routes_sub = routes.add_subparsers(dest="routes_command", metavar="ROUTES_COMMAND",
                                       required=True)
    listing = routes_sub.add_parser("list", help="every number: destination, type, yaml or db")
    _add_store_args(listing, json=True)
    listing.set_defaults(func=_command("routes", "run_list"), quiet_logs=True)

    setting = routes_sub.add_parser(
        "set", help="send numbers somewhere else until reset (all or nothing)",
        description="Numbers in any form the configuration accepts (030..., +49...). "
        "CSV lines: number,type,target (header optional, # comments); type is agent, queue, "
        "unassigned or custom.")
    _add_store_args(setting)
    setting.add_argument("numbers", nargs="*", metavar="NUMBER")
    target = setting.add_mutually_exclusive_group(required=True)
    target.add_argument("--agent", metavar="USER", help="ring this agent (a user id)")
    target.add_argument("--queue", metavar="QUEUE", help="an inbound queue")
    target.add_argument("--unassigned", action="store_true", help="the not-in-service tone")
    target.add_argument("--custom", metavar="TARGET",
                        help="a dial string (user/1000) or a dialplan extension (1000)")
    target.add_argument("--from-file", metavar="CSV", help="many routes from a CSV file")
    setting.add_argument("--by", help="who is changing it (default: your login)")
    setting.set_defaults(func=_command("routes", "run_set"), quiet_logs=True)

    reset = routes_sub.add_parser("reset", help="drop assignments: the YAML applies again")
    _add_store_args(reset)
    reset.add_argument("numbers", nargs="*", metavar="NUMBER")
    reset.add_argument("--all", action="store_true", help="drop every run-time assignment")
    reset.add_argument("--by", help="who is changing it (default: your login)")
    reset.set_defaults(func=_command("routes", "run_reset"), quiet_logs=True)


def _add_agents(sub: Any) -> None:
    agents = sub.add_parser("agents", help="contact-center agents: presence, login, logout")
    agents_sub = agents.add_subparsers(dest="agents_command", metavar="AGENTS_COMMAND",
                                       required=True)
    listing = agents_sub.add_parser("list", help="agents with state, busy and since when")
    _add_store_args(listing, json=True)
    listing.set_defaults(func=_command("agents", "run_list"), quiet_logs=True)
    for name, text in (("login", "log agents in"), ("logout", "log agents out")):
        change = agents_sub.add_parser(name, help=f"{text} (all or nothing)")
        _add_store_args(change)
        change.add_argument("names", nargs="+", metavar="USER")
        change.add_argument("--by", help="who is changing it (default: your login)")
        change.set_defaults(func=_command("agents", f"run_{name}"), quiet_logs=True)


def _add_two_way(sub: Any) -> None:
    two_way = sub.add_parser("two-way", help="2-way VoIP: which agent called which customer")
    two_way_sub = two_way.add_subparsers(dest="two_way_command", metavar="TWO_WAY_COMMAND",
                                         required=True)
    listing = two_way_sub.add_parser("list", help="live mappings, newest first")
    _add_store_args(listing, json=True)
    listing.add_argument("--all", action="store_true", help="include expired mappings")
    listing.set_defaults(func=_command("twoway", "run_list"), quiet_logs=True)
    importing = two_way_sub.add_parser(
        "import", help="mappings from CSV: customer_number,agent,our_number[,last_call_iso]")
    _add_store_args(importing)
    importing.add_argument("file", metavar="CSV")
    importing.add_argument("--by", help="who is importing (default: your login)")
    importing.set_defaults(func=_command("twoway", "run_import"), quiet_logs=True)


def _add_simulate(sub: Any) -> None:
    simulate = sub.add_parser(
        "simulate", help="dry run: what a call would hear and who would be rung",
        description="No switch, no database writes. Config only unless --with-db or "
        "--database (then assignments, presence, 2-way mappings and the round robin turn "
        "are read from the database).")
    _add_store_args(simulate, json=True)
    simulate.add_argument("--number", required=True, help="the number called")
    simulate.add_argument("--caller", required=True, help="the caller's number")
    simulate.add_argument("--digits", default="",
                          help="keys pressed, one per menu play; _ for no key")
    simulate.add_argument("--at", help="ISO time, e.g. 2026-12-24T03:00+01:00 (default: now; "
                          "without an offset: defaults.timezone)")
    simulate.add_argument("--with-db", action="store_true",
                          help="read the configured database")
    for flag, what in (("--logged-in", "logged in and free"), ("--logged-out", "logged out"),
                       ("--busy", "logged in and busy")):
        simulate.add_argument(flag, action="append", default=[], metavar="USER",
                              help=f"count this agent as {what} (repeatable)")
    simulate.set_defaults(func=_command("simulate", "run"), quiet_logs=True)


def _add_oncall(sub: Any) -> None:
    oncall = sub.add_parser(
        "oncall", help="who is on call per hotline option; exit 5 on gaps")
    _add_config_arg(oncall)
    oncall.add_argument("--days", type=int, default=14, help="how many days (default 14)")
    oncall.add_argument("--from", dest="start", metavar="ISO",
                        help="start (default: now; without an offset: defaults.timezone)")
    oncall.add_argument("--json", action="store_true", help="machine-readable output")
    oncall.add_argument("--database", help="read run-time overrides here (default: the "
                        "configured database, if it exists)")
    oncall.add_argument("--no-db", action="store_true", help="the configuration alone")
    oncall.set_defaults(func=_command("oncall", "run"), quiet_logs=True)
    _add_overrides(oncall.add_subparsers(dest="oncall_command", metavar="override"))


def _add_overrides(oncall_sub: Any) -> None:
    override = oncall_sub.add_parser(
        "override", help="run-time on-call changes (database): add, list, remove")
    sub = override.add_subparsers(dest="override_command", metavar="OVERRIDE_COMMAND",
                                  required=True)
    add = sub.add_parser("add", help="put USER on call for a schedule from --from to --to",
                         description="Times are ISO (2026-12-24T18:00); without an offset "
                         "they are read in defaults.timezone. Beats the rotation and the "
                         "YAML overrides; may not overlap another run-time override.")
    _add_store_args(add)
    add.add_argument("user", metavar="USER")
    add.add_argument("--schedule", required=True, metavar="SCHEDULE")
    add.add_argument("--from", dest="start", required=True, metavar="ISO")
    add.add_argument("--to", dest="end", required=True, metavar="ISO")
    add.add_argument("--reason", help="shown in lists, oncall and the audit trail")
    add.add_argument("--by", help="who is changing it (default: your login)")
    add.set_defaults(func=_command("overrides", "run_add"), quiet_logs=True)
    listing = sub.add_parser("list", help="current and future run-time overrides")
    _add_listing_args(listing)
    listing.add_argument("--all", action="store_true", help="include past overrides")
    listing.add_argument("--schedule", metavar="SCHEDULE")
    listing.set_defaults(func=_command("overrides", "run_list"), quiet_logs=True)
    remove = sub.add_parser("remove", help="delete run-time overrides by id (all or nothing)")
    _add_store_args(remove)
    remove.add_argument("ids", nargs="+", type=int, metavar="ID")
    remove.add_argument("--by", help="who is changing it (default: your login)")
    remove.set_defaults(func=_command("overrides", "run_remove"), quiet_logs=True)
    for parser in (add, listing, remove):
        # ``oncall -c FILE override ...`` works too: unless given here, the value given to
        # ``oncall`` (or its default) stays instead of this parser's default replacing it.
        for action in parser._actions:
            if action.dest in ("config", "database"):
                action.default = argparse.SUPPRESS


def _add_listing_args(parser: argparse.ArgumentParser) -> None:
    """A read-only listing: the store, and --json or --csv (times ISO 8601 with offset)."""
    _add_store_args(parser)
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="machine-readable output")
    output.add_argument("--csv", action="store_true", help="CSV with a header row")


def _add_window_args(parser: argparse.ArgumentParser) -> None:
    _add_listing_args(parser)
    parser.add_argument("--since", metavar="ISO", help="from this time (without an offset: "
                        "defaults.timezone)")
    parser.add_argument("--until", metavar="ISO", help="before this time")
    parser.add_argument("--limit", type=int, default=200,
                        help="the newest N rows (default 200)")


def _add_history(sub: Any) -> None:
    incidents = sub.add_parser("incidents", help="hotline incidents: list, show a timeline")
    inc_sub = incidents.add_subparsers(dest="incidents_command", metavar="INCIDENTS_COMMAND",
                                       required=True)
    listing = inc_sub.add_parser("list", help="incidents, oldest first")
    _add_window_args(listing)
    listing.add_argument("--number", help="the hotline number called")
    listing.add_argument("--option", metavar="DIGIT", help="the menu option chosen")
    listing.add_argument("--state", help="open, accepted, resolved, abandoned, unanswered")
    listing.set_defaults(func=_command("history", "run_incidents"), quiet_logs=True)
    show = inc_sub.add_parser("show", help="one incident: menu choice, every attempt, the end")
    _add_store_args(show, json=True)
    show.add_argument("id", type=int, metavar="ID")
    show.set_defaults(func=_command("history", "run_incident_show"), quiet_logs=True)

    calls = sub.add_parser("calls", help="call records")
    calls_sub = calls.add_subparsers(dest="calls_command", metavar="CALLS_COMMAND",
                                     required=True)
    listing = calls_sub.add_parser("list", help="calls, oldest first")
    _add_window_args(listing)
    listing.add_argument("--number", help="the number called")
    listing.add_argument("--outcome", help="e.g. bridged, voicemail, hangup_in_menu")
    listing.set_defaults(func=_command("history", "run_calls"), quiet_logs=True)

    voicemails = sub.add_parser("voicemails", help="voicemails and whether they were mailed")
    vm_sub = voicemails.add_subparsers(dest="voicemails_command", metavar="VOICEMAILS_COMMAND",
                                       required=True)
    listing = vm_sub.add_parser("list", help="voicemails with their mail state")
    _add_window_args(listing)
    listing.add_argument("--user", help="the agent the message is for")
    listing.add_argument("--mail", choices=("sent", "pending", "failed"))
    listing.set_defaults(func=_command("history", "run_voicemails"), quiet_logs=True)

    deliveries = sub.add_parser("deliveries", help="failed voicemail mails and webhooks")
    del_sub = deliveries.add_subparsers(dest="deliveries_command",
                                        metavar="DELIVERIES_COMMAND", required=True)
    listing = del_sub.add_parser("list", help="deliveries the senders gave up on")
    _add_window_args(listing)
    listing.set_defaults(func=_command("deliveries", "run_list"), quiet_logs=True)
    retry = del_sub.add_parser("retry", help="make them due again (mail:N, webhook:N)")
    _add_store_args(retry)
    retry.add_argument("ids", nargs="+", metavar="ID")
    retry.add_argument("--by", help="who is retrying (default: your login)")
    retry.set_defaults(func=_command("deliveries", "run_retry"), quiet_logs=True)


def _add_audit(sub: Any) -> None:
    audit = sub.add_parser("audit", help="every change made through fsrouter: who, when, "
                           "before and after")
    _add_window_args(audit)
    audit.add_argument("--kind", help="route.set, agent.login, override.add... or a prefix "
                       "like route.")
    audit.add_argument("--subject", help="a number, user, schedule#id, mail:N...")
    audit.add_argument("--who", help="who made the change (e.g. cli:anna, phone:bernd)")
    audit.set_defaults(func=_command("audit", "run"), quiet_logs=True)


def _add_prompts(sub: Any) -> None:
    prompts = sub.add_parser("prompts", help="every prompt: text, language, file; render them")
    prompts_sub = prompts.add_subparsers(dest="prompts_command", metavar="PROMPTS_COMMAND",
                                         required=True)
    listing = prompts_sub.add_parser("list", help="every prompt with its file and state")
    render = prompts_sub.add_parser("render", help="render what is missing (start and reload "
                                    "do it too); --export to listen to them")
    render.add_argument("--export", metavar="DIR", help="copy each prompt to DIR/<key>.wav")
    for parser in (listing, render):
        _add_config_arg(parser)
        parser.add_argument("--directory", type=Path, metavar="DIR",
                            help="render into DIR instead of prompts.directory")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=_command("prompts", "run_list"), quiet_logs=True)
    render.set_defaults(func=_command("prompts", "run_render"), quiet_logs=True)


def _add_web(sub: Any) -> None:
    web = sub.add_parser(
        "web", help="serve the console (a separate process); its accounts and API tokens",
        description="Without a sub-command: serve the console until SIGTERM. It binds to "
        "loopback; put a TLS reverse proxy in front (README).")
    _add_store_args(web)
    web.add_argument("--bind", default="127.0.0.1", help="address (default 127.0.0.1)")
    web.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: any)")
    web.add_argument("--secret-file", type=Path, metavar="FILE",
                     help="the key signing session cookies, made on first start (default: "
                     "$STATE_DIRECTORY/web-secret, else next to the SQLite database)")
    web.add_argument("--secure-cookies", action="store_true",
                     help="send the session cookie over HTTPS only (behind a TLS proxy)")
    web.add_argument("--trusted-proxy", metavar="ADDRESS",
                     help="the reverse proxy's address: its X-Forwarded-For/-Proto are used")
    web.set_defaults(func=_command("web", "run_serve"))
    web_sub = web.add_subparsers(dest="web_command", metavar="[user|token]")
    groups = {"user": ("console log-ins", ("add", "passwd", "remove", "list")),
              "token": ("API tokens for scripts", ("add", "remove", "list"))}
    for group, (text, verbs) in groups.items():
        parser = web_sub.add_parser(group, help=text)
        verbs_sub = parser.add_subparsers(dest=f"web_{group}_command", metavar="ACTION",
                                          required=True)
        for verb in verbs:
            action = verbs_sub.add_parser(verb, help=f"{verb} {text}")
            _add_store_args(action, json=verb == "list")
            if verb != "list":
                action.add_argument("name", metavar="NAME")
            if verb == "add":
                action.add_argument("--role", choices=("viewer", "supervisor"),
                                    default="viewer", help="default: viewer")
            if group == "user" and verb in ("add", "passwd"):
                action.add_argument("--password-stdin", action="store_true",
                                    help="read the password from the first line of stdin")
            action.set_defaults(func=_command("web", f"run_{group}_{verb}"), quiet_logs=True)
            for option in action._actions:  # as for `oncall ... override`
                if option.dest in ("config", "database"):
                    option.default = argparse.SUPPRESS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fsrouter",
        description="Inbound call routing for FreeSWITCH.",
        epilog="exit codes: 0 ok, 1 unexpected error, 2 usage or invalid configuration, "
        "3 database unavailable, 4 listener cannot bind, 5 on-call gaps (oncall)",
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
    _add_config_arg(check)  # -c FILE, like every other command; FILE alone works too
    check.add_argument("config_file", type=Path, nargs="?", metavar="FILE", default=None)
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

    for add in (_add_routes, _add_agents, _add_two_way, _add_simulate, _add_oncall,
                _add_prompts, _add_history, _add_audit, _add_web):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.log_level_given = args.log_level is not None
    json = {"auto": None, "json": True, "console": False}[args.log_format]
    # Operator commands print their own results; their logs only speak up about problems.
    quiet = getattr(args, "quiet_logs", False)
    logs.configure(args.log_level or ("warning" if quiet else "info"), json=json)
    func: Callable[[argparse.Namespace], int] = args.func
    from fsrouter.commands.common import Failure

    try:
        return func(args)
    except Failure as failure:
        for line in failure.lines:
            print(line, file=sys.stderr)
        return failure.code
    except KeyboardInterrupt:
        return EXIT_ERROR

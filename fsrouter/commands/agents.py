"""``fsrouter agents list|login|logout``: contact-center agents' presence in the database.

An agent is a configured user with a SIP phone or an extension (what the daemon rings and what
the ``*21``/``*22`` feature codes identify). ``busy`` comes from live channel events and is only
shown here. Login and logout check every name first and change all agents or none.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from fsrouter.commands import EXIT_OK
from fsrouter.commands.common import (
    agent_problem,
    by_of,
    emit,
    emit_json,
    fail_if,
    is_agent,
    iso,
    load,
    local_text,
    shown,
    store,
    table,
    utc_now,
)
from fsrouter.config import Config
from fsrouter.store import queries, session
from fsrouter.store.audit import change_presence


def run_list(args: argparse.Namespace) -> int:
    config = load(args.config)
    with store(config, args.database):
        agents = [_agent(config, user_id) for user_id in agent_ids(config)]
    if args.json:
        emit_json(agents)
        return EXIT_OK
    zone = config.defaults.timezone
    emit(table(("user", "name", "extension", "state", "busy", "since"), [
        [a["user"], shown(a["name"], 30), a["extension"] or "-",
         a["state"].replace("_", " "), "yes" if a["busy"] else "no",
         local_text(datetime.fromisoformat(a["since"]), zone) if a["since"] else "never logged in"]
        for a in agents]))
    return EXIT_OK


def agent_ids(config: Config) -> list[str]:
    return sorted(uid for uid, user in config.users.items() if is_agent(user))


def _agent(config: Config, user_id: str) -> dict[str, Any]:
    user = config.users[user_id]
    row = queries.get_presence(user_id)
    return {"user": user_id, "name": user.name, "extension": user.extension,
            "state": row.state if row else "logged_out", "busy": bool(row and row.busy),
            "since": iso(row.since, config.defaults.timezone) if row else None}


def run_login(args: argparse.Namespace) -> int:
    return _change(args, "logged_in")


def run_logout(args: argparse.Namespace) -> int:
    return _change(args, "logged_out")


def _change(args: argparse.Namespace, state: str) -> int:
    config = load(args.config)
    names = list(dict.fromkeys(args.names))
    errors = [problem for name in names if (problem := agent_problem(name, config))]
    fail_if(errors, lambda n: f"{n} problem(s): nothing was changed")
    by = by_of(args)
    now = utc_now()
    lines = []
    with store(config, args.database), session(immediate=True):
        # One transaction: every agent changes (and is audited), or (on a database error) none.
        for name in names:
            was = change_presence(name, state, by, now)
            word = state.replace("_", " ")
            lines.append(f"{name}: {word}" if was != state else f"{name}: already {word}")
    emit(lines)
    return EXIT_OK

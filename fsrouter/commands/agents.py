"""``fsrouter agents list|login|logout``: contact-center agents' presence in the database.

An agent is a configured user with a SIP phone or an extension (what the daemon rings and what
the ``*21``/``*22`` feature codes identify). ``busy`` comes from live channel events and is only
shown here. Login and logout check every name first and change all agents or none.

:func:`agents` and :func:`change` take plain values and need the database bound (the commands
open it with ``store``, the web console with its own session): the console calls them too.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
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
from fsrouter.store.models import PRESENCE_STATES, AgentPresence


def run_list(args: argparse.Namespace) -> int:
    config = load(args.config)
    with store(config, args.database):
        listed = agents(config)
    if args.json:
        emit_json(listed)
        return EXIT_OK
    zone = config.defaults.timezone
    emit(table(("user", "name", "extension", "state", "busy", "since"), [
        [a["user"], shown(a["name"], 30), a["extension"] or "-",
         a["state"].replace("_", " "), "yes" if a["busy"] else "no",
         local_text(datetime.fromisoformat(a["since"]), zone) if a["since"] else "never logged in"]
        for a in listed]))
    return EXIT_OK


def agents(config: Config) -> list[dict[str, Any]]:
    """Every agent of the configuration with its presence (the database bound), by user id."""
    ids = agent_ids(config)
    rows = queries.presence_of(ids)
    return [_agent(config, user_id, rows.get(user_id)) for user_id in ids]


def agent_ids(config: Config) -> list[str]:
    return sorted(uid for uid, user in config.users.items() if is_agent(user))


def _agent(config: Config, user_id: str, row: AgentPresence | None) -> dict[str, Any]:
    user = config.users[user_id]
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
    check_agents(config, names)
    by = by_of(args)
    now = utc_now()
    with store(config, args.database):
        lines = change(config, names, state, by, now)
    emit(lines)
    return EXIT_OK


def check_agents(config: Config, names: Sequence[str]) -> None:
    """:class:`Failure` (exit 2) naming every name that is not an agent of ``config``."""
    errors = [problem for name in names if (problem := agent_problem(name, config))]
    fail_if(errors, lambda n: f"{n} problem(s): nothing was changed")


def change(config: Config, names: Sequence[str], state: str, by: str, now: datetime
           ) -> list[str]:
    """Log ``names`` in or out (``state``), audited as ``by``; one line per agent
    (``anna: logged out`` or ``anna: already logged out``). The database must be bound."""
    if state not in PRESENCE_STATES:
        raise ValueError(f"state must be one of {PRESENCE_STATES}, got {state!r}")
    names = list(dict.fromkeys(names))
    check_agents(config, names)
    lines = []
    with session(immediate=True):
        # One transaction: every agent changes (and is audited), or (on a database error) none.
        for name in names:
            was = change_presence(name, state, by, now)
            word = state.replace("_", " ")
            lines.append(f"{name}: {word}" if was != state else f"{name}: already {word}")
    return lines

"""Checks between sections, run on the raw data so they report even when the schema fails.

Each check yields ``(path, message)``; the loader turns them into issues with marks. Values of
the wrong shape are skipped here: the schema already reports them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

from fsrouter.config.numbers import normalise_number
from fsrouter.config.yamlmarks import Path

Finding = tuple[Path, str]


def cross_check(data: dict[str, Any], region: str | None) -> list[Finding]:
    """Every cross-section problem in ``data`` (the loaded YAML)."""
    ids = {section: set(_mapping(data, section)) for section in
           ("users", "schedules", "policies", "queues")}
    checks = (_policy_refs, _schedule_refs, _queue_refs, _number_refs)
    findings = [finding for check in checks for finding in check(data, ids)]
    findings.extend(_duplicate_numbers(data, region))
    findings.extend(_duplicate_digits(data))
    findings.extend(_switches(data))
    return findings


def _mapping(data: Any, key: str) -> dict[str, Any]:
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}


def _items(data: Any, key: str) -> Iterator[tuple[int, Any]]:
    value = data.get(key) if isinstance(data, dict) else None
    return enumerate(value) if isinstance(value, list) else iter(())


def _unknown(kind: str, name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {kind} {name!r}{hint}"


def _ref(path: Path, value: Any, kind: str, known: set[str]) -> Iterator[Finding]:
    if isinstance(value, str) and value not in known:
        yield path, _unknown(kind, value, known)


def _policy_refs(data: dict[str, Any], ids: dict[str, set[str]]) -> Iterator[Finding]:
    users = _mapping(data, "users")
    for policy_id, policy in _mapping(data, "policies").items():
        for level_no, level in _items(policy, "levels"):
            for target_no, target in _items(level, "targets"):
                if not isinstance(target, dict):
                    continue
                base = ("policies", policy_id, "levels", level_no, "targets", target_no)
                yield from _ref(base + ("user",), target.get("user"), "user", ids["users"])
                yield from _ref(base + ("schedule",), target.get("schedule"), "schedule",
                                ids["schedules"])
                yield from _needs_phone(base + ("user",), target.get("user"), users)


def _needs_phone(path: Path, user_id: Any, users: dict[str, Any]) -> Iterator[Finding]:
    user = users.get(user_id) if isinstance(user_id, str) else None
    if not isinstance(user, dict):
        return
    phones = [p for _, p in _items(user, "phones") if isinstance(p, dict)]
    if not any(p.get("type") in ("mobile", "landline") for p in phones):
        yield path, f"user {user_id!r} has no mobile or landline phone to call"


def _schedule_refs(data: dict[str, Any], ids: dict[str, set[str]]) -> Iterator[Finding]:
    users = _mapping(data, "users")
    for schedule_id, schedule in _mapping(data, "schedules").items():
        for rot_no, rotation in _items(schedule, "rotations"):
            for user_no, user in _items(rotation, "users"):
                path = ("schedules", schedule_id, "rotations", rot_no, "users", user_no)
                yield from _ref(path, user, "user", ids["users"])
                yield from _needs_phone(path, user, users)
        for over_no, override in _items(schedule, "overrides"):
            if isinstance(override, dict):
                path = ("schedules", schedule_id, "overrides", over_no, "user")
                yield from _ref(path, override.get("user"), "user", ids["users"])
                yield from _needs_phone(path, override.get("user"), users)


def _queue_refs(data: dict[str, Any], ids: dict[str, set[str]]) -> Iterator[Finding]:
    users = _mapping(data, "users")
    for name, queue in _mapping(data, "queues").items():
        for agent_no, agent in _items(queue, "agents"):
            path = ("queues", name, "agents", agent_no)
            yield from _ref(path, agent, "user", ids["users"])
            yield from _needs_extension(path, agent, users)
        if isinstance(queue, dict):
            yield from _fallback_ref(("queues", name, "fallback"), queue.get("fallback"), ids)


def _needs_extension(path: Path, user_id: Any, users: dict[str, Any]) -> Iterator[Finding]:
    user = users.get(user_id) if isinstance(user_id, str) else None
    if isinstance(user, dict) and user.get("extension") is None and not _has_sip(user):
        yield path, f"user {user_id!r} has no SIP phone or extension to ring"


def _has_sip(user: dict[str, Any]) -> bool:
    phones = user.get("phones")
    return isinstance(phones, list) and any(
        isinstance(p, dict) and p.get("type") == "sip" and p.get("dial_string")
        for p in phones)


def _fallback_ref(path: Path, value: Any, ids: dict[str, set[str]]) -> Iterator[Finding]:
    user = value.partition(":")[2] if isinstance(value, str) else ""
    # An empty id is the schema's to report.
    if isinstance(value, str) and value.startswith("voicemail:") and user:
        yield from _ref(path, user, "user", ids["users"])


def _out_of_hours_ref(path: Path, value: Any, ids: dict[str, set[str]]) -> Iterator[Finding]:
    kind, _, target = value.partition(":") if isinstance(value, str) else ("", "", "")
    if kind == "policy" and target:
        yield from _ref(path, target, "policy", ids["policies"])
    elif kind == "voicemail" and target:
        yield from _ref(path, target, "user", ids["users"])


def _number_refs(data: dict[str, Any], ids: dict[str, set[str]]) -> Iterator[Finding]:
    users = _mapping(data, "users")
    for index, entry in _items(data, "numbers"):
        if not isinstance(entry, dict):
            continue
        base = ("numbers", index)
        kind = entry.get("type")
        if kind == "agent":
            yield from _ref(base + ("agent",), entry.get("agent"), "user", ids["users"])
            yield from _needs_extension(base + ("agent",), entry.get("agent"), users)
        elif kind == "queue":
            yield from _ref(base + ("queue",), entry.get("queue"), "queue", ids["queues"])
        elif kind == "call_routing":
            for opt_no, option in _items(entry, "options"):
                if isinstance(option, dict):
                    path = base + ("options", opt_no)
                    yield from _ref(path + ("policy",), option.get("policy"), "policy",
                                    ids["policies"])
                    yield from _fallback_ref(path + ("fallback",), option.get("fallback"), ids)
                    yield from _out_of_hours_ref(path + ("out_of_hours",),
                                                 option.get("out_of_hours"), ids)


def _duplicate_numbers(data: dict[str, Any], region: str | None) -> Iterator[Finding]:
    seen: dict[str, int] = {}
    for index, entry in _items(data, "numbers"):
        raw = entry.get("number") if isinstance(entry, dict) else None
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        try:
            e164 = normalise_number(raw, region) if isinstance(raw, str) else None
        except ValueError:
            continue  # the schema reports it
        if e164 is None:
            continue
        if e164 in seen:
            yield ("numbers", index, "number"), \
                f"duplicates numbers[{seen[e164]}] (both are {e164})"
        else:
            seen[e164] = index


def _duplicate_digits(data: dict[str, Any]) -> Iterator[Finding]:
    for index, entry in _items(data, "numbers"):
        first: dict[Any, int] = {}
        for opt_no, option in _items(entry, "options"):
            digit = option.get("digit") if isinstance(option, dict) else None
            if digit is None or isinstance(digit, dict | list):
                continue
            key = str(digit)
            if key in first:
                yield ("numbers", index, "options", opt_no, "digit"), \
                    f"digit {key} is already used by options[{first[key]}]"
            else:
                first[key] = opt_no


def _switches(data: dict[str, Any]) -> Iterator[Finding]:
    """``switch:`` or ``switches:`` (exactly one); names and addresses unique in the list."""
    if not isinstance(data, dict):
        return
    single, listed = data.get("switch"), data.get("switches")
    if single is None and listed is None:
        yield ("switch",), "required field missing"  # or switches: (a list, each named)
    elif single is not None and listed is not None:
        yield ("switches",), "give either switch: or switches:, not both"
    elif isinstance(listed, list) and not listed:
        yield ("switches",), "must list at least one switch"
    names: dict[str, int] = {}
    addresses: dict[tuple[str, str], int] = {}
    for index, entry in _items(data, "switches"):
        if not isinstance(entry, dict):
            continue
        name = entry.get("name")
        if isinstance(name, str):
            if name in names:
                yield ("switches", index, "name"), \
                    f"switch name {name!r} is already used by switches[{names[name]}]"
            names.setdefault(name, index)
        # The same event socket twice would watch one switch twice (every agent busy twice).
        address = (str(entry.get("host", "127.0.0.1")).lower(), str(entry.get("port", 8021)))
        if address in addresses:
            yield ("switches", index, "port" if "port" in entry else "host"), \
                f"{address[0]}:{address[1]} is already switches[{addresses[address]}]"
        addresses.setdefault(address, index)

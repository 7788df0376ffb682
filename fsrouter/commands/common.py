"""What the operator commands share: loading the configuration, opening the database, reading
numbers, times and CSV files, and printing tables.

Everything an operator types or a CSV file holds is checked here before anything is written;
text shown back is made printable (a hostile value in a file must not drive the terminal).
"""

from __future__ import annotations

import csv
import difflib
import getpass
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import peewee

from fsrouter.commands import EXIT_STORE, EXIT_USAGE
from fsrouter.config import Config, ConfigError, load_config, normalise_number
from fsrouter.config.fields import check_moment
from fsrouter.config.schema import DAYS, User
from fsrouter.routing.destinations import agent_dial_string
from fsrouter.store import StoreError, current_version, latest_version, open_database
from fsrouter.store.db import SqliteTarget, close_database, parse_url

MAX_CSV_BYTES = 10 * 1024 * 1024
MAX_SHOWN = 60


class Failure(Exception):
    """A command cannot go on: ``lines`` go to stderr, ``code`` is the exit code."""

    def __init__(self, code: int, *lines: str) -> None:
        super().__init__(*lines)
        self.code = code
        self.lines = lines


def utc_now() -> datetime:
    return datetime.now(UTC)


def load(path: str | os.PathLike[str]) -> Config:
    """The configuration, or :class:`Failure` (exit 2) listing every problem."""
    try:
        return load_config(path)
    except ConfigError as error:
        raise Failure(EXIT_USAGE, *(str(issue) for issue in error.issues)) from None


# ---------------------------------------------------------------- database


@contextmanager
def store(config: Config, url: str | None, must_exist: bool = True) -> Iterator[peewee.Database]:
    """The database (``url`` or the configured one), open and bound for the block.

    Exit 3 when it cannot be opened or its schema is behind (``fsrouter db upgrade``).
    ``must_exist``: refuse a SQLite file that is not there instead of creating it (and its
    folders); every operator command needs the schema, which only ``db upgrade`` creates.
    """
    target = url or config.database.url
    if must_exist:
        _require_existing(target)
    try:
        db = open_database(target)
    except StoreError as error:
        raise Failure(EXIT_STORE, f"database: {error}") from None
    try:
        _require_schema(db, current_version(db), latest_version())
        yield db
    except StoreError as error:
        raise Failure(EXIT_STORE, f"database: {error}") from None
    finally:
        close_database(db)


def _require_existing(url: str) -> None:
    try:
        target = parse_url(url)
    except StoreError as error:
        raise Failure(EXIT_STORE, f"database: {error}") from None
    if isinstance(target, SqliteTarget) and target.path != ":memory:" \
            and not Path(target.path).is_file():
        raise Failure(EXIT_STORE, f"database: SQLite database {target.path} does not exist: "
                      "run `fsrouter db upgrade -c CONFIG` first")


def _require_schema(db: peewee.Database, version: int, latest: int) -> None:
    if version < latest:
        label = getattr(db, "label", "the database")
        raise Failure(EXIT_STORE, f"database: {label} has schema version {version}, this "
                      f"fsrouter needs {latest}: run `fsrouter db upgrade -c CONFIG` first")


def operator_name() -> str:
    """Who is changing things, for ``changed_by`` (the login behind sudo when there is one)."""
    try:
        user = os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{shown(user, 40)}"


# ---------------------------------------------------------------- values


def shown(text: object, limit: int = MAX_SHOWN) -> str:
    """``text`` safe to print: non-printable characters as ``?``, cut to ``limit``."""
    value = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    return value if len(value) <= limit else value[: limit - 3] + "..."


def parse_number(text: str, config: Config) -> str:
    """An operator-given phone number as E.164 (``defaults.country`` for national numbers);
    ``ValueError`` with a reason."""
    return normalise_number(text, config.defaults.country)


def parse_moment(text: str, zone: str) -> datetime:
    """An ISO time (``2026-12-24T03:00+01:00``); without an offset it is read in ``zone``."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not an ISO date and time like 2026-12-24T03:00+01:00: "
                         f"{shown(text)!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return check_moment(moment)  # years far from datetime's limits: no OverflowError later


def local_text(moment: datetime | None, zone: str) -> str:
    """``2026-03-29 09:00 +02:00`` in ``zone``; ``-`` for None."""
    if moment is None:
        return "-"
    local = moment.astimezone(ZoneInfo(zone))
    return f"{local:%Y-%m-%d %H:%M} {local.isoformat()[-6:]}"


def iso(moment: datetime | None, zone: str) -> str | None:
    """The one time format of every ``--json`` and ``--csv`` output: ISO 8601 with the UTC
    offset, in ``zone`` (``defaults.timezone``): ``2026-12-24T03:00:00+01:00``."""
    return None if moment is None else moment.astimezone(ZoneInfo(zone)).isoformat()


def clock_text(clock: time) -> str:
    """``08:00``; the end of the day as ``24:00`` (how the configuration writes it)."""
    return "24:00" if clock == time.max else f"{clock:%H:%M}"


def days_text(days: Sequence[str]) -> str:
    """``mon-fri,sun`` for a window's days (runs of neighbouring days joined)."""
    order = [day for day in DAYS if day in days]
    runs: list[list[str]] = []
    for day in order:
        if runs and DAYS.index(day) == DAYS.index(runs[-1][-1]) + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(run[0] if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def is_agent(user: User) -> bool:
    """An agent can be rung on a SIP phone or extension (and so log in and out)."""
    return agent_dial_string(user) is not None


def agent_problem(name: str, config: Config) -> str | None:
    """Why ``name`` is not an agent of this configuration, or None."""
    user = config.users.get(name)
    if user is None:
        return f"unknown agent {shown(name, 40)!r}{did_you_mean(name, config.users)}"
    if not is_agent(user):
        return f"{name} is not an agent: no SIP phone or extension to ring"
    return None


# ---------------------------------------------------------------- CSV input


@dataclass(frozen=True)
class CsvRow:
    line: int
    cells: tuple[str, ...]


def read_csv(path: Path, header_first: str) -> tuple[list[CsvRow], list[CsvRow]]:
    """The data rows of a small CSV file, and the lines that cannot be read (their reason as
    the only cell). Blank lines and ``#`` comments are skipped; a first row starting with
    ``header_first`` is the header. One record per line (no quoted line breaks)."""
    return parse_csv(_read_text(path), header_first)


def parse_csv(text: str, header_first: str) -> tuple[list[CsvRow], list[CsvRow]]:
    """:func:`read_csv` for text already read (an upload on the web console)."""
    rows: list[CsvRow] = []
    broken: list[CsvRow] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            cells = tuple(cell.strip() for cell in next(csv.reader([line], strict=True)))
        except csv.Error as error:
            broken.append(CsvRow(number, (f"not valid CSV: {error}",)))
            continue
        if not rows and not broken and cells and cells[0].lower() == header_first:
            continue  # the header
        rows.append(CsvRow(number, cells))
    return rows, broken


def line_errors(path: Path, problems: Iterable[tuple[int, str]]) -> list[str]:
    """``file:line: reason`` for each problem, in line order."""
    return [f"{path}:{line}: {reason}" for line, reason in sorted(problems)]


def _read_text(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CSV_BYTES + 1)
    except OSError as error:
        raise Failure(EXIT_USAGE, f"{path}: cannot read: {error.strerror or error}") from None
    return decode_csv(raw, str(path))


def decode_csv(raw: bytes, name: str) -> str:
    """CSV bytes (at most :data:`MAX_CSV_BYTES`) as text; ``name`` starts the messages."""
    if len(raw) > MAX_CSV_BYTES:
        raise Failure(EXIT_USAGE, f"{name}: larger than {MAX_CSV_BYTES} bytes")
    try:
        return raw.decode("utf-8-sig")  # a byte-order mark from a spreadsheet is fine
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise Failure(EXIT_USAGE, f"{name}:{line}: not valid UTF-8") from None


# ---------------------------------------------------------------- output


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Aligned columns, headers in capitals."""
    widths = [max([len(header), *(len(row[i]) for row in rows)])
              for i, header in enumerate(headers)]
    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
    return [line([h.upper() for h in headers]).rstrip(), *(line(row).rstrip() for row in rows)]


def emit(lines: Iterable[str]) -> None:
    for line in lines:
        print(line)


def emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def fail_if(errors: Sequence[str], summary: Callable[[int], str]) -> None:
    """Exit 2 with every error (and a summary line) when there are any."""
    if errors:
        raise Failure(EXIT_USAGE, *errors, summary(len(errors)))


# ---------------------------------------------------------------- listings (--json, --csv)


def by_of(args: Any) -> str:
    """Who makes a change: ``--by``, else the invoking login (exit 2 if ``--by`` is unusable)."""
    by = getattr(args, "by", None) or operator_name()
    if not by.strip() or len(by) > 128 or not by.isprintable():
        raise Failure(EXIT_USAGE, f"--by: must be 1-128 printable characters, got "
                      f"{shown(by, 40)!r}")
    return by


def time_range(args: Any, zone: str) -> tuple[datetime | None, datetime | None]:
    """``--since``/``--until`` (ISO; without an offset in ``zone``), exit 2 if unreadable."""
    return parse_range(getattr(args, "since", None), getattr(args, "until", None), zone)


def parse_range(since_text: str | None, until_text: str | None, zone: str
                ) -> tuple[datetime | None, datetime | None]:
    """:func:`time_range` for plain values (the commands and the console share it)."""
    bounds = []
    for flag, text in (("since", since_text), ("until", until_text)):
        try:
            bounds.append(parse_moment(text, zone) if text else None)
        except ValueError as error:
            raise Failure(EXIT_USAGE, f"--{flag}: {error}") from None
    since, until = bounds
    if since is not None and until is not None and until <= since:
        raise Failure(EXIT_USAGE, "--until must be after --since")
    return since, until


def _csv_cell(value: object) -> str:
    """A cell a spreadsheet will not run as a formula (caller names are hostile); E.164
    numbers and plain negative numbers stay as they are."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "@", "\t", "\r") or (
            text[:1] in ("+", "-") and not text[1:].replace(".", "").isdigit()):
        return "'" + text
    return text


def emit_csv(columns: Sequence[str], items: Iterable[dict[str, Any]]) -> None:
    """``items`` as CSV with a header row (the JSON keys ``columns``; times stay ISO)."""
    import sys

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for item in items:
        writer.writerow([_csv_cell(item.get(column)) for column in columns])


def emit_listing(args: Any, items: list[dict[str, Any]], columns: Sequence[str],
                 text: Callable[[], list[str]]) -> None:
    """One listing three ways: ``--json`` (the items), ``--csv`` (``columns``) or text."""
    if getattr(args, "json", False):
        emit_json(items)
    elif getattr(args, "csv", False):
        emit_csv(columns, items)
    else:
        emit(text())

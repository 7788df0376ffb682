"""Console accounts and API tokens: the one code path for ``fsrouter web user|token ...`` and
the log-in page.

Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's second recommended
set); the hash alone is stored. API tokens are 256 random bits, shown once; the store keeps
their SHA-256 (a token is random, so a plain hash cannot be searched backwards; it lets a
request's token be found with one indexed look-up).

Rate limit of log-ins (failures counted in the database, so a restart does not reset it):
- per name typed: after :data:`NAME_FAILURES` failures within :data:`WINDOW`, that name cannot
  log in (not even with the right password) until its oldest failure in the window is older
  than :data:`WINDOW`; a successful log-in starts its count again;
- per client address: after :data:`ADDRESS_FAILURES` failures within :data:`WINDOW`, nothing
  from that address may log in, whatever the name.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from gevent import get_hub

from fsrouter.commands import EXIT_USAGE
from fsrouter.commands.common import Failure, shown
from fsrouter.store import accounts as store
from fsrouter.store.errors import NotFound, StoreInputError
from fsrouter.store.models import WEB_ROLES

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MIN_PASSWORD = 10
MAX_PASSWORD_BYTES = 1024  # argon2 takes any length; a bound keeps a request's cost bounded
NAME_FAILURES = 5
ADDRESS_FAILURES = 20
WINDOW = timedelta(minutes=15)
TOKEN_PREFIX = "fsr_"
MAX_TOKEN_CHARS = 100

_hasher = PasswordHasher()
# Verified when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Account:
    """Who a request acts for: ``via`` is "session" or "token"."""

    name: str
    role: str
    via: str

    def may(self, role: str) -> bool:
        """A supervisor may do everything a viewer may."""
        return WEB_ROLES.index(self.role) >= WEB_ROLES.index(role)


def check_name(name: str, what: str = "account") -> str:
    if not NAME.fullmatch(name):
        raise Failure(EXIT_USAGE, f"{what} name {shown(name)!r}: use 1-64 characters a-z, "
                      "0-9, '.', '_' or '-', starting with a letter or digit")
    return name


def check_role(role: str) -> str:
    if role not in WEB_ROLES:
        raise Failure(EXIT_USAGE, f"role {shown(role)!r}: use {' or '.join(WEB_ROLES)}")
    return role


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise Failure(EXIT_USAGE, f"the password needs at least {MIN_PASSWORD} characters")
    if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
        raise Failure(EXIT_USAGE, f"the password may have at most {MAX_PASSWORD_BYTES} bytes")
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(check_password(password))


# ---------------------------------------------------------------- account changes


def add_user(name: str, role: str, password: str, who: str, now: datetime) -> None:
    check_name(name)
    check_role(role)
    password_hash = hash_password(password)
    try:
        store.add_account(name, role, password_hash, who, now)
    except StoreInputError as error:
        raise Failure(EXIT_USAGE, str(error)) from None


def change_password(name: str, password: str, who: str, now: datetime) -> None:
    check_name(name)
    password_hash = hash_password(password)
    try:
        store.set_password(name, password_hash, who, now)
    except NotFound as error:
        raise Failure(EXIT_USAGE, str(error)) from None


def remove_user(name: str, who: str, now: datetime) -> None:
    check_name(name)
    try:
        store.remove_account(name, who, now)
    except NotFound as error:
        raise Failure(EXIT_USAGE, str(error)) from None


# ---------------------------------------------------------------- log-in


class LockedOut(Exception):
    """Too many failed log-ins: ``minutes`` until the next try can succeed (at most)."""

    def __init__(self, minutes: int) -> None:
        super().__init__(minutes)
        self.minutes = minutes


def log_in(name: str, password: str, address: str, now: datetime) -> Account | None:
    """The account for a right name and password, None for a wrong one (counted);
    :class:`LockedOut` while the name or the address is over its limit."""
    typed = name.strip().lower()[:64]
    if not store.claim_attempt(typed, address[:64], now, now - WINDOW, NAME_FAILURES,
                               ADDRESS_FAILURES):
        raise LockedOut(int(WINDOW.total_seconds() // 60))
    row = store.get_account(typed) if NAME.fullmatch(typed) else None
    if not _verify(row.password_hash if row else _DUMMY_HASH, password) or row is None:
        return None  # the attempt stays counted as a failure
    store.clear_failures(typed)
    if _hasher.check_needs_rehash(row.password_hash):
        store.rehash(row.name, row.password_hash, _hasher.hash(password))
    return Account(row.name, row.role, "session")


def _verify(password_hash: str, password: str) -> bool:
    if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
        return False
    # argon2 takes tens of ms of CPU (the C code lets go of the GIL): in gevent's thread
    # pool, so the console's other requests go on meanwhile.
    return bool(get_hub().threadpool.apply(_matches, (password_hash, password)))


def _matches(password_hash: str, password: str) -> bool:
    """In a pool thread: errors stay here (the pool would print them as crashes)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def session_account(name: str, issued: datetime) -> Account | None:
    """The account a session cookie names, unless it is gone or the session was ended."""
    row = store.get_account(name) if NAME.fullmatch(name) else None
    if row is None or issued < row.sessions_after:
        return None
    return Account(row.name, row.role, "session")


def log_out(name: str, now: datetime) -> None:
    """End every session of the account (cookies are signed, not stored: this is what makes
    a copied cookie useless after the log-out)."""
    store.end_sessions(name, now)


# ---------------------------------------------------------------- API tokens


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def add_token(name: str, role: str, who: str, now: datetime) -> str:
    """Make a token; returns it (the only time it is seen)."""
    check_name(name, "token")
    check_role(role)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        store.add_token(name, role, token_hash(token), who, now)
    except StoreInputError as error:
        raise Failure(EXIT_USAGE, str(error)) from None
    return token


def remove_token(name: str, who: str, now: datetime) -> None:
    check_name(name, "token")
    try:
        store.remove_token(name, who, now)
    except NotFound as error:
        raise Failure(EXIT_USAGE, str(error)) from None


def token_account(token: str, now: datetime) -> Account | None:
    """The account a bearer token stands for (named ``token:<name>``), None if unknown."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_CHARS:
        return None
    row = store.token_by_hash(token_hash(token))
    if row is None:
        return None
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        store.token_used(row.id, now)  # at most one write a minute per token
    return Account(f"token:{row.name}", row.role, "token")

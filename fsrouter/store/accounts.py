"""The console's accounts, API tokens and failed log-ins (tables of migration 4).

Every change here writes its audit entry in the same transaction (kinds ``web_user.add``,
``web_user.passwd``, ``web_user.remove``, ``web_token.add``, ``web_token.remove``); the audit
entry never holds a password, a hash or a token. Checking names, roles and passwords is the
caller's job (:mod:`fsrouter.web.accounts`); here they arrive valid.
"""

from __future__ import annotations

from datetime import datetime

from fsrouter.store import audit
from fsrouter.store.db import session
from fsrouter.store.errors import NotFound, StoreInputError
from fsrouter.store.models import ApiToken, LoginFailure, WebAccount


def get_account(name: str) -> WebAccount | None:
    with session():
        return WebAccount.get_or_none(WebAccount.name == name)


def list_accounts() -> list[WebAccount]:
    with session():
        return list(WebAccount.select().order_by(WebAccount.name))


def add_account(name: str, role: str, password_hash: str, who: str, now: datetime) -> None:
    with session(immediate=True):
        if WebAccount.get_or_none(WebAccount.name == name) is not None:
            raise StoreInputError(f"web account {name!r} already exists")
        WebAccount.create(name=name, role=role, password_hash=password_hash, created_at=now,
                          changed_at=now, sessions_after=now)
        audit.record("web_user.add", name, who, now, None, {"role": role})


def set_password(name: str, password_hash: str, who: str, now: datetime) -> None:
    """A new password; every session of the account made before now ends."""
    with session(immediate=True):
        changed = (WebAccount.update(password_hash=password_hash, changed_at=now,
                                     sessions_after=now)
                   .where(WebAccount.name == name).execute())
        if not changed:
            raise NotFound(f"no web account {name!r}")
        audit.record("web_user.passwd", name, who, now, None, {"password": "changed"})


def rehash(name: str, old_hash: str, new_hash: str) -> None:
    """Store a stronger hash of the same password (argon2 parameters raised): not a change
    anyone made, so not audited, and only if the password was not changed meanwhile."""
    with session(immediate=True):
        (WebAccount.update(password_hash=new_hash)
         .where(WebAccount.name == name, WebAccount.password_hash == old_hash).execute())


def end_sessions(name: str, now: datetime) -> None:
    """Void every session of the account issued before ``now`` (log-out)."""
    with session(immediate=True):
        WebAccount.update(sessions_after=now).where(WebAccount.name == name).execute()


def remove_account(name: str, who: str, now: datetime) -> None:
    with session(immediate=True):
        row = WebAccount.get_or_none(WebAccount.name == name)
        if row is None:
            raise NotFound(f"no web account {name!r}")
        row.delete_instance()
        audit.record("web_user.remove", name, who, now, {"role": row.role}, None)


# ---------------------------------------------------------------- API tokens


def add_token(name: str, role: str, token_sha256: str, who: str, now: datetime) -> None:
    with session(immediate=True):
        if ApiToken.get_or_none(ApiToken.name == name) is not None:
            raise StoreInputError(f"API token {name!r} already exists")
        ApiToken.create(name=name, role=role, token_sha256=token_sha256, created_at=now,
                        created_by=who)
        audit.record("web_token.add", name, who, now, None, {"role": role})


def list_tokens() -> list[ApiToken]:
    with session():
        return list(ApiToken.select().order_by(ApiToken.name))


def remove_token(name: str, who: str, now: datetime) -> None:
    with session(immediate=True):
        row = ApiToken.get_or_none(ApiToken.name == name)
        if row is None:
            raise NotFound(f"no API token {name!r}")
        row.delete_instance()
        audit.record("web_token.remove", name, who, now, {"role": row.role}, None)


def token_by_hash(token_sha256: str) -> ApiToken | None:
    with session():
        return ApiToken.get_or_none(ApiToken.token_sha256 == token_sha256)


def token_used(token_id: int, now: datetime) -> None:
    with session(immediate=True):
        ApiToken.update(last_used_at=now).where(ApiToken.id == token_id).execute()


# ---------------------------------------------------------------- failed log-ins


def claim_attempt(name: str, address: str, now: datetime, since: datetime,
                  name_limit: int, address_limit: int) -> bool:
    """Count a log-in attempt as a failure before its password is checked, unless the name
    or the address already has its limit of failures since ``since`` (then False, nothing
    counted). One transaction: attempts made at the same moment cannot slip past the limit
    together. A good password then clears the name's failures (:func:`clear_failures`)."""
    with session(immediate=True):
        recent = LoginFailure.select().where(LoginFailure.at >= since)
        if recent.where(LoginFailure.address == address).count() >= address_limit \
                or recent.where(LoginFailure.name == name).count() >= name_limit:
            return False
        LoginFailure.delete().where(LoginFailure.at < since).execute()  # the table stays small
        LoginFailure.create(name=name, address=address, at=now)
    return True


def clear_failures(name: str) -> None:
    """A successful log-in: the name's count starts again (the address's other failures
    stay)."""
    with session(immediate=True):
        LoginFailure.delete().where(LoginFailure.name == name).execute()

"""What the history pages share: a listing's query parameters (``since``, ``until``, a page
or ``limit``/``offset``) read into the same checks the commands make (fsrouter.commands.
history), and the page's rows newest first.

Pages show :data:`PAGE_SIZE` rows a page (``?page=N``); the API takes ``limit`` (at most
:data:`MAX_API_LIMIT`) and ``offset``. One row more than asked is read to know whether
there is a next page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import flask

from fsrouter.commands import EXIT_USAGE
from fsrouter.commands.common import Failure, shown
from fsrouter.commands.history import MAX_OFFSET, Missing, Refused, window_of
from fsrouter.config import Config
from fsrouter.store.history import Window
from fsrouter.web.errors import ApiError

PAGE_SIZE = 50
MAX_PAGE = MAX_OFFSET // PAGE_SIZE
API_LIMIT = 200
MAX_API_LIMIT = 1000
MAX_PARAM = 200  # characters of any query parameter we read

T = TypeVar("T")


def text_arg(name: str) -> str | None:
    """A query parameter as text, None when absent or empty (bounded: the checks that follow
    are the commands')."""
    value = flask.request.args.get(name, "").strip()
    if not value:
        return None
    if len(value) > MAX_PARAM:
        raise Failure(EXIT_USAGE, f"{name}: longer than {MAX_PARAM} characters")
    return value


def int_arg(name: str, default: int, low: int, high: int) -> int:
    text = text_arg(name)
    if text is None:
        return default
    if not text.isdecimal() or len(text) > 12 or not low <= int(text) <= high:
        raise Failure(EXIT_USAGE, f"{name}: a whole number {low}-{high}, got "
                      f"{shown(text, 20)!r}")
    return int(text)


@dataclass(frozen=True)
class Paging:
    """Where this listing is: the rows asked for and whether more (older) rows exist."""

    offset: int
    size: int
    more: bool = False

    @property
    def page(self) -> int:
        return self.offset // self.size + 1


def page_window(config: Config) -> tuple[Window, Paging]:
    """A page's window (``?page=N``, newest first): one row more than shown."""
    page = int_arg("page", 1, 1, MAX_PAGE)
    paging = Paging((page - 1) * PAGE_SIZE, PAGE_SIZE)
    return _window(config, paging), paging


def api_window(config: Config) -> tuple[Window, Paging]:
    """The API's window (``?limit=N&offset=M``): one row more than asked."""
    paging = Paging(int_arg("offset", 0, 0, MAX_OFFSET),
                    int_arg("limit", API_LIMIT, 1, MAX_API_LIMIT))
    return _window(config, paging), paging


def _window(config: Config, paging: Paging) -> Window:
    return window_of(config, text_arg("since"), text_arg("until"), paging.size + 1,
                     paging.offset)


def trimmed(rows: Sequence[T], paging: Paging) -> tuple[list[T], Paging]:
    """``rows`` (oldest first, as the store gives them) without the extra row read to see
    whether there is more, and the paging saying so."""
    more = len(rows) > paging.size
    kept = list(rows[1:] if more else rows)
    return kept, Paging(paging.offset, paging.size, more)


def api_listing(items: list[dict[str, Any]], paging: Paging) -> flask.Response:
    """The API's answer: the items oldest first (as ``--json`` prints them), the page."""
    return flask.jsonify({"items": items, "offset": paging.offset, "limit": paging.size,
                          "more": paging.more})


def page_url(page: int) -> str:
    """This listing's URL with its filters, at ``page``."""
    args = {key: value for key, value in flask.request.args.items() if key != "page"}
    if page > 1:
        args["page"] = str(page)
    assert flask.request.endpoint is not None
    return flask.url_for(flask.request.endpoint, **args)


def short_time(text: str | None) -> str:
    """``2026-12-05 03:12`` of an ISO time already in defaults.timezone; ``-`` for None."""
    return "-" if not text else text[:16].replace("T", " ")


def filters() -> dict[str, str]:
    """The filter form's values as typed (shown back in the form)."""
    return {key: value[:MAX_PARAM] for key, value in flask.request.args.items()}


@contextmanager
def answering() -> Iterator[None]:
    """The commands' "no such id" as 404 and "refused" as 403 (other failures: the frame's
    422/400)."""
    try:
        yield
    except Missing as error:
        raise ApiError(404, *error.lines) from None
    except Refused as error:
        raise ApiError(403, *error.lines) from None


def listing_or_errors(read: Callable[[], tuple[list[dict[str, Any]], Paging]]
                      ) -> tuple[list[dict[str, Any]], Paging, list[str]]:
    """A page's rows newest first, or none and the reasons its filters were refused (the
    page shows them next to the form instead of an error page)."""
    try:
        items, paging = read()
    except Failure as failure:
        if failure.code != EXIT_USAGE:
            raise
        return [], Paging(0, PAGE_SIZE), [str(line) for line in failure.lines]
    return items[::-1], paging, []


def suggestions(config: Config) -> dict[str, list[str]]:
    """What the filter fields offer while typing: the configured numbers (with their names)
    and users (anything else may still be typed)."""
    return {"numbers": [number.number for number in config.numbers],
            "users": sorted(config.users)}

"""Usable (issue 20.6) for every page the console registers, found in the app's URL map (so
a page added later is checked without touching this file): nothing loaded from elsewhere,
under 100 KB with its CSS and JavaScript, no sideways scrolling in a phone-width window
(375x740), and every control reachable with the Tab key, showing where the focus is.

The database holds a realistic week (fsrouter.web.sample) so the pages are as full as a
real night makes them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import flask
import pytest

from fsrouter.web.sample import Filled, fill
from tests.web.conftest import WebEnv, WebServer, login

MAX_PAGE_BYTES = 100 * 1024
PHONE = {"width": 375, "height": 740, "deviceScaleFactor": 2, "mobile": True}
URL_ATTRIBUTES = {"src", "href", "action", "formaction", "poster", "data", "srcset",
                  "background", "manifest", "cite", "ping", "longdesc"}
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)|@import\s+['"]([^'"]+)""", re.I)
JS_URL = re.compile(r"""["'`]((?:https?:)?//[^"'`\s]+)""", re.I)


@pytest.fixture
def week(web_env: WebEnv) -> Filled:
    return fill(datetime.now(UTC), web_env.directory / "voicemail")


def example_urls(app: flask.Flask, week: Filled) -> list[str]:
    """Every GET page of the app: the routes without arguments, and one example of each
    route with arguments that serves a page (the others are files, not pages)."""
    examples: dict[str, Callable[[], str | None]] = {
        "history.incident_page": lambda: f"/incidents/{week.incidents[-1]}",
        "voicemails.voicemail_audio": lambda: None,  # a recording
        "static": lambda: None,
    }
    urls = []
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.rule.startswith("/api/"):
            continue
        if not rule.arguments:
            urls.append(rule.rule)
        elif rule.endpoint in examples:
            url = examples[rule.endpoint]()
            if url is not None:
                urls.append(url)
        else:  # a page with arguments this file does not know: say so, do not guess
            print(f"usable checks: no example URL for {rule.rule} ({rule.endpoint})")
    return sorted(set(urls))


class Links(HTMLParser):
    """Every URL an HTML document refers to, and its inline CSS and script text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[tuple[str, str]] = []  # (tag.attribute, url)
        self.styles: list[str] = []
        self.scripts: list[str] = []
        self.assets: list[str] = []  # stylesheets and scripts the page loads
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        for name, value in values.items():
            if name in URL_ATTRIBUTES:
                for url in (value.split(",") if name == "srcset" else [value]):
                    self.urls.append((f"{tag}.{name}", url.strip().split(" ")[0]))
            if name == "style":
                self.styles.append(value)
        if tag == "meta" and values.get("http-equiv", "").lower() == "refresh":
            self.urls.append(("meta.refresh", values.get("content", "").partition("=")[2]))
        if tag == "link" and "stylesheet" in values.get("rel", "").lower():
            self.assets.append(values.get("href", ""))
        if tag == "script" and values.get("src"):
            self.assets.append(values["src"])
        self._in = tag if tag in ("style", "script") else None

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "style":
            self.styles.append(data)
        elif self._in == "script":
            self.scripts.append(data)


def foreign(url: str) -> bool:
    """True when ``url`` would be fetched from another site (or runs as script)."""
    parts = urlsplit(url.strip())
    if parts.scheme == "data" or (not parts.scheme and not parts.netloc):
        return False  # inline data, or relative / same-origin path
    return not (parts.scheme in ("http", "https") and parts.netloc == "localhost")


def external_in_text(text: str, pattern: re.Pattern[str]) -> list[str]:
    return [url for match in pattern.finditer(text) for url in match.groups()
            if url and foreign(url)]


def check_page(client: Any, url: str) -> list[str]:
    """What is wrong with one page: foreign URLs, size."""
    response = client.get(url, follow_redirects=True)
    if response.status_code != 200:
        return [f"{url}: status {response.status_code}"]
    if not response.content_type.startswith("text/html"):
        return []
    html = response.get_data(as_text=True)
    links = Links()
    links.feed(html)
    problems = [f"{url}: {where} {value}" for where, value in links.urls if foreign(value)]
    problems += [f"{url}: inline style/script loads {found}"
                 for found in external_in_text("\n".join(links.styles), CSS_URL)
                 + external_in_text("\n".join(links.scripts), JS_URL)]
    size = len(response.data)
    for asset in dict.fromkeys(links.assets):
        if foreign(asset):
            continue  # reported above
        body = client.get(asset)
        if body.status_code != 200:
            problems.append(f"{url}: {asset} answers {body.status_code}")
            continue
        size += len(body.data)
        text = body.get_data(as_text=True)
        pattern = CSS_URL if asset.split("?")[0].endswith(".css") else JS_URL
        problems += [f"{url}: {asset} loads {found}"
                     for found in external_in_text(text, pattern)]
    if size >= MAX_PAGE_BYTES:
        problems.append(f"{url}: {size} bytes with its CSS and JavaScript (limit "
                        f"{MAX_PAGE_BYTES})")
    return problems


def test_the_checks_see_what_they_must():
    """The URL checks themselves: what counts as loaded from elsewhere."""
    assert [foreign(u) for u in ("/static/app.css", "calls?page=2", "#main",
                                 "data:image/png;base64,AA", "http://localhost/x")] == \
        [False] * 5
    assert [foreign(u) for u in ("https://cdn.example.com/x.js", "//fonts.example.com/f",
                                 "javascript:alert(1)", "http://127.0.0.1:9/x")] == [True] * 4
    page = Links()
    page.feed('<link rel="stylesheet" href="https://cdn.example/a.css">'
              '<img srcset="/a.png 1x, https://x.example/b.png 2x"><style>'
              'body{background:url("//evil.example/i.png")}</style>')
    assert [u for _, u in page.urls if foreign(u)] == ["https://cdn.example/a.css",
                                                       "https://x.example/b.png"]
    assert external_in_text("".join(page.styles), CSS_URL) == ["//evil.example/i.png"]
    assert external_in_text("fetch('https://api.example/x'); // see https://doc", JS_URL) == [
        "https://api.example/x"]


def test_every_page_is_local_and_small(web_app: flask.Flask, client: Any, week: Filled):
    urls = example_urls(web_app, week)
    assert {"/incidents", "/calls", "/voicemails", "/audit", "/login"} <= set(urls)
    problems = []
    supervisor = client("supervisor")  # sees every control (retry buttons...)
    for url in urls:
        problems += check_page(supervisor if url != "/login" else client(None), url)
    assert problems == []


# ---------------------------------------------------------------- in the browser

# Every control a keyboard user must reach; those not rendered (display: none, a closed
# dialog) are left out. Each is known by a key made of what it is and does (tag, id or
# name or link, text) and its place among controls with the same: a page that redraws
# itself (the Now page, live) keeps the keys of the controls it redraws.
KEYS = """
const wanted = 'a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]),' +
  'select:not([disabled]), textarea:not([disabled]), audio[controls], video[controls],' +
  'summary, [tabindex]:not([tabindex="-1"]), [contenteditable]';
const found = [...document.querySelectorAll(wanted)].filter(
  e => e.getClientRects().length && getComputedStyle(e).visibility !== 'hidden');
const seen = {};
const keys = found.map(e => {
  const what = [e.tagName, e.id || e.getAttribute('name') || e.getAttribute('href') || '',
                (e.textContent || e.value || '').trim().slice(0, 40)].join('|');
  seen[what] = (seen[what] || 0) + 1;
  return what + '#' + seen[what];
});
"""
CONTROLS = KEYS + "return keys;"
FOCUSED = KEYS + """
const a = document.activeElement;
if (!a || a === document.body || a === document.documentElement) return null;
const s = getComputedStyle(a);
const ring = (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0)
  || s.boxShadow !== 'none';
const at = found.indexOf(a);
return {key: at < 0 ? null : keys[at], ring: ring, html: a.outerHTML.slice(0, 120)};
"""


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    try:
        yield browser
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def logged_in_pages(web_app: flask.Flask, week: Filled) -> list[str]:
    return [url for url in example_urls(web_app, week) if url not in ("/", "/login")]


@pytest.mark.browser
def test_no_page_scrolls_sideways_on_a_phone(web_app: flask.Flask, week: Filled,
                                             web_server: WebServer, phone: Any):
    login(phone, web_server, "supervisor")
    wide = {}
    for url in ["/login", *logged_in_pages(web_app, week)]:
        phone.get(web_server.url + url)
        # Against the phone's width, not innerWidth: a mobile browser zooms out to show a
        # page that is too wide, and innerWidth grows with it.
        widths = phone.execute_script(
            "const d = document.documentElement;"
            "return [window.innerWidth, d.scrollWidth, document.body.scrollWidth];")
        if max(widths) > PHONE["width"]:
            wide[url] = widths
    assert wide == {}, "pages wider than a 375 px phone (viewport, page, body)"


def tab_through(browser: Any) -> tuple[list[str], list[str]]:
    """Press Tab until focus has gone round the page: (controls never reached, controls
    reached without a visible focus ring)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    controls = browser.execute_script(CONTROLS)
    browser.execute_script("document.activeElement && document.activeElement.blur();")
    reached: set[str] = set()
    unringed: dict[str, str] = {}
    for _ in range(3 * len(controls) + 20):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        focused = browser.execute_script(FOCUSED)
        if focused is None:
            if reached:
                break  # round the page once
            continue
        if focused["key"] is None:
            continue
        reached.add(focused["key"])
        if not focused["ring"]:
            unringed[focused["key"]] = focused["html"]
        if reached >= set(controls):
            break
    return [key for key in controls if key not in reached], sorted(unringed.values())


@pytest.mark.browser
def test_every_control_is_reached_with_tab_and_shows_focus(
        web_app: flask.Flask, week: Filled, web_server: WebServer, browser: Any):
    login(browser, web_server, "supervisor")
    problems = {}
    for url in logged_in_pages(web_app, week):
        browser.get(web_server.url + url)
        missing, unringed = tab_through(browser)
        if missing or unringed:
            problems[url] = {"not reached": missing, "no focus ring": unringed}
    assert problems == {}

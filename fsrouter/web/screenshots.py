"""Screenshots of every console page for the README: ``python -m fsrouter.web.screenshots``.

Fills a fresh SQLite database (the example configuration, in a temporary folder) with a
realistic week (fsrouter.web.sample), starts a real ``fsrouter web`` on a free loopback
port, logs in through the form in headless Chromium (fsrouter.testing.browser: needs the
test extras and Debian's chromium) and saves ``docs/screens/<page>.png`` for every page the
app registers (found in its URL map, so other pages appear without a change here), plus
``<page>-phone.png`` at 375 px for the pages in :data:`PHONE_PAGES`.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.yaml"
WIDTH = 1100  # px: a laptop's browser window; pages are captured to at most MAX_HEIGHT
MAX_HEIGHT = 1100
PHONE_WIDTH, PHONE_HEIGHT = 375, 740
PHONE_PAGES = ("/voicemails", "/incidents")
ACCOUNT = ("lead", "lead-Supervisor-pw-9")
START_TIMEOUT_S = 60


def prepared(folder: Path) -> tuple[Path, Any]:
    """The example configuration in ``folder``, its database upgraded and filled, an
    account to log in with; returns (config path, what was filled)."""
    from fsrouter.store import open_database, upgrade
    from fsrouter.store.db import close_database
    from fsrouter.web import accounts
    from fsrouter.web.sample import fill

    config = folder / "config.yaml"
    config.write_text(EXAMPLE.read_text(encoding="utf-8")
                      .replace("/var/lib/fsrouter", str(folder)), encoding="utf-8")
    db = open_database(f"sqlite:///{folder}/fsrouter.db")
    try:
        upgrade(db)
        now = datetime.now(UTC)
        accounts.add_user(*ACCOUNT[:1], "supervisor", ACCOUNT[1], "screenshots", now)
        filled = fill(now, folder / "voicemail")
    finally:
        close_database(db)
    return config, filled


@contextmanager
def serving(folder: Path, config: Path) -> Iterator[str]:
    """``fsrouter web`` on a free port of loopback; yields its base URL."""
    log_path = folder / "web.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "fsrouter", "--log-format", "json", "web", "-c",
             str(config), "--port", "0", "--secret-file", str(folder / "web-secret")],
            stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    try:
        yield f"http://127.0.0.1:{_port(process, log_path)}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _port(process: subprocess.Popen[bytes], log_path: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"fsrouter web exited {process.returncode}:\n"
                             f"{log_path.read_text(errors='replace')[-3000:]}")
        for line in log_path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == "web.ready":
                return int(entry["port"])
        time.sleep(0.1)
    raise SystemExit(f"fsrouter web did not log web.ready within {START_TIMEOUT_S} s")


def page_paths(config: Path, filled: Any) -> list[str]:
    """The app's GET pages (as the usable checks find them) and one incident."""
    from fsrouter.web.app import create_app
    from fsrouter.web.settings import WebSettings

    app = create_app(WebSettings(config_path=config, secret_key_file=config.parent / "k"))
    paths = sorted({rule.rule for rule in app.url_map.iter_rules()
                    if "GET" in (rule.methods or ()) and not rule.arguments
                    and not rule.rule.startswith("/api/") and rule.rule not in ("/",)})
    return [*paths, f"/incidents/{filled.busiest()}"]


def name_of(path: str) -> str:
    """``/incidents`` -> ``incidents``; ``/incidents/12`` -> ``incident``."""
    parts = [part for part in path.split("/") if part]
    if len(parts) > 1 and parts[-1].isdigit():
        return parts[0].rstrip("s")
    return "-".join(parts) or "index"


def capture(driver: Any, url: str, target: Path, width: int, height: int,
            mobile: bool = False) -> int:
    """Load ``url`` at ``width`` px and save the page (its content, at most ``height`` px)
    as a small PNG (fsrouter.web.pngsmall)."""
    from fsrouter.web.pngsmall import smaller

    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": min(height, 700), "deviceScaleFactor": 1,
        "mobile": mobile})
    driver.get(url)
    full = int(driver.execute_script("return document.body.scrollHeight"))
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": min(full, height), "scale": 1}})
    data = smaller(base64.b64decode(shot["data"]))
    target.write_bytes(data)
    return len(data)


def log_in(driver: Any, base: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/login")
    driver.find_element(By.ID, "name").send_keys(ACCOUNT[0])
    driver.find_element(By.ID, "password").send_keys(ACCOUNT[1])
    driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    deadline = time.monotonic() + START_TIMEOUT_S
    while "/login" in driver.current_url and time.monotonic() < deadline:
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fsrouter.web.screenshots",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screens",
                        help="where the PNGs go (default docs/screens)")
    args = parser.parse_args(argv)
    from fsrouter.testing.browser import running_browser

    args.out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="fsrouter-screens-"))
    try:
        config, filled = prepared(folder)
        paths = page_paths(config, filled)
        with serving(folder, config) as base, running_browser() as driver:
            size = capture(driver, f"{base}/login", args.out / "login.png", WIDTH, 500)
            print(f"login.png {size} bytes")
            log_in(driver, base)
            for path in paths:
                if path == "/login":
                    continue
                name = f"{name_of(path)}.png"
                size = capture(driver, base + path, args.out / name, WIDTH, MAX_HEIGHT)
                print(f"{name} {size} bytes")
                if path in PHONE_PAGES:
                    name = f"{name_of(path)}-phone.png"
                    size = capture(driver, base + path, args.out / name, PHONE_WIDTH,
                                   PHONE_HEIGHT * 2, mobile=True)
                    print(f"{name} {size} bytes")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``fsrouter web`` as a real process on a given configuration (the daemon's), its accounts,
and headless Chromium: what the real-switch browser test of the Inbound routes tab needs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from fsrouter.testing.waiting import wait_for

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def web_account(config: Path, name: str, role: str, password: str, env: dict[str, str]) -> None:
    """``fsrouter web user add`` as the operator runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "fsrouter", "web", "user", "add", name, "--role", role,
         "--password-stdin", "-c", str(config)],
        input=password + "\n", capture_output=True, text=True, env=env, timeout=120,
        check=False)
    assert done.returncode == 0, done.stderr


class WebProcess:
    """``fsrouter web`` on port 0; :attr:`url` once it has logged ``web.ready``."""

    def __init__(self, workdir: Path, config: Path, env: dict[str, str]) -> None:
        self.log_path = workdir / "web.log"
        self.command = [sys.executable, "-m", "fsrouter", "--log-format", "json", "web",
                        "-c", str(config), "--port", "0",
                        "--secret-file", str(workdir / "web-secret")]
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> WebProcess:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                            env=self.env)
        ready = wait_for(self._ready, timeout=60, what=f"web.ready in {self.log_path}")
        self.url = f"http://127.0.0.1:{ready['port']}"
        return self

    def _ready(self) -> dict[str, Any] | None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"fsrouter web exited {self.process.returncode}:\n"
                                 f"{self.log()[-3000:]}")
        return next((line for line in self.lines() if line.get("event") == "web.ready"), None)

    def lines(self) -> list[dict[str, Any]]:
        lines = []
        for text in self.log().splitlines():
            try:
                lines.append(json.loads(text))
            except ValueError:
                continue
        return lines

    def log(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace") if self.log_path.exists() \
            else ""

    def __exit__(self, *exc: object) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            wait_for(lambda: self.process.poll() is not None, timeout=20, what="web stopped")
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()


def _first(paths: tuple[str, ...], name: str) -> str | None:
    return next((p for p in paths if Path(p).is_file()), None) or shutil.which(name)


@contextmanager
def chrome() -> Iterator[Any]:
    """Headless Chromium driven by Selenium; the driver's path is given, so Selenium Manager
    never downloads anything."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    binary, driver = _first(CHROMIUM, "chromium"), _first(CHROMEDRIVER, "chromedriver")
    if binary is None or driver is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,900",
                     "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    try:
        yield browser
    finally:
        browser.quit()

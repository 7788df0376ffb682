"""Headless Chromium for the console's browser tests (Selenium with Debian's chromium and
chromium-driver).

::

    with running_browser() as driver:
        driver.get(url)

The driver's and the browser's paths are given to Selenium explicitly and ``SE_OFFLINE`` is
set, so Selenium Manager never downloads anything. Chromium runs headless with a fresh
profile in a temporary directory, without background networking, component updates, sync or
a proxy: the only traffic is to the pages a test opens (loopback). When the binaries are
missing and we are root on Debian, ``chromium`` and ``chromium-driver`` are installed with
apt-get (as :mod:`fsrouter.testing.postgres` does for PostgreSQL).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

PACKAGES = ("chromium", "chromium-driver")
_BROWSERS = ("chromium", "chromium-browser")
_DRIVERS = ("chromedriver",)
_DEBIAN_DIR = Path("/usr/lib/chromium")
PAGE_LOAD_TIMEOUT_S = 60  # a cold Chromium on a loaded 2-core machine
WINDOW = (1280, 900)


class BrowserUnavailable(RuntimeError):
    """No headless Chromium can be started here; the message says why."""


def find_binaries() -> tuple[Path, Path] | None:
    """(chromium, chromedriver) if both are installed."""
    browser = _first(_BROWSERS, _DEBIAN_DIR / "chromium")
    driver = _first(_DRIVERS, _DEBIAN_DIR / "chromedriver")
    return (browser, driver) if browser and driver else None


def _first(names: tuple[str, ...], fallback: Path) -> Path | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return Path(found)
    return fallback if fallback.exists() else None


def ensure_installed() -> tuple[Path, Path]:
    """Find Chromium and its driver, installing Debian's packages when we may."""
    found = find_binaries()
    if found:
        return found
    if os.geteuid() != 0 or not Path("/etc/debian_version").exists() or not shutil.which("apt-get"):
        raise BrowserUnavailable(
            "chromium and chromedriver not found; install them "
            f"(Debian: apt-get install {' '.join(PACKAGES)})")
    _apt_install()
    found = find_binaries()
    if not found:
        raise BrowserUnavailable(f"apt-get installed {' '.join(PACKAGES)} but chromium or "
                                 "chromedriver is still missing")
    return found


def _apt_install() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=600"]  # a parallel worker may be installing too
    install = ["apt-get", *lock, "install", "-y", "--no-install-recommends", *PACKAGES]
    log.info("browser.installing", packages=PACKAGES)
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode == 0:
        return
    subprocess.run(["apt-get", *lock, "update"], env=env, capture_output=True, check=False)
    result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrowserUnavailable(f"apt-get install {' '.join(PACKAGES)} failed: "
                                 f"{result.stderr[-500:]}")


def chromium_arguments(profile: Path) -> list[str]:
    arguments = [
        "--headless=new",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--disable-dev-shm-usage",  # /dev/shm is small in containers
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-default-apps",
        "--no-proxy-server",
        "--metrics-recording-only",
        "--password-store=basic",
    ]
    if os.geteuid() == 0:
        arguments.append("--no-sandbox")  # Chromium's sandbox refuses to run as root
    return arguments


@contextmanager
def running_browser() -> Iterator[Any]:
    """A headless Chromium driven by Selenium; closed (and its profile deleted) on exit."""
    browser, driver_path = ensure_installed()
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never download a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = Path(tempfile.mkdtemp(prefix="fsrouter-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = str(browser)
    for argument in chromium_arguments(profile):
        options.add_argument(argument)
    service = Service(executable_path=str(driver_path), log_output=subprocess.DEVNULL)
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except Exception as error:  # the driver's reason (a missing library, a crash) in one line
        shutil.rmtree(profile, ignore_errors=True)
        raise BrowserUnavailable(f"chromium did not start: {str(error).strip()[:500]}") from None
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def main() -> int:
    """``python -m fsrouter.testing.browser``: install (when root on Debian) and report."""
    try:
        browser, driver = ensure_installed()
    except BrowserUnavailable as reason:
        print(f"browser tests will be skipped: {reason}")
        return 0  # not an error of `make test`: the tests say why they skip (fail under CI)
    print(f"browser tests: {browser}, {driver}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Make sure espeak-ng and sox are installed: ``python -m fsrouter.prompts.install``.

``make demo`` and ``make test`` run this first, so a fresh machine gets them. When they are
missing and we are root on Debian, Debian's ``espeak-ng`` and ``sox`` packages are installed
with apt-get (as fsrouter/testing/postgres.py does for PostgreSQL); otherwise the message
says what to install and the exit code is 1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from fsrouter.prompts.render import tools_missing

PACKAGES = {"espeak-ng": "espeak-ng", "sox": "sox"}


class ToolsUnavailable(RuntimeError):
    """espeak-ng or sox is missing and cannot be installed here; the message says why."""


def ensure_tools() -> list[str]:
    """Install what is missing when we may; returns the packages installed."""
    missing = tools_missing()
    if not missing:
        return []
    packages = [PACKAGES[tool] for tool in missing]
    if os.geteuid() != 0 or not Path("/etc/debian_version").exists() \
            or not shutil.which("apt-get"):
        raise ToolsUnavailable(f"{' and '.join(missing)} not found: install them "
                               f"(Debian: apt-get install {' '.join(packages)})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=300"]  # a parallel install may hold the dpkg lock
    install = ["apt-get", *lock, "install", "-y", "--no-install-recommends", *packages]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", *lock, "update"], env=env, capture_output=True, check=False)
        result = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ToolsUnavailable(f"apt-get install {' '.join(packages)} failed: "
                                   f"{result.stderr[-500:]}")
    still = tools_missing()
    if still:
        raise ToolsUnavailable(f"apt-get ran but {' and '.join(still)} is still missing")
    return packages


def main() -> int:
    try:
        installed = ensure_tools()
    except ToolsUnavailable as error:
        print(f"fsrouter prompts: {error}", file=sys.stderr)
        return 1
    if installed:
        print(f"installed {' '.join(installed)} (speaks the prompts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

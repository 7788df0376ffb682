"""One folder of rendered prompts shared by the test daemons of a machine.

A daemon renders its spoken prompts at start into ``prompts.directory`` (default
``/var/lib/fsrouter/prompts``). Test daemons must not write into the host's own folder (it
needs root, and on a telephony host it is the production one), and a folder per test would
render the same sentences again for every test. Files there are named by a hash of what they
say and written atomically (fsrouter.prompts), so daemons in parallel test workers can share
one folder safely.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

SHARED_PROMPTS = Path(tempfile.gettempdir()) / f"fsrouter-test-prompts-{os.getuid()}"


def with_shared_prompts(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with ``prompts.directory`` set to :data:`SHARED_PROMPTS` unless it has one."""
    prompts = dict(config.get("prompts") or {})
    prompts.setdefault("directory", str(SHARED_PROMPTS))
    return {**config, "prompts": prompts}

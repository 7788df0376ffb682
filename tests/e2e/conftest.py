"""Registers the real-switch fixtures for tests/e2e.

``pytest_plugins`` is only allowed in the top-level conftest, so until tests/conftest.py lists
``fsrouter.testing.pytest_plugin`` this imports it here; once it does, this is a no-op.
"""

import pytest

PLUGIN = "fsrouter.testing.pytest_plugin"


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(PLUGIN):
        config.pluginmanager.import_plugin(PLUGIN)

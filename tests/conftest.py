"""Shared pytest set-up for the whole suite."""

import tests.hypothesis_profiles  # noqa: F401  (loads the ci or explore profile first)

pytest_plugins = ["fsrouter.testing.pytest_plugin"]

"""Shared pytest set-up for the whole suite."""

pytest_plugins = ["fsrouter.testing.pytest_plugin"]

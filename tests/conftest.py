"""Shared pytest set-up for the whole suite."""

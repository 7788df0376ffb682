"""Staying up while the database blinks: the journal of store writes waiting for it
(:mod:`fsrouter.resilience.journal`) and its metrics. What a new call gets meanwhile is
``database.unavailable`` (docs/two-nodes.md)."""

"""Writes of calls under way that must not be lost when the store refuses them.

A call that is already under way ends its rows (the attempt's result, the call's outcome,
the incident's reason) with short idempotent updates; if the database is down, full,
read-only or locked at that moment, raising would kill the flow mid-call. :func:`settle`
hands such a write to the journal (:mod:`fsrouter.resilience.journal`), which writes it, in
order with every other waiting write, once the store takes it::

    settle(queries.finish_call, call.uuid, outcome, cause, now())
"""

from __future__ import annotations

from fsrouter.resilience.journal import calls, create, settle, waiting

__all__ = ["calls", "create", "settle", "waiting"]

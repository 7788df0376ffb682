"""Staying up while a dependency blinks: the journal of store writes waiting for the
database (:mod:`fsrouter.resilience.journal`) and what new calls get while it is away
(``database.unavailable``, :mod:`fsrouter.resilience.newcalls`)."""

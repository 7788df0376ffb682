"""The journal's figures for Prometheus (registered by fsrouter.metrics.Metrics)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from fsrouter.resilience import journal


class JournalCollector(Collector):
    """Writes waiting for the database, and what the journal has done since the start."""

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        state = journal.state
        yield GaugeMetricFamily("fsrouter_store_journal_pending",
                                "Store writes waiting for the database (0: it takes writes)",
                                value=journal.waiting())
        yield GaugeMetricFamily("fsrouter_store_outage_seconds",
                                "How long the current database outage has lasted (0: none)",
                                value=journal.outage_seconds())
        yield CounterMetricFamily("fsrouter_store_outages", "Database outages seen by the "
                                  "journal (a refused write starts one)", value=state.outages)
        yield CounterMetricFamily("fsrouter_store_writes_deferred",
                                  "Store writes kept for later", value=state.deferred)
        yield CounterMetricFamily("fsrouter_store_writes_replayed",
                                  "Kept writes written once the database was back",
                                  value=state.replayed)
        yield CounterMetricFamily("fsrouter_store_writes_dropped",
                                  "Kept writes dropped (journal full, or refused for good)",
                                  value=state.dropped + state.failed)

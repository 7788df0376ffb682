"""Metrics and health: real HTTP requests to the gevent server on 127.0.0.1 port 0, values read
back in Prometheus text format, health against real SQLite files and a real PostgreSQL."""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import gevent
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fsrouter.config import load_config
from fsrouter.metrics import (
    MAX_WORDS,
    Metrics,
    configured_labels,
    database_ok,
    serve,
    standard_health,
)
from fsrouter.store.db import close_database, database_proxy, open_database
from fsrouter.store.migrations import upgrade
from fsrouter.testing.postgres import postgres_for_tests

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.yaml"
HOTLINE = "+493023125000"
SALES = "+493023125200"


def fetch(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """A real HTTP request from an OS thread, so the gevent hub in this thread keeps serving."""

    def request() -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(url, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as reply:
                return reply.status, dict(reply.headers), reply.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    return gevent.get_hub().threadpool.spawn(request).get(timeout=20)


def samples(body: bytes) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value} from a /metrics body."""
    found = {}
    for family in text_string_to_metric_families(body.decode("utf-8")):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(body: bytes, name: str, **labels: str) -> float | None:
    return samples(body).get((name, frozenset(labels.items())))


@pytest.fixture(scope="module")
def example_config():
    return load_config(EXAMPLE)


@pytest.fixture
def metrics(example_config) -> Metrics:
    return Metrics.for_config(example_config)


class Switch:
    """A health flag the test flips."""

    def __init__(self) -> None:
        self.up = True


@pytest.fixture
def sqlite_db(tmp_path) -> Iterator[object]:
    db = open_database(f"sqlite:///{tmp_path}/health.db")
    upgrade(db)
    try:
        yield db
    finally:
        close_database(db)


@pytest.fixture
def server(metrics, sqlite_db):
    switch = Switch()
    srv = serve(metrics, "127.0.0.1", 0,
                lambda: {"switch": switch.up, "database": database_ok(database_proxy)})
    srv.switch = switch
    try:
        yield srv
    finally:
        srv.stop()


def url(srv, path: str) -> str:
    return f"http://127.0.0.1:{srv.port}{path}"


# -- values ------------------------------------------------------------------------------


def test_values_after_a_scripted_set_of_calls(server, metrics):
    for _ in range(3):
        metrics.call_started()
    metrics.menu_choice(HOTLINE, "1")
    metrics.menu_choice(HOTLINE, "1")
    metrics.menu_choice(HOTLINE, "2")
    metrics.queue_waited("hotline_infra", 12.5)
    metrics.queue_waited("hotline_infra", 400)
    metrics.attempt_ended("no_answer", "NO_ANSWER")
    metrics.attempt_ended("no_answer", "NO_ANSWER")
    metrics.attempt_ended("accepted", "NORMAL_CLEARING")
    metrics.answered_after(37.0)
    metrics.call_ended(HOTLINE, "bridged")
    metrics.call_ended(HOTLINE, "hangup_in_menu")
    metrics.voicemail_left(SALES)
    metrics.db_error()
    metrics.webhook_failed()
    metrics.mail_failed()
    metrics.set_switch_connected(True)

    status, headers, body = fetch(url(server, "/metrics"))
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert value(body, "fsrouter_calls_total", number=HOTLINE, outcome="bridged") == 1
    assert value(body, "fsrouter_calls_total", number=HOTLINE, outcome="hangup_in_menu") == 1
    assert value(body, "fsrouter_menu_choices_total", number=HOTLINE, digit="1") == 2
    assert value(body, "fsrouter_menu_choices_total", number=HOTLINE, digit="2") == 1
    assert value(body, "fsrouter_queue_wait_seconds_count", queue="hotline_infra") == 2
    assert value(body, "fsrouter_queue_wait_seconds_sum", queue="hotline_infra") == 412.5
    assert value(body, "fsrouter_queue_wait_seconds_bucket", queue="hotline_infra",
                 le="20.0") == 1
    assert value(body, "fsrouter_attempts_total", result="no_answer", cause="NO_ANSWER") == 2
    assert value(body, "fsrouter_attempts_total", result="accepted",
                 cause="NORMAL_CLEARING") == 1
    assert value(body, "fsrouter_time_to_answer_seconds_count") == 1
    assert value(body, "fsrouter_time_to_answer_seconds_bucket", le="30.0") == 0
    assert value(body, "fsrouter_time_to_answer_seconds_bucket", le="45.0") == 1
    assert value(body, "fsrouter_active_calls") == 1  # 3 started, 2 ended
    assert value(body, "fsrouter_switch_connected") == 1
    assert value(body, "fsrouter_database_errors_total") == 1
    assert value(body, "fsrouter_voicemails_total", number=SALES) == 1
    assert value(body, "fsrouter_webhook_failures_total") == 1
    assert value(body, "fsrouter_mail_failures_total") == 1


def test_switch_gauge_follows_the_connection(server, metrics):
    metrics.set_switch_connected(True)
    metrics.set_switch_connected(False)
    _, _, body = fetch(url(server, "/metrics"))
    assert value(body, "fsrouter_switch_connected") == 0


def test_each_metrics_object_counts_on_its_own(example_config):
    first, second = Metrics.for_config(example_config), Metrics.for_config(example_config)
    first.call_ended(HOTLINE, "bridged")
    assert first.registry.get_sample_value(
        "fsrouter_calls_total", {"number": HOTLINE, "outcome": "bridged"}) == 1
    assert second.registry.get_sample_value(
        "fsrouter_calls_total", {"number": HOTLINE, "outcome": "bridged"}) is None


# -- bounded labels ------------------------------------------------------------------------


def test_labels_callers_or_peers_control_are_clipped(metrics):
    metrics.call_ended("+4917699999999", "bridged")  # a number not in the config
    metrics.call_ended("${system(rm -rf /)}", "bridged")
    metrics.menu_choice(HOTLINE, "A")
    metrics.menu_choice("+4930555", "7")
    metrics.queue_waited("fsr_made_up_9", 3)
    metrics.attempt_ended("no_answer", "MADE_UP_CAUSE")
    metrics.attempt_ended("failed", None)
    get = metrics.registry.get_sample_value
    assert get("fsrouter_calls_total", {"number": "unknown", "outcome": "bridged"}) == 2
    assert get("fsrouter_menu_choices_total", {"number": HOTLINE, "digit": "other"}) == 1
    assert get("fsrouter_menu_choices_total", {"number": "unknown", "digit": "7"}) == 1
    assert get("fsrouter_queue_wait_seconds_count", {"queue": "other"}) == 1
    assert get("fsrouter_attempts_total", {"result": "no_answer", "cause": "other"}) == 1
    assert get("fsrouter_attempts_total", {"result": "failed", "cause": "other"}) == 1


def test_outcome_words_are_capped(metrics):
    for i in range(MAX_WORDS + 20):
        metrics.call_ended(HOTLINE, f"outcome_{i}")
    metrics.call_ended(HOTLINE, "Not A Word!")
    metrics.call_ended(HOTLINE, "bridged")  # a known outcome passes even after the cap
    outcomes = {s.labels["outcome"] for s in _family(metrics, "fsrouter_calls").samples
                if s.name == "fsrouter_calls_total"}
    assert len(outcomes) == MAX_WORDS + 2  # the first MAX_WORDS new words, bridged, other
    assert {"other", "outcome_0", "bridged"} <= outcomes
    assert f"outcome_{MAX_WORDS}" not in outcomes


def _family(metrics: Metrics, name: str):
    return next(f for f in metrics.registry.collect() if f.name == name)


def test_configured_labels_include_the_per_option_queues(tmp_path):
    # Without `queue:` an option gets its own queue fsr_<number digits>_<digit>.
    text = EXAMPLE.read_text(encoding="utf-8").replace("        queue: hotline_infra\n", "")
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    numbers, queues = configured_labels(load_config(path))
    assert queues == {"sales", "fsr_493023125000_1", "hotline_database"}
    assert HOTLINE in numbers and SALES in numbers and len(numbers) == 7


def test_reconfigure_adds_new_numbers(example_config, tmp_path):
    metrics = Metrics(numbers=(), queues=())
    metrics.call_ended(HOTLINE, "bridged")
    metrics.reconfigure(example_config)
    metrics.call_ended(HOTLINE, "bridged")
    get = metrics.registry.get_sample_value
    assert get("fsrouter_calls_total", {"number": "unknown", "outcome": "bridged"}) == 1
    assert get("fsrouter_calls_total", {"number": HOTLINE, "outcome": "bridged"}) == 1


# -- health --------------------------------------------------------------------------------


def health(srv) -> tuple[int, dict]:
    status, headers, body = fetch(url(srv, "/health"))
    assert headers["Content-Type"] == "application/json"
    return status, json.loads(body)


def test_health_is_200_when_switch_and_database_are_up(server):
    assert health(server) == (200, {"switch": True, "database": True})


def test_health_is_503_when_the_switch_is_down(server):
    server.switch.up = False
    assert health(server) == (503, {"switch": False, "database": True})


def test_health_is_503_when_the_database_file_is_removed(server, sqlite_db):
    path = Path(sqlite_db.database)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    assert health(server) == (503, {"switch": True, "database": False})
    assert not path.exists()  # the check must not create an empty database in its place


def test_health_is_503_when_the_database_is_closed(server, sqlite_db):
    close_database(sqlite_db)
    assert health(server) == (503, {"switch": True, "database": False})


def test_health_is_503_when_the_database_file_is_garbage(server, sqlite_db):
    path = Path(sqlite_db.database)
    close_database(sqlite_db)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes(os.urandom(8192))
    database_proxy.initialize(sqlite_db)  # still bound, but the file is no database
    try:
        assert health(server) == (503, {"switch": True, "database": False})
    finally:
        database_proxy.initialize(None)


def test_health_recovers_when_the_switch_comes_back(server):
    server.switch.up = False
    assert health(server)[0] == 503
    server.switch.up = True
    assert health(server)[0] == 200


def test_a_failing_health_check_reads_as_unhealthy(metrics):
    def broken() -> dict[str, bool]:
        raise RuntimeError("boom")

    srv = serve(metrics, "127.0.0.1", 0, broken)
    try:
        assert health(srv) == (503, {"health_check": False})
    finally:
        srv.stop()


def test_standard_health_uses_the_reported_switch_state(metrics, sqlite_db):
    checks = standard_health(metrics, database_proxy)
    assert checks() == {"switch": False, "database": True}
    metrics.set_switch_connected(True)
    assert checks() == {"switch": True, "database": True}


def test_database_ok_on_postgresql_and_after_the_server_stops():
    with postgres_for_tests() as server:
        db = open_database(server.url, bind=False)
        try:
            assert database_ok(db) is True
            server.stop()
            assert database_ok(db, timeout=5) is False
        finally:
            close_database(db)


# -- HTTP details --------------------------------------------------------------------------


def test_unknown_paths_and_methods(server):
    assert fetch(url(server, "/"))[0] == 404
    assert fetch(url(server, "/metrics/../etc/passwd"))[0] == 404
    status, headers, _ = fetch(url(server, "/metrics"), method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, _, body = fetch(url(server, "/health"), method="HEAD")
    assert status == 200 and body == b""


def test_port_zero_is_read_back_and_stop_closes_the_port(metrics):
    srv = serve(metrics, "127.0.0.1", 0, lambda: {"switch": True})
    port = srv.port
    assert port > 0
    assert fetch(f"http://127.0.0.1:{port}/health")[0] == 200
    srv.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_serves_on_ipv6_loopback(metrics):
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    srv = serve(metrics, "::1", 0, lambda: {"switch": True})
    try:
        assert fetch(f"http://[::1]:{srv.port}/health")[0] == 200
    finally:
        srv.stop()


def test_a_taken_port_raises(metrics):
    first = serve(metrics, "127.0.0.1", 0, lambda: {"switch": True})
    try:
        with pytest.raises(OSError):
            serve(metrics, "127.0.0.1", first.port, lambda: {"switch": True})
    finally:
        first.stop()


def test_health_shows_each_switch_and_one_switch_down_is_not_a_dead_daemon(metrics,
                                                                            sqlite_db):
    """Several switches (issue 18.1): each one's state is detail; the status says whether
    the daemon can take calls (any switch connected) and reach its database."""
    links = {"a": {"connected": False, "since": "2026-01-01T00:00:00+00:00",
                   "last_error": "peer closed the socket", "connects": 1},
             "b": {"connected": True, "since": "2026-01-01T00:00:00+00:00",
                   "last_error": None, "connects": 1}}
    metrics.set_switch_state("a", False, any_connected=True)
    metrics.set_switch_state("b", True, any_connected=True)
    srv = serve(metrics, "127.0.0.1", 0,
                standard_health(metrics, database_proxy, lambda: links))
    try:
        assert health(srv) == (200, {"switch": True, "database": True, "switches": links})
        metrics.set_switch_state("b", False, any_connected=False)
        assert health(srv)[0] == 503
        _, _, body = fetch(url(srv, "/metrics"))
        text = body.decode()
        assert 'fsrouter_switch_up{switch="a"} 0.0' in text
        assert 'fsrouter_switch_losses_total{switch="b"} 1.0' in text
        assert "fsrouter_switch_connected 0.0" in text
    finally:
        srv.stop()

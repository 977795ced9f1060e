"""History on SQLite and PostgreSQL: typed columns, one row per sample however often it is delivered, retention."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from common.cli import RateLimitedLog
from subscriber import store as store_module
from subscriber.postgres_store import PostgresHistoryStore
from subscriber.state import FleetState
from subscriber.store import CONTAINER_SERIES_FIELDS, NODE_SERIES_FIELDS, SqliteHistoryStore, StoreUnavailable
from tests.conftest import AnyStore, StoreOpener
from tests.support.messages import T0, container, container_batch, node_metrics, status, ticks
from tests.support.postgres import Postgres, start_postgres


@pytest.fixture
def store(open_store: StoreOpener) -> AnyStore:
    return open_store()


def test_every_numeric_contract_field_is_a_column() -> None:
    assert {"cpu_percent", "memory_used_mb", "network_bytes_sent", "temperature_c", "cycle"} <= set(NODE_SERIES_FIELDS)
    assert {"agent_rss_mb", "agent_dropped"} <= set(NODE_SERIES_FIELDS)
    assert {"cpu_percent", "memory_usage_mb", "block_write_bytes", "restart_count"} <= set(CONTAINER_SERIES_FIELDS)
    assert "node_id" not in NODE_SERIES_FIELDS
    assert "schema_version" not in NODE_SERIES_FIELDS


def test_series_round_trip_and_duplicates_stored_once(store: AnyStore) -> None:
    nodes = [node_metrics(at=t, cycle=i + 1, cpu_percent=float(i)) for i, t in enumerate(ticks(5))]
    written = store.write(nodes, [], [])
    assert (written.nodes, written.containers) == (5, 0)
    again = store.write(nodes[2:], [], [])  # redelivered after a crash: nothing new
    assert (again.nodes, again.containers) == (0, 0)
    series = store.node_series("node-a", "cpu_percent", T0, T0 + timedelta(minutes=1), limit=100)
    assert [v for _, v in series.points] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [t for t, _ in series.points] == ticks(5)
    assert not series.truncated
    assert store.node_series("node-a", "agent_rss_mb", T0, T0 + timedelta(minutes=1), 100).points[0][1] == 24.0
    assert store.count("node_samples") == 5


def test_limit_keeps_the_newest_and_says_so(store: AnyStore) -> None:
    store.write([node_metrics(at=t, cycle=i, cpu_percent=float(i)) for i, t in enumerate(ticks(10))], [], [])
    series = store.node_series("node-a", "cpu_percent", T0, T0 + timedelta(minutes=5), limit=3)
    assert [v for _, v in series.points] == [7.0, 8.0, 9.0]
    assert series.truncated


def test_big_counters_stay_exact(store: AnyStore) -> None:
    store.write([node_metrics(network_bytes_recv=2**62 + 1)], [], [])
    points = store.node_series("node-a", "network_bytes_recv", T0, T0 + timedelta(seconds=1), 10).points
    assert points[0][1] == 2**62 + 1


def test_container_series_by_name(store: AnyStore) -> None:
    batches = [
        container_batch(at=t, containers=[container("web", cpu_percent=float(i)), container("db", cpu_percent=50.0)])
        for i, t in enumerate(ticks(3))
    ]
    written = store.write([], batches, [])
    assert written.containers == 6
    web = store.container_series("node-a", "web", "cpu_percent", T0, T0 + timedelta(minutes=1), 100)
    assert [v for _, v in web.points] == [0.0, 1.0, 2.0]
    assert store.container_series("node-a", "nope", "cpu_percent", T0, T0 + timedelta(minutes=1), 100).points == []


def test_unknown_fields_are_refused(store: AnyStore) -> None:
    with pytest.raises(ValueError, match="unknown node field"):
        store.node_series("node-a", "cpu_percent; DROP TABLE node_samples", T0, T0, 1)
    with pytest.raises(ValueError, match="unknown container field"):
        store.container_series("node-a", "web", "node_id", T0, T0, 1)


def test_retention_prunes_only_old_rows(store: AnyStore) -> None:
    old, new = T0 - timedelta(days=8), T0
    store.write([node_metrics(at=old), node_metrics(at=new)], [container_batch(at=old), container_batch(at=new)], [])
    removed = store.prune(T0 - timedelta(days=7))
    assert removed == 2
    assert store.count("node_samples") == 1
    assert store.count("container_samples") == 1


def test_latest_views_survive_reopening(open_store: StoreOpener) -> None:
    state = FleetState(stale_after=3.0)
    state.apply_status(status(), received_at=10.0)
    state.apply_node_metrics(node_metrics(), received_at=11.0)
    state.apply_container_metrics(container_batch(), received_at=11.0)
    first = open_store()
    view = state.get("node-a")
    assert view is not None
    first.write([node_metrics()], [container_batch()], [view])
    first.close()
    reopened = open_store()
    assert reopened.latest_views() == [view]
    assert reopened.count("node_samples") == 1


def test_a_stored_view_that_no_longer_validates_is_left_out_and_logged_once_a_minute(
    open_store: StoreOpener, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicas read every stored view at each scrape: a row written under an older contract must not
    log a line per scrape for as long as its node stays silent."""
    monkeypatch.setattr(store_module, "_invalid_views", RateLimitedLog(store_module.log, period=60.0))  # a fresh minute
    state = FleetState(stale_after=3.0)
    state.apply_node_metrics(node_metrics(), received_at=11.0)
    state.apply_node_metrics(node_metrics("node-b").model_copy(update={"cpu_percent": 500.0}), received_at=11.0)
    good, odd = state.get("node-a"), state.get("node-b")
    assert good is not None
    assert odd is not None
    store = open_store()
    store.write([], [], [good, odd])
    for _ in range(3):
        assert store.latest_views() == [good]
    assert sum("no longer validates" in r.getMessage() for r in caplog.records) == 1


def test_columns_added_to_the_contract_are_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    SqliteHistoryStore(path).close()
    with sqlite3.connect(path) as db:  # a file from a version without the under_voltage field
        db.execute("ALTER TABLE node_samples DROP COLUMN under_voltage")
    store = SqliteHistoryStore(path)
    store.write([node_metrics(under_voltage=True)], [], [])
    points = store.node_series("node-a", "under_voltage", T0, T0 + timedelta(seconds=1), 1).points
    assert points[0][1] == 1


@pytest.mark.docker
def test_postgres_migrates_added_columns_and_drops_whole_days(postgres_server: Postgres) -> None:
    url = postgres_server.new_database()
    PostgresHistoryStore(url).close()
    with psycopg.connect(url, autocommit=True) as db:  # a database from a version without under_voltage
        db.execute("ALTER TABLE node_samples DROP COLUMN under_voltage")
    store = PostgresHistoryStore(url)
    store.write([node_metrics(under_voltage=True), node_metrics(at=T0 - timedelta(days=3))], [], [])
    points = store.node_series("node-a", "under_voltage", T0, T0 + timedelta(seconds=1), 1).points
    assert points[0][1] == 1
    with psycopg.connect(url) as db:
        days = {
            name
            for (name,) in db.execute(
                "SELECT relname FROM pg_class WHERE relname LIKE 'node_samples_d%' AND relkind = 'r'"
            )
        }
    assert days == {f"node_samples_d{T0:%Y%m%d}", f"node_samples_d{T0 - timedelta(days=3):%Y%m%d}"}
    assert store.prune(T0 - timedelta(days=1)) == 1  # the older day's table, dropped whole
    with psycopg.connect(url) as db:
        left = {
            name
            for (name,) in db.execute(
                "SELECT relname FROM pg_class WHERE relname LIKE 'node_samples_d%' AND relkind = 'r'"
            )
        }
    assert left == {f"node_samples_d{T0:%Y%m%d}"}
    store.close()


@pytest.mark.docker
def test_postgres_down_is_unavailable_then_writes_resume(tmp_path: Path) -> None:
    with start_postgres() as server:
        store = PostgresHistoryStore(server.url())
        store.write([node_metrics(at=T0)], [], [])
        server.stop()
        with pytest.raises(StoreUnavailable, match="PostgreSQL"):
            store.write([node_metrics(at=T0 + timedelta(seconds=5), cycle=2)], [], [])
        with pytest.raises(StoreUnavailable):
            store.node_series("node-a", "cpu_percent", T0, T0 + timedelta(minutes=1), 10)
        server.start()
        written = store.write([node_metrics(at=T0 + timedelta(seconds=5), cycle=2)], [], [])
        assert written.nodes == 1
        assert [v for _, v in store.node_series("node-a", "cycle", T0, T0 + timedelta(minutes=1), 10).points] == [1, 2]
        store.close()

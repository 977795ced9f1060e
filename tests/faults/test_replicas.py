"""Subscriber replicas on one broker and one PostgreSQL: a replica killed or stopped under load, the
database restarted under load. Every published message is stored exactly once, in contiguous cycles."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.broker import Broker, start_broker
from tests.support.fleet import FleetPublisher, missing, stored_cycles
from tests.support.load import wait_until
from tests.support.postgres import Postgres, start_postgres
from tests.support.subscriber_process import SubscriberProcess

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NODES = 20
INTERVAL = 0.25  # 80 messages a second in all


def replica(broker: Broker, workdir: Path, url: str, name: str) -> SubscriberProcess:
    return SubscriberProcess(
        broker,
        workdir,
        database_url=url,
        shared_group="otto",
        replica_id=name,
        alerts="false",
        ha_discovery="off",
        db_path=str(workdir / f"{name}.db"),  # logins and alerts; the history is in PostgreSQL
    )


def assert_exactly_once(url: str, published: dict[str, int]) -> None:
    stored = stored_cycles(url)
    for node_id, count in published.items():
        assert stored.get(node_id) == list(range(1, count + 1)), f"{node_id}: not every cycle exactly once"
    with psycopg.connect(url) as db:
        # Each rate is 1000 B over the time since the node's previous sample, as one writer derives it.
        lost, bad_rates = db.execute(
            "SELECT coalesce(sum(cycles_lost), 0), count(*) FILTER (WHERE gap IS NULL AND rate IS NOT NULL "
            "OR abs(rate - 1000 / (gap / 1000.0)) > 1e-6) FROM (SELECT cycles_lost, network_recv_rate AS rate, "
            "ts - lag(ts) OVER (PARTITION BY node_id ORDER BY ts) AS gap FROM node_samples) AS derived"
        ).fetchone() or (None, None)
    assert lost == 0  # derived from the stored sample before, whichever replica stored which
    assert bad_rates == 0


def fleet_series(subscriber: SubscriberProcess) -> set[tuple[str, str]]:
    body = subscriber.get("/metrics?scope=fleet")
    return {
        (sample.name, sample.labels.get("node", ""))
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == "otto_node_up"
    }


@pytest.mark.parametrize("replicas", [2, 3])
def test_a_replica_killed_and_another_stopped_under_load_lose_nothing(
    postgres_server: Postgres, tmp_path: Path, replicas: int
) -> None:
    url = postgres_server.new_database()
    with start_broker(tmp_path / "broker", nodes=[], wildcard_publisher="fleet") as broker:
        group = [replica(broker, tmp_path, url, f"r{i}").start() for i in range(replicas)]
        fleet = FleetPublisher(broker, "fleet", NODES, INTERVAL).start()
        try:
            wait_until(
                lambda: missing(url, fleet.published, settled_before=8) == 0 and sum(fleet.published.values()) > 200
            )
            # Killed: its session stays at the broker, which keeps handing it its turn of the
            # shared messages (mosquitto#2662) and queues them until the replica is back.
            group[0].kill()
            time.sleep(4)
            queued_for_the_dead = missing(url, fleet.published, settled_before=8)
            group[0].start()
            wait_until(lambda: missing(url, fleet.published, settled_before=8) == 0, timeout=60)
            # Stopped cleanly: it leaves the group first, so nothing waits for it while it is away.
            group[-1].stop()
            time.sleep(4)
            while_stopped = missing(url, fleet.published, settled_before=8)
            group[-1].start()
            # Every replica answers for the whole fleet, its live state and its /metrics.
            wait_until(lambda: all(len(r.get("/api/nodes")) == NODES for r in group), timeout=15)
            assert all(len(fleet_series(r)) == NODES for r in group)
        finally:
            published = fleet.stop()
        wait_until(lambda: missing(url, fleet.published) == 0, timeout=60)
        assert_exactly_once(url, fleet.published)
        assert published == sum(fleet.published.values())
        assert queued_for_the_dead > 0  # Mosquitto did hold the dead member's share for it
        assert while_stopped == 0
        for r in group:
            assert "Traceback" not in r.logs()
            assert r.stop() == 0


def test_a_database_restart_under_load_loses_nothing_and_ingestion_resumes(tmp_path: Path) -> None:
    with start_postgres() as server, start_broker(tmp_path / "broker", nodes=[], wildcard_publisher="fleet") as broker:
        url = server.new_database()
        subscriber = SubscriberProcess(
            broker, tmp_path, database_url=url, alerts="false", ha_discovery="off", db_path=str(tmp_path / "s.db")
        ).start()
        fleet = FleetPublisher(broker, "fleet", NODES, INTERVAL).start()
        try:
            wait_until(lambda: sum(fleet.published.values()) > 200)
            server.stop()
            wait_until(lambda: subscriber.get("/healthz")["store_available"] is False, timeout=20)
            time.sleep(3)
            server.start()
            wait_until(lambda: subscriber.get("/healthz")["store_available"] is True, timeout=60)
            time.sleep(2)
        finally:
            fleet.stop()
        wait_until(lambda: missing(url, fleet.published) == 0, timeout=60)
        assert_exactly_once(url, fleet.published)
        assert "Traceback" not in subscriber.logs()
        assert subscriber.stop() == 0

"""A simulated fleet publishing node metrics through a real broker, for replica and database faults."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import psycopg

from contract import to_payload
from contract.topics import node_metrics_topic
from tests.support.broker import BrokerAddress
from tests.support.messages import node_metrics
from tests.support.mqtt import Publisher


class FleetPublisher:
    """``nodes`` simulated nodes, each publishing its metrics every ``interval`` seconds (QoS 1) with
    consecutive cycles from 1 and counters that grow 1000 B per cycle, from a thread until ``stop``."""

    def __init__(self, broker: BrokerAddress, user: str, nodes: int, interval: float) -> None:
        self.node_ids = [f"sim-{n:03d}" for n in range(nodes)]
        self.interval = interval
        self.published = dict.fromkeys(self.node_ids, 0)
        self._publisher = Publisher(broker, user)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-publisher", daemon=True)

    def start(self) -> FleetPublisher:
        self._thread.start()
        return self

    def _run(self) -> None:
        tick = time.monotonic()
        while not self._stop.is_set():
            for node_id in self.node_ids:
                cycle = self.published[node_id] + 1
                message = node_metrics(
                    node_id, at=datetime.now(UTC), cycle=cycle, interval_seconds=self.interval,
                    network_bytes_recv=1000 * cycle,
                )  # fmt: skip
                self._publisher.publish(node_metrics_topic(node_id), to_payload(message))
                self.published[node_id] = cycle
            tick += self.interval
            self._stop.wait(max(0.0, tick - time.monotonic()))

    def stop(self) -> int:
        """Stop publishing, wait for every PUBACK; the number of messages published."""
        self._stop.set()
        self._thread.join(10)
        self._publisher.close()
        return sum(self.published.values())


def stored_cycles(url: str) -> dict[str, list[int]]:
    """Each node's stored cycles in time order, from the PostgreSQL history."""
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT node_id, cycle FROM node_samples ORDER BY node_id, ts").fetchall()
    out: dict[str, list[int]] = {}
    for node_id, cycle in rows:
        out.setdefault(node_id, []).append(int(cycle))
    return out


def missing(url: str, published: dict[str, int], settled_before: int = 0) -> int:
    """Cycles published (up to ``settled_before`` short of the last) that are not stored."""
    stored = stored_cycles(url)
    return sum(
        len(set(range(1, max(0, count - settled_before) + 1)) - set(stored.get(node_id, [])))
        for node_id, count in published.items()
    )

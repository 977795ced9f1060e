"""A year of plausible history for one node, written through the real store and its tiers.

Samples get sparser with age, at about the resolution the tier that will keep them has, so that
every dashboard range has data without writing millions of rows: every 5 s for the last
``recent``, every minute back to 7 days, every 15 minutes back to 14 days, every 2 hours before.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar, overload

from contract import ContainerMetricsBatch, NodeMetrics
from subscriber.state import NodeView
from subscriber.store import HistoryStore, SqliteHistoryStore
from tests.support.messages import container, container_batch, node_metrics

CONTAINERS = ("web", "db", "cache")
StoreT = TypeVar("StoreT", bound=HistoryStore)


def sample_times(now: datetime, days: float, recent: timedelta) -> Iterator[tuple[datetime, float]]:
    """(timestamp, spacing in seconds), oldest first."""
    bands = [
        (timedelta(days=days), timedelta(days=14), 7200.0),
        (timedelta(days=14), timedelta(days=7), 900.0),
        (timedelta(days=7), recent, 60.0),
        (recent, timedelta(0), 5.0),
    ]
    for older, newer, every in bands:
        if older <= newer:
            continue
        t = now - older
        while t < now - newer:
            yield t, every
            t += timedelta(seconds=every)


def messages(
    node_id: str, now: datetime, days: float = 400, recent: timedelta = timedelta(hours=2)
) -> tuple[list[NodeMetrics], list[ContainerMetricsBatch]]:
    """Daily waves in CPU and temperature, counters that grow (and reset once), a few brown-outs,
    and one sample in 400 lost on the way (a gap in the charts, a lost cycle in the counts)."""
    nodes, batches = [], []
    rx = tx = 0
    for i, (t, every) in enumerate(sample_times(now, days, recent)):
        day = 2 * math.pi * (t.timestamp() % 86400) / 86400
        cpu = 25 + 20 * math.sin(day) + 5 * math.sin(i)
        rx, tx = rx + int(every * (40_000 + 30_000 * math.sin(day))), tx + int(every * 12_000)
        if i == 500:
            rx = tx = 0  # a reboot
        if i % 400 == 399:
            continue
        cores = [min(100.0, max(0.0, cpu + 10 * math.sin(i + c))) for c in range(4)]
        nodes.append(
            node_metrics(
                node_id, at=t, cycle=i + 1, interval_seconds=every, cpu_percent=cpu, cpu_per_core=cores,
                cpu_count=4, load_1=cpu / 25, load_5=cpu / 27, load_15=cpu / 30, swap_used_mb=64.0,
                swap_percent=6.25, memory_used_mb=1500 + 300 * math.sin(day), memory_percent=40.0,
                network_bytes_recv=rx, network_bytes_sent=tx, temperature_c=48 + 8 * math.sin(day),
                under_voltage=i % 997 == 0, disk_percent=55.0 + i / 50_000,
            )
        )  # fmt: skip
        started = now - timedelta(hours=5)
        containers = [
            container(
                name, cpu_percent=max(0.0, cpu / (k + 1) + math.sin(i)), memory_usage_mb=100.0 * (k + 1),
                network_rx_bytes=rx // (k + 2), network_tx_bytes=tx // (k + 2), started_at=started,
            )
            for k, name in enumerate(CONTAINERS)
        ]  # fmt: skip
        batches.append(container_batch(node_id, at=t, cycle=i + 1, containers=containers))
    return nodes, batches


@overload
def seed(store: Path, node_ids: list[str], now: datetime, days: float = 400) -> SqliteHistoryStore: ...
@overload
def seed(store: StoreT, node_ids: list[str], now: datetime, days: float = 400) -> StoreT: ...
def seed(store: Path | HistoryStore, node_ids: list[str], now: datetime, days: float = 400) -> HistoryStore:
    """Write each node's history into ``store`` (or a new SQLite file) and bring the tiers up to date
    as of ``now``; the open store."""
    if isinstance(store, Path):
        store = SqliteHistoryStore(store)
    for node_id in node_ids:
        nodes, batches = messages(node_id, now, days)
        last = nodes[-1].timestamp.timestamp()
        latest = [NodeView(node_id, nodes[-1], batches[-1], None, last, last, last)]
        for start in range(0, len(nodes), 2000):
            store.write(nodes[start : start + 2000], batches[start : start + 2000], latest)
    store.maintain(now)
    return store

"""Benchmark 3: how fast the subscriber handles messages, against a raw paho loop on the same broker.

* Ceiling: a paho loop that only counts what it receives (its own process), while the simulated
  fleet publishes a burst of valid node and container messages at QoS 1 as fast as the broker
  takes them.
* Subscriber: the real MetricsSubscriber (validation, fleet state, SQLite history, acknowledged
  after commit) on the same burst; "handled" means committed to the store. Counted, so any loss
  shows.
* Latency: the fleet publishes at a fixed 1,000 messages/s with the publish time as each
  message's timestamp; latency is commit time minus that.
"""

from __future__ import annotations

import ssl
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from bench.fleet import CONTEXT, Plan, collect, receive_raw, start_publishers
from contract import ContainerEvent, ContainerMetricsBatch, NodeMetrics
from subscriber.consumer import BrokerConfig, Limits, MetricsSubscriber
from subscriber.prometheus import SubscriberCounters
from subscriber.state import FleetState, NodeView
from subscriber.store import SqliteHistoryStore, Written
from tests.support.broker import Broker, start_broker

SIMULATED_NODES = 100


class TimedStore(SqliteHistoryStore):
    """The real store, noting when each message's rows were committed."""

    def __init__(self, path: Path, durable: bool = True) -> None:
        super().__init__(path, durable=durable)
        self.committed = 0
        self.last_commit = 0.0
        self.latencies: list[float] | None = None

    def write(
        self,
        nodes: Sequence[NodeMetrics],
        batches: Sequence[ContainerMetricsBatch],
        latest: Sequence[NodeView],
        events: Sequence[ContainerEvent] = (),
    ) -> Written:
        written = super().write(nodes, batches, latest, events)
        now = time.time()
        self.committed += len(nodes) + len(batches)
        self.last_commit = now
        if self.latencies is not None:
            self.latencies += [now - m.timestamp.timestamp() for m in nodes]
            self.latencies += [now - b.timestamp.timestamp() for b in batches]
        return written


def client_context(ca_file: Path | None) -> ssl.SSLContext:
    """What the subscriber builds with OTTO_MQTT_CA_FILE (common.mqtt_settings): TLS 1.2+, verified."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _plans(broker: Broker, publishers: int, **fields: Any) -> list[Plan]:
    nodes = list(range(SIMULATED_NODES))
    return [
        Plan(broker.host, broker.port, "bench", broker.password("bench"), nodes=nodes[i::publishers], **fields)
        for i in range(publishers)
    ]


def _wait(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def run(
    workdir: Path, messages: int, publishers: int, latency_seconds: float, latency_rate: float = 1000.0
) -> dict[str, Any]:
    cycles = max(1, messages // (2 * SIMULATED_NODES))
    total = cycles * SIMULATED_NODES * 2
    with start_broker(workdir / "broker", nodes=[], wildcard_publisher="bench") as broker:
        # 1. The ceiling: count only.
        ready, raw_results = CONTEXT.Event(), CONTEXT.Queue()
        receiver = CONTEXT.Process(
            target=receive_raw,
            args=(broker.host, broker.port, "controlplane", broker.password("controlplane"), total, ready, raw_results),
        )
        receiver.start()
        ready.wait(30)
        processes, results = start_publishers(_plans(broker, publishers, schedule="burst", cycles=cycles))
        reports = collect(processes, results)
        raw = raw_results.get(timeout=300)
        receiver.join(timeout=30)
        raw_start = min(r["start"] for r in reports)
        raw_rate = raw["received"] / (raw["last"] - raw_start)

        # 2. The subscriber on the same burst: first without fsync at commit (synchronous=NORMAL,
        # as before "acknowledged means on disk"), then as shipped, to measure what durability costs.
        def burst(durable: bool, tls: bool = False) -> tuple[MetricsSubscriber, TimedStore, int, float, int]:
            name = f"{'full' if durable else 'normal'}{'-tls' if tls else ''}"
            store = TimedStore(workdir / f"ingest-{name}.db", durable=durable)
            subscriber = MetricsSubscriber(
                BrokerConfig(
                    host=broker.host,
                    port=broker.tls_port if tls and broker.tls_port else broker.port,
                    username="controlplane",
                    password=broker.password("controlplane"),
                    client_id=f"bench-subscriber-{name}",
                    tls=client_context(broker.ca_file) if tls else None,
                ),
                FleetState(3.0),
                store,
                SubscriberCounters(CollectorRegistry()),
                log_messages=False,
                limits=Limits(node_rate=0.0),  # a burst of simulated nodes: measure the ceiling, not the limit
            )
            subscriber.start()
            _wait(lambda: subscriber.connected, 30)
            time.sleep(1)
            processes, results = start_publishers(_plans(broker, publishers, schedule="burst", cycles=cycles))
            reports = collect(processes, results)
            start = min(r["start"] for r in reports)
            _wait(lambda: store.committed >= total, 300)
            published = sum(r["acked"] for r in reports)
            return subscriber, store, store.committed, store.committed / (store.last_commit - start), published

        subscriber, store, _, normal_rate, _ = burst(durable=False)
        subscriber.stop()
        store.close()
        subscriber, store, handled, sub_rate, published = burst(durable=True)

        # 3. Latency at a fixed rate.
        store.latencies = []
        before = store.committed
        processes, results = start_publishers(
            _plans(broker, 1, schedule="rate", rate=latency_rate, duration=latency_seconds)
        )
        latency_reports = collect(processes, results)
        expected = sum(r["acked"] for r in latency_reports)
        _wait(lambda: store.committed - before >= expected, 60)
        latencies = sorted(store.latencies)
        latency_lost = expected - (store.committed - before)
        subscriber.stop()
        store.close()

        # 4. The same burst with the subscriber over TLS (the publishers stay plain: the subscriber's cost).
        tls_subscriber, tls_store, tls_handled, tls_rate, tls_published = burst(durable=True, tls=True)
        tls_subscriber.stop()
        tls_store.close()

    def percentile(fraction: float) -> float:
        return latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] * 1000

    return {
        "messages": total,
        "simulated_nodes": SIMULATED_NODES,
        "publisher_processes": publishers,
        "raw_received": raw["received"],
        "raw_rate_per_s": raw_rate,
        "published": published,
        "handled": handled,
        "lost": published - handled,
        "subscriber_rate_per_s": sub_rate,
        "subscriber_vs_raw": sub_rate / raw_rate,
        "subscriber_rate_without_fsync_per_s": normal_rate,
        "durable_vs_without_fsync": sub_rate / normal_rate,
        "latency_rate_per_s": latency_rate,
        "latency_messages": len(latencies),
        "latency_lost": latency_lost,
        "latency_p50_ms": percentile(0.50),
        "latency_p99_ms": percentile(0.99),
        "latency_mean_ms": statistics.fmean(latencies) * 1000 if latencies else None,
        "subscriber_tls_rate_per_s": tls_rate,
        "tls_vs_plain": tls_rate / sub_rate,
        "tls_lost": tls_published - tls_handled,
    }

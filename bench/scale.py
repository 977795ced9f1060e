"""Benchmark 4: a large fleet for a while. Nothing may be lost; what does the subscriber cost?

1,000 simulated nodes with 20 containers each publish node and container messages every 5 s
(400 messages/s, 4,200 history rows/s) to a real broker; the real subscriber process
(``python -m subscriber``) handles them. Counted end to end: published (acknowledged by the
broker) against received, validated and stored (from the subscriber's own /metrics).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.fleet import Plan, collect, start_publishers
from bench.system import process_cpu_seconds, process_rss_mb
from tests.support.broker import start_broker
from tests.support.subscriber_process import SubscriberProcess


def run(
    workdir: Path,
    nodes: int,
    containers: int,
    seconds: float,
    interval: float = 5.0,
    publishers: int = 2,
    **settings: str,
) -> dict[str, Any]:
    """The run's figures; ``settings`` are more OTTO_* settings of the subscriber (``ha_containers=...``)."""
    with start_broker(workdir / "broker", nodes=[], wildcard_publisher="bench") as broker:
        subscriber = SubscriberProcess(broker, workdir, log_level="WARNING", **settings).start()
        assert subscriber.process is not None
        pid = subscriber.process.pid
        try:
            all_nodes = list(range(nodes))
            plans = [
                Plan(
                    broker.host, broker.port, "bench", broker.password("bench"), schedule="fleet",
                    nodes=all_nodes[i::publishers], containers_per_node=containers, duration=seconds, interval=interval,
                )
                for i in range(publishers)
            ]  # fmt: skip
            cpu0, wall0, rss_peak, epoch0 = process_cpu_seconds(pid), time.monotonic(), 0.0, time.time()
            processes, results = start_publishers(plans)
            while any(p.is_alive() for p in processes) and time.monotonic() - wall0 < seconds + 120:
                rss_peak = max(rss_peak, process_rss_mb(pid))
                time.sleep(1)
            reports = collect(processes, results)
            published = sum(r["acked"] for r in reports)
            cycles = int(seconds / interval)

            def received() -> float:
                return sum(
                    subscriber.metric("otto_subscriber_messages_received_total", kind=k) or 0
                    for k in ("node", "containers")
                )

            deadline = time.monotonic() + 120
            while received() < published and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(1)  # the last batch commits within 20 ms of its first message
            wall = time.monotonic() - wall0
            cpu = process_cpu_seconds(pid) - cpu0
            # Every minute the fleet touched is rolled up once it has closed (15 s grace, a pass every
            # 20 s): wait for those passes and price their time against all the subscriber's CPU.
            minutes = int(time.time() // 60) - int(epoch0 // 60) + 1
            deadline = time.monotonic() + 100
            while (subscriber.metric("otto_subscriber_rollup_buckets_total") or 0) < minutes:
                if time.monotonic() > deadline:
                    break
                time.sleep(1)
            rollup_seconds = subscriber.metric("otto_subscriber_rollup_seconds_total") or 0.0
            rollup_cpu_base = process_cpu_seconds(pid) - cpu0
            node_rows = subscriber.metric("otto_subscriber_rows_stored_total", table="node_samples") or 0
            container_rows = subscriber.metric("otto_subscriber_rows_stored_total", table="container_samples") or 0
            rejected = sum(
                subscriber.metric("otto_subscriber_messages_rejected_total", reason=r) or 0
                for r in ("oversize", "bad_topic", "bad_json", "bad_schema", "spoofed")
            )
            result = {
                "nodes": nodes,
                "containers_per_node": containers,
                "interval_s": interval,
                "seconds": seconds,
                "expected_messages": nodes * cycles * 2,
                "published": published,
                "received": received(),
                "rejected": rejected,
                "node_rows": node_rows,
                "container_rows": container_rows,
                "expected_node_rows": nodes * cycles,
                "expected_container_rows": nodes * cycles * containers,
                "lost": published - received(),
                "subscriber_cpu_percent": cpu / wall * 100,
                "subscriber_rss_mb": process_rss_mb(pid),
                "subscriber_rss_peak_mb": max(rss_peak, process_rss_mb(pid)),
                "messages_per_s": published / seconds,
                "rollup_buckets": subscriber.metric("otto_subscriber_rollup_buckets_total") or 0,
                "rollup_seconds": rollup_seconds,
                "rollup_share_percent": rollup_seconds / rollup_cpu_base * 100 if rollup_cpu_base else 0.0,
                "ha_configs": subscriber.metric("otto_homeassistant_configs") or 0,
                "ha_published": subscriber.metric("otto_homeassistant_configs_published_total", action="config") or 0,
            }
        finally:
            assert subscriber.stop() == 0
    return result

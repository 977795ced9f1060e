"""Benchmark: history in PostgreSQL and subscriber replicas, against SQLite and the raw paho ceiling.

All in one run, on one broker, with real subscriber processes (``python -m subscriber``):

* Ceiling: a paho loop that only counts (``bench.fleet.receive_raw``), on a burst of valid node and
  container messages from 100 simulated nodes.
* Ingest rate on the same burst: one subscriber on SQLite, one on PostgreSQL, then two and three
  replicas (``OTTO_SHARED_GROUP``) on PostgreSQL. Handled means committed: the run ends when every
  published row is in the database (counted there, so any loss or double shows).
* Latency at a fixed 1,000 messages/s for each: commit time minus the publish time carried in each
  node message, recorded by a trigger in the database itself (``clock_timestamp()`` in PostgreSQL,
  ``julianday('now')`` in SQLite), so every variant is timed the same way.
* Scale: the 1,000-node fleet of ``bench.scale`` on PostgreSQL, and a 10,000-node fleet on three
  replicas, with the CPU of every part (replicas, PostgreSQL, broker) to say which saturates first.

PostgreSQL runs with its defaults (fsync at every commit), as SQLite runs with synchronous=FULL.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import psycopg

from bench import scale
from bench.fleet import CONTEXT, Plan, collect, receive_raw, start_publishers
from bench.system import process_cpu_seconds
from tests.support.broker import Broker, start_broker
from tests.support.postgres import Postgres, start_postgres
from tests.support.subscriber_process import SubscriberProcess

SIMULATED_NODES = 100
CONTAINERS = 5


def _plans(broker: Broker, processes: int, **fields: Any) -> list[Plan]:
    nodes = list(range(SIMULATED_NODES))
    return [
        Plan(broker.host, broker.port, "bench", broker.password("bench"), nodes=nodes[i::processes],
             containers_per_node=CONTAINERS, **fields)
        for i in range(processes)
    ]  # fmt: skip


class Variant:
    """One way of running the control plane: a store (SQLite or a PostgreSQL database) and N processes."""

    def __init__(self, name: str, workdir: Path, broker: Broker, url: str | None, replicas: int) -> None:
        self.name = name
        self.url = url
        self.db = workdir / f"{name}.db"
        settings = {"log_level": "WARNING", "alerts": "false", "ha_discovery": "off", "node_rate_limit": "0"}
        if url is not None:
            settings["database_url"] = url
            if replicas > 1:
                settings["shared_group"] = name
        self.processes = [
            SubscriberProcess(broker, workdir, db_path=str(self.db), replica_id=f"{name}-{i}", **settings)
            for i in range(replicas)
        ]

    def start(self) -> None:
        for process in self.processes:
            process.start()
        self._sql(
            "CREATE TABLE IF NOT EXISTS bench_latency (ts bigint, stored_at double precision)",
            "CREATE OR REPLACE FUNCTION bench_stamp() RETURNS trigger AS $$ BEGIN INSERT INTO bench_latency "
            "VALUES (NEW.ts, extract(epoch FROM clock_timestamp())); RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE OR REPLACE TRIGGER bench_stamp AFTER INSERT ON node_samples FOR EACH ROW EXECUTE FUNCTION "
            "bench_stamp()",
            sqlite=(
                "CREATE TABLE IF NOT EXISTS bench_latency (ts INTEGER, stored_at REAL)",
                "CREATE TRIGGER IF NOT EXISTS bench_stamp AFTER INSERT ON node_samples BEGIN INSERT INTO "
                "bench_latency VALUES (NEW.ts, (julianday('now') - 2440587.5) * 86400.0); END",
            ),
        )

    def _sql(self, *statements: str, sqlite: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        if self.url is not None:
            with psycopg.connect(self.url, autocommit=True) as db:
                for statement in statements:
                    cursor = db.execute(statement)
                    rows = cursor.fetchall() if cursor.description else []
        else:
            with sqlite3.connect(self.db, timeout=30) as db:
                for statement in sqlite or statements:
                    rows = db.execute(statement).fetchall()
        return rows

    def stored(self) -> int:
        """Messages in the history: node rows plus container batches."""
        (nodes, containers), *_ = self._sql(
            "SELECT (SELECT count(*) FROM node_samples), (SELECT count(*) FROM container_samples)"
        )
        return int(nodes) + int(containers) // CONTAINERS

    def latencies(self) -> list[float]:
        """Seconds from publish (each node message's timestamp) to commit, oldest first."""
        return [float(r[0]) for r in self._sql("SELECT stored_at - ts / 1000.0 FROM bench_latency ORDER BY ts")]

    def stop(self) -> None:
        for process in self.processes:
            assert process.stop() == 0, process.logs()[-2000:]


def _wait(condition: Callable[[], bool], timeout: float, every: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000 if ordered else float("nan")


def measure(variant: Variant, broker: Broker, cycles: int, latency_seconds: float) -> dict[str, Any]:
    """The burst's rate and the fixed-rate latency of one variant."""
    total = cycles * SIMULATED_NODES * 2
    variant.start()
    time.sleep(1)
    processes, results = start_publishers(_plans(broker, 2, schedule="burst", cycles=cycles))
    reports = collect(processes, results)
    start = min(r["start"] for r in reports)
    _wait(lambda: variant.stored() >= total, 600, every=0.05)
    rate = variant.stored() / (time.time() - start)
    published = sum(r["acked"] for r in reports)
    variant._sql("TRUNCATE bench_latency", sqlite=("DELETE FROM bench_latency",))
    before = variant.stored()
    processes, results = start_publishers(_plans(broker, 1, schedule="rate", rate=1000.0, duration=latency_seconds))
    expected = sum(r["acked"] for r in collect(processes, results))
    _wait(lambda: variant.stored() - before >= expected, 120)
    latencies = variant.latencies()
    lost = published + expected - variant.stored()
    variant.stop()
    return {
        "name": variant.name,
        "replicas": len(variant.processes),
        "messages": total,
        "rate_per_s": rate,
        "lost": lost,
        "latency_messages": len(latencies),
        "latency_p50_ms": _percentile(latencies, 0.50),
        "latency_p99_ms": _percentile(latencies, 0.99),
        "latency_mean_ms": statistics.fmean(latencies) * 1000 if latencies else None,
    }


def container_cpu_seconds(client: docker.DockerClient, container_id: str) -> float:
    stats = client.api.stats(container_id, stream=False)
    return float(stats["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9


def big_fleet(
    workdir: Path, server: Postgres, nodes: int, containers: int, seconds: float, replicas: int
) -> dict[str, Any]:
    """``nodes`` simulated nodes every 5 s for ``seconds`` on ``replicas``; CPU of each part, loss, backlog."""
    client = docker.from_env(timeout=120)
    url = server.new_database()
    with start_broker(workdir / "broker", nodes=[], wildcard_publisher="bench") as broker:
        group = [
            SubscriberProcess(
                broker, workdir, database_url=url, shared_group="fleet", replica_id=f"fleet-{i}",
                db_path=str(workdir / f"fleet-{i}.db"), log_level="WARNING", alerts="false", ha_discovery="off",
            ).start()
            for i in range(replicas)
        ]  # fmt: skip
        broker_id = broker.container.get_wrapped_container().id
        pg_id = server.container.get_wrapped_container().id
        pids = [p.process.pid for p in group if p.process is not None]
        cpu0 = {
            "replicas": sum(process_cpu_seconds(pid) for pid in pids),
            "postgres": container_cpu_seconds(client, pg_id),
            "broker": container_cpu_seconds(client, broker_id),
        }
        wall0 = time.monotonic()
        plans = [
            Plan(broker.host, broker.port, "bench", broker.password("bench"), schedule="fleet",
                 nodes=list(range(nodes))[i::2], containers_per_node=containers, duration=seconds, interval=5.0)
            for i in range(2)
        ]  # fmt: skip
        processes, results = start_publishers(plans)
        reports = collect(processes, results, timeout=seconds + 600)
        published = sum(r["acked"] for r in reports)
        sent_for = max(r["sent"] for r in reports) - min(r["start"] for r in reports)

        def stored() -> int:
            with psycopg.connect(url) as db:
                row = db.execute(
                    "SELECT (SELECT count(*) FROM node_samples), (SELECT count(*) FROM container_samples)"
                ).fetchone()
            assert row is not None
            return int(row[0]) + int(row[1]) // containers

        at_end_of_publishing = stored()
        _wait(lambda: stored() >= published, 900, every=1.0)
        drained_after = time.monotonic() - wall0 - sent_for
        wall = time.monotonic() - wall0
        cpu = {
            "replicas": sum(process_cpu_seconds(pid) for pid in pids) - cpu0["replicas"],
            "postgres": container_cpu_seconds(client, pg_id) - cpu0["postgres"],
            "broker": container_cpu_seconds(client, broker_id) - cpu0["broker"],
        }
        final = stored()
        for process in group:
            assert process.stop() == 0
    client.close()
    return {
        "nodes": nodes,
        "containers_per_node": containers,
        "replicas": replicas,
        "seconds": seconds,
        "offered_messages_per_s": nodes * 2 / 5.0,
        "published": published,
        "publishing_took_s": sent_for,
        "stored_when_publishing_ended": at_end_of_publishing,
        "stored": final,
        "lost": published - final,
        "drained_after_s": drained_after,
        "stored_per_s": final / wall,
        "cpu_percent_of_one_core": {part: seconds_used / wall * 100 for part, seconds_used in cpu.items()},
    }


def run(
    workdir: Path, messages: int, latency_seconds: float, scale_seconds: float, fleet_nodes: int, fleet_seconds: float
) -> dict[str, Any]:
    cycles = max(1, messages // (2 * SIMULATED_NODES))
    total = cycles * SIMULATED_NODES * 2
    results: dict[str, Any] = {"variants": []}
    with start_postgres(durable=True) as server:
        with start_broker(workdir / "broker", nodes=[], wildcard_publisher="bench") as broker:
            ready, raw_results = CONTEXT.Event(), CONTEXT.Queue()
            receiver = CONTEXT.Process(
                target=receive_raw,
                args=(broker.host, broker.port, "controlplane", broker.password("controlplane"), total, ready,
                      raw_results),
            )  # fmt: skip
            receiver.start()
            ready.wait(30)
            processes, publisher_results = start_publishers(_plans(broker, 2, schedule="burst", cycles=cycles))
            reports = collect(processes, publisher_results)
            raw = raw_results.get(timeout=300)
            receiver.join(timeout=30)
            raw_rate = raw["received"] / (raw["last"] - min(r["start"] for r in reports))
            results["raw_rate_per_s"] = raw_rate
            for name, url, replicas in (
                ("sqlite", None, 1),
                ("postgres", server.new_database(), 1),
                ("postgres-2", server.new_database(), 2),
                ("postgres-3", server.new_database(), 3),
            ):
                (workdir / name).mkdir(parents=True, exist_ok=True)
                variant = Variant(name, workdir / name, broker, url, replicas)
                figures = measure(variant, broker, cycles, latency_seconds)
                figures["vs_raw"] = figures["rate_per_s"] / raw_rate
                results["variants"].append(figures)
        results["scale_postgres"] = scale.run(
            workdir / "scale-postgres", 1000, 20, scale_seconds, database_url=server.new_database(),
            alerts="false", ha_discovery="off",
        )  # fmt: skip
        if fleet_nodes:
            results["fleet"] = big_fleet(workdir / "fleet", server, fleet_nodes, 20, fleet_seconds, replicas=3)
    return results


def table(results: dict[str, Any] | None) -> list[str]:
    """Section 9 of the report."""
    if not results:
        return []
    if "error" in results:
        return ["", f"9. PostgreSQL and replicas: failed: {results['error']}"]
    lines = [
        "",
        f"9. PostgreSQL and replicas ({SIMULATED_NODES} nodes x {CONTAINERS} containers, burst, then 1,000 msg/s "
        "for latency; same broker, same run)",
        "",
        "| history, subscriber processes | ingest rate | vs raw paho loop | lost | latency p50 | p99 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = {"sqlite": "SQLite, 1", "postgres": "PostgreSQL, 1", "postgres-2": "PostgreSQL, 2 replicas",
             "postgres-3": "PostgreSQL, 3 replicas"}  # fmt: skip
    sqlite_rate = next((v["rate_per_s"] for v in results["variants"] if v["name"] == "sqlite"), None)
    for v in results["variants"]:
        versus = f" ({v['rate_per_s'] / sqlite_rate:.2f}x SQLite)" if sqlite_rate and v["name"] != "sqlite" else ""
        lines.append(
            f"| {names.get(v['name'], v['name'])} | {v['rate_per_s']:,.0f} msg/s{versus} | {v['vs_raw']:.2f} "
            f"| {v['lost']} | {v['latency_p50_ms']:.0f} ms | {v['latency_p99_ms']:.0f} ms |"
        )
    lines.append(f"| raw paho loop (counts only) | {results['raw_rate_per_s']:,.0f} msg/s | 1.00 | | | |")
    s = results.get("scale_postgres")
    if s:
        lines.append(
            f"\nScale check on PostgreSQL: {s['nodes']:,} nodes x {s['containers_per_node']} containers every "
            f"{s['interval_s']:g} s for {s['seconds']:g} s: {s['published']:,} published, {s['lost']:.0f} lost, "
            f"subscriber CPU {s['subscriber_cpu_percent']:.1f} %, RSS {s['subscriber_rss_peak_mb']:.0f} MB."
        )
    f = results.get("fleet")
    if f:
        cpu = f["cpu_percent_of_one_core"]
        lines.append(
            f"\nSimulated fleet: {f['nodes']:,} nodes x {f['containers_per_node']} containers every 5 s "
            f"({f['offered_messages_per_s']:,.0f} msg/s offered) for {f['seconds']:g} s on {f['replicas']} replicas: "
            f"{f['published']:,} published in {f['publishing_took_s']:.0f} s, {f['lost']} lost, "
            f"{f['stored_when_publishing_ended']:,} stored when publishing ended, all stored "
            f"{f['drained_after_s']:.0f} s later ({f['stored_per_s']:,.0f} msg/s over the run). CPU, % of one core: "
            f"replicas {cpu['replicas']:.0f}, PostgreSQL {cpu['postgres']:.0f}, broker {cpu['broker']:.0f}."
        )
    return lines

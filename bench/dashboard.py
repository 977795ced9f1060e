"""Benchmark 5: the dashboard and the history behind it.

- Overview paint: headless Chromium navigates to ``/`` of a subscriber holding 1,000 nodes with
  20 containers each; time from navigation start until every row is in the table, against the
  same page holding 10 nodes (baseline, same run).
- Chart queries: one node's 30 days (and, in the full run, 1 year) of raw rows at 5 s; the
  series the CPU chart asks for (average and peak, 1,500 points), read from the tier the API
  picks against the same buckets computed from raw rows.
- Page weight: every script and style the two pages load, gzip-compressed as the server sends them.
- Storage: bytes per node-year of the tiers at their default retention, from a real file.
"""

from __future__ import annotations

import gzip
import json
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry

from subscriber import sqlite_tiers
from subscriber.api import Liveness, create_app
from subscriber.dashboard import STATIC
from subscriber.rollup import MAX_POINTS, NODE_TIER_FIELDS, Resolution
from subscriber.state import FleetState
from subscriber.store import SqliteHistoryStore, to_ms
from tests.support.broker import free_port
from tests.support.browser import CHROMIUM, FLAGS
from tests.support.messages import container, container_batch, node_metrics

CPU = {f.name: f for f in NODE_TIER_FIELDS}["cpu_percent"]


def page_weight() -> dict[str, Any]:
    # Every file the pages can load: a new script counts without anyone remembering to list it.
    assets = sorted(p for p in STATIC.rglob("*") if p.suffix in (".html", ".js", ".css"))
    sizes = {str(p.relative_to(STATIC)): len(gzip.compress(p.read_bytes(), compresslevel=9)) for p in assets}
    scripts_and_styles = sum(v for k, v in sizes.items() if k.endswith((".js", ".css")))
    return {"gzip_bytes": sizes, "script_and_style_kb": scripts_and_styles / 1024}


@contextmanager
def serving(state: FleetState, store: SqliteHistoryStore | None) -> Iterator[str]:
    app = create_app(state, store, CollectorRegistry(), lambda: Liveness({}, True, None))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def fleet_state(nodes: int, containers: int) -> FleetState:
    state = FleetState(stale_after=1e6 / 5)  # nobody goes stale during the measurement
    now = datetime.now(UTC)
    batch = [container(f"app-{i:02d}", cpu_percent=float(i)) for i in range(containers)]
    for n in range(nodes):
        node_id = f"pi-{n:04d}"
        state.apply_node_metrics(node_metrics(node_id, at=now, cpu_percent=float(n % 100)))
        state.apply_container_metrics(container_batch(node_id, at=now, containers=batch))
    return state


def overview_paint(nodes: int, containers: int, repeats: int) -> list[float]:
    """Seconds from navigation start to all rows painted, one per navigation."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    times = []
    with serving(fleet_state(nodes, containers), None) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for _ in range(repeats + 1):  # the first navigation warms the server and the browser's caches
            # Playwright's polling evaluates script, which the pages' own policy forbids.
            page = browser.new_page(viewport={"width": 1400, "height": 900}, bypass_csp=True)
            page.goto(base + "/", wait_until="commit")
            page.wait_for_function(f"document.querySelectorAll('#fleet tbody tr').length >= {nodes}", polling="raf")
            times.append(page.evaluate("() => performance.now()") / 1000)
            page.close()
        browser.close()
    return times[1:]


def raw_history(path: Path, days: float, every: float = 5.0) -> SqliteHistoryStore:
    """One node's raw rows written straight into the file (pydantic would take minutes), then tiers."""
    store = SqliteHistoryStore(path, durable=False)
    db = store._writer  # the benchmark writes rows itself, then lets the store do the rest
    end = to_ms(datetime.now(UTC))
    start = end - int(days * 86_400_000)
    step = int(every * 1000)
    rows = (("bench-node", ts, 30 + (ts // step) % 50, "[]") for ts in range(start, end, step))
    db.execute("BEGIN")
    db.executemany("INSERT INTO node_samples (node_id, ts, cpu_percent, cpu_per_core) VALUES (?, ?, ?, ?)", rows)
    db.execute("COMMIT")
    db.execute("BEGIN")
    sqlite_tiers.mark(db, (("bench-node", ts) for ts in range(start, end, 60_000)))
    db.execute("COMMIT")
    store.maintain(datetime.now(UTC))
    return store


def chart_query(store: SqliteHistoryStore, days: float, repeats: int) -> dict[str, Any]:
    end = datetime.now(UTC)
    start = end - timedelta(days=days)
    res = store.retention.resolution(start.timestamp(), end.timestamp(), time.time(), MAX_POINTS)
    columns = [(CPU, "avg"), (CPU, "max")]

    def timed(resolution: Resolution) -> tuple[float, int]:
        samples = []
        for _ in range(repeats):
            began = time.perf_counter()
            rows = store.buckets("node", "bench-node", columns, start, end, resolution).rows
            samples.append(time.perf_counter() - began)
        return statistics.median(samples), len(rows)

    tier_s, tier_points = timed(res)
    raw_s, raw_points = timed(Resolution(None, res.step_seconds))
    return {
        "days": days, "source": res.name, "step_s": res.step_seconds, "points": tier_points,
        "raw_points": raw_points, "tier_ms": tier_s * 1000, "raw_ms": raw_s * 1000, "speedup": raw_s / tier_s,
    }  # fmt: skip


def tier_storage(path: Path, containers: int) -> dict[str, Any]:
    """Bytes a node with ``containers`` containers needs for a year of tiers at default retention."""
    from tests.support.history import seed  # noqa: PLC0415

    store = seed(path, ["bench-year"], datetime.now(UTC), days=400)
    store.prune(datetime.now(UTC) - timedelta(days=7))  # raw retention, and every tier's own
    db = store._writer
    db.execute("VACUUM")
    measured: dict[str, Any] = {}
    for table in ("node_rollups", "container_rollups", "core_rollups"):
        rows = dict(db.execute(f"SELECT tier, count(*) FROM {table} GROUP BY tier").fetchall())  # noqa: S608
        pages = db.execute("SELECT sum(pgsize) FROM dbstat WHERE name LIKE ?", (f"{table}%",)).fetchone()[0]
        measured[table] = {"rows_by_tier": rows, "bytes": pages}
    per_container = measured["container_rollups"]["bytes"] / 3  # the seed's node has 3 containers
    per_node = measured["node_rollups"]["bytes"] + measured["core_rollups"]["bytes"]
    raw = {}
    for table in ("node_samples", "container_samples"):
        rows = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
        pages = db.execute("SELECT sum(pgsize) FROM dbstat WHERE name LIKE ?", (f"{table}%",)).fetchone()[0]
        raw[table] = pages / rows  # bytes per row, indexes included
    samples_a_week = 7 * 86_400 / 5
    store.close()
    return {
        "measured": measured, "containers": containers, "raw_bytes_per_row": raw,
        "node_year_bytes": per_node + containers * per_container,
        "raw_week_bytes": samples_a_week * (raw["node_samples"] + containers * raw["container_samples"]),
    }  # fmt: skip


def run(workdir: Path, quick: bool) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    repeats = 3 if quick else 5
    result: dict[str, Any] = {"page_weight": page_weight()}
    print("dashboard: overview paint, 1,000 nodes against 10 ...", flush=True)
    result["paint_1000"] = overview_paint(1000, 20, repeats)
    result["paint_10"] = overview_paint(10, 20, repeats)
    print("dashboard: chart queries, tiers against raw rows ...", flush=True)
    queries = []
    for days in (30,) if quick else (30, 365):
        store = raw_history(workdir / f"raw-{days}.db", days)
        queries.append(chart_query(store, days, repeats * 3))
        store.close()
    result["queries"] = queries
    print("dashboard: tier storage per node-year ...", flush=True)
    result["storage"] = tier_storage(workdir / "year.db", containers=20)
    return result


def table(d: dict[str, Any]) -> list[str]:
    lines = ["", "5. Dashboard and history (medians; baselines from the same run)", ""]
    paint, small = statistics.median(d["paint_1000"]), statistics.median(d["paint_10"])
    lines.append("| measure | result | baseline | ratio | target |")
    lines.append("|---|---:|---:|---:|---|")
    lines.append(
        f"| overview painted, 1,000 nodes x 20 containers | {paint * 1000:.0f} ms | {small * 1000:.0f} ms (10 nodes) "
        f"| {paint / small:.1f}x | under 1 s |"
    )
    for q in d["queries"]:
        lines.append(
            f"| {q['days']} d CPU chart ({q['points']} points, avg + peak) from the {q['source']} tier "
            f"| {q['tier_ms']:.1f} ms | {q['raw_ms']:.0f} ms (raw rows, same buckets) | {q['speedup']:.0f}x faster "
            f"| 20x, under 50 ms |"
        )
    weight = d["page_weight"]["script_and_style_kb"]
    lines.append(f"| page weight, script + style, gzip | {weight:.1f} KB | | | under 150 KB |")
    s = d["storage"]
    lines.append(
        f"| disk per node, {s['containers']} containers, every 5 s: tiers (a year and more) + raw (7 days) | "
        f"{s['node_year_bytes'] / 2**20:.0f} + {s['raw_week_bytes'] / 2**20:.0f} MiB | | | |"
    )
    return lines


if __name__ == "__main__":
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        data = run(Path(tmp), quick="--quick" in sys.argv)
    print(json.dumps(data, indent=2))
    print("\n".join(table(data)))

"""Benchmark 8: what Home Assistant discovery costs the control plane, at 1,000 nodes.

The scale run (benchmark 4's fleet) twice in the same run: discovery off, and discovery with every
container (20 per node) as components, the heaviest setting. Also one reconciliation round in
process, for the same fleet: the first (every config rendered) and a steady one (nothing changed).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench import scale
from subscriber.homeassistant.discovery import Discovery
from subscriber.homeassistant.reconcile import Reconciler
from subscriber.state import NodeView
from tests.support.messages import container, container_batch, node_metrics, status


def fleet(nodes: int, containers: int, now: float) -> list[NodeView]:
    return [
        NodeView(
            f"pi-{n:04d}",
            metrics=node_metrics(f"pi-{n:04d}"),
            containers=container_batch(
                f"pi-{n:04d}",
                containers=[container(f"app-{c:02d}", container_id=f"{n:04d}{c:02d}") for c in range(containers)],
            ),
            status=status(f"pi-{n:04d}"),
            last_seen=now,
            last_metrics=now,
            last_containers=now,
        )
        for n in range(nodes)
    ]


def rounds(nodes: int, containers: int) -> dict[str, Any]:
    now = time.time()
    views = fleet(nodes, containers, now)
    reconciler = Reconciler(Discovery(containers="components"), container_expire=86_400, node_expire=604_800)
    started = time.perf_counter()
    changes = reconciler.plan(views, now)
    first = time.perf_counter() - started
    for topic, payload in changes:
        reconciler.done(topic, payload)
    steady = []
    for i in range(5):
        views = [
            NodeView(v.node_id, v.metrics, v.containers, v.status, now + i, now + i, now + i) for v in views
        ]  # a new batch from every node, nothing else changed
        started = time.perf_counter()
        assert reconciler.plan(views, now + i) == []
        steady.append(time.perf_counter() - started)
    sizes = sorted(len(p) for p in reconciler.published.values())
    return {
        "first_round_s": first,
        "steady_round_s": min(steady),
        "configs": len(changes),
        "config_bytes_median": sizes[len(sizes) // 2],
        "config_bytes_total": sum(sizes),
    }


def run(workdir: Path, seconds: float, nodes: int = 1000, containers: int = 20) -> dict[str, Any]:
    off = scale.run(workdir / "off", nodes, containers, seconds, ha_discovery="off")
    on = scale.run(workdir / "on", nodes, containers, seconds, ha_containers="components")
    return {
        "nodes": nodes,
        "containers_per_node": containers,
        "seconds": seconds,
        "off": off,
        "on": on,
        "cpu_ratio": on["subscriber_cpu_percent"] / off["subscriber_cpu_percent"],
        "rss_ratio": on["subscriber_rss_peak_mb"] / off["subscriber_rss_peak_mb"],
        "rounds": rounds(nodes, containers),
    }


def table(results: dict[str, Any] | None) -> list[str]:
    if not results:
        return []
    if "error" in results:
        return ["", f"8. Home Assistant discovery: failed: {results['error']}"]
    off, on, r = results["off"], results["on"], results["rounds"]
    return [
        "",
        f"8. Home Assistant discovery ({results['nodes']:,} nodes x {results['containers_per_node']} containers "
        "as components, against discovery off, same run)",
        "",
        f"- Subscriber CPU {on['subscriber_cpu_percent']:.1f} % against {off['subscriber_cpu_percent']:.1f} %: "
        f"{results['cpu_ratio']:.2f}x; peak RSS {on['subscriber_rss_peak_mb']:.0f} MB against "
        f"{off['subscriber_rss_peak_mb']:.0f} MB: {results['rss_ratio']:.2f}x; "
        f"lost {on['lost']:.0f} and {off['lost']:.0f}",
        f"- Configs retained: {on['ha_configs']:.0f} ({on['ha_published']:.0f} published in the run); one per node, "
        f"median {r['config_bytes_median'] / 1024:.1f} KiB, {r['config_bytes_total'] / 2**20:.1f} MiB in all",
        f"- One reconciliation round in process: first {r['first_round_s']:.2f} s (every config rendered), "
        f"steady {r['steady_round_s'] * 1000:.0f} ms (nothing changed; a round runs every 5 s: "
        f"{r['steady_round_s'] / 5 * 100:.1f} % of a core)",
    ]

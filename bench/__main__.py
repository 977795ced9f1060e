"""``python -m bench [--quick]`` (``make bench``): every benchmark on the real engine and broker.

Prints one table, writes bench/results.json (raw figures and the machine) and bench/cycle.png.
Figures are quoted against a baseline measured in the same run: this machine is noisy.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker

from bench import alerts, cycle, dashboard, footprint, homeassistant, ingest, replicas, scale, v2host
from bench.system import machine
from tests.support.docker_gate import require_docker

HERE = Path(__file__).resolve().parent

FULL = {
    "cycle_counts": [10, 50, 100],
    "repeats": 5,
    "naive_sample": 10,
    "footprint_window": 60.0,
    "footprint_variants": ["auto", "tls", "api", "armv7"],
    "ingest_messages": 60_000,
    "latency_seconds": 10.0,
    "scale_seconds": 60.0,
    "v2host_containers": 20,
    "v2host_repeats": 3,
    "alerts_deaths": 10,
    "alerts_messages": 20_000,
    "churn_seconds": 60.0,
    "homeassistant_seconds": 60.0,
    "replicas_messages": 40_000,
    "replicas_fleet_nodes": 10_000,
    "replicas_fleet_seconds": 30.0,
}
QUICK = {
    "cycle_counts": [10, 50],
    "repeats": 2,
    "naive_sample": 2,
    "footprint_window": 16.0,
    "footprint_variants": ["auto", "tls"],
    "ingest_messages": 20_000,
    "latency_seconds": 4.0,
    "scale_seconds": 10.0,
    "v2host_containers": 0,
    "v2host_repeats": 0,
    "alerts_deaths": 3,
    "alerts_messages": 4_000,
    "churn_seconds": 15.0,
    "homeassistant_seconds": 10.0,
    "replicas_messages": 8_000,
    "replicas_fleet_nodes": 2_000,
    "replicas_fleet_seconds": 10.0,
}
FOOTPRINT_CONTAINERS = 50


SECTIONS = ("cycle", "ingest", "scale", "dashboard", "alerts", "homeassistant", "replicas", "v2host")


def run_all(config: dict[str, Any], workdir: Path, only: set[str] | None = None) -> dict[str, Any]:
    """Every section, or those in ``only``."""
    if only is not None:
        return {name: _SECTIONS[name](config, workdir) for name in SECTIONS if name in only}
    client = docker.from_env(timeout=120)
    results: dict[str, Any] = {"cycle": [], "footprint": []}
    try:
        cycle.remove_containers(client)
        for count in config["cycle_counts"]:
            print(f"cycle: {count} containers ...", file=sys.stderr, flush=True)
            containers = cycle.start_containers(client, count, f"n{count}")
            results["cycle"].append(
                cycle.measure(client, containers, config["repeats"], config["naive_sample"], pause=1.0)
            )
            if count == FOOTPRINT_CONTAINERS:
                print("footprint: the agent image, 50 containers, 5 s interval ...", file=sys.stderr, flush=True)
                results["footprint"] = footprint.run(
                    client, workdir / "footprint", count, config["footprint_window"], config["footprint_variants"]
                )
            cycle.remove_containers(client)
    finally:
        cycle.remove_containers(client)
        client.close()
    print("ingest: subscriber against a raw paho loop ...", file=sys.stderr, flush=True)
    results["ingest"] = ingest.run(workdir / "ingest", config["ingest_messages"], 2, config["latency_seconds"])
    print("scale: 1,000 nodes x 20 containers every 5 s ...", file=sys.stderr, flush=True)
    results["scale"] = scale.run(workdir / "scale", 1000, 20, config["scale_seconds"])
    results["dashboard"] = dashboard.run(workdir / "dashboard", quick=config is QUICK)
    print("alerts: death to notification, ingest with the notifier down, agent CPU under churn ...", file=sys.stderr)
    try:
        results["alerts"] = alerts.run(
            workdir / "alerts",
            deaths=config["alerts_deaths"],
            messages=config["alerts_messages"],
            churn_seconds=config["churn_seconds"],
        )
    except Exception as exc:  # reported in its row; the other figures stand
        results["alerts"] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    print("home assistant: the scale fleet with discovery of every container, and off ...", file=sys.stderr)
    try:
        results["homeassistant"] = homeassistant.run(workdir / "homeassistant", config["homeassistant_seconds"])
    except Exception as exc:  # reported in its row; the other figures stand
        results["homeassistant"] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    print("postgres: SQLite against PostgreSQL with 1, 2 and 3 replicas, 1,000 and 10,000 nodes ...", file=sys.stderr)
    try:
        results["replicas"] = _replicas(config, workdir)
    except Exception as exc:  # reported in its row; the other figures stand
        results["replicas"] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    # Last: the VM takes 1.5 cores while up, so nothing timed runs beside it; it is brought down after.
    if config["v2host_containers"] and v2host.available():
        print("v2 host: booting the VM, the agent's cycle on Engine 26 ...", file=sys.stderr, flush=True)
        try:
            results["v2host"] = v2host.run(config["v2host_containers"], config["v2host_repeats"])
        except Exception as exc:  # a VM that misbehaves must not cost the whole run's figures
            results["v2host"] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    return results


def _replicas(config: dict[str, Any], workdir: Path) -> dict[str, Any]:
    return replicas.run(
        workdir / "replicas",
        config["replicas_messages"],
        config["latency_seconds"],
        config["scale_seconds"],
        config["replicas_fleet_nodes"],
        config["replicas_fleet_seconds"],
    )


#: The sections that ``--only`` can run alone (the others share set-up with their neighbours).
_SECTIONS = {"replicas": _replicas}


def table(results: dict[str, Any]) -> str:
    lines = ["", "1. Collection cycle (median; ratios against `docker stats --no-stream` in the same run)", ""]
    lines.append(
        "| containers | agent (cgroups) | agent (Engine API only) | docker stats --no-stream | naive loop (est.) "
        "| agent daemon CPU | docker stats daemon CPU |"
    )
    lines.append("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results["cycle"]:
        a, api, cli, naive = r["agent"], r["agent_api_only"], r["docker_stats"], r["naive_loop"]
        lines.append(
            f"| {r['containers']} | {a['wall'] * 1000:.0f} ms ({cli['wall'] / a['wall']:.0f}x faster) "
            f"| {api['wall']:.2f} s ({cli['wall'] / api['wall']:.1f}x) | {cli['wall']:.2f} s "
            f"| {naive['wall']:.0f} s ({naive['wall'] / cli['wall']:.0f}x slower) "
            f"| {a['daemon_cpu'] * 1000:.0f} ms ({_ratio(a['daemon_cpu'], cli['daemon_cpu'])}) "
            f"| {cli['daemon_cpu'] * 1000:.0f} ms |"
        )
    lines += ["", "2. Agent footprint: the image, 50 containers, 5 s interval (daemon CPU above its idle rate)", ""]
    lines.append(
        "| variant | RSS | PSS | USS | anonymous | threads | agent CPU | daemon CPU it causes (noise) "
        "| total (% of one core) | per-cycle daemon CPU (cycle benchmark) |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    per_cycle = next((r for r in results["cycle"] if r["containers"] == FOOTPRINT_CONTAINERS), None)
    names = {
        "auto": "cgroups (default), plain MQTT",
        "tls": "cgroups, MQTT over TLS (8883)",
        "api": "Engine API only",
        "armv7": "linux/arm/v7 under QEMU, cgroups",
    }
    for f in results["footprint"]:
        key = "agent_api_only" if f["variant"] == "api" else "agent"
        cycle_daemon = f"{per_cycle[key]['daemon_cpu'] / 5 * 100:.2f} %" if per_cycle else "n/a"
        lines.append(
            f"| {names.get(f['variant'], f['variant'])} | {f['rss_mb']:.1f} MiB | {f['pss_mb']:.1f} MiB "
            f"| {f['uss_mb']:.1f} MiB | {f['anon_mb']:.1f} MiB | {f['threads']} | {f['agent_cpu_percent']:.2f} % "
            f"| {f['daemon_cpu_percent']:.2f} % (± {f['daemon_noise_percent']:.2f}) | {f['total_cpu_percent']:.2f} % "
            f"| {cycle_daemon} |"
        )
    by_variant = {f["variant"]: f for f in results["footprint"]}
    if "auto" in by_variant and "armv7" in by_variant:
        native, armv7 = by_variant["auto"], by_variant["armv7"]
        lines.append(
            f"\nlinux/arm/v7 under QEMU against native, same run: agent CPU "
            f"{_ratio(armv7['agent_cpu_percent'], native['agent_cpu_percent'])}, RSS "
            f"{_ratio(armv7['rss_mb'], native['rss_mb'])} (the emulated program's own memory)."
        )
    if "auto" in by_variant and "tls" in by_variant:
        plain, tls = by_variant["auto"], by_variant["tls"]
        lines.append(
            "\nMQTT over TLS against plain, same run: agent CPU "
            f"{_ratio(tls['agent_cpu_percent'], plain['agent_cpu_percent'])} "
            f"({tls['agent_cpu_percent']:.2f} % vs {plain['agent_cpu_percent']:.2f} %), RSS "
            f"{_ratio(tls['rss_mb'], plain['rss_mb'])} ({tls['rss_mb']:.1f} vs {plain['rss_mb']:.1f} MiB)."
        )
    i = results["ingest"]
    lines += ["", "3. Subscriber ingest (same broker, same load)", ""]
    lines.append(
        "| raw paho loop (ceiling) | subscriber, validated + stored | ratio | lost | p50 at 1,000/s | p99 at 1,000/s |"
    )
    lines.append("|---:|---:|---:|---:|---:|---:|")
    lines.append(
        f"| {i['raw_rate_per_s']:,.0f} msg/s | {i['subscriber_rate_per_s']:,.0f} msg/s | {i['subscriber_vs_raw']:.2f} "
        f"| {i['lost'] + i['latency_lost']} of {i['published'] + i['latency_messages']:,} "
        f"| {i['latency_p50_ms']:.0f} ms | {i['latency_p99_ms']:.0f} ms |"
    )
    if "subscriber_tls_rate_per_s" in i:
        lines.append(
            f"\nThe subscriber over TLS (8883) on the same burst: {i['subscriber_tls_rate_per_s']:,.0f} msg/s, "
            f"{i['tls_vs_plain']:.2f} of plaintext, {i['tls_lost']} lost."
        )
    s = results["scale"]
    lines += ["", "4. Scale check", ""]
    lines.append(
        "| fleet | published | received | stored rows (node + container) | lost | subscriber CPU | subscriber RSS |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    lines.append(
        f"| {s['nodes']:,} nodes x {s['containers_per_node']} containers, every {s['interval_s']:g} s, "
        f"{s['seconds']:g} s "
        f"| {s['published']:,} | {s['received']:,.0f} | {s['node_rows']:,.0f} + {s['container_rows']:,.0f} "
        f"| {s['lost']:.0f} | {s['subscriber_cpu_percent']:.1f} % | {s['subscriber_rss_peak_mb']:.0f} MB |"
    )
    lines.append(
        f"\nTier maintenance in that run: {s['rollup_buckets']:.0f} buckets in {s['rollup_seconds']:.2f} s, "
        f"{s['rollup_share_percent']:.1f} % of the subscriber's CPU (target under 10 %)."
    )
    lines += dashboard.table(results["dashboard"])
    lines += v2host.table(results.get("v2host"))
    lines += alerts.table(results.get("alerts"))
    lines += homeassistant.table(results.get("homeassistant"))
    lines += replicas.table(results.get("replicas"))
    return "\n".join(lines)


def _ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline else "n/a"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415  (only `make bench` installs it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    counts = [r["containers"] for r in results["cycle"]]
    figure, axis = plt.subplots(figsize=(9, 4.2), dpi=120)
    for key, label, style in (
        ("naive_loop", "naive loop (sequential stats, est.)", "s-"),
        ("docker_stats", "docker stats --no-stream", "o-"),
        ("agent_api_only", "agent, Engine API only", "^-"),
        ("agent", "agent (cgroups, default)", "D-"),
    ):
        axis.plot(counts, [r[key]["wall"] for r in results["cycle"]], style, label=label)
    axis.set_yscale("log")
    axis.set_xlabel("running containers")
    axis.set_ylabel("wall time of one collection (s, log scale)")
    axis.set_title("Collecting every container's stats once")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    figure.tight_layout()
    figure.savefig(path)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a shorter run (under three minutes)")
    parser.add_argument(
        "--only",
        choices=sorted(_SECTIONS),
        action="append",
        help="run this section alone, keeping the other sections' figures from bench/results.json",
    )
    args = parser.parse_args()
    require_docker()
    config = QUICK if args.quick else FULL
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="otto-bench-") as workdir:
        results = run_all(config, Path(workdir), set(args.only) if args.only else None)
    previous = json.loads((HERE / "results.json").read_text()) if args.only else {}
    when = datetime.now(UTC).isoformat(timespec="seconds")
    report = {
        **previous,
        "when": previous.get("when", when),
        "mode": "quick" if args.quick else "full",
        "duration_s": round(time.monotonic() - started, 1) if not args.only else previous.get("duration_s"),
        "machine": machine(),
        "config": {**previous.get("config", {}), **config},
        **results,
        **({"sections_run_alone": {name: when for name in args.only}} if args.only else {}),
    }
    (HERE / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    if not args.only:
        plot(results, HERE / "cycle.png")
    print(f"otto-metrics benchmarks ({report['mode']}, {report['duration_s']:.0f} s) on {report['machine']}")
    print(table(report))
    print(f"\nraw figures: {HERE / 'results.json'}; plot: {HERE / 'cycle.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark 2: the agent's footprint in steady state, as users run it (the image, read-only).

50 containers, the default 5 s interval, a real broker. Over the window: the agent's resident
memory and CPU (from the host's /proc of its process), and the Docker daemon's CPU above its idle
rate measured without the agent just before.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import docker

from bench.cycle import idle_daemon_rate
from bench.system import daemon_cpu_seconds, process_cpu_seconds, process_rss_mb
from tests.support.broker import start_broker

REPO = Path(__file__).resolve().parents[1]
IMAGE = "otto-metrics/agent:bench"


def build_image() -> None:
    subprocess.run(
        ["docker", "build", "-q", "-f", "Dockerfile.agent", "-t", IMAGE, "."],
        cwd=REPO, check=True, capture_output=True, timeout=1800,
    )  # fmt: skip


def _rss_breakdown(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {key: int(fields[key].split()[0]) / 1024 for key in ("RssAnon", "RssFile")}


def run(
    client: docker.DockerClient, workdir: Path, containers: int, window: float, variants: list[str]
) -> list[dict[str, Any]]:
    """The agent image against ``containers`` already running containers, once per stats source."""
    build_image()
    results = []
    warmup = min(15.0, window / 2)
    with start_broker(workdir / "broker", nodes=["bench-node"]) as broker:
        for variant in variants:
            idle_before = idle_daemon_rate(window / 2)
            agent = client.containers.run(
                IMAGE,
                detach=True,
                name=f"otto-bench-agent-{variant}",
                labels={"otto-bench": "agent"},
                network_mode="host",
                read_only=True,
                # As the Compose files run it: root only until it has taken the socket's group.
                user="0:0",
                cap_drop=["ALL"],
                cap_add=["SETUID", "SETGID", "SETPCAP"],
                security_opt=["no-new-privileges:true"],
                volumes={
                    "/": {"bind": "/hostfs", "mode": "ro"},
                    "/proc": {"bind": "/hostfs/proc", "mode": "ro"},
                    "/sys": {"bind": "/hostfs/sys", "mode": "ro"},
                    "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "ro"},
                },
                environment={
                    "OTTO_NODE_ID": "bench-node",
                    "OTTO_HOST_ROOT": "/hostfs",
                    "OTTO_MQTT_HOST": broker.host,
                    "OTTO_MQTT_PORT": str(broker.port),
                    "OTTO_MQTT_USERNAME": "bench-node",
                    "OTTO_MQTT_PASSWORD": broker.password("bench-node"),
                    "OTTO_CONTAINER_STATS": variant,
                },
            )
            try:
                time.sleep(warmup)  # start, prime, first cycles
                agent.reload()
                pid = int(agent.attrs["State"]["Pid"])
                cpu0, daemon0, wall0 = process_cpu_seconds(pid), daemon_cpu_seconds(), time.monotonic()
                rss_peak = 0.0
                while time.monotonic() - wall0 < window:
                    rss_peak = max(rss_peak, process_rss_mb(pid))
                    time.sleep(1)
                wall = time.monotonic() - wall0
                agent_cpu = process_cpu_seconds(pid) - cpu0
                daemon_used = daemon_cpu_seconds() - daemon0
                rss = process_rss_mb(pid)
                breakdown = _rss_breakdown(pid)
                threads = int(Path(f"/proc/{pid}/status").read_text().split("Threads:")[1].split()[0])
            finally:
                agent.remove(force=True)
            # The daemon's own idle rate drifts (50 shims tick sporadically): average the quiet
            # windows before and after, and report how far apart they were as the noise.
            idle_after = idle_daemon_rate(window / 2)
            idle_rate = (idle_before + idle_after) / 2
            daemon = max(0.0, daemon_used - idle_rate * wall)
            results.append(
                {
                    "variant": variant,
                    "containers": containers,
                    "interval_s": 5,
                    "window_s": round(wall, 1),
                    "rss_mb": rss,
                    "rss_peak_mb": rss_peak,
                    **{f"{k}_mb": v for k, v in breakdown.items()},
                    "threads": threads,
                    "agent_cpu_percent": agent_cpu / wall * 100,
                    "daemon_cpu_percent": daemon / wall * 100,
                    "total_cpu_percent": (agent_cpu + daemon) / wall * 100,
                    "daemon_idle_cpu_percent": idle_rate * 100,
                    "daemon_noise_percent": abs(idle_before - idle_after) / 2 * 100,
                }
            )
    return results

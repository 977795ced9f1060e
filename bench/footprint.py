"""Benchmark 2: the agent's footprint in steady state, as users run it (the image, read-only).

50 containers, the default 5 s interval, a real broker. Over the window: the agent's memory (RSS,
PSS and USS from the host's /proc of its process) and CPU, and the Docker daemon's CPU above its
idle rate measured without the agent just before. Variants: the default (container cgroups read
through the host root), the Engine API only, and the linux/arm/v7 image under QEMU user
emulation (a rough stand-in for a 32-bit Raspberry Pi OS; its memory is the emulated program's
own, the mappings below 4 GiB, without QEMU's; its CPU includes QEMU's translation).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker

from bench.cycle import idle_daemon_rate
from bench.system import daemon_cpu_seconds, process_cpu_seconds, process_rss_mb
from tests.support.broker import start_broker

REPO = Path(__file__).resolve().parents[1]
IMAGE = "otto-metrics/agent:bench"
ARMV7_IMAGE = "otto-metrics/agent:bench-armv7"
ARMV7_BASE = os.environ.get("ARMV7_BASE", "local/python:3.12-slim-armv7")  # what `docker-host seed` makes
#: Under qemu-user a 32-bit program lives in the low 4 GiB of QEMU's address space.
GUEST_LIMIT = 2**32


@dataclass(frozen=True)
class Variant:
    name: str
    stats: str  # OTTO_CONTAINER_STATS
    image: str = IMAGE
    platform: str | None = None
    tls: bool = False  # MQTT over TLS to the broker's 8883, verifying it, as on a Pi by default


VARIANTS = {
    "auto": Variant("auto", "auto"),
    "tls": Variant("tls", "auto", tls=True),
    "api": Variant("api", "api"),
    "armv7": Variant("armv7", "auto", ARMV7_IMAGE, "linux/arm/v7"),
}


def build_image(variant: Variant) -> None:
    args = ["docker", "build", "-q", "-f", "Dockerfile.agent", "-t", variant.image]
    if variant.platform is not None:
        args += ["--platform", variant.platform, "--build-arg", f"PYTHON_IMAGE={ARMV7_BASE}"]
    subprocess.run([*args, "."], cwd=REPO, check=True, capture_output=True, timeout=3600)


def memory_breakdown(pid: int, guest_only: bool = False) -> dict[str, float]:
    """RSS, PSS, USS (private clean + dirty) and anonymous memory of a process, MiB, from smaps.

    ``guest_only``: only mappings below 4 GiB, i.e. the emulated 32-bit program without QEMU.
    """
    keys = {"Rss": "rss", "Pss": "pss", "Private_Clean": "uss", "Private_Dirty": "uss", "Anonymous": "anon"}
    totals = dict.fromkeys(keys.values(), 0)
    counted = True
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(" ", 1)[0]
        if "-" in head and ":" not in head:  # a mapping's first line: start-end perms ...
            counted = not guest_only or int(head.split("-")[0], 16) < GUEST_LIMIT
            continue
        key, _, value = line.partition(":")
        if counted and key in keys:
            totals[keys[key]] += int(value.split()[0])
    return {f"{name}_mb": kb / 1024 for name, kb in totals.items()}


def run(
    client: docker.DockerClient, workdir: Path, containers: int, window: float, variants: list[str]
) -> list[dict[str, Any]]:
    """The agent image against ``containers`` already running containers, once per variant."""
    chosen = [VARIANTS[name] for name in variants]
    for image in {v.image: v for v in chosen}.values():
        build_image(image)
    results = []
    warmup = min(15.0, window / 2)
    with start_broker(workdir / "broker", nodes=["bench-node"]) as broker:
        for variant in chosen:
            idle_before = idle_daemon_rate(window / 2)
            agent = client.containers.run(
                variant.image,
                platform=variant.platform,
                detach=True,
                name=f"otto-bench-agent-{variant.name}",
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
                    **({str(broker.ca_file): {"bind": "/run/otto/ca.crt", "mode": "ro"}} if variant.tls else {}),
                },
                environment={
                    "OTTO_NODE_ID": "bench-node",
                    "OTTO_HOST_ROOT": "/hostfs",
                    "OTTO_MQTT_HOST": broker.host,
                    "OTTO_MQTT_PORT": str(broker.tls_port if variant.tls else broker.port),
                    "OTTO_MQTT_TLS": "true" if variant.tls else "false",
                    **({"OTTO_MQTT_CA_FILE": "/run/otto/ca.crt"} if variant.tls else {}),
                    "OTTO_MQTT_USERNAME": "bench-node",
                    "OTTO_MQTT_PASSWORD": broker.password("bench-node"),
                    "OTTO_CONTAINER_STATS": variant.stats,
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
                memory = memory_breakdown(pid, guest_only=variant.platform is not None)
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
                    "variant": variant.name,
                    "platform": variant.platform or "native",
                    "containers": containers,
                    "interval_s": 5,
                    "window_s": round(wall, 1),
                    **memory,
                    "process_rss_mb": rss,  # under QEMU: the emulator's too
                    "process_rss_peak_mb": rss_peak,
                    "threads": threads,
                    "agent_cpu_percent": agent_cpu / wall * 100,
                    "daemon_cpu_percent": daemon / wall * 100,
                    "total_cpu_percent": (agent_cpu + daemon) / wall * 100,
                    "daemon_idle_cpu_percent": idle_rate * 100,
                    "daemon_noise_percent": abs(idle_before - idle_after) / 2 * 100,
                }
            )
    return results

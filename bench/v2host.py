"""Benchmark 6: one collection cycle on a cgroup v2 host with Engine 26 (the VM of ../shared/ci/v2-host).

Engine 25 and later answer a one-shot stats call at once instead of at the collector's next 1 s
tick, so the Engine API path is fast there too. On the guest (emulated, so slow like a small
Pi), with N running containers: the agent's cycle through the one-shot API and through the
cgroup files (``agent.collect_seconds`` of a ``--once`` run of the image, as compose.rpi.yaml
runs it), against ``docker stats --no-stream`` for the same containers, in the same run.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import time
from typing import Any

import docker
import requests

from tests.support.load import LoadContainers
from tests.support.v2_host import TOOL, Guest


def available() -> bool:
    return TOOL.exists()


def run(containers: int, repeats: int) -> dict[str, Any]:
    guest = Guest()
    guest.start()
    load = LoadContainers(guest.client)  # one at a time, a creation that lost its connection tried again
    try:
        # Like benchmark 1's: one in five busy at 2 % of a core, the rest idle.
        started = [
            load.run(f"{i:03d}", "while :; do :; done", nano_cpus=20_000_000)
            if i % 5 == 0
            else load.run(f"{i:03d}", "sleep 86400")
            for i in range(containers)
        ]
        cycle: dict[str, list[float]] = {"api": [], "auto": []}
        cli: list[float] = []
        names = [c.name for c in started]
        for _ in range(repeats):
            for source, seconds in cycle.items():
                run = guest.run_agent(interval=2, settings={"OTTO_CONTAINER_STATS": source})
                assert len(run.containers["containers"]) >= containers, run.log
                seconds.append(run.node["agent"]["collect_seconds"])
            began = time.monotonic()
            subprocess.run(
                ["docker", "stats", "--no-stream", *names],
                env=guest.cli_env, capture_output=True, check=True, timeout=120,
            )  # fmt: skip
            cli.append(time.monotonic() - began)
        info = guest.client.version()
        return {
            "containers": containers,
            "engine": f"{info['Version']} (API {info['ApiVersion']})",
            "agent_one_shot_api_s": statistics.median(cycle["api"]),
            "agent_cgroup_files_s": statistics.median(cycle["auto"]),
            "docker_stats_s": statistics.median(cli),
            "repeats": repeats,
        }
    finally:
        with contextlib.suppress(docker.errors.DockerException, requests.RequestException):
            load.close()
        guest.client.close()
        guest.down()


def table(result: dict[str, Any] | None) -> list[str]:
    if not result:
        return ["", "6. Cycle on a cgroup v2 host: not run (no ../shared/ci/v2-host here, or --quick)"]
    if "error" in result:
        return ["", f"6. Cycle on a cgroup v2 host: failed ({result['error']})"]
    api, files, cli = result["agent_one_shot_api_s"], result["agent_cgroup_files_s"], result["docker_stats_s"]
    return [
        "",
        f"6. Cycle on a cgroup v2 host (emulated VM, Engine {result['engine']}, {result['containers']} containers; "
        f"median of {result['repeats']})",
        "",
        "| agent, one-shot Engine API | agent, cgroup files | docker stats --no-stream |",
        "|---:|---:|---:|",
        f"| {api:.2f} s ({cli / api:.1f}x faster) | {files:.2f} s ({cli / files:.1f}x faster) | {cli:.2f} s |",
    ]

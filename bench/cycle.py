"""Benchmark 1: one collection cycle with N running containers.

Side by side in the same run, on the same containers:
* the agent's cycle (MetricsCollector.collect: node + every container), as it runs by default
  (container cgroups read through the host root) and with the Engine API only (no host root),
* ``docker stats --no-stream`` for the same containers,
* a naive loop (the one the project's first plan sketched): one blocking ``stats(stream=False)``
  per container, one after another (for large N a sample of containers is measured and extrapolated).
Each is measured by wall time, its own CPU time, and the CPU the Docker daemon (dockerd,
containerd, shims) spent meanwhile, less the daemon's idle rate measured just before.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import docker

from agent.cgroup_stats import CgroupReader
from agent.collector import MetricsCollector
from agent.container_collector import ContainerCollector
from agent.host_collector import HostCollector, HostPaths
from bench.system import daemon_cpu_seconds

BUSYBOX = "busybox:1.36"
LABEL = "otto-bench"


@dataclass
class Cost:
    wall: float  # seconds
    cpu: float  # seconds of the measured client
    daemon_cpu: float  # seconds of dockerd + containerd + shims, above their idle rate


def start_containers(client: docker.DockerClient, count: int, tag: str) -> list[Any]:
    """``count`` busybox containers, started in parallel; every fifth busy at 2 % of a core, the rest idle."""

    def start(i: int) -> Any:
        busy = i % 5 == 0
        return client.containers.run(
            BUSYBOX,
            ["sh", "-c", "while :; do :; done" if busy else "sleep 86400"],
            name=f"{LABEL}-{tag}-{i:03d}",
            detach=True,
            labels={LABEL: tag},
            nano_cpus=20_000_000 if busy else None,
        )

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(start, range(count)))


def remove_containers(client: docker.DockerClient) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda c: c.remove(force=True), client.containers.list(all=True, filters={"label": LABEL})))


def idle_daemon_rate(seconds: float = 3.0) -> float:
    """Daemon CPU seconds per second while nothing asks it for stats."""
    before = daemon_cpu_seconds()
    time.sleep(seconds)
    return (daemon_cpu_seconds() - before) / seconds


def measure_cost(action: Callable[[], object], own_cpu: Callable[[], float], idle_rate: float) -> Cost:
    cpu0, daemon0, wall0 = own_cpu(), daemon_cpu_seconds(), time.perf_counter()
    action()
    wall = time.perf_counter() - wall0
    daemon = daemon_cpu_seconds() - daemon0 - idle_rate * wall
    return Cost(wall=wall, cpu=own_cpu() - cpu0, daemon_cpu=max(0.0, daemon))


def self_cpu() -> float:
    return time.process_time()  # all threads, nanosecond resolution (os.times() ticks at 10 ms)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def collect_times(collector: MetricsCollector, times: int) -> None:
    for _ in range(times):
        collector.collect()


def docker_stats_no_stream(names: list[str]) -> None:
    subprocess.run(["docker", "stats", "--no-stream", *names], capture_output=True, check=True, timeout=120)


def naive_loop(client: docker.DockerClient, containers: list[Any]) -> None:
    """A naive collection: one blocking two-sample stats call after another."""
    for container in containers:
        client.api.stats(container.id, stream=False)


def median_cost(costs: list[Cost]) -> Cost:
    return Cost(
        wall=statistics.median(c.wall for c in costs),
        cpu=statistics.median(c.cpu for c in costs),
        daemon_cpu=statistics.median(c.daemon_cpu for c in costs),
    )


def measure(
    client: docker.DockerClient, containers: list[Any], repeats: int, naive_sample: int, pause: float
) -> dict[str, Any]:
    """All four ways of collecting, on the running ``containers``; medians of ``repeats`` rounds."""
    count = len(containers)
    names = [c.name for c in containers]
    time.sleep(3)  # let them settle
    idle = idle_daemon_rate()
    paths = HostPaths(None)
    agent = MetricsCollector(
        "bench", HostCollector(paths), ContainerCollector(cgroups=CgroupReader(paths.sys, paths.proc)), 5.0
    )
    api_only = MetricsCollector("bench", HostCollector(paths), ContainerCollector(), 5.0)
    agent.prime()
    api_only.prime()
    agent_costs, api_costs, cli_costs = [], [], []
    for _ in range(repeats):  # interleaved, so drift in the machine affects all alike
        time.sleep(pause)
        # The daemon's CPU counters tick every 10 ms, longer than one cgroup cycle: time ten
        # cycles together and divide.
        batch = measure_cost(partial(collect_times, agent, 10), self_cpu, idle)
        agent_costs.append(Cost(batch.wall / 10, batch.cpu / 10, batch.daemon_cpu / 10))
        time.sleep(pause)
        api_costs.append(measure_cost(api_only.collect, self_cpu, idle))
        time.sleep(pause)
        cli_costs.append(measure_cost(partial(docker_stats_no_stream, names), children_cpu, idle))
    agent.containers.close()
    api_only.containers.close()

    sample = containers[: min(naive_sample, count)]
    time.sleep(pause)
    naive = measure_cost(partial(naive_loop, client, sample), self_cpu, idle)
    scale = count / len(sample)
    naive = Cost(naive.wall * scale, naive.cpu * scale, naive.daemon_cpu * scale)

    agent_cost, api_cost, cli = median_cost(agent_costs), median_cost(api_costs), median_cost(cli_costs)
    return {
        "containers": count,
        "agent": asdict(agent_cost),
        "agent_api_only": asdict(api_cost),
        "docker_stats": asdict(cli),
        "naive_loop": asdict(naive),
        "naive_loop_sampled": len(sample),
        "repeats": repeats,
        "daemon_idle_cpu_per_s": idle,
        "speedup_vs_docker_stats": cli.wall / agent_cost.wall,
        "speedup_api_only_vs_docker_stats": cli.wall / api_cost.wall,
        "daemon_cpu_vs_docker_stats": agent_cost.daemon_cpu / cli.daemon_cpu if cli.daemon_cpu else None,
        "daemon_cpu_api_only_vs_docker_stats": api_cost.daemon_cpu / cli.daemon_cpu if cli.daemon_cpu else None,
    }

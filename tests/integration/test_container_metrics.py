"""Container metrics on the real engine, compared with `docker stats --no-stream` at the same moment."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import docker
import pytest

from agent.cgroup_stats import CgroupReader
from agent.container_collector import ContainerCollector
from agent.engine_api import Listed
from contract import ContainerMetrics
from tests.support.docker_cli import assert_like_docker_stats, parse_pair
from tests.support.load import LoadContainers, docker_stats_no_stream, wait_for_log, wait_until

pytestmark = [pytest.mark.docker]

MIB = 2**20
NET_BYTES = 20_000_000
DISK_BYTES = 32 * MIB
SHM_BYTES = 64 * MIB
#: Every load container first puts this much in /dev/shm: a resident size known in advance, so a
#: container measured as 0 cannot pass the comparisons below.
RESIDENT_MIB = 8
RESIDENT = f"dd if=/dev/zero of=/dev/shm/resident bs=1M count={RESIDENT_MIB} 2>/dev/null && "


@pytest.fixture(scope="module")
def loads(docker_client: docker.DockerClient) -> Iterator[LoadContainers]:
    load = LoadContainers(docker_client)
    try:
        load.run("cpu", RESIDENT + "while :; do :; done", nano_cpus=500_000_000)  # --cpus 0.5
        mem = load.run(
            "mem", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=64 && echo filled; sleep 3600", shm_size="128m"
        )
        disk = load.run(
            "disk", RESIDENT + "dd if=/dev/zero of=/tmp/f bs=1M count=32 oflag=direct && echo written; sleep 3600"
        )
        server = load.run(
            "server",
            RESIDENT
            + f"mkdir /www && head -c {NET_BYTES} /dev/zero >/www/blob && echo serving && httpd -f -p 8080 -h /www",
        )
        wait_for_log(server, "serving")
        server.reload()
        address = server.attrs["NetworkSettings"]["IPAddress"]
        client = load.run(
            "client", RESIDENT + f"wget -q -O /dev/null http://{address}:8080/blob && echo fetched; sleep 3600"
        )
        for container, marker in ((mem, "filled"), (disk, "written"), (client, "fetched")):
            wait_for_log(container, marker)
        yield load
    finally:
        load.close()


def by_name(metrics: list[ContainerMetrics], loads: LoadContainers) -> dict[str, ContainerMetrics]:
    return {
        m.container_name.removeprefix(loads.prefix + "-"): m
        for m in metrics
        if m.container_name.startswith(loads.prefix)
    }


def cgroup_reader() -> CgroupReader:
    return CgroupReader(Path("/sys"), Path("/proc"))  # this host's cgroups, as through OTTO_HOST_ROOT


@pytest.mark.parametrize("source", ["cgroup", "api"])
def test_figures_match_docker_stats_at_the_same_moment(loads: LoadContainers, source: str) -> None:
    collector = ContainerCollector(timeout=15, cgroups=cgroup_reader() if source == "cgroup" else None)
    collector.prime()
    time.sleep(3)
    names = [c.name for c in loads.started]
    with ThreadPoolExecutor(2) as pool:
        cli_future = pool.submit(docker_stats_no_stream, names)
        time.sleep(0.5)  # the CLI averages the second before its second sample; end ours at about the same time
        ours, error = collector.collect()
        cli = cli_future.result()
    if source == "cgroup":  # every container was read from its cgroup files, none through the API
        assert all(known.details.cgroup is not None for known in collector._known.values())
    collector.close()
    assert error is None
    mine = by_name(ours, loads)
    assert set(mine) == {"cpu", "mem", "disk", "server", "client"}

    # Known behaviour first: what the load containers were built to do.
    assert mine["cpu"].cpu_percent == pytest.approx(50.0, abs=5.0)  # capped at half a core
    assert mine["mem"].memory_usage_mb >= SHM_BYTES / MIB  # /dev/shm pages count as used
    assert mine["mem"].memory_usage_mb < SHM_BYTES / MIB + 16
    for role in ("cpu", "disk", "server", "client"):
        assert RESIDENT_MIB <= mine[role].memory_usage_mb < RESIDENT_MIB + 24, role
    # Some kernels (this CI VM's among them) account no block I/O to cgroup v1 blkio at all, and
    # `docker stats` then shows 0B too; the known-bytes check applies where the kernel counts.
    if parse_pair(cli[f"{loads.prefix}-disk"]["BlockIO"])[1] > 0:
        assert mine["disk"].block_write_bytes >= DISK_BYTES
    assert mine["server"].network_tx_bytes >= NET_BYTES
    assert mine["client"].network_rx_bytes >= NET_BYTES
    assert all(m.state == "running" and m.image == "busybox:1.36" and m.pids >= 1 for m in mine.values())

    # Then every column against the CLI.
    for role, m in mine.items():
        assert parse_pair(cli[f"{loads.prefix}-{role}"]["MemUsage"])[0] >= RESIDENT_MIB * MIB, role
        assert_like_docker_stats(m.model_dump(), cli[f"{loads.prefix}-{role}"], role)


@pytest.mark.parametrize("source", ["cgroup", "api"])
def test_first_sight_is_never_a_since_boot_average(docker_client: docker.DockerClient, source: str) -> None:
    load = LoadContainers(docker_client)
    half_core = 500_000_000  # both loads fit on a 2-core machine next to the daemon and the test
    try:
        load.run("busy-before", "while :; do :; done", nano_cpus=half_core)
        time.sleep(2)
        # Never seen and no baseline: the daemon's two samples, like `docker stats --no-stream`.
        collector = ContainerCollector(timeout=15, cgroups=cgroup_reader() if source == "cgroup" else None)
        first_cycle_start = time.time()
        first = by_name(collector.collect()[0], load)
        # The interval starts at the previous cycle's system CPU reading: with cgroups the agent
        # reads it first thing in the cycle; over the API, the daemon's readings end with the cycle.
        interval_start = first_cycle_start if source == "cgroup" else time.time()
        assert first["busy-before"].cpu_percent == pytest.approx(50.0, abs=5.0)

        # Started after the previous cycle: one-shot against zero usage at that cycle's system time,
        # so its figure is the whole interval's average: busy for the part of it that it was alive.
        after = load.run("busy-after", "while :; do :; done", nano_cpus=half_core)
        time.sleep(3)
        before_collect = time.time()
        second = by_name(collector.collect()[0], load)
        after_collect = time.time()
        collector.close()
        started = datetime.fromisoformat(
            docker_client.api.inspect_container(after.id)["State"]["StartedAt"][:26] + "+00:00"
        )
        alive_low = (before_collect - started.timestamp()) / (after_collect - interval_start)
        alive_high = min(1.0, (after_collect - started.timestamp()) / (before_collect - interval_start))
        assert 50 * alive_low - 5 <= second["busy-after"].cpu_percent <= 50 * alive_high + 5
        assert second["busy-after"].cpu_percent > 25  # a since-boot average would be well under 1 %
        assert second["busy-before"].cpu_percent == pytest.approx(50.0, abs=5.0)
    finally:
        load.close()


@pytest.mark.parametrize("source", ["cgroup", "api"])
def test_state_health_restarts_and_host_network(docker_client: docker.DockerClient, source: str) -> None:
    load = LoadContainers(docker_client)
    try:
        load.run(
            "healthy", "sleep 3600",
            healthcheck={"test": ["CMD", "true"], "interval": 500_000_000, "start_period": 0},
        )  # fmt: skip
        flaky = load.run("flaky", "sleep 1; exit 3", restart_policy={"Name": "on-failure", "MaximumRetryCount": 50})
        load.run("hostnet", "sleep 3600", network_mode="host")
        wait_until(lambda: docker_client.api.inspect_container(flaky.id)["RestartCount"] >= 2, timeout=60)
        collector = ContainerCollector(timeout=15, cgroups=cgroup_reader() if source == "cgroup" else None)
        collector.prime()

        def seen() -> dict[str, ContainerMetrics]:
            return by_name(collector.collect()[0], load)

        wait_until(lambda: seen()["healthy"].health == "healthy", timeout=30, every=0.5)
        wait_until(lambda: "flaky" in seen(), timeout=30, every=0.5)
        now = seen()
        restarts = docker_client.api.inspect_container(flaky.id)["RestartCount"]
        assert now["flaky"].restart_count >= 2
        assert now["flaky"].restart_count <= restarts
        assert now["hostnet"].network_rx_bytes == now["hostnet"].network_tx_bytes == 0  # no networks key
        assert now["hostnet"].health is None
        collector.close()
    finally:
        load.close()


def test_vanished_container_is_skipped_quietly(
    docker_client: docker.DockerClient, caplog: pytest.LogCaptureFixture
) -> None:
    load = LoadContainers(docker_client)
    try:
        short = load.run("short", "sleep 3600")
        collector = ContainerCollector(timeout=15)
        collector.prime()
        entry = {"Id": short.id, "Names": [f"/{short.name}"], "State": "running", "Status": "Up"}
        short.remove(force=True)
        # The list said it was there; by the time of the stats call it is gone (HTTP 404).
        result = collector._sample(Listed.parse(entry), inspect=True, priming=False)
        assert result.metrics is None
        assert result.error is None
        assert [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")] == []
        collector.close()
    finally:
        load.close()

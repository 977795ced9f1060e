"""Raspberry Pi OS's default: the kernel's memory controller off (``cgroup_disable=memory``).

`docker stats` then shows memory as 0B / 0B and the API returns empty memory stats; everything
else still works. The agent must publish the same, say so in ``memory_cgroup_enabled``, and log
the one warning with the fix, with both stats sources.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.__main__ import MEMORY_CGROUP_HINT
from tests.support.docker_cli import assert_like_docker_stats
from tests.support.load import LoadContainers, docker_stats_no_stream, wait_for_log
from tests.support.v2_host import CLI_CPU_POINTS, Guest

KERNEL_APPEND = "cgroup_disable=memory"


def start_loads(guest: Guest) -> LoadContainers:
    load = LoadContainers(guest.client)
    try:
        load.run("cpu", "while :; do :; done", nano_cpus=500_000_000)
        filled = load.run(
            "shm", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=64 && echo filled; sleep 3600", shm_size="128m"
        )
        wait_for_log(filled, "filled", timeout=120)
    except BaseException:
        load.close()
        raise
    return load


@pytest.fixture(scope="module")
def loads(guest: Guest) -> Iterator[LoadContainers]:
    load = guest.survive(lambda: start_loads(guest))
    try:
        yield load
    finally:
        load.close()


@pytest.mark.parametrize("source", ["auto", "api"])
def test_memory_reads_as_docker_stats_shows_it_and_the_fix_is_logged_once(
    guest: Guest, loads: LoadContainers, source: str
) -> None:
    assert "memory" not in guest.facts()["controllers"]
    run = guest.run_agent(interval=2, settings={"OTTO_CONTAINER_STATS": source})
    names = [c.name for c in loads.started]
    cli = docker_stats_no_stream(names, env=guest.cli_env)
    assert run.node["memory_cgroup_enabled"] is False
    assert run.log.count(MEMORY_CGROUP_HINT) == 1
    assert "cgroup_enable=memory" in MEMORY_CGROUP_HINT
    mine = run.by_name()
    for name in names:
        row = cli[name]
        assert row["MemUsage"] == "0B / 0B", row  # what users see in docker stats on a stock Pi
        ours = mine[name]
        assert (ours["memory_usage_mb"], ours["memory_limit_mb"], ours["memory_percent"]) == (0.0, 0.0, 0.0)
        assert_like_docker_stats(ours, row, name, cpu_points=CLI_CPU_POINTS)
    assert mine[f"{loads.prefix}-cpu"]["cpu_percent"] == pytest.approx(50.0, abs=5.0)  # the rest still works
    assert run.containers["error"] is None

"""On a real cgroup v2 host with systemd and Engine 26: the agent's figures against `docker stats`.

The agent runs from its image as compose.rpi.yaml runs it (host root and socket mounted,
non-root after start, read-only, private cgroup namespace: the v2 default), at a 2 s interval on a
software-emulated guest as slow as a small Pi. Each figure is compared with `docker stats
--no-stream` taken at the same moment, for loads built to known values, through both sources:
the cgroup files and the Engine API's one-shot path.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.docker_cli import MIB, assert_like_docker_stats, parse_pair
from tests.support.load import LoadContainers, docker_stats_no_stream, wait_for_log
from tests.support.v2_host import CLI_CPU_POINTS, AgentRun, Guest

NET_BYTES = 20_000_000
DISK_BYTES = 32 * MIB
SHM_MIB = 64
RESIDENT_MIB = 8
RESIDENT = f"dd if=/dev/zero of=/dev/shm/resident bs=1M count={RESIDENT_MIB} 2>/dev/null && "
#: A systemd slice of our own: with the systemd driver, --cgroup-parent names a slice.
CUSTOM_SLICE = "otto-test.slice"
ROLES = {"cpu", "mem", "memlimit", "disk", "server", "client", "pids", "parented"}


def start_loads(guest: Guest) -> LoadContainers:
    load = LoadContainers(guest.client)
    try:
        load.run("cpu", RESIDENT + "while :; do :; done", nano_cpus=500_000_000)  # --cpus 0.5
        fill = f"dd if=/dev/zero of=/dev/shm/fill bs=1M count={SHM_MIB} && echo filled; sleep 3600"
        mem = load.run("mem", fill, shm_size="128m")
        memlimit = load.run("memlimit", fill, shm_size="128m", mem_limit="96m")
        disk = load.run(
            "disk", RESIDENT + "dd if=/dev/zero of=/tmp/f bs=1M count=32 oflag=direct && echo written; sleep 3600"
        )
        server = load.run(
            "server",
            RESIDENT + f"mkdir /www && head -c {NET_BYTES} /dev/zero >/www/blob && echo serving && "
            "httpd -f -p 80 -h /www",
        )
        wait_for_log(server, "serving", timeout=120)
        server.reload()
        address = server.attrs["NetworkSettings"]["IPAddress"]
        fetch = f"wget -q -O /dev/null http://{address}/blob && echo fetched; sleep 3600"
        client = load.run("client", RESIDENT + fetch)
        load.run("pids", RESIDENT + "for i in 1 2 3 4 5; do sleep 3600 & done; wait")
        load.run("parented", RESIDENT + "sleep 3600", cgroup_parent=CUSTOM_SLICE)
        for container, marker in ((mem, "filled"), (memlimit, "filled"), (disk, "written"), (client, "fetched")):
            wait_for_log(container, marker, timeout=120)
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


def roles(run: AgentRun, loads: LoadContainers) -> dict[str, dict[str, Any]]:
    prefix = loads.prefix + "-"
    return {name.removeprefix(prefix): c for name, c in run.by_name().items() if name.startswith(prefix)}


def run_with_cli(guest: Guest, loads: LoadContainers, source: str) -> tuple[AgentRun, dict[str, dict[str, str]]]:
    """The agent's 2 s sample and `docker stats --no-stream`, ending at about the same moment."""
    cli: dict[str, dict[str, str]] = {}
    names = [c.name for c in loads.started]

    def start_cli() -> None:
        # The CLI's two samples take about 1.5 s here: started 0.5 s into the agent's 2 s interval.
        def take() -> None:
            cli.update(docker_stats_no_stream(names, env=guest.cli_env))

        time.sleep(0.5)
        threading.Thread(target=take, daemon=True).start()

    run = guest.run_agent(interval=2, settings={"OTTO_CONTAINER_STATS": source}, after_prime=start_cli)
    deadline = time.monotonic() + 60
    while len(cli) < len(names) and time.monotonic() < deadline:
        time.sleep(0.2)
    return run, cli


@pytest.mark.parametrize("source", ["auto", "api"])
def test_every_figure_matches_docker_stats_on_cgroup_v2(guest: Guest, loads: LoadContainers, source: str) -> None:
    run, cli = run_with_cli(guest, loads, source)
    mine = roles(run, loads)
    assert set(mine) == ROLES
    assert run.containers["error"] is None
    # Which source answered, from the agent's own log line: all cgroup files, or all the API.
    counts = re.search(r"container stats: (\d+) from cgroup (?:v2 )?files, (\d+) through the Engine API (\S+)", run.log)
    assert counts is not None, run.log
    listed = len(run.containers["containers"])
    assert (int(counts[1]), int(counts[2])) == ((listed, 0) if source == "auto" else (0, listed))
    assert tuple(map(int, counts[3].split("."))) >= (1, 44)  # Engine >= 25: one-shot answered at once

    # Known behaviour first.
    assert mine["cpu"]["cpu_percent"] == pytest.approx(50.0, abs=5.0)  # capped at half a core, first 2 s figure
    for role in ("mem", "memlimit"):
        assert SHM_MIB <= mine[role]["memory_usage_mb"] < SHM_MIB + 16, role
    assert mine["memlimit"]["memory_limit_mb"] == 96.0
    assert mine["mem"]["memory_limit_mb"] * MIB == pytest.approx(guest.facts()["mem_total"], rel=0.001)
    assert mine["disk"]["block_write_bytes"] >= DISK_BYTES  # io.stat counts: non-zero this time
    assert mine["server"]["network_tx_bytes"] >= NET_BYTES
    assert mine["client"]["network_rx_bytes"] >= NET_BYTES
    assert mine["pids"]["pids"] == 6  # sh and its five sleeps
    for role in ROLES - {"mem", "memlimit"}:
        assert RESIDENT_MIB <= mine[role]["memory_usage_mb"] < RESIDENT_MIB + 24, role

    # Then every column against the CLI, at the same moment.
    assert set(cli) == {c.name for c in loads.started}
    assert parse_pair(cli[f"{loads.prefix}-disk"]["BlockIO"])[1] >= DISK_BYTES
    for role, ours in mine.items():
        assert_like_docker_stats(ours, cli[f"{loads.prefix}-{role}"], role, cpu_points=CLI_CPU_POINTS)


def test_the_layouts_under_test_are_the_systemd_drivers(guest: Guest, loads: LoadContainers) -> None:
    """The cgroup paths the agent had to find: system.slice scopes, and a scope under our own slice."""
    paths = {}
    for container in loads.started:
        container.reload()
        pid = container.attrs["State"]["Pid"]
        paths[container.name.removeprefix(loads.prefix + "-")] = guest.exec(f"cat /proc/{pid}/cgroup").strip()
        assert container.attrs["HostConfig"]["CgroupnsMode"] == "private"
    cpu_id = next(c.id for c in loads.started if c.name.endswith("-cpu"))
    assert paths["cpu"] == f"0::/system.slice/docker-{cpu_id}.scope"
    parented_id = next(c.id for c in loads.started if c.name.endswith("-parented"))
    assert paths["parented"] == f"0::/otto.slice/{CUSTOM_SLICE}/docker-{parented_id}.scope"
    info = guest.client.info()
    assert (info["CgroupVersion"], info["CgroupDriver"]) == ("2", "systemd")


def test_a_container_killed_and_restarted_between_two_samples(guest: Guest) -> None:
    load = LoadContainers(guest.client)
    try:
        flaky = load.run(
            "restarts",
            # Busy until told to fail; /run is a tmpfs, empty again after the restart.
            "echo looping && while [ ! -e /run/fail ]; do :; done; exit 3",
            nano_cpus=500_000_000,
            tmpfs={"/run": ""},
            restart_policy={"Name": "on-failure", "MaximumRetryCount": 5},
        )
        wait_for_log(flaky, "looping", timeout=60)

        def fail() -> None:
            time.sleep(1.0)
            flaky.exec_run(["touch", "/run/fail"])  # exit 3: the policy starts it again at once
            # Under emulation the restart itself can take seconds: the next sample must find it back.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                flaky.reload()
                if flaky.attrs["RestartCount"] == 1 and flaky.attrs["State"]["Status"] == "running":
                    return
                time.sleep(0.2)
            raise AssertionError(f"no restart within 10 s: {flaky.attrs['State']}")

        run = guest.run_agent(interval=15, after_prime=fail)
        flaky.reload()
        assert flaky.attrs["RestartCount"] == 1
        ours = run.by_name()[flaky.name]
        # Its new cgroup counts from zero, below our previous sample of the old one: measured from zero
        # (a stale baseline would give a negative change, shown as 0), and under the half core it is
        # capped at, since it was down for part of the interval. (Wall-clock bounds do not hold here:
        # an emulated guest's clock and its CPU accounting drift apart; `docker stats` agrees with us.)
        assert 0 < ours["cpu_percent"] < 50
        assert run.containers["error"] is None
        assert "Traceback" not in run.log
        cli = docker_stats_no_stream([flaky.name], env=guest.cli_env)[flaky.name]
        assert ours["pids"] == int(cli["PIDs"]) == 1  # the new shell alone (`[` is a builtin)
        assert ours["state"] == "running"
    finally:
        load.close()


def test_node_figures_match_the_guests_own_proc_and_df(guest: Guest) -> None:
    before = guest.facts()
    run = guest.run_agent(interval=2)
    after = guest.facts()
    node = run.node
    assert node["cpu_count"] == before["cpus"] == len(node["cpu_per_core"])
    assert node["memory_total_mb"] * MIB == before["mem_total"]
    low, high = sorted((before["mem_available"], after["mem_available"]))
    assert low * 0.95 <= node["memory_available_mb"] * MIB <= high * 1.05
    assert node["disk_total_gb"] * 2**30 == before["disk_total"]
    assert node["disk_used_gb"] * 2**30 == pytest.approx(before["disk_used"], rel=0.02)
    # Counters and clocks read between two readings of the guest's own are between them.
    assert before["uptime"] <= node["uptime_seconds"] <= after["uptime"]
    assert before["net_rx"] <= node["network_bytes_recv"] <= after["net_rx"]
    assert before["net_tx"] <= node["network_bytes_sent"] <= after["net_tx"]
    assert 0 <= node["cpu_percent"] <= 100
    assert node["memory_cgroup_enabled"] is True
    assert "memory" in before["controllers"]

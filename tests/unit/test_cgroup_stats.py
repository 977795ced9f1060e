"""The cgroup stats reader on host snapshots: same inputs as the daemon, so the same figures."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from agent import docker_stats
from agent.cgroup_stats import CgroupReader, expand_slice, parse_blkio_v1, parse_io_stat_v2, system_cpu_sample
from tests.support.docker_cli import bytes_size, human_size

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
V1 = FIXTURES / "cgroups" / "v1-cgroupfs"
V2 = FIXTURES / "cgroups" / "v2-systemd"
TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def identity(tree: Path) -> tuple[str, int]:
    container_id, pid = (tree / "CONTAINER").read_text().split()
    return container_id, int(pid)


def reader(tree: Path) -> CgroupReader:
    return CgroupReader(tree / "sys", tree / "proc")


def copy(tree: Path, tmp_path: Path) -> Path:
    target = tmp_path / tree.name
    shutil.copytree(tree, target)
    return target


def test_system_cpu_like_the_daemon() -> None:
    stat = (FIXTURES / "hosts" / "rpi4-bookworm" / "proc" / "stat").read_text()
    usage, online = system_cpu_sample(stat)
    assert usage == (100000 + 500 + 40000 + 1800000 + 3000 + 0 + 1000) * TICK_NS  # first seven fields only
    assert online == 4


def test_v1_reads_what_the_daemon_reported() -> None:
    container_id, pid = identity(V1)
    cgroups = reader(V1)
    assert cgroups.version == 1
    location = cgroups.locate(container_id, pid)
    assert location is not None
    assert location.dir("memory") == V1 / "sys/fs/cgroup/memory/docker" / container_id
    ours = cgroups.read(location, pid, host_network=False)
    api = json.loads((V1 / "engine-api-stats.json").read_text())
    assert ours["memory_stats"]["usage"] == api["memory_stats"]["usage"]
    assert ours["memory_stats"]["limit"] == api["memory_stats"]["limit"]  # unlimited: clamped to MemTotal
    for key in ("total_inactive_file", "inactive_file"):  # what the formula takes from memory.stat
        assert ours["memory_stats"]["stats"][key] == api["memory_stats"]["stats"][key], key
    assert ours["cpu_stats"]["cpu_usage"]["total_usage"] == api["cpu_stats"]["cpu_usage"]["total_usage"]
    assert ours["pids_stats"] == {"current": api["pids_stats"]["current"]}
    assert ours["networks"]["eth0"]["rx_bytes"] == api["networks"]["eth0"]["rx_bytes"]
    assert ours["networks"]["eth0"]["tx_bytes"] == api["networks"]["eth0"]["tx_bytes"]
    assert "lo" not in ours["networks"]
    mine, theirs = docker_stats.figures(ours, {}), docker_stats.figures(api, {})
    assert (mine.memory_used_bytes, mine.memory_limit_bytes, mine.memory_percent) == (
        theirs.memory_used_bytes,
        theirs.memory_limit_bytes,
        theirs.memory_percent,
    )
    assert (mine.network_rx_bytes, mine.network_tx_bytes, mine.block_read_bytes, mine.pids) == (
        theirs.network_rx_bytes,
        theirs.network_tx_bytes,
        theirs.block_read_bytes,
        theirs.pids,
    )
    assert mine.memory_used_bytes >= 16 * 2**20  # the 16 MiB held in /dev/shm


def test_v2_reproduces_the_clis_columns_for_the_recorded_sample() -> None:
    container_id, pid = identity(V2)
    cgroups = reader(V2)
    assert cgroups.version == 2
    location = cgroups.locate(container_id, pid)
    assert location is not None
    ours = cgroups.read(location, pid, host_network=False)  # reads the system CPU from the tree's /proc/stat
    api = json.loads((FIXTURES / "docker-stats" / "cgroup-v2-two-sample-24cpu.json").read_text())
    assert ours["cpu_stats"] == {
        "cpu_usage": {"total_usage": api["cpu_stats"]["cpu_usage"]["total_usage"]},
        "system_cpu_usage": api["cpu_stats"]["system_cpu_usage"],
        "online_cpus": 24,
    }
    f = docker_stats.figures(ours, {})
    assert f"{bytes_size(f.memory_used_bytes)} / {bytes_size(f.memory_limit_bytes)}" == "15.9MiB / 62.73GiB"
    assert f"{human_size(f.network_rx_bytes)} / {human_size(f.network_tx_bytes)}" == "96.8MB / 16.6MB"
    assert f"{human_size(f.block_read_bytes)} / {human_size(f.block_write_bytes)}" == "11.4MB / 0B"
    assert f.pids == 29
    assert ours["memory_stats"]["limit"] == api["memory_stats"]["limit"]  # "max" clamped to MemTotal


def test_v2_found_from_a_private_cgroup_namespace_and_under_a_custom_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = copy(V2, tmp_path)
    container_id, pid = identity(tree)
    cgroups = reader(tree)
    # Seen from the agent's own cgroup namespace, a sibling's path is relative: use the known layouts.
    (tree / "proc" / str(pid) / "cgroup").write_text(f"0::/../docker-{container_id}.scope\n")
    assert cgroups.locate(container_id, pid) is not None
    scope = tree / "sys/fs/cgroup/system.slice" / f"docker-{container_id}.scope"
    custom = tree / "sys/fs/cgroup/fleet.slice/fleet-apps.slice"
    custom.mkdir(parents=True)
    scope.rename(custom / scope.name)
    # --cgroup-parent: a systemd slice is where the driver puts it, found without searching the tree.
    with monkeypatch.context() as patched:
        patched.setattr("agent.cgroup_stats._search", lambda *_: pytest.fail("searched the tree"))
        location = cgroups.locate(container_id, pid, cgroup_parent="fleet-apps.slice")
    assert location is not None
    assert location.dirs["unified"] == custom / scope.name
    assert expand_slice("fleet-apps.slice") == "fleet.slice/fleet-apps.slice"
    assert expand_slice("otto.slice") == "otto.slice"
    assert expand_slice("-.slice") == ""
    assert expand_slice("/etc.slice") == expand_slice("..-x.slice") == ""  # never a path out of the hierarchy
    assert cgroups.locate("f" * 64, pid) is None  # the pid's cgroup names another container: refused


def test_memory_controller_off_and_host_network(tmp_path: Path) -> None:
    tree = copy(V2, tmp_path)
    container_id, pid = identity(tree)
    cgroups = reader(tree)
    location = cgroups.locate(container_id, pid)
    assert location is not None
    for name in ("memory.current", "memory.max", "memory.stat"):
        (location.dirs["unified"] / name).unlink()  # Raspberry Pi OS default: no memory controller
    stats = cgroups.read(location, pid, host_network=True)
    assert stats["memory_stats"] == {}
    assert "networks" not in stats  # the daemon reports none for --network host either
    f = docker_stats.figures(stats, {})
    assert (f.memory_used_bytes, f.memory_percent, f.network_rx_bytes) == (0.0, 0.0, 0)


def test_a_removed_cgroup_or_process_raises(tmp_path: Path) -> None:
    tree = copy(V1, tmp_path)
    container_id, pid = identity(tree)
    cgroups = reader(tree)
    location = cgroups.locate(container_id, pid)
    assert location is not None
    shutil.rmtree(tree / "proc" / str(pid))
    with pytest.raises(FileNotFoundError):  # the first process is gone: the caller asks the API instead
        cgroups.read(location, pid, host_network=False)
    shutil.rmtree(tree / "sys/fs/cgroup/cpuacct/docker" / container_id)
    with pytest.raises(FileNotFoundError):
        cgroups.read(location, pid, host_network=True)


def test_v1_block_io_file_choice_follows_containerd(tmp_path: Path) -> None:
    tree = copy(V1, tmp_path)
    container_id, pid = identity(tree)
    blkio = tree / "sys/fs/cgroup/blkio/docker" / container_id
    (blkio / "blkio.throttle.io_service_bytes").write_text(
        "8:0 Read 4096\n8:0 Write 8192\n8:0 Total 12288\nTotal 12288\n"
    )
    cgroups = reader(tree)
    location = cgroups.locate(container_id, pid)
    assert location is not None

    def block() -> tuple[int, int]:
        return docker_stats.block_io_bytes(cgroups.read(location, pid, True)["blkio_stats"])

    assert block() == (4096, 8192)  # no CFQ files: throttle.io_service_bytes
    (blkio / "blkio.io_serviced_recursive").write_text("Total 0\n")
    (blkio / "blkio.io_service_bytes_recursive").write_text("Total 0\n")
    location = cgroups.locate(container_id, pid)  # the scheduler's files exist from the container's start
    assert location is not None
    assert block() == (4096, 8192)  # CFQ files without entries: still the throttle file
    (blkio / "blkio.io_serviced_recursive").write_text("8:0 Read 3\n8:0 Write 1\nTotal 4\n")
    (blkio / "blkio.io_service_bytes_recursive").write_text("8:0 Read 100\n8:0 Write 200\nTotal 300\n")
    assert block() == (100, 200)  # CFQ entries win


def test_block_parsers() -> None:
    assert parse_blkio_v1("253:0 Read 5\n253:0 Async 5\nTotal 5\n") == [
        {"major": 253, "minor": 0, "op": "Read", "value": 5},
        {"major": 253, "minor": 0, "op": "Async", "value": 5},
    ]
    entries = parse_io_stat_v2("7:2 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n253:1 rbytes=10 wbytes=0\n")
    assert docker_stats.block_io_bytes({"io_service_bytes_recursive": entries}) == (20, 20)

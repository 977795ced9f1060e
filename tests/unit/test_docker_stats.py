"""The `docker stats` formulas on recorded Engine API stats (cgroup v1, v2, Windows).

Each expected value is worked out here from the fixture's raw fields, then also compared with
the column strings the docker CLI prints for that fixture (tests/fixtures/docker-stats/README.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent import docker_stats
from tests.support.docker_cli import bytes_size, human_size

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "docker-stats"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def test_cgroup_v1_busy_two_sample() -> None:
    stats = load("cgroup-v1-two-sample-2cpu-busy.json")
    cpu_delta = 20686605138 - 20685447955
    system_delta = 2438625970000000 - 2438623980000000
    expected_cpu = cpu_delta / system_delta * 2 * 100.0
    used = 16027648 - 278528  # usage - total_inactive_file (v1)
    f = docker_stats.figures(stats)
    assert f.cpu_percent == pytest.approx(expected_cpu, rel=1e-12)
    assert f.cpu_percent == pytest.approx(0.11629979899497488, rel=1e-12)
    assert f.memory_used_bytes == used
    assert f.memory_limit_bytes == 3873652736
    assert f.memory_percent == pytest.approx(used / 3873652736 * 100)
    assert (f.network_rx_bytes, f.network_tx_bytes) == (0, 0)  # no networks key
    assert (f.block_read_bytes, f.block_write_bytes) == (614400, 0)  # Sync/Async/Total ignored
    assert f.pids == 18
    # What `docker stats` prints for this sample.
    assert f"{f.cpu_percent:.2f}%" == "0.12%"
    assert f"{bytes_size(f.memory_used_bytes)} / {bytes_size(f.memory_limit_bytes)}" == "15.02MiB / 3.608GiB"
    assert f"{f.memory_percent:.2f}%" == "0.41%"
    assert f"{human_size(f.block_read_bytes)} / {human_size(f.block_write_bytes)}" == "614kB / 0B"


def test_cgroup_v1_idle() -> None:
    f = docker_stats.figures(load("cgroup-v1-two-sample-idle.json"))
    assert f.cpu_percent == 0.0  # container counter did not move
    assert f.memory_used_bytes == 1302528 - 528384
    assert f"{bytes_size(f.memory_used_bytes)} / {bytes_size(f.memory_limit_bytes)}" == "756KiB / 1.932GiB"
    assert f"{f.memory_percent:.2f}%" == "0.04%"
    assert (f.network_rx_bytes, f.network_tx_bytes) == (11313, 0)
    assert f"{human_size(f.network_rx_bytes)} / {human_size(f.network_tx_bytes)}" == "11.3kB / 0B"
    assert (f.block_read_bytes, f.block_write_bytes) == (1187840, 0)
    assert f.pids == 1


def test_cgroup_v2_oneshot_counts_shared_memory_as_used() -> None:
    stats = load("cgroup-v2-oneshot-shm.json")
    f = docker_stats.figures(stats)
    assert f.memory_used_bytes == 234647552  # inactive_file is 0: shm sits on the anon lists
    assert f"{bytes_size(f.memory_used_bytes)} / {bytes_size(f.memory_limit_bytes)}" == "223.8MiB / 256MiB"
    assert f"{f.memory_percent:.2f}%" == "87.41%"
    assert (f.block_read_bytes, f.block_write_bytes) == (167936, 0)  # v2 lower-case ops
    # precpu is zero in a one-shot reply: the CLI's formula gives a since-boot average...
    assert f"{f.cpu_percent:.2f}%" == "0.04%"
    assert f.cpu_percent == pytest.approx(999478000 / 4836970000000 * 2 * 100)


def test_oneshot_against_own_previous_sample() -> None:
    """...which is why the agent passes its own earlier cpu_stats instead."""
    stats = load("cgroup-v2-oneshot-shm.json")
    previous = {"cpu_usage": {"total_usage": 999478000 - 500_000_000}, "system_cpu_usage": 4836970000000 - 10**10}
    f = docker_stats.figures(stats, previous)
    assert f.cpu_percent == pytest.approx(500_000_000 / 10**10 * 2 * 100)  # 10 % of one core


def test_cgroup_v2_24cpu_large_counters() -> None:
    f = docker_stats.figures(load("cgroup-v2-two-sample-24cpu.json"))
    assert f.cpu_percent == 0.0
    assert f.memory_used_bytes == 28557312 - 11882496
    assert f"{bytes_size(f.memory_used_bytes)} / {bytes_size(f.memory_limit_bytes)}" == "15.9MiB / 62.73GiB"
    assert (f.network_rx_bytes, f.network_tx_bytes) == (96802652, 16597749)
    assert f"{human_size(f.network_rx_bytes)} / {human_size(f.network_tx_bytes)}" == "96.8MB / 16.6MB"
    assert f"{human_size(f.block_read_bytes)} / {human_size(f.block_write_bytes)}" == "11.4MB / 0B"
    assert f.pids == 29


def test_cgroup_v2_block_io_sums_every_device() -> None:
    f = docker_stats.figures(load("cgroup-v2-two-sample-multidev.json"))
    assert f.block_read_bytes == 3 * 1998848  # loop + two device-mapper layers, not de-duplicated
    assert f"{human_size(f.block_read_bytes)} / {human_size(f.block_write_bytes)}" == "6MB / 0B"
    assert f"{bytes_size(f.memory_used_bytes)} / {bytes_size(f.memory_limit_bytes)}" == "340KiB / 1.921GiB"


def test_windows_frame_degrades_to_zero() -> None:
    f = docker_stats.figures(load("windows-first-frame.json"))
    assert (f.cpu_percent, f.memory_used_bytes, f.memory_limit_bytes, f.memory_percent) == (0.0, 0.0, 0.0, 0.0)
    assert f.pids == 0


def test_cpu_converts_to_float_before_subtracting() -> None:
    """system_cpu_usage above 2**53: subtracting as floats, as Go does, can differ from integers."""
    current = {"cpu_usage": {"total_usage": 2**53 + 3}, "system_cpu_usage": 2**60 + 2**9, "online_cpus": 4}
    previous = {"cpu_usage": {"total_usage": 1}, "system_cpu_usage": 2**60}
    expected = (float(2**53 + 3) - 1.0) / (float(2**60 + 2**9) - float(2**60)) * 4.0 * 100.0
    assert docker_stats.cpu_percent(current, previous) == expected


def test_cpu_falls_back_to_percpu_length_and_ignores_non_positive_deltas() -> None:
    current = {"cpu_usage": {"total_usage": 300, "percpu_usage": [100, 200, 0]}, "system_cpu_usage": 2000}
    assert docker_stats.cpu_percent(current, {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000}) == (
        200 / 1000 * 3 * 100
    )
    assert docker_stats.cpu_percent(current, {"cpu_usage": {"total_usage": 400}, "system_cpu_usage": 1000}) == 0.0
    assert docker_stats.cpu_percent(current, {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 2000}) == 0.0


def test_memory_cgroup_disabled_gives_zero() -> None:
    """Raspberry Pi OS default: the daemon sends "memory_stats": {}."""
    f = docker_stats.figures({"read": "2026-01-01T00:00:00Z", "memory_stats": {}, "cpu_stats": {}})
    assert (f.memory_used_bytes, f.memory_limit_bytes, f.memory_percent) == (0.0, 0.0, 0.0)


def test_memory_v1_odd_fallthrough_uses_inactive_file() -> None:
    """v1 with total_inactive_file >= usage falls through to the non-recursive key, like the CLI."""
    stats = {"usage": 1000, "stats": {"total_inactive_file": 5000, "inactive_file": 300}}
    assert docker_stats.memory_used_bytes(stats) == 700.0
    assert docker_stats.memory_used_bytes({"usage": 1000, "stats": {"inactive_file": 1000}}) == 1000.0


def test_network_sums_all_interfaces_and_tolerates_missing() -> None:
    networks = {"eth0": {"rx_bytes": 10, "tx_bytes": 1}, "eth1": {"rx_bytes": 5, "tx_bytes": 2}}
    assert docker_stats.network_bytes(networks) == (15, 3)
    assert docker_stats.network_bytes(None) == (0, 0)


def test_block_io_tolerates_null_and_empty_ops() -> None:
    assert docker_stats.block_io_bytes({"io_service_bytes_recursive": None}) == (0, 0)
    assert docker_stats.block_io_bytes({"io_service_bytes_recursive": [{"op": "", "value": 9}]}) == (0, 0)


def test_empty_sample_of_stopped_container() -> None:
    assert not docker_stats.has_sample({"id": "x", "read": "0001-01-01T00:00:00Z"})
    assert docker_stats.has_sample(load("cgroup-v1-two-sample-idle.json"))

"""Pure helpers for the Engine API's replies, on replies as the Engine gives them."""

from __future__ import annotations

import pytest

from agent import docker_stats
from agent.engine_api import Details, Listed, api_tuple, container_metrics, health_from_status, parse_docker_time
from agent.problems import Problems


@pytest.mark.parametrize(
    ("status", "health"),
    [
        ("Up 3 hours (healthy)", "healthy"),
        ("Up 5 seconds (health: starting)", "starting"),
        ("Up 2 minutes (unhealthy)", "unhealthy"),
        ("Up 2 minutes", None),
        ("", None),
    ],
)
def test_health_from_the_list_status(status: str, health: str | None) -> None:
    assert health_from_status(status) == health


def test_docker_times_and_api_versions() -> None:
    assert parse_docker_time("2026-11-27T10:00:00.123456789Z") == pytest.approx(1795773600.123456)
    assert parse_docker_time("2026-11-27T10:00:00Z") == 1795773600.0
    assert parse_docker_time("0001-01-01T00:00:00Z") is None  # never started
    assert parse_docker_time("yesterday") is None
    assert api_tuple("1.41") == (1, 41)
    assert api_tuple("1.44") > (1, 41)


def test_a_list_entry_and_an_inspect_reply() -> None:
    listed = Listed.parse({"Id": "abc123" * 10, "Names": ["/web"], "Image": "nginx:1.27", "State": "running",
                           "Status": "Up 1 hour (healthy)"})  # fmt: skip
    assert (listed.name, listed.image, listed.state, listed.health) == ("web", "nginx:1.27", "running", "healthy")
    nameless = Listed.parse({"Id": "0123456789abcdef"})
    assert (nameless.name, nameless.state, nameless.health) == ("0123456789ab", "running", None)
    info = {
        "RestartCount": 3,
        "State": {"Pid": 4242, "StartedAt": "2026-11-27T10:00:00.5Z"},
        "HostConfig": {"NetworkMode": "host", "CgroupParent": "/kubepods"},
    }
    details = Details.parse(info, inspected_at=12.0)
    assert (details.restart_count, details.pid, details.host_network, details.cgroup_parent) == (
        3, 4242, True, "/kubepods",
    )  # fmt: skip
    assert details.started_at == 1795773600.5
    assert details.cgroup is None  # located by the collector, which has the cgroup reader
    assert Details.parse({}, inspected_at=0.0).pid == 0  # an empty reply is no crash


def test_container_metrics_mend_a_long_name_by_the_problems_rule() -> None:
    listed = Listed("id-1", "n" * 600, "busybox", "running", None)
    figures = docker_stats.StatsFigures(
        cpu_percent=12.5, memory_used_bytes=2**20, memory_limit_bytes=2**30, memory_percent=0.1, network_rx_bytes=1,
        network_tx_bytes=2, block_read_bytes=3, block_write_bytes=4, pids=5,
    )  # fmt: skip
    problems = Problems()
    metrics = container_metrics(listed, 2, figures, problems)
    assert metrics.container_name == "n" * 511 + "\u2026"
    assert (metrics.memory_usage_mb, metrics.memory_limit_mb, metrics.restart_count, metrics.pids) == (
        1.0,
        1024.0,
        2,
        5,
    )
    assert problems.snapshot() == {"truncated": 1}

"""ContainerCollector against a fake Engine serving recorded replies: the cases a real one cannot stage.

The real-engine tests (tests/integration/test_container_metrics.py) compare with ``docker stats``;
these check the collector's own logic without Docker: the CPU baseline across cycles, a restart,
a container gone between the list and the stats call, a stats call past its timeout, an outage.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import docker_stats
from agent.cgroup_stats import CgroupReader
from agent.container_collector import INSPECT_MAX_AGE, ContainerCollector
from tests.support.fake_engine import FakeContainer, FakeEngine, fake_engine

FIXTURE = json.loads(
    (Path(__file__).parents[1] / "fixtures/docker-stats/cgroup-v1-two-sample-2cpu-busy.json").read_text()
)
EXPECTED = docker_stats.figures(FIXTURE)  # the fixture's own two-sample figures, as docker stats shows them


def one_shot(cpu_stats: dict[str, Any]) -> dict[str, Any]:
    """A one-shot stats reply (no precpu_stats) whose CPU counters are ``cpu_stats``."""
    return {**copy.deepcopy(FIXTURE), "cpu_stats": copy.deepcopy(cpu_stats), "precpu_stats": {}}


def with_usage(cpu_stats: dict[str, Any], total: int) -> dict[str, Any]:
    changed = copy.deepcopy(cpu_stats)
    changed["cpu_usage"]["total_usage"] = total
    return changed


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    with fake_engine() as running:
        yield running


def collector_for(engine: FakeEngine, timeout: int = 2) -> ContainerCollector:
    return ContainerCollector(timeout=timeout, client_factory=engine.client_factory)


def test_a_known_container_averages_the_interval_since_our_previous_sample(engine: FakeEngine) -> None:
    engine.add(FakeContainer("a" * 64, "web", [one_shot(FIXTURE["precpu_stats"]), one_shot(FIXTURE["cpu_stats"])]))
    collector = collector_for(engine)
    collector.prime()  # our first sample: the fixture's earlier one
    metrics, error = collector.collect()
    collector.close()
    assert error is None
    (web,) = metrics
    assert web.container_name == "web"
    assert web.cpu_percent == pytest.approx(EXPECTED.cpu_percent)
    assert web.cpu_percent > 0
    assert web.memory_usage_mb * 2**20 == pytest.approx(EXPECTED.memory_used_bytes)
    assert (web.network_rx_bytes, web.pids) == (EXPECTED.network_rx_bytes, EXPECTED.pids)


def test_a_container_first_seen_uses_the_daemons_two_samples_never_a_since_start_average(engine: FakeEngine) -> None:
    collector = collector_for(engine)
    collector.prime()  # nothing running yet
    engine.add(FakeContainer("b" * 64, "late", [FIXTURE], started_at="2020-01-01T00:00:00Z"))
    metrics, _ = collector.collect()
    collector.close()
    assert metrics[0].cpu_percent == pytest.approx(EXPECTED.cpu_percent)  # from the reply's own precpu_stats
    stats_calls = [r for r in engine.requests if r.endswith("/stats")]
    assert len(stats_calls) == 1


def test_a_restart_between_cycles_is_measured_from_zero_and_inspected_again(engine: FakeEngine) -> None:
    before = FIXTURE["cpu_stats"]
    after = with_usage(FIXTURE["cpu_stats"], 30_000_000)  # the new process has used 30 ms so far
    after["system_cpu_usage"] = before["system_cpu_usage"] + 2_000_000_000  # 2 s of two cores
    container = engine.add(FakeContainer("c" * 64, "flaky", [one_shot(before), one_shot(after)]))
    collector = collector_for(engine)
    collector.prime()
    container.restart_count = 1
    metrics, _ = collector.collect()
    # 30 ms of CPU over 2 s of system time on 2 CPUs: 1.5 % of a core, not a negative or huge figure.
    assert metrics[0].cpu_percent == pytest.approx(0.030 / 2.0 * 2 * 100)
    inspects = sum(1 for r in engine.requests if r.endswith("/json") and "/containers/c" in r)
    collector.collect()  # inspected again: the restart count is picked up
    collector.close()
    assert sum(1 for r in engine.requests if r.endswith("/json") and "/containers/c" in r) == inspects + 1


def test_a_container_gone_between_the_list_and_the_stats_call_is_skipped_quietly(
    engine: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    engine.add(FakeContainer("d" * 64, "stays", [FIXTURE]))
    engine.add(FakeContainer("e" * 64, "vanishes", [FIXTURE], listed_only=True))
    collector = collector_for(engine)
    metrics, error = collector.collect()
    collector.close()
    assert [m.container_name for m in metrics] == ["stays"]
    assert error is None
    assert [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")] == []


def test_a_stats_call_past_its_timeout_costs_only_that_container(engine: FakeEngine) -> None:
    engine.add(FakeContainer("f" * 64, "quick", [FIXTURE]))
    engine.add(FakeContainer("0" * 64, "stuck", [FIXTURE], stats_delay=2.5))
    collector = collector_for(engine, timeout=1)
    metrics, error = collector.collect()
    collector.close()
    assert [m.container_name for m in metrics] == ["quick"]
    assert error == "stats unavailable for 1 of 2 containers: timeout"


def test_a_daemon_outage_pauses_container_metrics_and_they_resume_by_themselves(engine: FakeEngine) -> None:
    engine.add(FakeContainer("1" * 64, "web", [FIXTURE]))
    collector = collector_for(engine)
    assert len(collector.collect()[0]) == 1
    engine.down()
    metrics, error = collector.collect()
    assert metrics == []
    assert error is not None
    assert error.startswith("docker daemon unreachable")
    engine.up()
    metrics, error = collector.collect()
    collector.close()
    assert ([m.container_name for m in metrics], error) == (["web"], None)


def test_each_container_is_inspected_once_then_only_on_change_or_age(
    engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = engine.add(FakeContainer("2" * 64, "web", [FIXTURE]))
    collector = collector_for(engine)

    def inspects() -> int:
        return sum(1 for r in engine.requests if r.endswith(f"/containers/{container.container_id}/json"))

    collector.collect()
    collector.collect()
    assert inspects() == 1
    container.status = "Up 6 minutes (unhealthy)"  # a sign of change in the list
    collector.collect()
    assert inspects() == 2
    clock = [0.0]
    monkeypatch.setattr("agent.container_collector.time.monotonic", lambda: clock[0])
    clock[0] = 1e9
    collector.collect()  # older than INSPECT_MAX_AGE
    collector.close()
    assert inspects() == 3
    assert INSPECT_MAX_AGE < 1e9


def test_a_list_entry_the_agent_cannot_read_costs_that_entry_only(engine: FakeEngine) -> None:
    engine.add(FakeContainer("3" * 64, "web", [FIXTURE]))
    engine.odd_entries = [{"Names": ["/no-id"]}, {"Id": "4" * 64, "Names": 7}]
    collector = collector_for(engine)
    metrics, error = collector.collect()
    collector.close()
    assert [m.container_name for m in metrics] == ["web"]
    assert error is None
    assert collector.problems.snapshot() == {"container_skipped": 2}


class HostClock:
    """Makes time pass on a copied cgroup v2 host tree: /proc/stat and one container's cpu.stat."""

    def __init__(self, tree: Path, container_id: str) -> None:
        self.stat = tree / "proc" / "stat"
        self.cpu = tree / "sys/fs/cgroup/system.slice" / f"docker-{container_id}.scope" / "cpu.stat"
        self.online = sum(1 for line in self.stat.read_text().splitlines() if re.match(r"cpu\d", line))

    def advance(self, seconds: float, container_cores: float) -> None:
        """``seconds`` of wall time, of which the container used ``container_cores`` cores."""
        lines = self.stat.read_text().splitlines()
        fields = lines[0].split()
        fields[4] = str(int(fields[4]) + round(seconds * self.online * os.sysconf("SC_CLK_TCK")))  # idle ticks
        self.stat.write_text("\n".join([" ".join(fields), *lines[1:]]) + "\n")
        cpu = self.cpu.read_text().splitlines()
        usage = int(cpu[0].split()[1]) + round(seconds * container_cores * 1e6)
        self.cpu.write_text("\n".join([f"usage_usec {usage}", *cpu[1:]]) + "\n")


def test_cgroup_cpu_holds_when_the_api_calls_before_it_are_slow(engine: FakeEngine, tmp_path: Path) -> None:
    # A slow host (a small Pi): the list and inspect calls of a first sighting take half a second.
    # The system CPU must be read with the container's cgroup, not before those calls, or the
    # figure reads low by that half second over the interval (40 % for 50 % at a 2 s interval).
    tree = tmp_path / "host"
    shutil.copytree(Path(__file__).parents[1] / "fixtures/cgroups/v2-systemd", tree)
    container_id, pid = (tree / "CONTAINER").read_text().split()
    clock = HostClock(tree, container_id)
    engine.add(
        FakeContainer(
            container_id, "capped", [FIXTURE], pid=int(pid), on_inspect=lambda: clock.advance(0.5, container_cores=0.5)
        )
    )
    collector = ContainerCollector(
        timeout=2, client_factory=engine.client_factory, cgroups=CgroupReader(tree / "sys", tree / "proc")
    )
    collector.prime()
    clock.advance(2.0, container_cores=0.5)  # the interval
    metrics, error = collector.collect()
    collector.close()
    assert error is None
    assert [r for r in engine.requests if r.endswith("/stats")] == []  # read from the cgroup files
    assert metrics[0].cpu_percent == pytest.approx(50.0, abs=0.01)

"""The CPU-baseline policy: what a container's CPU % this cycle is computed against. Pure.

``docker stats`` divides the container's CPU time between two samples by the system's. The agent
takes the first sample from its own previous cycle, so that the figure averages the whole publish
interval:

* a container known from the previous cycle: our previous sample of it;
* a container that started after the previous cycle's system CPU reading: zero usage at that
  reading (all of its CPU time falls inside the interval);
* any other container seen for the first time: None, meaning the daemon's own two samples (what
  ``docker stats --no-stream`` does), never an average since the container started.

A container whose usage went down since our previous sample restarted in between (its cgroup
counts from zero): ``rebase_after_restart`` gives the zero baseline at the same system reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent import docker_stats

CpuStats = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SystemReading:
    """The system CPU counter (``system_cpu_usage``, ns) and when it was read (epoch seconds)."""

    at: float
    system_ns: int


def _zero_usage_at(system_ns: Any) -> CpuStats:
    return {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": system_ns}


def baseline(previous: CpuStats | None, started_at: float | None, last_cycle: SystemReading | None) -> CpuStats | None:
    """The cpu_stats to compute CPU % against, or None when only the daemon's two samples will do."""
    if previous is not None:
        return previous
    if started_at is not None and last_cycle is not None and started_at >= last_cycle.at:
        return _zero_usage_at(last_cycle.system_ns)
    return None


def rebase_after_restart(chosen: CpuStats, current: CpuStats) -> CpuStats | None:
    """Zero usage at ``chosen``'s system reading if the container restarted since (usage went down), else None."""
    if docker_stats.cpu_usage_ns(current) < docker_stats.cpu_usage_ns(chosen):
        return {**chosen, "cpu_usage": {"total_usage": 0}}
    return None

"""Pure helpers for the Docker Engine API's replies: list entries, inspect replies, times, health.

No I/O here: the container collector calls the Engine, these turn its JSON into typed values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent import docker_stats
from agent.cgroup_stats import CgroupLocation
from agent.problems import Problems, build
from contract.models import ContainerMetrics
from contract.units import MIB

_HEALTH_IN_STATUS = re.compile(r"\((healthy|unhealthy|health: starting)\)")


def api_tuple(version: str) -> tuple[int, int]:
    """``"1.44"`` as ``(1, 44)``."""
    major, _, minor = version.partition(".")
    return int(major), int(minor or 0)


def health_from_status(status: str) -> str | None:
    """healthy / unhealthy / starting from the list API's Status text, None without a healthcheck."""
    found = _HEALTH_IN_STATUS.search(status or "")
    if not found:
        return None
    return "starting" if found.group(1) == "health: starting" else found.group(1)


def parse_docker_time(value: str) -> float | None:
    """Epoch seconds of a daemon RFC 3339 timestamp (nanosecond precision is cut to microseconds)."""
    if not value or value.startswith("0001-01-01"):
        return None
    head, _, tail = value.rstrip("Z").partition(".")
    fraction = tail[:6]
    try:
        parsed = datetime.fromisoformat(f"{head}.{fraction}+00:00" if fraction else f"{head}+00:00")
    except ValueError:
        return None
    return parsed.timestamp()


@dataclass(frozen=True, slots=True)
class Listed:
    """One running container as the list call describes it, parsed once per cycle."""

    container_id: str
    name: str
    image: str
    state: str
    health: str | None

    @classmethod
    def parse(cls, entry: Mapping[str, Any]) -> Listed:
        container_id = str(entry["Id"])
        names = entry.get("Names") or [container_id[:12]]
        return cls(
            container_id=container_id,
            name=str(names[0]).lstrip("/"),
            image=str(entry.get("Image") or ""),
            state=str(entry.get("State") or "running"),
            health=health_from_status(str(entry.get("Status") or "")),
        )


@dataclass(frozen=True, slots=True)
class Details:
    """What inspect said about a container; refreshed on a change and at least every minute."""

    restart_count: int
    started_at: float | None
    pid: int
    host_network: bool
    cgroup_parent: str
    inspected_at: float
    cgroup: CgroupLocation | None = None

    @classmethod
    def parse(cls, info: Mapping[str, Any], inspected_at: float) -> Details:
        """From an inspect reply; ``cgroup`` is left for the caller to locate (it takes I/O)."""
        state, host = info.get("State") or {}, info.get("HostConfig") or {}
        return cls(
            restart_count=int(info.get("RestartCount") or 0),
            started_at=parse_docker_time(str(state.get("StartedAt") or "")),
            pid=int(state.get("Pid") or 0),
            host_network=host.get("NetworkMode") == "host",
            cgroup_parent=str(host.get("CgroupParent") or ""),
            inspected_at=inspected_at,
        )


def container_metrics(
    listed: Listed,
    restart_count: int,
    figures: docker_stats.StatsFigures,
    problems: Problems,
    started_at: float | None = None,
) -> ContainerMetrics:
    """The wire message of one container; what the contract refuses is mended by the problems rule."""
    values = {
        "container_id": listed.container_id,
        "container_name": listed.name,
        "image": listed.image,
        "state": listed.state,
        "health": listed.health,
        "restart_count": restart_count,
        "started_at": datetime.fromtimestamp(started_at, UTC) if started_at is not None else None,
        "pids": figures.pids,
        "cpu_percent": figures.cpu_percent,
        "memory_percent": figures.memory_percent,
        "memory_usage_mb": figures.memory_used_bytes / MIB,
        "memory_limit_mb": figures.memory_limit_bytes / MIB,
        "network_rx_bytes": figures.network_rx_bytes,
        "network_tx_bytes": figures.network_tx_bytes,
        "block_read_bytes": figures.block_read_bytes,
        "block_write_bytes": figures.block_write_bytes,
    }
    return build(ContainerMetrics, values, problems, f"container {listed.name[:80]!r}")


def short_reason(exc: BaseException) -> str:
    """The first line of an exception's message (the Docker SDK's can run to pages), at most 300 characters."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:300]

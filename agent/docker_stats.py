"""The ``docker stats`` CLI's formulas, on the Engine API's stats objects (cgroup v1 and v2).

Transcribed from docker/cli ``cli/command/container/stats_helpers.go`` (unchanged from v20.10 to
v29): ``calculateCPUPercentUnix``, ``calculateMemUsageUnixNoCache``, ``calculateMemPercentUnixNoCache``,
``calculateNetwork`` and ``calculateBlockIO``. Pure functions; every input may be partial.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

Json = Mapping[str, Any]


class EngineStats(TypedDict, total=False):
    """The part of the Engine API's stats object the formulas read (``GET /containers/{id}/stats``).

    Both sources produce it: the Engine's reply as is, and ``CgroupReader.read`` from cgroup files.
    Every key may be missing (a stopped container's reply is all but empty).
    """

    read: str
    cpu_stats: Json
    precpu_stats: Json
    memory_stats: Json
    networks: Mapping[str, Json]
    blkio_stats: Json
    pids_stats: Json


def cpu_percent(current: Json, previous: Json) -> float:
    """CPU % between two ``cpu_stats`` objects: 100 means one full core.

    Each counter is converted to float before subtracting, as the CLI does (``system_cpu_usage``
    is often above 2**53). Non-positive deltas give 0.0.
    """
    cpu_delta = float(_usage(current)) - float(_usage(previous))
    system_delta = float(current.get("system_cpu_usage") or 0) - float(previous.get("system_cpu_usage") or 0)
    online = float(current.get("online_cpus") or 0)
    if online == 0.0:
        online = float(len((current.get("cpu_usage") or {}).get("percpu_usage") or []))
    if system_delta > 0.0 and cpu_delta > 0.0:
        return (cpu_delta / system_delta) * online * 100.0
    return 0.0


def _usage(cpu_stats: Json) -> int:
    return int((cpu_stats.get("cpu_usage") or {}).get("total_usage") or 0)


def cpu_usage_ns(cpu_stats: Json) -> int:
    """The container's cumulative CPU time in ns (0 if absent)."""
    return _usage(cpu_stats)


def memory_used_bytes(memory_stats: Json) -> float:
    """Memory usage without inactive page cache (v1 ``total_inactive_file``, v2 ``inactive_file``)."""
    usage = int(memory_stats.get("usage") or 0)
    stats = memory_stats.get("stats") or {}
    if "total_inactive_file" in stats and stats["total_inactive_file"] < usage:
        return float(usage - stats["total_inactive_file"])
    inactive = stats.get("inactive_file", 0)
    if inactive < usage:
        return float(usage - inactive)
    return float(usage)


def memory_limit_bytes(memory_stats: Json) -> float:
    """The limit the daemon reports (already clamped to host RAM for unlimited containers)."""
    return float(memory_stats.get("limit") or 0)


def memory_percent(used: float, limit: float) -> float:
    return used / limit * 100.0 if limit != 0 else 0.0


def network_bytes(networks: Json | None) -> tuple[int, int]:
    """(rx, tx) summed over every interface; ``networks`` is absent for host-network containers."""
    rx = tx = 0
    for iface in (networks or {}).values():
        rx += int(iface.get("rx_bytes") or 0)
        tx += int(iface.get("tx_bytes") or 0)
    return rx, tx


def block_io_bytes(blkio_stats: Json | None) -> tuple[int, int]:
    """(read, write) summed over every device from ``io_service_bytes_recursive`` (v1 Read/Write, v2 read/write)."""
    read = write = 0
    for entry in (blkio_stats or {}).get("io_service_bytes_recursive") or []:
        op = entry.get("op") or ""
        if op[:1] in ("r", "R"):
            read += int(entry.get("value") or 0)
        elif op[:1] in ("w", "W"):
            write += int(entry.get("value") or 0)
    return read, write


@dataclass(frozen=True, slots=True)
class StatsFigures:
    """The ``docker stats`` columns of one container, in raw units."""

    cpu_percent: float
    memory_used_bytes: float
    memory_limit_bytes: float
    memory_percent: float
    network_rx_bytes: int
    network_tx_bytes: int
    block_read_bytes: int
    block_write_bytes: int
    pids: int


def figures(stats: EngineStats, previous_cpu_stats: Json | None = None) -> StatsFigures:
    """All columns of one stats object.

    CPU is computed against ``previous_cpu_stats`` (the agent's own earlier sample) when given,
    otherwise against the object's ``precpu_stats`` as the CLI does.
    """
    cpu_stats = stats.get("cpu_stats") or {}
    previous = previous_cpu_stats if previous_cpu_stats is not None else (stats.get("precpu_stats") or {})
    memory_stats = stats.get("memory_stats") or {}
    used = memory_used_bytes(memory_stats)
    limit = memory_limit_bytes(memory_stats)
    rx, tx = network_bytes(stats.get("networks"))
    read, write = block_io_bytes(stats.get("blkio_stats"))
    return StatsFigures(
        cpu_percent=cpu_percent(cpu_stats, previous),
        memory_used_bytes=used,
        memory_limit_bytes=limit,
        memory_percent=memory_percent(used, limit),
        network_rx_bytes=rx,
        network_tx_bytes=tx,
        block_read_bytes=read,
        block_write_bytes=write,
        pids=int((stats.get("pids_stats") or {}).get("current") or 0),
    )


def has_sample(stats: EngineStats) -> bool:
    """False for the empty object the daemon sends for a stopped or restarting container."""
    read = str(stats.get("read") or "")
    return bool(read) and not read.startswith("0001-01-01")

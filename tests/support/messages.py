"""Valid wire messages for tests, with whatever fields a test wants to set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from contract import ContainerEvent, ContainerMetrics, ContainerMetricsBatch, NodeMetrics, NodeStatus

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)

AGENT = {
    "version": "0.1.0", "arch": "aarch64", "collect_seconds": 0.02, "rss_mb": 24.0,
    "cpu_percent": 0.3, "buffered": 0, "dropped": 0,
}  # fmt: skip


def node_metrics(node_id: str = "node-a", at: datetime = T0, cycle: int = 1, **fields: Any) -> NodeMetrics:
    values: dict[str, Any] = {
        "node_id": node_id, "timestamp": at, "cycle": cycle, "interval_seconds": 5.0,
        "cpu_percent": 12.5, "cpu_per_core": [10.0, 15.0], "cpu_count": 2, "load_1": 0.5,
        "memory_percent": 40.0, "memory_used_mb": 1500.0, "memory_total_mb": 3750.0,
        "disk_percent": 55.0, "disk_used_gb": 16.0, "disk_total_gb": 29.0,
        "network_bytes_sent": 1000, "network_bytes_recv": 2000, "temperature_c": 51.1,
        "under_voltage": False, "memory_cgroup_enabled": True, "agent": AGENT,
    }  # fmt: skip
    values.update(fields)
    return NodeMetrics.model_validate(values, strict=False)


def container(name: str = "web", **fields: Any) -> ContainerMetrics:
    values: dict[str, Any] = {
        "container_id": f"{name}-0123456789ab", "container_name": name, "image": "nginx:1.27",
        "cpu_percent": 3.5, "memory_percent": 1.0, "memory_usage_mb": 40.0, "memory_limit_mb": 3750.0,
        "network_rx_bytes": 10, "network_tx_bytes": 20, "block_read_bytes": 30, "block_write_bytes": 40,
        "pids": 3, "health": "healthy",
    }  # fmt: skip
    values.update(fields)
    return ContainerMetrics.model_validate(values)


def container_batch(
    node_id: str = "node-a", at: datetime = T0, cycle: int = 1, containers: list[ContainerMetrics] | None = None
) -> ContainerMetricsBatch:
    return ContainerMetricsBatch(
        node_id=node_id, timestamp=at, cycle=cycle, containers=containers if containers is not None else [container()]
    )


def status(
    node_id: str = "node-a", state: str = "online", at: datetime | None = T0, interval: float = 5.0
) -> NodeStatus:
    return NodeStatus.model_validate(
        {"node_id": node_id, "status": state, "agent_version": "0.1.0", "interval_seconds": interval, "timestamp": at},
        strict=False,
    )


def ticks(n: int, start: datetime = T0, every: float = 5.0) -> list[datetime]:
    return [start + timedelta(seconds=every * i) for i in range(n)]


def event(action: str, name: str = "web", node_id: str = "node-a", at: datetime = T0, **fields: Any) -> ContainerEvent:
    values: dict[str, Any] = {
        "node_id": node_id, "timestamp": at, "action": action, "container_id": f"{name}-0123456789ab",
        "container_name": name, "image": "nginx:1.27",
    }  # fmt: skip
    values.update(fields)
    return ContainerEvent.model_validate(values, strict=False)

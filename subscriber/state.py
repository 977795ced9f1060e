"""The live picture of the fleet: latest messages per node, last-seen time, online/offline/stale."""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, replace

from contract.models import ContainerMetricsBatch, NodeMetrics, NodeStatus

#: Used for staleness until a node has told us its interval.
DEFAULT_INTERVAL = 5.0


class Availability(enum.StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class NodeView:
    """What is known of one node; immutable, replaced on every update."""

    node_id: str
    metrics: NodeMetrics | None = None
    containers: ContainerMetricsBatch | None = None
    status: NodeStatus | None = None
    last_seen: float | None = None  # epoch seconds when anything was last received from it
    last_metrics: float | None = None  # epoch seconds when metrics were last received

    @property
    def interval(self) -> float:
        for source in (self.metrics, self.status):
            if source is not None and source.interval_seconds > 0:
                return source.interval_seconds
        return DEFAULT_INTERVAL

    def availability(self, now: float, stale_after: float) -> Availability:
        """offline from the retained status or last will; stale after ``stale_after`` silent intervals."""
        if self.status is not None and self.status.status == "offline":
            metrics_after_offline = (
                self.metrics is not None
                and self.status.timestamp is not None
                and self.metrics.timestamp > self.status.timestamp
            )
            if not metrics_after_offline:
                return Availability.OFFLINE
        if self.last_metrics is None or now - self.last_metrics > stale_after * self.interval:
            return Availability.STALE
        return Availability.ONLINE


class FleetState:
    """Thread-safe map of node id to NodeView; the worker writes, the API and /metrics read."""

    def __init__(self, stale_after: float) -> None:
        self.stale_after = stale_after
        self._nodes: dict[str, NodeView] = {}
        self._lock = threading.Lock()

    def _update(self, node_id: str, received_at: float | None, **changes: object) -> None:
        with self._lock:
            view = self._nodes.get(node_id) or NodeView(node_id)
            if received_at is not None:
                changes["last_seen"] = max(received_at, view.last_seen or 0.0)
            self._nodes[node_id] = replace(view, **changes)  # type: ignore[arg-type]

    def apply_node_metrics(self, message: NodeMetrics, received_at: float | None = None) -> None:
        now = received_at if received_at is not None else time.time()
        current = self.get(message.node_id)
        if current is not None and current.metrics is not None and current.metrics.timestamp > message.timestamp:
            self._update(message.node_id, now)  # a replayed older sample: history only
            return
        self._update(message.node_id, now, metrics=message, last_metrics=now)

    def apply_container_metrics(self, message: ContainerMetricsBatch, received_at: float | None = None) -> None:
        now = received_at if received_at is not None else time.time()
        current = self.get(message.node_id)
        if current is not None and current.containers is not None and current.containers.timestamp > message.timestamp:
            self._update(message.node_id, now)
            return
        self._update(message.node_id, now, containers=message)

    def apply_status(self, message: NodeStatus, received_at: float | None = None) -> None:
        self._update(message.node_id, received_at if received_at is not None else time.time(), status=message)

    def restore(self, view: NodeView) -> None:
        """Put back what the store remembered from before a restart (never newer than live data)."""
        with self._lock:
            self._nodes.setdefault(view.node_id, view)

    def get(self, node_id: str) -> NodeView | None:
        with self._lock:
            return self._nodes.get(node_id)

    def snapshot(self) -> list[NodeView]:
        with self._lock:
            return sorted(self._nodes.values(), key=lambda v: v.node_id)

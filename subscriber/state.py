"""The live picture of the fleet: latest messages per node, last-seen time, online/offline/stale.

Clocks lie (a Pi has no real-time clock; NTP steps it at boot), so the live view does not trust a
node's timestamps blindly. An older sample never replaces a newer one, unless the newer one cannot
hold the view: its time was more than ``max_clock_skew`` seconds from when it arrived, or the node
has gone stale since it arrived. A wrong clock, ahead or behind, therefore holds the live view for
at most the stale period, and a redelivered or replayed older sample never hides a fresh one.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime

from contract.models import ContainerMetricsBatch, NodeMetrics, NodeStatus

#: Used for staleness until a node has told us its interval.
DEFAULT_INTERVAL = 5.0
#: A sample further than this from the moment it arrived carries a time that cannot be trusted.
DEFAULT_MAX_CLOCK_SKEW = 300.0


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
    last_metrics: float | None = None  # epoch seconds when ``metrics`` was received
    last_containers: float | None = None  # epoch seconds when ``containers`` was received

    @property
    def clock_skew(self) -> float | None:
        """Seconds the node's clock was ahead (negative: behind) when its current metrics arrived.

        Includes the time the sample spent buffered on the way (an outbox replay reads as behind).
        """
        if self.metrics is None or self.last_metrics is None:
            return None
        return self.metrics.timestamp.timestamp() - self.last_metrics

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

    def __init__(self, stale_after: float, max_clock_skew: float = DEFAULT_MAX_CLOCK_SKEW) -> None:
        self.stale_after = stale_after
        self.max_clock_skew = max_clock_skew
        self._nodes: dict[str, NodeView] = {}
        self._lock = threading.Lock()

    def _update(self, node_id: str, received_at: float | None, **changes: object) -> None:
        with self._lock:
            view = self._nodes.get(node_id) or NodeView(node_id)
            if received_at is not None:
                changes["last_seen"] = max(received_at, view.last_seen or 0.0)
            self._nodes[node_id] = replace(view, **changes)  # type: ignore[arg-type]

    def _holds(self, view: NodeView, held: datetime, held_received: float | None, new: datetime, now: float) -> bool:
        """True when the live sample stamped ``held`` keeps the older ``new`` out of the live view."""
        if held_received is None or new >= held:
            return False
        trusted = abs(held.timestamp() - held_received) <= self.max_clock_skew
        fresh = now - held_received <= self.stale_after * view.interval
        return trusted and fresh

    def apply_node_metrics(self, message: NodeMetrics, received_at: float | None = None) -> bool:
        """Make ``message`` the node's live metrics unless a newer trusted one holds (see module doc)."""
        now = received_at if received_at is not None else time.time()
        current = self.get(message.node_id)
        if (
            current is not None
            and current.metrics is not None
            and self._holds(current, current.metrics.timestamp, current.last_metrics, message.timestamp, now)
        ):
            self._update(message.node_id, now)  # an older sample (replayed, redelivered): history only
            return False
        self._update(message.node_id, now, metrics=message, last_metrics=now)
        return True

    def apply_container_metrics(self, message: ContainerMetricsBatch, received_at: float | None = None) -> bool:
        """Make ``message`` the node's live containers unless a newer trusted batch holds."""
        now = received_at if received_at is not None else time.time()
        current = self.get(message.node_id)
        if (
            current is not None
            and current.containers is not None
            and self._holds(current, current.containers.timestamp, current.last_containers, message.timestamp, now)
        ):
            self._update(message.node_id, now)
            return False
        self._update(message.node_id, now, containers=message, last_containers=now)
        return True

    def apply_status(self, message: NodeStatus, received_at: float | None = None) -> None:
        self._update(message.node_id, received_at if received_at is not None else time.time(), status=message)

    def merge(self, view: NodeView) -> None:
        """Fold in a view another replica stored, by the same rules as a message received here."""
        if view.metrics is not None and view.last_metrics is not None:
            self.apply_node_metrics(view.metrics, view.last_metrics)
        if view.containers is not None and view.last_containers is not None:
            self.apply_container_metrics(view.containers, view.last_containers)
        if view.status is not None and (current := self.get(view.node_id)) is not None and current.status is None:
            self._update(view.node_id, None, status=view.status)  # statuses reach every replica themselves
        if view.last_seen is not None:
            self._update(view.node_id, view.last_seen)

    def restore(self, view: NodeView) -> None:
        """Put back what the store remembered from before a restart (never newer than live data)."""
        with self._lock:
            self._nodes.setdefault(view.node_id, view)

    def forget(self, seen_before: float) -> list[str]:
        """Drop nodes from which nothing arrived since ``seen_before`` (epoch seconds); their ids."""
        with self._lock:
            gone = [n for n, v in self._nodes.items() if v.last_seen is not None and v.last_seen < seen_before]
            for node_id in gone:
                del self._nodes[node_id]
            return gone

    def get(self, node_id: str) -> NodeView | None:
        with self._lock:
            return self._nodes.get(node_id)

    def snapshot(self) -> list[NodeView]:
        with self._lock:
            return sorted(self._nodes.values(), key=lambda v: v.node_id)

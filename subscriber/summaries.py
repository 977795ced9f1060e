"""One line per node for the fleet overview, from the live state and the last day of the tiers."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from contract.models import ContainerMetricsBatch, NodeMetrics, NodeStatus
from subscriber.state import FleetState, NodeView
from subscriber.store import HistoryStore, RecentHealth

#: How long the last day's figures (read from the tiers) are reused before they are read again.
RECENT_CACHE_SECONDS = 30.0

Status = Literal["online", "offline", "stale"]


class NodeSummary(BaseModel):
    """One line of the fleet overview."""

    node_id: str
    status: Status
    status_since: datetime | None = Field(
        description="online: when the agent announced itself; offline or stale: when the node was last heard."
    )
    last_seen: datetime | None = Field(description="When anything was last received from the node (UTC).")
    agent_version: str | None
    interval_seconds: float
    cpu_percent: float | None
    cpu_count: int | None
    memory_percent: float | None
    memory_used_mb: float | None
    memory_total_mb: float | None
    disk_percent: float | None
    temperature_c: float | None
    under_voltage: bool | None
    under_voltage_24h: bool | None = Field(description="Under-voltage seen in the last 24 h (tiers: a minute behind).")
    memory_cgroup_enabled: bool | None
    containers: int | None = Field(description="Containers in the latest batch.")
    containers_running: int | None
    containers_unhealthy: int | None
    containers_restarting: int | None
    containers_error: str | None = Field(description="Why the latest container list is empty or incomplete.")
    agent_rss_mb: float | None
    agent_cpu_percent: float | None
    cycles_lost_24h: int | None = Field(description="Cycles published but never received in the last 24 h.")
    clock_skew_seconds: float | None = Field(
        description="How far the node's clock was ahead (negative: behind) when its latest metrics arrived."
    )


class NodeDetail(BaseModel):
    """Everything known of one node right now."""

    node_id: str
    status: Status
    last_seen: datetime | None
    metrics: NodeMetrics | None
    containers: ContainerMetricsBatch | None
    node_status: NodeStatus | None = Field(description="The node's last status message (retained or last will).")
    clock_skew_seconds: float | None = Field(description="As in the node list.")


def epoch(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, tz=UTC) if value is not None else None


def status_since(view: NodeView, status: Status) -> datetime | None:
    if status == "online":
        announced = view.status.timestamp if view.status and view.status.status == "online" else None
        return announced or epoch(view.last_metrics)
    return epoch(view.last_metrics if view.last_metrics is not None else view.last_seen)


def summarize(view: NodeView, status: Status, recent: RecentHealth | None) -> NodeSummary:
    m, batch = view.metrics, view.containers
    containers = batch.containers if batch else None
    return NodeSummary(
        node_id=view.node_id,
        status=status,
        status_since=status_since(view, status),
        last_seen=epoch(view.last_seen),
        agent_version=m.agent.version if m else (view.status.agent_version if view.status else None),
        interval_seconds=view.interval,
        cpu_percent=m.cpu_percent if m else None,
        cpu_count=m.cpu_count if m else None,
        memory_percent=m.memory_percent if m else None,
        memory_used_mb=m.memory_used_mb if m else None,
        memory_total_mb=m.memory_total_mb if m else None,
        disk_percent=m.disk_percent if m else None,
        temperature_c=m.temperature_c if m else None,
        under_voltage=m.under_voltage if m else None,
        under_voltage_24h=(recent.under_voltage or bool(m and m.under_voltage)) if recent else None,
        memory_cgroup_enabled=m.memory_cgroup_enabled if m else None,
        containers=len(containers) if containers is not None else None,
        containers_running=sum(c.state == "running" for c in containers) if containers is not None else None,
        containers_unhealthy=sum(c.health == "unhealthy" for c in containers) if containers is not None else None,
        containers_restarting=sum(c.state == "restarting" for c in containers) if containers is not None else None,
        containers_error=batch.error if batch else None,
        agent_rss_mb=m.agent.rss_mb if m else None,
        agent_cpu_percent=m.agent.cpu_percent if m else None,
        cycles_lost_24h=recent.cycles_lost if recent else None,
        clock_skew_seconds=view.clock_skew,
    )


class FleetSummaries:
    """Builds the overview; the last day's figures are read from the store at most every 30 s."""

    def __init__(self, state: FleetState, store: HistoryStore | None) -> None:
        self.state = state
        self.store = store
        self._recent: dict[str, RecentHealth] = {}
        self._recent_at = -RECENT_CACHE_SECONDS
        self._lock = threading.Lock()
        # node -> (view, status, recent, JSON): views are immutable, so an unchanged node is one
        # identity check away from its JSON, and live streams can look often at little cost.
        self._json: dict[str, tuple[NodeView, Status, RecentHealth | None, str]] = {}
        self._details: dict[str, tuple[NodeView, Status, str]] = {}

    def _recent_health(self) -> dict[str, RecentHealth]:
        if self.store is None:
            return {}
        with self._lock:
            if time.monotonic() - self._recent_at >= RECENT_CACHE_SECONDS:
                self._recent = self.store.recent_health(datetime.now(UTC) - timedelta(days=1))
                self._recent_at = time.monotonic()
            return self._recent

    def status(self, view: NodeView) -> Status:
        return view.availability(time.time(), self.state.stale_after).value

    def _lines(self) -> list[tuple[NodeView, Status, RecentHealth | None]]:
        """Each node with its status and last day (none without a store; nothing yet: zeros)."""
        recent = self._recent_health()
        empty = RecentHealth(0, False) if self.store is not None else None
        return [(v, self.status(v), recent.get(v.node_id, empty)) for v in self.state.snapshot()]

    def all(self) -> list[NodeSummary]:
        return [summarize(*line) for line in self._lines()]

    def all_json(self) -> dict[str, str]:
        """Every node's summary as JSON, re-serialised only for nodes whose view or status changed."""
        lines = self._lines()
        current: dict[str, str] = {}
        with self._lock:
            cache, self._json = self._json, {}
            for view, status, health in lines:
                hit = cache.get(view.node_id)
                if hit is not None and hit[0] is view and hit[1] == status and hit[2] is health:
                    body = hit[3]
                else:
                    body = summarize(view, status, health).model_dump_json()
                self._json[view.node_id] = (view, status, health, body)
                current[view.node_id] = body
        return current

    def detail(self, view: NodeView) -> NodeDetail:
        return NodeDetail(
            node_id=view.node_id,
            status=self.status(view),
            last_seen=epoch(view.last_seen),
            metrics=view.metrics,
            containers=view.containers,
            node_status=view.status,
            clock_skew_seconds=view.clock_skew,
        )

    def detail_json(self, node_id: str) -> str | None:
        """One node's detail as JSON (None once unknown), re-serialised only when it changed."""
        view = self.state.get(node_id)
        with self._lock:
            if view is None:
                self._details.pop(node_id, None)
                return None
            status = self.status(view)
            hit = self._details.get(node_id)
            if hit is None or hit[0] is not view or hit[1] != status:
                hit = (view, status, self.detail(view).model_dump_json())
                self._details[node_id] = hit
            return hit[2]

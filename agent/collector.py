"""MetricsCollector: one collection cycle, node and containers, as wire messages."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from datetime import datetime

from pydantic import ValidationError

from agent.container_collector import ContainerCollector
from agent.host_collector import HostCollector
from agent.problems import build
from agent.self_stats import SelfMonitor
from common import __version__
from contract.models import AgentStats, ContainerMetricsBatch, NodeMetrics, utc_now

OutboxState = Callable[[], tuple[int, int]]


class MetricsCollector:
    """Collects node and container metrics.

    ``outbox_state`` reports (buffered, dropped) of the publisher so the node message can say
    what the broker has not acknowledged yet.
    """

    def __init__(
        self,
        node_id: str,
        host: HostCollector,
        containers: ContainerCollector,
        interval: float,
        outbox_state: OutboxState = lambda: (0, 0),
    ) -> None:
        self.node_id = node_id
        self.host = host
        self.containers = containers
        self.interval = interval
        self.outbox_state = outbox_state
        self._self = SelfMonitor()
        self._arch = platform.machine()
        self.cycle = 0
        self.problems = host.problems  # the container collector reports to the same (see build_collector)

    def prime(self) -> None:
        """Take the baselines that the first published figures average from."""
        self.containers.prime()
        self.host.prime()
        self._self.sample()

    def collect_node_metrics(
        self, timestamp: datetime | None = None, cycle: int = 0, cycle_started: float | None = None
    ) -> NodeMetrics:
        """Node figures over the interval since the previous call (or ``prime``).

        ``cycle_started`` (monotonic) is when the whole cycle began, for ``agent.collect_seconds``.
        """
        started = cycle_started if cycle_started is not None else time.monotonic()
        fields = self.host.collect()
        rss_mb, cpu_percent = self._self.sample()
        buffered, dropped = self.outbox_state()
        agent = AgentStats(
            version=__version__,
            arch=self._arch,
            collect_seconds=time.monotonic() - started,
            rss_mb=rss_mb,
            cpu_percent=cpu_percent,
            buffered=buffered,
            dropped=dropped,
        )
        values = {
            **fields,
            "node_id": self.node_id,
            "timestamp": timestamp or utc_now(),
            "cycle": cycle,
            "interval_seconds": float(self.interval),
            "agent": agent,
        }
        node = build(NodeMetrics, values, self.problems, "node")
        # Counted last, so that what building this very message mended is in it.
        problems = dict(sorted(self.problems.snapshot().items())[:64])
        return node.model_copy(update={"agent": agent.model_copy(update={"problems": problems})})

    def collect_container_metrics(self, timestamp: datetime | None = None, cycle: int = 0) -> ContainerMetricsBatch:
        """Every running container's figures; ``error`` says why the list is empty or partial."""
        try:
            containers, error = self.containers.collect()
        except Exception as exc:  # a bug or a fault below the collector: this cycle has no containers
            self.problems.count("containers_unreadable", f"{type(exc).__name__}: {exc}", with_traceback=True)
            containers, error = [], f"container metrics failed: {type(exc).__name__}: {exc}"
        values = {"node_id": self.node_id, "timestamp": timestamp or utc_now(), "cycle": cycle, "error": error}
        try:
            return build(ContainerMetricsBatch, {**values, "containers": containers}, self.problems, "containers")
        except ValidationError as exc:  # e.g. more containers than a message may carry: say so, publish none
            self.problems.count("containers_skipped", str(exc).splitlines()[0])
            refused = f"container metrics refused by the contract: {str(exc).splitlines()[0]}"
            return build(ContainerMetricsBatch, {**values, "containers": [], "error": refused}, self.problems, "")

    def collect(self) -> tuple[NodeMetrics | None, ContainerMetricsBatch]:
        """One cycle: both messages with the same timestamp and cycle; the node message times the cycle.

        The node message is None when a figure it cannot go without (CPU, memory) could not be read.
        """
        started = time.monotonic()
        self.cycle += 1
        timestamp = utc_now()
        batch = self.collect_container_metrics(timestamp, self.cycle)
        try:
            node = self.collect_node_metrics(timestamp, self.cycle, cycle_started=started)
        except ValidationError as exc:
            self.problems.count("node_skipped", str(exc).splitlines()[0])
            node = None
        return node, batch

"""Prometheus exposition: the fleet's latest figures (base units) and the subscriber's own counters."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from contract.models import ContainerMetrics, NodeMetrics
from contract.topics import TopicKind
from contract.units import GIB, MIB
from subscriber.decoding import Reason
from subscriber.state import Availability, FleetState, NodeView


class SubscriberCounters:
    """The subscriber's own health: what it received, rejected, stored and failed to store."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "otto_subscriber_messages_received", "Messages received, by topic kind.", ["kind"], registry=registry
        )
        self.rejected = Counter(
            "otto_subscriber_messages_rejected", "Messages rejected, by reason.", ["reason"], registry=registry
        )
        self.rows_stored = Counter("otto_subscriber_rows_stored", "History rows written.", ["table"], registry=registry)
        self.store_errors = Counter("otto_subscriber_store_errors", "Failed history writes.", registry=registry)
        self.worker_errors = Counter(
            "otto_subscriber_worker_errors", "Exceptions caught in the worker's loop (bugs).", registry=registry
        )
        self.handler_errors = Counter(
            "otto_subscriber_handler_errors", "Exceptions raised by registered handlers.", registry=registry
        )
        self.history_adjusted = Counter(
            "otto_subscriber_history_adjusted",
            "Samples whose time history could not take as stamped: clock_ahead (stored at arrival time), "
            "older_than_retention (not stored).",
            ["reason"],
            registry=registry,
        )
        self.rows_pruned = Counter(
            "otto_subscriber_rows_pruned", "History rows removed by retention.", registry=registry
        )
        self.rollup_buckets = Counter(
            "otto_subscriber_rollup_buckets",
            "Downsampled buckets computed (each covers every dirty node).",
            registry=registry,
        )
        self.rollup_seconds = Counter(
            "otto_subscriber_rollup_seconds", "Time spent computing downsampled buckets.", registry=registry
        )
        self.queue_depth = Gauge(
            "otto_subscriber_queue_depth", "Messages received but not yet handled.", registry=registry
        )
        self.mqtt_connected = Gauge(
            "otto_subscriber_mqtt_connected", "1 while connected to the broker.", registry=registry
        )
        for kind in TopicKind:
            self.received.labels(kind.name.lower())
        for reason in Reason:
            self.rejected.labels(reason.value)
        for table in ("node_samples", "container_samples", "container_events"):
            self.rows_stored.labels(table)
        for adjustment in ("clock_ahead", "older_than_retention"):
            self.history_adjusted.labels(adjustment)


def _scaled(value: float | None, factor: float) -> float | None:
    return value * factor if value is not None else None


M = TypeVar("M")


@dataclass(frozen=True)
class _Figure(Generic[M]):
    """One exported series: its name, help, how to read it from a message, gauge or counter."""

    name: str
    help: str
    value: Callable[[M], float | int | bool | None]
    counter: bool = False

    def family(self, labels: list[str]) -> GaugeMetricFamily | CounterMetricFamily:
        return (CounterMetricFamily if self.counter else GaugeMetricFamily)(self.name, self.help, labels=labels)


NODE_FIGURES: list[_Figure[NodeMetrics]] = [
    _Figure("otto_node_cpu_percent", "Busy CPU over the last interval, percent of all cores.", lambda m: m.cpu_percent),
    _Figure("otto_node_cpu_count", "Online logical CPUs.", lambda m: m.cpu_count),
    _Figure(
        "otto_node_cpu_frequency_hertz",
        "Mean requested CPU clock.",
        lambda m: _scaled(m.cpu_freq_mhz, 1e6),
    ),
    _Figure("otto_node_load1", "1-minute load average.", lambda m: m.load_1),
    _Figure("otto_node_load5", "5-minute load average.", lambda m: m.load_5),
    _Figure("otto_node_load15", "15-minute load average.", lambda m: m.load_15),
    _Figure("otto_node_uptime_seconds", "Host uptime.", lambda m: m.uptime_seconds),
    _Figure("otto_node_memory_used_bytes", "MemTotal - MemAvailable.", lambda m: m.memory_used_mb * MIB),
    _Figure("otto_node_memory_total_bytes", "MemTotal.", lambda m: m.memory_total_mb * MIB),
    _Figure("otto_node_memory_percent", "Memory used, percent.", lambda m: m.memory_percent),
    _Figure("otto_node_swap_used_bytes", "Swap used.", lambda m: _scaled(m.swap_used_mb, MIB)),
    _Figure("otto_node_swap_total_bytes", "Swap size.", lambda m: _scaled(m.swap_total_mb, MIB)),
    _Figure("otto_node_disk_used_bytes", "Root filesystem used.", lambda m: _scaled(m.disk_used_gb, GIB)),
    _Figure("otto_node_disk_total_bytes", "Root filesystem size.", lambda m: _scaled(m.disk_total_gb, GIB)),
    _Figure("otto_node_disk_percent", "Root filesystem used, percent (as df).", lambda m: m.disk_percent),
    _Figure(
        "otto_node_network_transmit_bytes",
        "Bytes sent over physical interfaces since boot.",
        lambda m: m.network_bytes_sent,
        counter=True,
    ),
    _Figure(
        "otto_node_network_receive_bytes",
        "Bytes received over physical interfaces since boot.",
        lambda m: m.network_bytes_recv,
        counter=True,
    ),
    _Figure("otto_node_temperature_celsius", "SoC temperature.", lambda m: m.temperature_c),
    _Figure("otto_node_under_voltage", "1 while the Pi reports under-voltage.", lambda m: m.under_voltage),
    _Figure(
        "otto_node_memory_cgroup_enabled",
        "0 when container memory cannot be measured.",
        lambda m: m.memory_cgroup_enabled,
    ),
    _Figure("otto_agent_collect_seconds", "Wall time of the agent's last cycle.", lambda m: m.agent.collect_seconds),
    _Figure("otto_agent_rss_bytes", "Resident memory of the agent.", lambda m: m.agent.rss_mb * MIB),
    _Figure("otto_agent_cpu_percent", "Agent CPU, percent of one core.", lambda m: m.agent.cpu_percent),
    _Figure(
        "otto_agent_buffered_messages", "Messages the broker has not acknowledged yet.", lambda m: m.agent.buffered
    ),
    _Figure(
        "otto_agent_dropped_messages", "Messages dropped by a full outbox.", lambda m: m.agent.dropped, counter=True
    ),
]

CONTAINER_FIGURES: list[_Figure[ContainerMetrics]] = [
    _Figure("otto_container_cpu_percent", "CPU over the interval, percent of one core.", lambda c: c.cpu_percent),
    _Figure(
        "otto_container_memory_usage_bytes", "Memory minus inactive page cache.", lambda c: c.memory_usage_mb * MIB
    ),
    _Figure("otto_container_memory_limit_bytes", "Memory limit (host RAM if none).", lambda c: c.memory_limit_mb * MIB),
    _Figure("otto_container_memory_percent", "Memory usage / limit, percent.", lambda c: c.memory_percent),
    _Figure("otto_container_network_receive_bytes", "Bytes received.", lambda c: c.network_rx_bytes, counter=True),
    _Figure("otto_container_network_transmit_bytes", "Bytes sent.", lambda c: c.network_tx_bytes, counter=True),
    _Figure(
        "otto_container_block_read_bytes", "Bytes read from block devices.", lambda c: c.block_read_bytes, counter=True
    ),
    _Figure(
        "otto_container_block_write_bytes",
        "Bytes written to block devices.",
        lambda c: c.block_write_bytes,
        counter=True,
    ),
    _Figure("otto_container_pids", "Processes and threads.", lambda c: c.pids),
    _Figure("otto_container_restarts", "Restarts by the restart policy.", lambda c: c.restart_count, counter=True),
]


class FleetCollector(Collector):
    """Renders FleetState at scrape time; one series per node (and per container).

    A node's figures and its containers' are exported while it is online and for ``grace``
    seconds after its metrics last arrived, then dropped rather than exported frozen forever;
    ``otto_node_up``, ``otto_node_status`` and ``otto_node_last_seen_timestamp_seconds`` stay for
    as long as the node is known, so that an alert on ``otto_node_up == 0`` keeps firing. Two
    containers of one batch with the same name (Docker forbids it; a broken or hostile node may
    not) would make the exposition invalid: the first keeps the name, the others are left out.
    """

    def __init__(self, state: FleetState | Callable[[], FleetState], grace: float = 300.0) -> None:
        """``state`` may be a function, called at every scrape (replicas read the database's)."""
        self._state = state
        self.grace = grace

    @property
    def state(self) -> FleetState:
        return self._state if isinstance(self._state, FleetState) else self._state()

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        state = self.state
        every = state.snapshot()
        current = [v for v in every if self._current(v, now, state.stale_after)]
        yield from self._availability(every, now, state.stale_after)
        yield from self._node_figures(current)
        yield from self._container_figures(current)

    def _availability(self, every: list[NodeView], now: float, stale_after: float) -> Iterator[Metric]:
        up = GaugeMetricFamily("otto_node_up", "1 if the node is online (not offline, not stale).", labels=["node"])
        status = GaugeMetricFamily("otto_node_status", "1 for the node's current status.", labels=["node", "status"])
        seen = GaugeMetricFamily(
            "otto_node_last_seen_timestamp_seconds", "When anything was last received from the node.", labels=["node"]
        )
        for view in every:
            availability = view.availability(now, stale_after)
            up.add_metric([view.node_id], 1.0 if availability is Availability.ONLINE else 0.0)
            for option in Availability:
                status.add_metric([view.node_id, option.value], 1.0 if option is availability else 0.0)
            if view.last_seen is not None:
                seen.add_metric([view.node_id], view.last_seen)
        yield from (up, status, seen)

    def _node_figures(self, views: list[NodeView]) -> Iterator[Metric]:
        skew = GaugeMetricFamily(
            "otto_node_clock_skew_seconds",
            "How far the node's clock was ahead (negative: behind) when its latest metrics arrived.",
            labels=["node"],
        )
        for view in views:
            if view.clock_skew is not None:
                skew.add_metric([view.node_id], view.clock_skew)
        yield skew

        with_metrics = [v for v in views if v.metrics is not None]
        for figure in NODE_FIGURES:
            family = figure.family(["node"])
            for view in with_metrics:
                assert view.metrics is not None
                value = figure.value(view.metrics)
                if value is not None:
                    family.add_metric([view.node_id], float(value))
            yield family
        cores = GaugeMetricFamily("otto_node_cpu_core_percent", "Busy CPU per core.", labels=["node", "core"])
        info = GaugeMetricFamily(
            "otto_agent_info", "Agent version and architecture.", labels=["node", "version", "arch"]
        )
        for view in with_metrics:
            assert view.metrics is not None
            for core, percent in enumerate(view.metrics.cpu_per_core):
                cores.add_metric([view.node_id, str(core)], percent)
            info.add_metric([view.node_id, view.metrics.agent.version, view.metrics.agent.arch], 1.0)
        yield from (cores, info)

    def _container_figures(self, views: list[NodeView]) -> Iterator[Metric]:
        labels = ["node", "container", "image"]
        families = [(figure.family(labels), figure.value) for figure in CONTAINER_FIGURES]
        health = GaugeMetricFamily(
            "otto_container_health_status", "1 for the container's health.", labels=[*labels, "status"]
        )
        for view in views:
            named: set[str] = set()
            for container in view.containers.containers if view.containers else []:
                if container.container_name in named:
                    continue
                named.add(container.container_name)
                key = [view.node_id, container.container_name, container.image]
                for family, getter in families:
                    value = getter(container)
                    if value is not None:
                        family.add_metric(key, float(value))
                if container.health is not None:
                    health.add_metric([*key, container.health], 1.0)
        yield from (family for family, _ in families)
        yield health

    def _current(self, view: NodeView, now: float, stale_after: float) -> bool:
        if view.availability(now, stale_after) is Availability.ONLINE:
            return True
        received = max(view.last_metrics or 0.0, view.last_containers or 0.0)
        return now - received <= self.grace

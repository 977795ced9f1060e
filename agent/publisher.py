"""MetricsPublisher: the fixed-rate loop that collects and hands messages to the MQTT link."""

from __future__ import annotations

import logging
import threading
import time

from agent.collector import MetricsCollector
from agent.heartbeat import Heartbeat
from agent.mqtt_link import MqttLink
from common.cli import RateLimitedLog
from contract.models import to_payload
from contract.topics import container_metrics_topic, node_metrics_topic

log = logging.getLogger(__name__)

#: SIGTERM to exit: the whole shutdown (last cycle, flush, offline status) fits in this.
SHUTDOWN_BUDGET = 4.5


class MetricsPublisher:
    """Publishes metrics every ``interval`` seconds on a fixed grid (collection time does not drift it)."""

    def __init__(
        self,
        collector: MetricsCollector,
        link: MqttLink,
        interval: float,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        self.collector = collector
        self.link = link
        self.interval = interval
        self.heartbeat = heartbeat
        self._stop = threading.Event()
        self._stop_requested_at: float | None = None
        self._late = RateLimitedLog(log, period=300.0)

    def start(self) -> None:
        """Run until ``stop()``: connect, prime, then collect and publish on every tick."""
        self.link.start()
        self.collector.prime()
        self._beat()
        node_topic = node_metrics_topic(self.collector.node_id)
        containers_topic = container_metrics_topic(self.collector.node_id)
        next_tick = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, next_tick - time.monotonic())):
            node, batch = self.collector.collect()
            self.link.publish(node_topic, to_payload(node))
            self.link.publish(containers_topic, to_payload(batch))
            self._beat()
            next_tick += self.interval
            late = time.monotonic() - next_tick
            if late >= 0:
                missed = int(late // self.interval) + 1
                self._late.warning(
                    "late", "collection took longer than the %gs interval; skipped %d tick(s)", self.interval, missed
                )
                next_tick += missed * self.interval
        spent = time.monotonic() - (self._stop_requested_at or time.monotonic())
        self.link.close(timeout=max(0.5, SHUTDOWN_BUDGET - spent))
        self.collector.containers.close()

    def stop(self) -> None:
        """Ask the loop to finish; safe from a signal handler."""
        if self._stop_requested_at is None:
            self._stop_requested_at = time.monotonic()
        self._stop.set()

    def _beat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.beat()

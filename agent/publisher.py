"""MetricsPublisher: the fixed-rate loop that collects and hands messages to the MQTT link."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

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

    def start(self, on_stopping: Callable[[], None] = lambda: None) -> None:
        """Run until ``stop()``: connect, prime, then collect and publish on every tick.

        ``on_stopping`` is called when the loop ends, before the link is closed on purpose.
        """
        self.link.start()
        self.collector.prime()
        self._beat()
        node_topic = node_metrics_topic(self.collector.node_id)
        containers_topic = container_metrics_topic(self.collector.node_id)
        next_tick = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, next_tick - time.monotonic())):
            try:
                node, batch = self.collector.collect()
                if node is not None:
                    self.link.publish(node_topic, to_payload(node))
                self.link.publish(containers_topic, to_payload(batch))
            except Exception as exc:  # a bug: this cycle is lost, the next one runs on schedule
                self.collector.problems.count("cycle_failed", f"{type(exc).__name__}: {exc}", with_traceback=True)
            self._beat()
            next_tick += self.interval
            late = time.monotonic() - next_tick
            if late >= 0:
                missed = int(late // self.interval) + 1
                self._late.warning(
                    "late", "collection took longer than the %gs interval; skipped %d tick(s)", self.interval, missed
                )
                next_tick += missed * self.interval
        on_stopping()
        spent = time.monotonic() - (self._stop_requested_at or time.monotonic())
        self.link.close(timeout=max(0.5, SHUTDOWN_BUDGET - spent))
        self.collector.containers.close()

    def stop(self) -> None:
        """Ask the loop to finish; safe from a signal handler."""
        if self._stop_requested_at is None:
            self._stop_requested_at = time.monotonic()
        self._stop.set()

    def _beat(self) -> None:
        # The healthcheck's heartbeat stands for both loops: collection (here) and the MQTT sender.
        if self.heartbeat is not None and self.link.sender_alive:
            self.heartbeat.beat()

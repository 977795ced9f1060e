"""AlertService: runs the engine on its own thread, records alerts and hands them to the notifier.

Ingestion only queues the events each commit stored for the first time (``submit``), so neither
the rules, the alert store nor a slow notification URL can slow it. Every ``tick`` seconds the
engine also looks at the live fleet (offline, thresholds, time passing). A restart reloads the
active alerts, which are therefore neither fired again nor forgotten.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge

from common.cli import RateLimitedLog
from contract.models import ContainerEvent
from subscriber.alerts.engine import RULES, AlertEngine, Transition
from subscriber.alerts.message import compose
from subscriber.alerts.notify import Notifier
from subscriber.alerts.store import SqliteAlertStore
from subscriber.state import FleetState

log = logging.getLogger(__name__)

#: Resolved alerts and finished deliveries are kept this long.
KEEP = timedelta(days=90)
PRUNE_EVERY = 3600.0
_TICK = object()  # the wait for an event ended: time to look at the fleet
ACTIONS = ("start", "die", "oom", "restart", "health_status", "pause", "unpause", "destroy", "gap")


class AlertCounters:
    """The alerting side in Prometheus."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "otto_subscriber_container_events", "Container events received (new ones), by action.", ["action"],
            registry=registry,
        )  # fmt: skip
        self.fired = Counter("otto_alerts_fired", "Alerts that started, by rule.", ["rule"], registry=registry)
        self.active = Gauge("otto_alerts_active", "Alerts active now, by rule.", ["rule"], registry=registry)
        self.notifications = Counter(
            "otto_notifications",
            "Notification deliveries by outcome: delivered, retried (an attempt failed), failed (gave up), muted.",
            ["outcome"],
            registry=registry,
        )
        for action in ACTIONS:
            self.events.labels(action)
        for rule in RULES:
            self.fired.labels(rule)
            self.active.labels(rule).set(0)
        for outcome in ("delivered", "retried", "failed", "muted"):
            self.notifications.labels(outcome)


class AlertService:
    """See the module docstring."""

    def __init__(
        self,
        engine: AlertEngine,
        store: SqliteAlertStore,
        notifier: Notifier | None,
        state: FleetState,
        counters: AlertCounters,
        *,
        public_url: str,
        tick: float = 1.0,
        certificate_days: Callable[[], float | None] = lambda: None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.notifier = notifier
        self.state = state
        self.counters = counters
        self.public_url = public_url
        self.tick = tick
        self.certificate_days = certificate_days
        self.errors = 0
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._warnings = RateLimitedLog(log, period=60.0)
        self._next_prune = time.monotonic() + 60.0
        self.thread = threading.Thread(target=self._run, name="otto-alerts", daemon=True)

    def submit(self, events: list[ContainerEvent]) -> None:
        """Queue events stored for the first time (the worker thread; never blocks)."""
        for event in events:
            self._inbox.put(event)

    def start(self) -> None:
        restored = self.store.active()
        self.engine.restore(restored)
        self._publish_active()
        if restored:
            log.info("alerts: %d active from before the restart (not sent again)", len(restored))
        if self.notifier is not None:
            self.notifier.start()
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Handle what is queued, then stop (deliveries still pending stay in the log for next time)."""
        self._inbox.put(None)
        self.thread.join(timeout)
        if self.notifier is not None:
            self.notifier.stop()

    def _run(self) -> None:
        next_tick = time.monotonic()
        while True:
            try:
                event = self._inbox.get(timeout=max(0.0, next_tick - time.monotonic()))
            except queue.Empty:
                event = _TICK
            try:
                if event is None:
                    return
                if isinstance(event, ContainerEvent):
                    self.counters.events.labels(event.action).inc()
                    self._handle(self.engine.on_event(event, time.time()))
                if time.monotonic() >= next_tick:
                    self._handle(self.engine.evaluate(self.state.snapshot(), time.time(), self.certificate_days()))
                    next_tick = time.monotonic() + self.tick
                    self._maybe_prune()
            except Exception:  # a bug: count it, say where, keep alerting
                self.errors += 1
                self._warnings.exception("alerts", "the alerts loop raised; continuing")
                next_tick = time.monotonic() + self.tick

    def _handle(self, transitions: list[Transition]) -> None:
        if not transitions:
            return
        now = datetime.now(UTC)
        for transition in transitions:
            alert = transition.alert
            muted = self.engine.rules.muted(alert.rule, alert.node_id, alert.container, now)
            if transition.kind == "firing":
                alert = self.store.fired(alert, muted)
                self.counters.fired.labels(alert.rule).inc()
            elif transition.kind == "resolved" and alert.id is not None:
                self.store.resolved(alert)
            if alert.id is None:  # restored without an id cannot happen; a resolution of an unknown alert
                continue
            log.warning("alert %s%s: %s (%s)", transition.kind, " (muted)" if muted else "", alert.summary, alert.value)
            if self.notifier is not None:
                self.notifier.submit(compose(Transition(transition.kind, alert), alert.id, self.public_url), muted)
            self.store.notified(alert.id, now)
            self.engine.notified(alert, now)
        self._publish_active()

    def _publish_active(self) -> None:
        counts = dict.fromkeys(RULES, 0)
        for rule, _node, _container in list(self.engine.active):
            counts[rule] = counts.get(rule, 0) + 1
        for rule, count in counts.items():
            self.counters.active.labels(rule).set(count)

    def _maybe_prune(self) -> None:
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY
        removed = self.store.prune(datetime.now(UTC) - KEEP)
        if removed:
            log.info("alerts: forgot %d resolved alerts and deliveries older than %s", removed, KEEP)

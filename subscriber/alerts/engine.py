"""AlertEngine: the rules applied to container events and to the live fleet. Pure: no I/O, no threads.

Two inputs. ``on_event`` takes a container event as it arrives (exited, OOM-killed, unhealthy,
restart loop fire at once). ``evaluate`` looks at every node's live view (offline or stale,
temperature, under-voltage, disk, memory, dropped messages) and at time passing (a container that
has run again long enough, a loop gone quiet). Both return transitions: an alert that starts fires
once, one that ends resolves once; the same condition again while it is active changes nothing.
Thresholds have hysteresis (fire above ``above``, resolve below ``clear_below``) and a duration.

Time is the subscriber's clock (epoch seconds) at which an input arrives, never a node's clock,
which may be wrong; nodes' timestamps are only shown ("since").
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

from contract.models import ContainerEvent, NodeMetrics
from subscriber.alerts.rules import AlertRules, Threshold
from subscriber.state import Availability, NodeView

Kind = Literal["firing", "resolved", "repeat"]

#: Rules about a container (the others are about a node).
CONTAINER_RULES = ("container_exited", "restart_loop", "unhealthy", "oom_killed")
NODE_RULES = ("node_offline", "temperature", "under_voltage", "disk", "memory", "agent_dropping")
RULES = NODE_RULES + CONTAINER_RULES
#: Bounds against a node that invents container names: containers remembered, active alerts per node.
MAX_CONTAINERS = 100_000
MAX_CONTAINER_ALERTS_PER_NODE = 200


#: The node id of alerts about the control plane's broker rather than a node.
BROKER = "broker"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: what, where, the value that made it, since when; ``resolved_at`` once it ended."""

    rule: str
    node_id: str
    container: str  # the container's name; "" for a node's alert
    summary: str
    value: str
    since: datetime
    image: str = ""
    resolved_at: datetime | None = None
    last_notified: datetime | None = None
    id: int | None = None  # the store's

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.rule, self.node_id, self.container)


@dataclass(frozen=True, slots=True)
class Transition:
    kind: Kind
    alert: Alert


def _at(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


@dataclass(slots=True)
class _Container:
    """What the events told about one container (by node and name)."""

    dies: collections.deque[tuple[float, int]] = field(default_factory=collections.deque)  # (arrival, count)
    running_since: float | None = None


class AlertEngine:
    """The active alerts and what the rules need to remember; see the module docstring."""

    def __init__(self, rules: AlertRules, started_at: float, stale_after: float = 3.0) -> None:
        self.rules = rules
        self.started_at = started_at
        self.stale_after = stale_after
        self.active: dict[tuple[str, str, str], Alert] = {}
        self._pending: dict[tuple[str, str, str], float] = {}  # condition true since (arrival time)
        self._containers: dict[tuple[str, str], _Container] = {}
        self._dropped: dict[str, tuple[int, float | None]] = {}  # node: (last counter, last increase)
        #: Container alerts not raised because their node already had MAX_CONTAINER_ALERTS_PER_NODE.
        self.suppressed = 0

    def restore(self, alerts: list[Alert]) -> None:
        """Alerts that were active when the subscriber stopped: they are not fired again."""
        for alert in alerts:
            self.active[alert.key] = alert

    # -- transitions --------------------------------------------------------------------------------

    def _fire(self, alert: Alert) -> list[Transition]:
        if alert.key in self.active:
            return []
        if alert.container and self._container_alerts(alert.node_id) >= MAX_CONTAINER_ALERTS_PER_NODE:
            self.suppressed += 1
            return []
        self.active[alert.key] = alert
        return [Transition("firing", alert)]

    def _container_alerts(self, node_id: str) -> int:
        return sum(1 for _rule, node, container in self.active if node == node_id and container)

    def _resolve(self, key: tuple[str, str, str], now: float) -> list[Transition]:
        self._pending.pop(key, None)
        alert = self.active.pop(key, None)
        if alert is None:
            return []
        return [Transition("resolved", replace(alert, resolved_at=_at(now)))]

    def notified(self, alert: Alert, at: datetime) -> None:
        """Record that ``alert`` (active) was sent at ``at`` (for repeats)."""
        if alert.key in self.active:
            self.active[alert.key] = replace(self.active[alert.key], last_notified=at, id=alert.id)

    # -- container events ---------------------------------------------------------------------------

    def on_event(self, event: ContainerEvent, now: float) -> list[Transition]:
        """The transitions ``event`` causes (arrived at ``now``)."""
        if event.action == "gap" or not event.container_name:
            return []
        rules = self.rules
        node, name = event.node_id, event.container_name
        container = self._containers.get((node, name))
        if container is None:
            container = self._containers[(node, name)] = _Container()
            if len(self._containers) > MAX_CONTAINERS:
                del self._containers[next(iter(self._containers))]
        out: list[Transition] = []

        def key(rule: str) -> tuple[str, str, str]:
            return (rule, node, name)

        def alert(rule: str, summary: str, value: str) -> Alert:
            return Alert(rule, node, name, summary, value, event.first_timestamp or event.timestamp, event.image)

        if event.action == "die":
            out += self._died(event, container, now)
        elif event.action == "oom" and rules.oom_killed.enabled:
            out += self._fire(alert("oom_killed", f"container {name} on {node} ran out of memory (OOM kill)", "OOM"))
        elif event.action == "start":
            container.running_since = now
        elif event.action == "health_status":
            if event.health == "unhealthy" and rules.unhealthy.enabled:
                out += self._fire(alert("unhealthy", f"container {name} on {node} is unhealthy", "unhealthy"))
            elif event.health == "healthy":
                out += self._resolve(key("unhealthy"), now)
        elif event.action == "destroy":
            for rule in CONTAINER_RULES:
                out += self._resolve(key(rule), now)
            self._containers.pop((node, name), None)
        return out

    def _died(self, event: ContainerEvent, container: _Container, now: float) -> list[Transition]:
        rules = self.rules
        node, name = event.node_id, event.container_name
        container.running_since = None
        if event.stop_requested:
            return self._resolve(("unhealthy", node, name), now)
        container.dies.append((now, event.count))
        out = self._resolve(("unhealthy", node, name), now)
        since = event.first_timestamp or event.timestamp
        if event.exit_code not in (0, None) and not event.oom_killed and rules.container_exited.enabled:
            code = f"exit code {event.exit_code}"
            summary = f"container {name} on {node} exited ({code})"
            out += self._fire(Alert("container_exited", node, name, summary, code, since, event.image))
        if rules.restart_loop.enabled and (deaths := self._deaths(container, now)) >= rules.restart_loop.restarts:
            value = f"{deaths} exits in {_duration(rules.restart_loop.within.total_seconds())}"
            summary = f"container {name} on {node} is restarting in a loop"
            out += self._fire(Alert("restart_loop", node, name, summary, value, since, event.image))
        return out

    def _deaths(self, container: _Container, now: float) -> int:
        horizon = now - self.rules.restart_loop.within.total_seconds()
        while container.dies and container.dies[0][0] < horizon:
            container.dies.popleft()
        return sum(count for _, count in container.dies)

    # -- the live fleet and time passing ---------------------------------------------------------------

    def evaluate(self, views: list[NodeView], now: float, certificate_days: float | None = None) -> list[Transition]:
        """Transitions from the nodes' current views, the broker certificate's days left and time passing."""
        out: list[Transition] = []
        for view in views:
            out += self._node(view, now)
        out += self._certificate(certificate_days, now)
        out += self._containers_settled(views, now)
        if self.rules.repeat.total_seconds() > 0:
            out += list(self._repeats(now))
        return out

    def _node(self, view: NodeView, now: float) -> list[Transition]:
        node = view.node_id
        rules = self.rules
        out: list[Transition] = []
        availability = view.availability(now, self.stale_after)
        # Right after a restart, nodes have had no time to be heard from: no offline verdict yet.
        settling = now - self.started_at < self.stale_after * view.interval and (view.last_seen or 0) < self.started_at
        if rules.node_offline.enabled and not settling:
            if availability is Availability.ONLINE:
                out += self._resolve(("node_offline", node, ""), now)
            else:
                silent = now - (view.last_seen or now)
                value = "offline (last will)" if availability is Availability.OFFLINE else f"silent for {silent:.0f} s"
                since = _at(view.last_seen) if view.last_seen else _at(now)
                candidate = Alert("node_offline", node, "", f"node {node} is offline", value, since)
                out += self._held(candidate, True, rules.node_offline.for_.total_seconds(), now)
        metrics = view.metrics
        if availability is not Availability.ONLINE or metrics is None:
            return out
        out += self._threshold("temperature", rules.temperature, node, metrics.temperature_c, "°C", now)
        out += self._threshold("disk", rules.disk, node, metrics.disk_percent, "%", now)
        out += self._threshold("memory", rules.memory, node, metrics.memory_percent, "%", now)
        if rules.under_voltage.enabled and metrics.under_voltage is not None:
            candidate = Alert(
                "under_voltage", node, "", f"node {node} is under-voltage (check its power supply)", "yes", _at(now)
            )
            out += self._held(candidate, metrics.under_voltage, 0.0, now)
        if rules.agent_dropping.enabled:
            out += self._dropping(node, metrics, now)
        return out

    def _threshold(
        self, rule: str, threshold: Threshold, node: str, value: float | None, unit: str, now: float
    ) -> list[Transition]:
        if not threshold.enabled or value is None:
            return []
        key = (rule, node, "")
        if key in self.active:
            return self._resolve(key, now) if value < threshold.clear_below else []
        shown = f"{value:.1f}{unit}"
        what = {"temperature": "is hot", "disk": "root disk is full", "memory": "memory is full"}[rule]
        candidate = Alert(rule, node, "", f"node {node} {what}: {shown}", shown, _at(now))
        return self._held(candidate, value > threshold.above, threshold.for_.total_seconds(), now)

    def _certificate(self, days: float | None, now: float) -> list[Transition]:
        rule = self.rules.broker_certificate
        if not rule.enabled or days is None:
            return []
        shown = "expired" if days <= 0 else f"{days:.0f} days left"
        summary = (
            f"the broker's TLS certificate {'has expired' if days <= 0 else 'expires soon'} ({shown}): "
            "docker compose run --rm pki renew-server, then docker compose kill -s HUP mosquitto"
        )
        candidate = Alert("broker_certificate", BROKER, "", summary, shown, _at(now))
        return self._held(candidate, days < rule.days, 0.0, now)

    def _held(self, candidate: Alert, condition: bool, hold: float, now: float) -> list[Transition]:
        """Fire once ``condition`` has held for ``hold`` seconds; resolve when it stops."""
        key = candidate.key
        if not condition:
            return self._resolve(key, now)
        if key in self.active:
            return []
        since = self._pending.setdefault(key, now)
        if now - since < hold:
            return []
        self._pending.pop(key, None)
        return self._fire(replace(candidate, since=min(candidate.since, _at(since))))

    def _dropping(self, node: str, metrics: NodeMetrics, now: float) -> list[Transition]:
        dropped = metrics.agent.dropped
        last, increased = self._dropped.get(node, (dropped, None))
        if dropped > last:
            increased = now
            value = f"{dropped - last} messages dropped"
            summary = f"the agent on {node} is dropping messages (its buffer is full)"
            out = self._fire(Alert("agent_dropping", node, "", summary, value, _at(now)))
        else:
            out = []
            quiet = self.rules.agent_dropping.quiet_for.total_seconds()
            if increased is None or now - increased >= quiet:
                out = self._resolve(("agent_dropping", node, ""), now)
        self._dropped[node] = (dropped, increased)
        return out

    def _containers_settled(self, views: list[NodeView], now: float) -> list[Transition]:
        """Container alerts that time resolves: a container running again long enough, a quiet loop."""
        out: list[Transition] = []
        running = {
            (view.node_id, c.container_name): c.started_at
            for view in views
            if view.containers is not None
            for c in view.containers.containers
            if c.state == "running"
        }
        for key in [k for k in self.active if k[0] in ("container_exited", "oom_killed", "restart_loop")]:
            rule, node, name = key
            container = self._containers.get((node, name))
            if rule == "restart_loop":
                # Restored after a restart, the deaths counted before it are gone: quiet since the start.
                quiet_since_start = now - self.started_at >= self.rules.restart_loop.within.total_seconds()
                deaths = self._deaths(container, now) if container is not None else 0
                if deaths == 0 and quiet_since_start:
                    out += self._resolve(key, now)
                continue
            stable = (self.rules.container_exited if rule == "container_exited" else self.rules.oom_killed).stable_after
            since = container.running_since if container is not None else None
            if since is None and (node, name) in running and (started := running[(node, name)]) is not None:
                alert = self.active[key]
                if started > alert.since:  # the agent saw it start after the alert (its events were lost)
                    since = started.timestamp()
            if since is not None and now - since >= stable.total_seconds():
                out += self._resolve(key, now)
        return out

    def _repeats(self, now: float) -> Iterator[Transition]:
        every = self.rules.repeat.total_seconds()
        for alert in self.active.values():
            last = alert.last_notified or alert.since
            if now - last.timestamp() >= every:
                yield Transition("repeat", alert)


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"

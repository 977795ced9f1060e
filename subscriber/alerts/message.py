"""What a notification says: a title and a plain-text body a person can act on. Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from urllib.parse import quote

from subscriber.alerts.engine import Alert, Transition

RULE_TITLES = {
    "node_offline": "node offline",
    "temperature": "temperature high",
    "under_voltage": "under-voltage",
    "disk": "disk full",
    "memory": "memory full",
    "container_exited": "container exited",
    "restart_loop": "restart loop",
    "unhealthy": "container unhealthy",
    "oom_killed": "container OOM-killed",
    "agent_dropping": "agent dropping messages",
    "broker_certificate": "broker certificate expiring",
}


@dataclass(frozen=True, slots=True)
class Notification:
    """One message to every notification URL: Apprise's title, body and type."""

    alert_id: int
    kind: str  # firing, resolved, repeat
    title: str
    body: str
    notify_type: str  # Apprise's: info, success, warning, failure


_CONTROL = dict.fromkeys([*range(32), 127], "?")


def clean(text: str, limit: int = 160) -> str:
    """A node-supplied string made safe for one line of a message: no control characters, bounded."""
    text = text.translate(_CONTROL)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _lasted(alert: Alert) -> str:
    assert alert.resolved_at is not None
    seconds = max(0, round((alert.resolved_at - alert.since).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def node_link(public_url: str, node_id: str) -> str:
    return f"{public_url.rstrip('/')}/nodes/{quote(node_id, safe='')}"


def compose(transition: Transition, alert_id: int, public_url: str) -> Notification:
    """The notification for ``transition`` of the stored alert ``alert_id``."""
    alert = transition.alert
    alert = replace(
        alert,
        container=clean(alert.container),
        image=clean(alert.image),
        summary=clean(alert.summary, 400),
        value=clean(alert.value),
    )
    where = f"{alert.node_id}/{alert.container}" if alert.container else alert.node_id
    what = RULE_TITLES.get(alert.rule, alert.rule)
    state = {"firing": "FIRING", "resolved": "RESOLVED", "repeat": "STILL FIRING"}[transition.kind]
    lines = [alert.summary[0].upper() + alert.summary[1:] + "."]
    lines.append(f"Node: {alert.node_id}")
    if alert.container:
        lines.append(f"Container: {alert.container}" + (f" (image {alert.image})" if alert.image else ""))
    lines.append(f"Value: {alert.value}")
    lines.append(f"Since: {_when(alert.since)}")
    if transition.kind == "resolved":
        assert alert.resolved_at is not None
        lines.append(f"Resolved: {_when(alert.resolved_at)}, after {_lasted(alert)}")
    lines.append(f"Rule: {alert.rule}")
    if alert.rule == "broker_certificate":
        lines.append(f"Details: {public_url.rstrip('/')}/api/broker/certificate")
    else:
        lines.append(f"Details: {node_link(public_url, alert.node_id)}")
    return Notification(
        alert_id=alert_id,
        kind=transition.kind,
        title=f"[otto] {state}: {what} on {where}",
        body="\n".join(lines),
        notify_type="success" if transition.kind == "resolved" else "failure",
    )

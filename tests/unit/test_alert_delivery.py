"""Events through ingestion to the alert service, the alert store across restarts, and the notifier's
lanes against a real local HTTP receiver (Apprise's JSON webhook)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from contract import ContainerEvent, to_payload
from contract.topics import events_topic
from subscriber import sqlite_events
from subscriber.alerts.engine import Alert, AlertEngine, Transition
from subscriber.alerts.message import Notification, compose
from subscriber.alerts.notify import AppriseSender, Notifier
from subscriber.alerts.rules import AlertRules
from subscriber.alerts.service import AlertCounters, AlertService
from subscriber.alerts.store import SqliteAlertStore
from subscriber.ingest import Ingestor
from subscriber.prometheus import SubscriberCounters
from subscriber.state import FleetState
from subscriber.store import SqliteHistoryStore
from tests.support.broker import free_port
from tests.support.load import wait_until
from tests.support.messages import T0, event
from tests.support.receivers import WebhookReceiver


@contextlib.contextmanager
def mock_limit(limit: int) -> Iterator[None]:
    """A smaller per-node cap, so the test writes 60 events rather than 10,060."""
    saved = sqlite_events.MAX_PER_NODE
    sqlite_events.MAX_PER_NODE = limit
    try:
        yield
    finally:
        sqlite_events.MAX_PER_NODE = saved


def notification(alert_id: int, kind: str = "firing") -> Notification:
    return Notification(alert_id, kind, f"[otto] {kind} {alert_id}", "body", "failure")


def test_events_are_stored_once_and_told_after_their_commit(tmp_path: Path) -> None:
    store = SqliteHistoryStore(tmp_path / "h.db")
    told: list[list[ContainerEvent]] = []
    ingestor = Ingestor(FleetState(3.0), store, SubscriberCounters(CollectorRegistry()), lambda _d: None)
    ingestor.event_listeners.append(told.append)
    died = event("die", exit_code=3)
    payload = to_payload(died)
    ingestor.handle(events_topic("node-a"), payload, T0.timestamp(), token=1)
    assert told == []  # not before the commit
    assert ingestor.flush() == [1]
    assert told == [[died]]
    ingestor.handle(events_topic("node-a"), payload, T0.timestamp(), token=2)  # redelivered
    assert ingestor.flush() == [2]
    assert told == [[died]]  # already stored: not told again, so no alert can fire twice
    assert store.events("node-a", T0 - timedelta(1), T0 + timedelta(1), 10) == [died]
    assert store.events("node-a", T0 - timedelta(1), T0 + timedelta(1), 10, container="other") == []


def test_a_hostile_event_is_rejected_without_stopping_anything(tmp_path: Path) -> None:
    ingestor = Ingestor(FleetState(3.0), None, SubscriberCounters(CollectorRegistry()), lambda _d: None)
    bad = to_payload(event("die")).replace(b'"die"', b'"format-disk"')
    assert ingestor.handle(events_topic("node-a"), bad, T0.timestamp(), token=1).reason == "bad_schema"  # type: ignore[union-attr]
    spoofed = to_payload(event("die", node_id="node-b"))
    assert ingestor.handle(events_topic("node-a"), spoofed, T0.timestamp(), token=2).reason == "spoofed"  # type: ignore[union-attr]


def test_alerts_and_pending_deliveries_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    store = SqliteAlertStore(path)
    alert = store.fired(Alert("disk", "pi-1", "", "node pi-1 root disk is full: 95.0%", "95.0%", T0), muted=False)
    store.queue(notification(alert.id or 0), 0)
    store.close()
    again = SqliteAlertStore(path)
    assert again.active() == [alert]
    assert [d.state for d in again.deliveries(pending_only=True)] == ["pending"]
    again.resolved(replace(alert, resolved_at=T0 + timedelta(minutes=3)))
    assert again.active() == []


def test_each_url_gets_every_notification_in_order_and_one_down_holds_only_itself(tmp_path: Path) -> None:
    hook = WebhookReceiver().start()
    dead = f"json://127.0.0.1:{free_port()}/nobody"
    store = SqliteAlertStore(tmp_path / "h.db")
    outcomes: list[str] = []
    notifier = Notifier(
        store, AppriseSender([dead, hook.url], timeout=2), 2, outcomes.append, retry_first=0.05, retry_max=0.2
    )
    notifier.start()
    try:
        for i in range(1, 4):
            notifier.submit(notification(i))
        notifier.submit(notification(3, "resolved"))
        hook.wait_for(lambda got: len(got) == 4, timeout=10)
        assert hook.titles() == ["[otto] firing 1", "[otto] firing 2", "[otto] firing 3", "[otto] resolved 3"]
        wait_until(lambda: outcomes.count("retried") >= 3, timeout=10)
        assert outcomes.count("delivered") == 4
        log = store.deliveries()
        assert {(d.url_index, d.state) for d in log} == {(0, "pending"), (1, "delivered")}
        head = next(d for d in log if d.url_index == 0)
        assert head.attempts >= 3
        assert "Connection error" in (head.error or "")
    finally:
        notifier.stop()
        hook.stop()


def test_an_endpoint_that_returns_gets_what_was_pending_even_across_a_restart(tmp_path: Path) -> None:
    hook = WebhookReceiver()  # not listening yet
    store = SqliteAlertStore(tmp_path / "h.db")
    first = Notifier(store, AppriseSender([hook.url], timeout=2), 1, retry_first=0.05, retry_max=0.1)
    first.start()
    first.submit(notification(7))
    wait_until(lambda: store.deliveries()[0].attempts >= 2, timeout=10)
    first.stop()
    hook.start()
    outcomes: list[str] = []
    second = Notifier(store, AppriseSender([hook.url], timeout=2), 1, outcomes.append, retry_first=0.05)
    assert second.start() == 1
    try:
        hook.wait_for(lambda got: len(got) == 1, timeout=10)
        time.sleep(0.3)
        assert hook.titles() == ["[otto] firing 7"]
        assert outcomes == ["delivered"]
        assert store.deliveries()[0].state == "delivered"
    finally:
        second.stop()
        hook.stop()


def test_delivery_gives_up_after_its_time_and_says_so(tmp_path: Path) -> None:
    store = SqliteAlertStore(tmp_path / "h.db")
    outcomes: list[str] = []
    dead = f"json://127.0.0.1:{free_port()}/nobody"
    notifier = Notifier(
        store, AppriseSender([dead], timeout=1), 1, outcomes.append, retry_first=0.05, give_up_after=0.3
    )
    notifier.start()
    try:
        notifier.submit(notification(1))
        wait_until(lambda: "failed" in outcomes, timeout=10)
        assert store.deliveries()[0].state == "failed"
        notifier.submit(notification(2))  # the lane goes on with the next
        wait_until(lambda: outcomes.count("failed") == 2, timeout=10)
    finally:
        notifier.stop()


def test_muted_alerts_are_recorded_not_sent(tmp_path: Path) -> None:
    hook = WebhookReceiver().start()
    store = SqliteAlertStore(tmp_path / "h.db")
    rules = AlertRules.model_validate({"mute": [{"rule": "container_exited", "node": "node-a"}]})
    counters = AlertCounters(CollectorRegistry())
    notifier = Notifier(store, AppriseSender([hook.url]), 1, lambda o: counters.notifications.labels(o).inc())
    service = AlertService(
        AlertEngine(rules, started_at=time.time()), store, notifier, FleetState(3.0), counters,
        public_url="http://x", tick=0.05,
    )  # fmt: skip
    service.start()
    try:
        service.submit([event("die", exit_code=3), event("oom", name="db")])
        hook.wait_for(lambda got: len(got) == 1, timeout=10)
        time.sleep(0.3)
        assert hook.titles() == ["[otto] FIRING: container OOM-killed on node-a/db"]
        recorded = {(a.rule, muted) for a, muted in store.alerts()}
        assert recorded == {("container_exited", True), ("oom_killed", False)}
        assert counters.notifications.labels("muted")._value.get() == 1
    finally:
        service.stop()
        hook.stop()


def test_a_notification_says_what_to_act_on_and_keeps_node_strings_on_their_line() -> None:
    alert = Alert(
        "container_exited", "pi-1", "web\nFAKE: line", "container web on pi-1 exited (exit code 3)", "exit code 3", T0,
        image="nginx:1.27",
    )  # fmt: skip
    fired = compose(Transition("firing", alert), 12, "https://otto.example/")
    assert fired.title == "[otto] FIRING: container exited on pi-1/web?FAKE: line"
    assert fired.body.splitlines() == [
        "Container web on pi-1 exited (exit code 3).",
        "Node: pi-1",
        "Container: web?FAKE: line (image nginx:1.27)",
        "Value: exit code 3",
        "Since: 2026-11-27 10:00:00 UTC",
        "Rule: container_exited",
        "Details: https://otto.example/nodes/pi-1",
    ]
    resolved = compose(
        Transition("resolved", replace(alert, resolved_at=T0 + timedelta(seconds=125))),
        12,
        "http://h",
    )
    assert "Resolved: 2026-11-27 10:02:05 UTC, after 2 min 5 s" in resolved.body
    assert resolved.notify_type == "success"


def test_an_event_stamped_in_the_future_is_stored_at_its_arrival(tmp_path: Path) -> None:
    store = SqliteHistoryStore(tmp_path / "h.db")
    ingestor = Ingestor(FleetState(3.0), store, SubscriberCounters(CollectorRegistry()), lambda _d: None)
    future = event("die", exit_code=3, at=T0 + timedelta(days=3650))
    ingestor.handle(events_topic("node-a"), to_payload(future), T0.timestamp(), token=1)
    assert ingestor.flush() == [1]
    [stored] = store.events("node-a", T0 - timedelta(1), T0 + timedelta(1), 10)
    assert stored.timestamp == T0
    assert stored.exit_code == 3


def test_logs_name_a_url_by_number_scheme_and_host_never_its_secrets() -> None:
    sender = AppriseSender(
        ["ntfy://ntfy.sh/my-secret-topic", "tgram://123456:ABCDEFsecret/987", "mailtos://me:pw@smtp.example.com"]
    )
    assert sender.descriptions[0] == "#1 ntfy://ntfy.sh"
    assert sender.descriptions[2] == "#3 mailtos://smtp.example.com"
    joined = " ".join(sender.descriptions)
    for secret in ("my-secret-topic", "ABCDEFsecret", "pw@"):
        assert secret not in joined


def test_a_node_flooding_events_keeps_only_its_newest_at_each_prune(tmp_path: Path) -> None:
    store = SqliteHistoryStore(tmp_path / "h.db")
    flood = [event("die", name=f"c{i}", at=T0 + timedelta(seconds=i), exit_code=1) for i in range(60)]
    store.write([], [], [], [*flood, event("start", node_id="node-b", at=T0)])
    with mock_limit(50):
        store.prune(T0 - timedelta(days=1))
    kept = store.events("node-a", T0 - timedelta(1), T0 + timedelta(1), 1000)
    assert [e.container_name for e in kept] == [f"c{i}" for i in reversed(range(10, 60))]  # the newest 50
    assert len(store.events("node-b", T0 - timedelta(1), T0 + timedelta(1), 1000)) == 1

"""Alerts and their deliveries, kept in the history file so that both survive a restart.

``alerts``: every alert, active until ``resolved_at`` is set. ``deliveries``: one row per
notification and URL (the delivery log): pending until delivered or given up, with its attempts
and last error. A restart reloads the active alerts (not fired again) and the pending deliveries
(sent when their URL answers), so there is neither a storm of repeats nor a lost resolution.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from subscriber.alerts.engine import Alert
from subscriber.alerts.message import Notification

DeliveryState = str  # pending, delivered, failed, muted


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification to one URL (by its position in OTTO_NOTIFY_URLS)."""

    id: int
    url_index: int
    notification: Notification
    state: DeliveryState
    attempts: int
    created: float
    updated: float
    error: str | None


def _ts(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


def _dt(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


class SqliteAlertStore:
    """Alerts and deliveries in SQLite (WAL); safe to call from several threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS alerts (id INTEGER PRIMARY KEY, rule TEXT NOT NULL, node_id TEXT NOT NULL, "
                "container TEXT NOT NULL, image TEXT NOT NULL, summary TEXT NOT NULL, value TEXT NOT NULL, "
                "since REAL NOT NULL, resolved_at REAL, last_notified REAL, muted INTEGER NOT NULL DEFAULT 0)"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS alerts_active ON alerts (resolved_at)")
            self._db.execute("CREATE INDEX IF NOT EXISTS alerts_node ON alerts (node_id, since)")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS deliveries (id INTEGER PRIMARY KEY, alert_id INTEGER NOT NULL, "
                "kind TEXT NOT NULL, url_index INTEGER NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL, "
                "notify_type TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
                "created REAL NOT NULL, updated REAL NOT NULL, error TEXT)"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (state)")
            self._db.execute("CREATE INDEX IF NOT EXISTS deliveries_alert ON deliveries (alert_id)")

    # -- alerts ---------------------------------------------------------------------------------------

    def fired(self, alert: Alert, muted: bool) -> Alert:
        """Record a new active alert; it with its id."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO alerts (rule, node_id, container, image, summary, value, since, muted) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (alert.rule, alert.node_id, alert.container, alert.image, alert.summary, alert.value,
                 alert.since.timestamp(), int(muted)),
            )  # fmt: skip
        assert cursor.lastrowid is not None
        return replace(alert, id=cursor.lastrowid)

    def resolved(self, alert: Alert) -> None:
        with self._lock:
            self._db.execute("UPDATE alerts SET resolved_at = ? WHERE id = ?", (_ts(alert.resolved_at), alert.id))

    def notified(self, alert_id: int, at: datetime) -> None:
        with self._lock:
            self._db.execute("UPDATE alerts SET last_notified = ? WHERE id = ?", (at.timestamp(), alert_id))

    def active(self) -> list[Alert]:
        return [alert for alert, _ in self.alerts(active_only=True, limit=1_000_000)]

    def alerts(
        self, *, active_only: bool = False, node_id: str | None = None, limit: int = 100
    ) -> list[tuple[Alert, bool]]:
        """(alert, muted), newest first."""
        sql = (
            "SELECT id, rule, node_id, container, image, summary, value, since, resolved_at, last_notified, muted "
            "FROM alerts WHERE 1 = 1"
        )
        params: list[object] = []
        if active_only:
            sql += " AND resolved_at IS NULL"
        if node_id is not None:
            sql += " AND node_id = ?"
            params.append(node_id)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY since DESC, id DESC LIMIT ?", [*params, limit]).fetchall()
        return [
            (
                Alert(
                    rule=rule, node_id=node, container=container, summary=summary, value=value,
                    since=datetime.fromtimestamp(since, UTC), image=image, resolved_at=_dt(resolved),
                    last_notified=_dt(notified), id=alert_id,
                ),
                bool(muted),
            )
            for alert_id, rule, node, container, image, summary, value, since, resolved, notified, muted in rows
        ]  # fmt: skip

    # -- deliveries ------------------------------------------------------------------------------------

    def queue(self, notification: Notification, url_index: int, state: DeliveryState = "pending") -> Delivery:
        now = time.time()
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO deliveries (alert_id, kind, url_index, title, body, notify_type, state, created, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (notification.alert_id, notification.kind, url_index, notification.title, notification.body,
                 notification.notify_type, state, now, now),
            )  # fmt: skip
        assert cursor.lastrowid is not None
        return Delivery(cursor.lastrowid, url_index, notification, state, 0, now, now, None)

    def attempted(self, delivery_id: int, state: DeliveryState, attempts: int, error: str | None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE deliveries SET state = ?, attempts = ?, error = ?, updated = ? WHERE id = ?",
                (state, attempts, error, time.time(), delivery_id),
            )

    def deliveries(self, *, pending_only: bool = False, alert_id: int | None = None) -> list[Delivery]:
        """Oldest first."""
        sql = (
            "SELECT id, alert_id, kind, url_index, title, body, notify_type, state, attempts, created, updated, error "
            "FROM deliveries WHERE 1 = 1"
        )
        params: list[object] = []
        if pending_only:
            sql += " AND state = 'pending'"
        if alert_id is not None:
            sql += " AND alert_id = ?"
            params.append(alert_id)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id", params).fetchall()
        return [
            Delivery(row_id, url_index, Notification(alert, kind, title, body, notify_type), state, attempts,
                     created, updated, error)
            for row_id, alert, kind, url_index, title, body, notify_type, state, attempts, created, updated, error
            in rows
        ]  # fmt: skip

    def prune(self, older_than: datetime) -> int:
        """Forget resolved alerts and finished deliveries older than ``older_than``."""
        cutoff = older_than.timestamp()
        with self._lock:
            removed = self._db.execute(
                "DELETE FROM deliveries WHERE state != 'pending' AND updated < ?", (cutoff,)
            ).rowcount
            removed += self._db.execute(
                "DELETE FROM alerts WHERE resolved_at IS NOT NULL AND resolved_at < ?", (cutoff,)
            ).rowcount
        return removed

    def close(self) -> None:
        with self._lock:
            self._db.close()

"""Container events in the SQLite history file: one row per message, keyed so a redelivery is a no-op.

The row keeps the whole message as JSON (the contract validates it back) next to the columns that
queries filter on. Timestamps are microseconds since the epoch, the precision of ``datetime``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from pydantic import ValidationError

from contract.models import ContainerEvent

#: Events kept per node at most (the newest): a node sending events without end (a bug, or hostile
#: within its rate limit) cannot fill the disk over the months events are kept.
MAX_PER_NODE = 10_000


def to_us(moment: datetime) -> int:
    return round(moment.timestamp() * 1_000_000)


def migrate(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS container_events (node_id TEXT NOT NULL, ts INTEGER NOT NULL, "
        "container_id TEXT NOT NULL, action TEXT NOT NULL, container_name TEXT NOT NULL, message TEXT NOT NULL, "
        "PRIMARY KEY (node_id, container_id, action, ts)) WITHOUT ROWID"
    )
    db.execute("CREATE INDEX IF NOT EXISTS container_events_node_ts ON container_events (node_id, ts)")
    db.execute("CREATE INDEX IF NOT EXISTS container_events_ts ON container_events (ts)")


def insert(db: sqlite3.Connection, events: Sequence[ContainerEvent]) -> list[ContainerEvent]:
    """Store ``events``; those that were not stored already (a redelivered copy is not new)."""
    new = []
    for event in events:
        before = db.total_changes
        db.execute(
            "INSERT OR IGNORE INTO container_events (node_id, ts, container_id, action, container_name, message) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                event.node_id,
                to_us(event.timestamp),
                event.container_id,
                event.action,
                event.container_name,
                event.model_dump_json(),
            ),
        )
        if db.total_changes > before:
            new.append(event)
    return new


def read(
    db: sqlite3.Connection, node_id: str, start: datetime, end: datetime, limit: int, container: str | None = None
) -> list[ContainerEvent]:
    """A node's events in ``[start, end)``, newest first, ``limit`` at most (rows that no longer validate skipped)."""
    sql = "SELECT message FROM container_events WHERE node_id = ? AND ts >= ? AND ts < ?"
    params: list[object] = [node_id, to_us(start), to_us(end)]
    if container is not None:
        sql += " AND container_name = ?"
        params.append(container)
    rows = db.execute(sql + " ORDER BY ts DESC LIMIT ?", [*params, limit]).fetchall()
    out = []
    for (message,) in rows:
        try:
            out.append(ContainerEvent.model_validate_json(message))
        except ValidationError:
            continue
    return out


def prune(db: sqlite3.Connection, older_than: datetime) -> int:
    """Delete events older than ``older_than``, and each node's beyond its newest MAX_PER_NODE."""
    removed = db.execute("DELETE FROM container_events WHERE ts < ?", (to_us(older_than),)).rowcount
    crowded = db.execute(
        "SELECT node_id FROM container_events GROUP BY node_id HAVING count(*) > ?", (MAX_PER_NODE,)
    ).fetchall()
    for (node_id,) in crowded:
        (cutoff,) = db.execute(
            "SELECT ts FROM container_events WHERE node_id = ? ORDER BY ts DESC LIMIT 1 OFFSET ?",
            (node_id, MAX_PER_NODE - 1),
        ).fetchone()
        removed += db.execute("DELETE FROM container_events WHERE node_id = ? AND ts < ?", (node_id, cutoff)).rowcount
    return removed

"""Container events in PostgreSQL: the SQLite layout (``subscriber.sqlite_events``), one row per message."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import psycopg
from pydantic import ValidationError

from contract.models import ContainerEvent
from subscriber.sqlite_events import MAX_PER_NODE, to_us

Connection = psycopg.Connection[tuple[object, ...]]


def migrate(db: Connection) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS container_events (node_id text NOT NULL, ts bigint NOT NULL, "
        "container_id text NOT NULL, action text NOT NULL, container_name text NOT NULL, message text NOT NULL, "
        "PRIMARY KEY (node_id, container_id, action, ts))"
    )
    db.execute("CREATE INDEX IF NOT EXISTS container_events_node_ts ON container_events (node_id, ts)")
    db.execute("CREATE INDEX IF NOT EXISTS container_events_ts ON container_events (ts)")


def insert(db: Connection, events: Sequence[ContainerEvent]) -> list[ContainerEvent]:
    """Store ``events``; those that were not stored already (a redelivered copy is not new)."""
    if not events:
        return []
    keys = [(e.node_id, e.container_id, e.action, to_us(e.timestamp)) for e in events]
    rows = db.execute(
        "INSERT INTO container_events (node_id, container_id, action, ts, container_name, message) "
        "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::bigint[], %b::text[], %b::text[]) "
        "ON CONFLICT DO NOTHING RETURNING node_id, container_id, action, ts",
        (
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            [k[3] for k in keys],
            [e.container_name for e in events],
            [e.model_dump_json() for e in events],
        ),
    ).fetchall()
    new = {(str(n), str(c), str(a), int(t)) for n, c, a, t in rows}  # type: ignore[call-overload]
    out = []
    for key, event in zip(keys, events, strict=True):
        if key in new:
            new.discard(key)  # the same event twice in one batch is new once
            out.append(event)
    return out


def read(
    db: Connection, node_id: str, start: datetime, end: datetime, limit: int, container: str | None = None
) -> list[ContainerEvent]:
    """A node's events in ``[start, end)``, newest first, ``limit`` at most (rows that no longer validate skipped)."""
    sql = "SELECT message FROM container_events WHERE node_id = %s AND ts >= %s AND ts < %s"
    params: list[object] = [node_id, to_us(start), to_us(end)]
    if container is not None:
        sql += " AND container_name = %s"
        params.append(container)
    out = []
    for (message,) in db.execute(sql + " ORDER BY ts DESC LIMIT %s", [*params, limit]):
        try:
            out.append(ContainerEvent.model_validate_json(str(message)))
        except ValidationError:
            continue
    return out


def prune(db: Connection, older_than: datetime) -> int:
    """Delete events older than ``older_than``, and each node's beyond its newest MAX_PER_NODE."""
    removed = max(0, db.execute("DELETE FROM container_events WHERE ts < %s", (to_us(older_than),)).rowcount)
    crowded = db.execute(
        "SELECT node_id FROM container_events GROUP BY node_id HAVING count(*) > %s", (MAX_PER_NODE,)
    ).fetchall()
    for (node_id,) in crowded:
        row = db.execute(
            "SELECT ts FROM container_events WHERE node_id = %s ORDER BY ts DESC LIMIT 1 OFFSET %s",
            (node_id, MAX_PER_NODE - 1),
        ).fetchone()
        assert row is not None
        removed += max(
            0, db.execute("DELETE FROM container_events WHERE node_id = %s AND ts < %s", (node_id, row[0])).rowcount
        )
    return removed

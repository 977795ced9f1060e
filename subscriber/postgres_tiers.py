"""Downsampled tiers in PostgreSQL: the same tiers, marks and algorithm as ``subscriber.sqlite_tiers``.

Only the SQL differs: upserts are ``INSERT ... ON CONFLICT DO UPDATE``, per-core figures come out of
a ``jsonb`` array, and sums are ``float8`` like SQLite's ``total()`` (a node's counters may add up
beyond 64 bits). The windowing of dirty marks into units of work is shared with SQLite.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from subscriber.rollup import Resolution, Tier, TierField
from subscriber.sqlite_tiers import (
    CLOSE_GRACE_MS,
    CORES,
    TABLES,
    UNIT_MARKS,
    SeriesRows,
    TierTable,
    aligned_cutoff,
    stat_columns,
    windows,
)

Connection = psycopg.Connection[tuple[Any, ...]]


def migrate(db: Connection) -> None:
    """Create the tier tables and the dirty marks (idempotent)."""
    for table in TABLES:
        keys = "".join(f"{k} {'integer' if k == 'core' else 'text'} NOT NULL, " for k in table.keys)
        stats = ", ".join(
            f"{c} {'bigint NOT NULL DEFAULT 0' if c.endswith('_n') else 'float8'}" for c in stat_columns(table)
        )
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {table.name} (tier integer NOT NULL, node_id text NOT NULL, "
            f"bucket bigint NOT NULL, {keys}{stats}, "
            f"PRIMARY KEY (tier, node_id, bucket{''.join(', ' + k for k in table.keys)}))"
        )
        db.execute(f"CREATE INDEX IF NOT EXISTS {table.name}_age ON {table.name} (tier, bucket)")
        for column in stat_columns(table):
            kind = "bigint NOT NULL DEFAULT 0" if column.endswith("_n") else "float8"
            db.execute(f"ALTER TABLE {table.name} ADD COLUMN IF NOT EXISTS {column} {kind}")
    db.execute(
        "CREATE TABLE IF NOT EXISTS rollup_dirty (tier integer NOT NULL, bucket bigint NOT NULL, "
        "node_id text NOT NULL, PRIMARY KEY (tier, bucket, node_id))"
    )


def mark(db: Connection, touched: Iterable[tuple[str, int]]) -> None:
    """Mark the minutes of ``(node_id, ts_ms)`` samples as needing (re)computation."""
    marks = sorted({(ts - ts % 60_000, node_id) for node_id, ts in touched})
    if marks:
        db.execute(
            "INSERT INTO rollup_dirty (tier, bucket, node_id) SELECT 0, b, n FROM unnest(%b::bigint[], %b::text[]) "
            "AS m(b, n) ON CONFLICT DO NOTHING",
            ([b for b, _ in marks], [n for _, n in marks]),
        )


def maintain(db: Connection, tiers: Sequence[Tier], now_ms: int, deadline: float = math.inf) -> tuple[int, bool]:
    """As ``sqlite_tiers.maintain``: closed dirty buckets computed until done or ``deadline``."""
    done = 0
    sources: list[Tier | None] = [None, *tiers[:-1]]
    for source, target in zip(sources, tiers, strict=True):
        mark_tier = source.seconds if source else 0
        size = target.bucket_ms
        closed = now_ms - size - CLOSE_GRACE_MS
        crowds = [
            (int(b), int(n))
            for b, n in db.execute(
                "SELECT bucket - bucket %% %s AS b, count(DISTINCT node_id) FROM rollup_dirty "
                "WHERE tier = %s AND bucket - bucket %% %s <= %s GROUP BY b ORDER BY b",
                (size, mark_tier, size, closed),
            )
        ]
        for start, end, buckets in windows(crowds, size):
            nodes = [
                str(node_id)
                for (node_id,) in db.execute(
                    "SELECT DISTINCT node_id FROM rollup_dirty WHERE tier = %s AND bucket >= %s AND bucket < %s "
                    "ORDER BY node_id",
                    (mark_tier, start, end),
                )
            ]
            per_unit = max(1, UNIT_MARKS // buckets)
            for first in range(0, len(nodes), per_unit):
                chunk = nodes[first : first + per_unit]
                for table in TABLES:
                    _recompute(db, table, source, target, start, end, chunk)
                db.execute(
                    "INSERT INTO rollup_dirty SELECT %s, bucket - bucket %% %s, node_id FROM rollup_dirty "
                    "WHERE tier = %s AND bucket >= %s AND bucket < %s AND node_id = ANY(%s) ON CONFLICT DO NOTHING",
                    (target.seconds, size, mark_tier, start, end, chunk),
                )
                db.execute(
                    "DELETE FROM rollup_dirty WHERE tier = %s AND bucket >= %s AND bucket < %s AND node_id = ANY(%s)",
                    (mark_tier, start, end, chunk),
                )
                if time.monotonic() > deadline and first + per_unit < len(nodes):
                    return done, False
            done += buckets
            if time.monotonic() > deadline:
                return done, False
    db.execute("DELETE FROM rollup_dirty WHERE tier = %s", (tiers[-1].seconds,))
    return done, True


def _recompute(
    db: Connection,
    table: TierTable,
    source: Tier | None,
    target: Tier,
    start: int,
    end: int,
    nodes: list[str],
) -> None:
    columns = stat_columns(table)
    keys = ", ".join(("node_id", *table.keys))
    conflict = f"(tier, node_id, bucket{''.join(', ' + k for k in table.keys)})"
    insert = f"INSERT INTO {table.name} (tier, bucket, {keys}, {', '.join(columns)}) "
    update = ", ".join(f"{c} = excluded.{c}" for c in columns)
    if source is None:
        select = ", ".join(
            f"count({f.name}), sum({f.name})::float8, min({f.name})::float8, max({f.name})::float8"
            for f in table.fields
        )
        bucket = "ts - ts %% %s"
        frm = f"FROM {_raw_source(table)} AS r WHERE ts >= %s AND ts < %s AND node_id = ANY(%s)"
        params: list[object] = [target.seconds, target.bucket_ms, start, end, nodes]
    else:
        select = ", ".join(
            f"sum({c})" if c.endswith("_n") else f"sum({c})" if c.endswith("_sum") else f"{c[-3:]}({c})"
            for c in columns
        )
        bucket = "bucket - bucket %% %s"
        frm = f"FROM {table.name} WHERE tier = %s AND node_id = ANY(%s) AND bucket >= %s AND bucket < %s"
        params = [target.seconds, target.bucket_ms, source.seconds, nodes, start, end]
    db.execute(
        f"{insert} SELECT %s, {bucket} AS b, {keys}, {select} {frm} GROUP BY b, {keys} "
        f"ON CONFLICT {conflict} DO UPDATE SET {update}",
        params,
    )


def _raw_source(table: TierTable) -> str:
    """Raw rows of a table; per-core figures come out of the ``jsonb`` list in each node row."""
    if table is CORES:
        return (
            "(SELECT node_id, ts, (j.i - 1)::integer AS core, j.v::float8 AS cpu FROM node_samples, "
            "jsonb_array_elements_text(node_samples.cpu_per_core) WITH ORDINALITY AS j(v, i))"
        )
    return table.raw


def prune(db: Connection, tiers: Sequence[Tier], now_ms: int) -> int:
    """Delete each tier's buckets older than its retention; rows removed."""
    removed = 0
    for tier in tiers:
        cutoff = aligned_cutoff(now_ms - int(tier.retention.total_seconds() * 1000), tiers, tier)
        for table in TABLES:
            sql = f"DELETE FROM {table.name} WHERE tier = %s AND bucket < %s"  # noqa: S608
            cursor = db.execute(sql, (tier.seconds, cutoff))
            removed += max(0, cursor.rowcount)
    return removed


def _expression(f: TierField, stat: str, raw: bool) -> str:
    if f.kind.value == "count" or stat == "sum":
        return f"coalesce(sum({f.name}), 0)::float8" if raw else f"coalesce(sum({f.name}_sum), 0)::float8"
    if raw:
        return f"{stat}({f.name})::float8"
    if stat == "avg":
        return f"(sum({f.name}_sum) / NULLIF(sum({f.name}_n), 0))::float8"
    return f"{stat}({f.name}_{stat})::float8"


def read(
    db: Connection,
    table: TierTable,
    res: Resolution,
    node_id: str,
    columns: Sequence[tuple[TierField, str]],
    start_ms: int,
    end_ms: int,
) -> SeriesRows:
    """``(field, stat)`` columns of one node in ``[start, end)``, in buckets of ``res.step_seconds``."""
    step = res.step_seconds * 1000
    raw = res.tier is None
    label = table.keys[0] if table.keys else "NULL"
    exprs = ", ".join(_expression(f, stat, raw) for f, stat in columns)
    if raw:
        sql = (
            f"SELECT ts - ts %% %s AS b, {label}, {exprs} FROM {_raw_source(table)} AS r "  # noqa: S608
            "WHERE node_id = %s AND ts >= %s AND ts < %s"
        )
        params: list[object] = [step, node_id, start_ms, end_ms]
    else:
        assert res.tier is not None
        sql = (
            f"SELECT bucket - bucket %% %s AS b, {label}, {exprs} FROM {table.name} "  # noqa: S608
            "WHERE tier = %s AND node_id = %s AND bucket >= %s AND bucket < %s"
        )
        params = [step, res.tier.seconds, node_id, start_ms - start_ms % res.tier.bucket_ms, end_ms]
    group = "b" if not table.keys else f"b, {label}"
    rows = db.execute(f"{sql} GROUP BY {group} ORDER BY b", params).fetchall()
    return SeriesRows([(int(r[0]), None if r[1] is None else str(r[1]), list(r[2:])) for r in rows])

"""Downsampled tiers in PostgreSQL: the same tiers, marks and algorithm as ``subscriber.sqlite_tiers``.

Only the SQL differs: upserts are ``INSERT ... ON CONFLICT DO UPDATE``, per-core figures come out of
a ``jsonb`` array, and sums are ``float8`` like SQLite's ``total()`` (a node's counters may add up
beyond 64 bits). The windowing of dirty marks into units of work is shared with SQLite.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg

from subscriber.rollup import Resolution, Tier, TierField
from subscriber.sqlite_tiers import (
    CORES,
    TABLES,
    MarkStatements,
    SeriesRows,
    TierTable,
    aligned_cutoff,
    read_query,
    run_maintenance,
    series_rows,
    stat_columns,
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
    """``sqlite_tiers.run_maintenance`` on PostgreSQL: closed dirty buckets computed until done or ``deadline``."""

    def promote(target: Tier, mark_tier: int, start: int, end: int, chunk: list[str]) -> None:
        db.execute(
            "INSERT INTO rollup_dirty SELECT %s, bucket - bucket %% %s, node_id FROM rollup_dirty "
            "WHERE tier = %s AND bucket >= %s AND bucket < %s AND node_id = ANY(%s) ON CONFLICT DO NOTHING",
            (target.seconds, target.bucket_ms, mark_tier, start, end, chunk),
        )
        db.execute(
            "DELETE FROM rollup_dirty WHERE tier = %s AND bucket >= %s AND bucket < %s AND node_id = ANY(%s)",
            (mark_tier, start, end, chunk),
        )

    statements = MarkStatements(
        crowds=lambda mark_tier, size, closed: [
            (int(b), int(n))
            for b, n in db.execute(
                "SELECT bucket - bucket %% %s AS b, count(DISTINCT node_id) FROM rollup_dirty "
                "WHERE tier = %s AND bucket - bucket %% %s <= %s GROUP BY b ORDER BY b",
                (size, mark_tier, size, closed),
            )
        ],
        nodes=lambda mark_tier, start, end: [
            str(node_id)
            for (node_id,) in db.execute(
                "SELECT DISTINCT node_id FROM rollup_dirty WHERE tier = %s AND bucket >= %s AND bucket < %s "
                "ORDER BY node_id",
                (mark_tier, start, end),
            )
        ],
        recompute=lambda table, source, target, start, end, chunk: _recompute(
            db, table, source, target, start, end, chunk
        ),
        promote=promote,
        clear=lambda tier: db.execute("DELETE FROM rollup_dirty WHERE tier = %s", (tier,)),
    )
    return run_maintenance(statements, tiers, now_ms, deadline)


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
    exprs = ", ".join(_expression(f, stat, res.tier is None) for f, stat in columns)
    sql, params = read_query(table, _raw_source(table), res, node_id, exprs, start_ms, end_ms, "%s", "%%")
    return series_rows(db.execute(sql, params).fetchall())

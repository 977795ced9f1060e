"""Downsampled tiers in SQLite: schema, incremental maintenance, pruning and reads.

Every write marks the (node, minute) buckets it touched as dirty, in the same transaction as the
raw rows. ``maintain`` recomputes each closed dirty bucket from its source (raw rows for the first
tier, the tier below for the others) with ``INSERT OR REPLACE``, then marks the bucket of the next
tier that contains it. So each bucket is computed from scratch, exactly, about once; a late or
redelivered sample only dirties its bucket again; nothing is rescanned; and because the marks live
in the database, a restart resumes where the last maintenance stopped.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from subscriber.rollup import (
    CONTAINER_TIER_FIELDS,
    NODE_TIER_FIELDS,
    Kind,
    Resolution,
    Tier,
    TierField,
)

#: A bucket is computed once this long after it ends (later samples dirty it again).
CLOSE_GRACE_MS = 15_000
#: (node, bucket) marks computed in one unit of work: 60 nodes' minute, about 15,000 raw rows.
UNIT_MARKS = 60
DAY_MS = 86_400_000
_STATS = ("n", "sum", "min", "max")


@dataclass(frozen=True, slots=True)
class TierTable:
    """One rolled-up table: its raw source, key columns and fields."""

    name: str
    raw: str
    keys: tuple[str, ...]  # besides tier, node_id and bucket
    fields: tuple[TierField, ...]


NODES = TierTable("node_rollups", "node_samples", (), NODE_TIER_FIELDS)
CONTAINERS = TierTable("container_rollups", "container_samples", ("container_name",), CONTAINER_TIER_FIELDS)
CORES = TierTable("core_rollups", "node_samples", ("core",), (TierField("cpu", Kind.GAUGE, "%"),))
TABLES = (NODES, CONTAINERS, CORES)


@dataclass(frozen=True, slots=True)
class SeriesRows:
    """Bucketed rows of one query: ``(bucket_ms, label, value per requested column)``."""

    rows: list[tuple[int, str | None, list[float | None]]]


def stat_columns(table: TierTable) -> list[str]:
    return [f"{f.name}_{s}" for f in table.fields for s in _STATS]


def migrate(db: sqlite3.Connection) -> None:
    """Create the tier tables and the dirty marks; mark raw history that has no tiers yet."""
    created = not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'rollup_dirty'").fetchone()
    for table in TABLES:
        keys = "".join(f"{k} {'INTEGER' if k == 'core' else 'TEXT'} NOT NULL, " for k in table.keys)
        stats = ", ".join(
            f"{c} {'INTEGER NOT NULL DEFAULT 0' if c.endswith('_n') else 'NUMERIC'}" for c in stat_columns(table)
        )
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {table.name} (tier INTEGER NOT NULL, node_id TEXT NOT NULL, "
            f"bucket INTEGER NOT NULL, {keys}{stats}, "
            f"PRIMARY KEY (tier, node_id, bucket{''.join(', ' + k for k in table.keys)})) WITHOUT ROWID"
        )
        db.execute(f"CREATE INDEX IF NOT EXISTS {table.name}_age ON {table.name} (tier, bucket)")
        existing = {row[1] for row in db.execute(f"PRAGMA table_info({table.name})")}
        for column in stat_columns(table):
            if column not in existing:
                kind = "INTEGER NOT NULL DEFAULT 0" if column.endswith("_n") else "NUMERIC"
                db.execute(f"ALTER TABLE {table.name} ADD COLUMN {column} {kind}")
    db.execute(
        "CREATE TABLE IF NOT EXISTS rollup_dirty (tier INTEGER NOT NULL, bucket INTEGER NOT NULL, "
        "node_id TEXT NOT NULL, PRIMARY KEY (tier, bucket, node_id)) WITHOUT ROWID"
    )
    if created:  # history written before tiers existed is rolled up by the next maintenance passes
        for raw in ("node_samples", "container_samples"):
            db.execute(
                f"INSERT OR IGNORE INTO rollup_dirty SELECT 0, ts - ts % 60000, node_id FROM {raw}"  # noqa: S608
            )


def mark(db: sqlite3.Connection, touched: Iterable[tuple[str, int]]) -> None:
    """Mark the minutes of ``(node_id, ts_ms)`` samples as needing (re)computation."""
    db.executemany(
        "INSERT OR IGNORE INTO rollup_dirty (tier, bucket, node_id) VALUES (0, ?, ?)",
        {(ts - ts % 60_000, node_id) for node_id, ts in touched},
    )


@dataclass(frozen=True, slots=True)
class MarkStatements:
    """What ``run_maintenance`` asks of one database (SQLite here, PostgreSQL in postgres_tiers)."""

    #: ``(mark tier, bucket size, closed before)``: ``(bucket, dirty nodes)`` of closed buckets, in order.
    crowds: Callable[[int, int, int], list[tuple[int, int]]]
    #: ``(mark tier, start, end)``: the nodes with marks in ``[start, end)``, sorted.
    nodes: Callable[[int, int, int], list[str]]
    #: ``(table, source tier or None for raw rows, target tier, start, end, nodes)``: compute those buckets.
    recompute: Callable[[TierTable, Tier | None, Tier, int, int, list[str]], None]
    #: ``(target tier, mark tier, start, end, nodes)``: mark the target's buckets above, clear these marks.
    promote: Callable[[Tier, int, int, int, list[str]], None]
    #: ``(tier)``: clear the marks of a tier (the coarsest has nothing above it).
    clear: Callable[[int], object]


def maintain(
    db: sqlite3.Connection, tiers: Sequence[Tier], now_ms: int, deadline: float = math.inf
) -> tuple[int, bool]:
    """``run_maintenance`` on a SQLite history file."""

    def promote(target: Tier, mark_tier: int, start: int, end: int, chunk: list[str]) -> None:
        placeholders = ", ".join("?" * len(chunk))
        db.execute(
            "INSERT OR IGNORE INTO rollup_dirty SELECT ?, bucket - bucket % ?, node_id FROM rollup_dirty "  # noqa: S608
            f"WHERE tier = ? AND bucket >= ? AND bucket < ? AND node_id IN ({placeholders})",
            (target.seconds, target.bucket_ms, mark_tier, start, end, *chunk),
        )
        db.execute(
            "DELETE FROM rollup_dirty WHERE tier = ? AND bucket >= ? AND bucket < ? "  # noqa: S608
            f"AND node_id IN ({placeholders})",
            (mark_tier, start, end, *chunk),
        )

    statements = MarkStatements(
        crowds=lambda mark_tier, size, closed: db.execute(
            "SELECT bucket - bucket % ? AS b, count(DISTINCT node_id) FROM rollup_dirty "
            "WHERE tier = ? AND bucket - bucket % ? <= ? GROUP BY b ORDER BY b",
            (size, mark_tier, size, closed),
        ).fetchall(),
        nodes=lambda mark_tier, start, end: [
            node_id
            for (node_id,) in db.execute(
                "SELECT DISTINCT node_id FROM rollup_dirty WHERE tier = ? AND bucket >= ? AND bucket < ? "
                "ORDER BY node_id",
                (mark_tier, start, end),
            )
        ],
        recompute=lambda table, source, target, start, end, chunk: _recompute(
            db, table, source, target, start, end, chunk
        ),
        promote=promote,
        clear=lambda tier: db.execute("DELETE FROM rollup_dirty WHERE tier = ?", (tier,)),
    )
    return run_maintenance(statements, tiers, now_ms, deadline)


def run_maintenance(
    db: MarkStatements, tiers: Sequence[Tier], now_ms: int, deadline: float = math.inf
) -> tuple[int, bool]:
    """Compute closed dirty buckets of ``tiers`` (finest first, as ``Retention`` keeps them) until
    done or ``deadline`` (monotonic) has passed; the number of buckets completed, and whether nothing closed is left.

    Marks use tier 0 for "minutes touched in raw rows"; a mark on a finer tier becomes, once its
    bucket has closed, a computed bucket of the next tier up and a mark on the one after. Work
    goes in units of at most ``UNIT_MARKS`` (node, bucket) marks: runs of sparse buckets share a
    unit (catching up after a long stop is cheap), a crowded bucket is split by nodes (a thousand
    nodes' minute is 17 units), so one unit never holds up ingestion for long. A (node, bucket)
    in a unit that was not dirty is recomputed to the same value.
    """
    done = 0
    sources: list[Tier | None] = [None, *tiers[:-1]]
    for source, target in zip(sources, tiers, strict=True):
        mark_tier = source.seconds if source else 0
        size = target.bucket_ms
        crowds = db.crowds(mark_tier, size, now_ms - size - CLOSE_GRACE_MS)
        for start, end, buckets in windows(crowds, size):
            nodes = db.nodes(mark_tier, start, end)
            per_unit = max(1, UNIT_MARKS // buckets)
            for first in range(0, len(nodes), per_unit):
                chunk = nodes[first : first + per_unit]
                for table in TABLES:
                    db.recompute(table, source, target, start, end, chunk)
                db.promote(target, mark_tier, start, end, chunk)
                if time.monotonic() > deadline and first + per_unit < len(nodes):
                    return done, False
            done += buckets
            if time.monotonic() > deadline:
                return done, False
    db.clear(tiers[-1].seconds)  # marks on the coarsest tier have nothing above them
    return done, True


def windows(crowds: list[tuple[int, int]], size: int) -> list[tuple[int, int, int]]:
    """``(bucket, dirty nodes)`` in bucket order, grouped into ``(start, end, buckets)`` windows of
    at most ``UNIT_MARKS`` marks (a crowded bucket alone) and at most a day wide."""
    windows: list[tuple[int, int, int]] = []
    marks = 0
    for bucket, nodes in crowds:
        if windows and marks + nodes <= UNIT_MARKS and bucket + size - windows[-1][0] <= max(UNIT_MARKS * size, DAY_MS):
            start, _, buckets = windows[-1]
            windows[-1] = (start, bucket + size, buckets + 1)
            marks += nodes
        else:
            windows.append((bucket, bucket + size, 1))
            marks = nodes
    return windows


def _recompute(
    db: sqlite3.Connection, table: TierTable, source: Tier | None, target: Tier, start: int, end: int, nodes: list[str]
) -> None:
    columns = stat_columns(table)
    keys = ", ".join(("node_id", *table.keys))
    insert = f"INSERT OR REPLACE INTO {table.name} (tier, bucket, {keys}, {', '.join(columns)}) "
    placeholders = ", ".join("?" * len(nodes))  # at most UNIT_MARKS: well under SQLite's parameter limit
    if source is None:
        # total(), not sum(): a node's counters may add up beyond 64 bits, which sum() refuses.
        select = ", ".join(f"count({f.name}), total({f.name}), min({f.name}), max({f.name})" for f in table.fields)
        bucket = "ts - ts % ?"
        frm = f"FROM {_raw_source(table)} WHERE ts >= ? AND ts < ? AND node_id IN ({placeholders})"
        params: list[object] = [target.seconds, target.bucket_ms, start, end, *nodes]
    else:
        select = ", ".join(
            f"sum({c})" if c.endswith("_n") else f"total({c})" if c.endswith("_sum") else f"{c[-3:]}({c})"
            for c in columns
        )
        bucket = "bucket - bucket % ?"
        frm = f"FROM {table.name} WHERE tier = ? AND node_id IN ({placeholders}) AND bucket >= ? AND bucket < ?"
        params = [target.seconds, target.bucket_ms, source.seconds, *nodes, start, end]
    db.execute(f"{insert} SELECT ?, {bucket} AS b, {keys}, {select} {frm} GROUP BY b, {keys}", params)


def _raw_source(table: TierTable) -> str:
    """Raw rows of a table; per-core figures come out of the JSON list in each node row."""
    if table is CORES:
        return (
            "(SELECT node_id, ts, CAST(j.key AS INTEGER) AS core, j.value AS cpu "
            "FROM node_samples, json_each(node_samples.cpu_per_core) AS j)"
        )
    return table.raw


def aligned_cutoff(cutoff_ms: int, tiers: Sequence[Tier], pruned: Tier | None) -> int:
    """``cutoff_ms`` rounded down to a bucket of the tier computed from ``pruned`` (None: raw rows);
    ``tiers`` finest first.

    Pruning whole buckets of the next tier up means a source bucket is never half gone when a
    late sample makes its tier bucket be recomputed.
    """
    above = [t for t in tiers if pruned is None or t.seconds > pruned.seconds]
    size = above[0].bucket_ms if above else 1
    return cutoff_ms - cutoff_ms % size


def prune(db: sqlite3.Connection, tiers: Sequence[Tier], now_ms: int) -> int:
    """Delete each tier's buckets older than its retention; rows removed."""
    before = db.total_changes
    for tier in tiers:
        cutoff = aligned_cutoff(now_ms - int(tier.retention.total_seconds() * 1000), tiers, tier)
        for table in TABLES:
            db.execute(f"DELETE FROM {table.name} WHERE tier = ? AND bucket < ?", (tier.seconds, cutoff))  # noqa: S608
    return db.total_changes - before


def _expression(f: TierField, stat: str, raw: bool) -> str:
    if f.kind is Kind.COUNT or stat == "sum":
        return f"total({f.name})" if raw else f"total({f.name}_sum)"
    if raw:
        return f"{stat}({f.name})"
    if stat == "avg":
        return f"total({f.name}_sum) / NULLIF(sum({f.name}_n), 0)"
    return f"{stat}({f.name}_{stat})"


def read(
    db: sqlite3.Connection,
    table: TierTable,
    res: Resolution,
    node_id: str,
    columns: Sequence[tuple[TierField, str]],
    start_ms: int,
    end_ms: int,
) -> SeriesRows:
    """``(field, stat)`` columns of one node in ``[start, end)``, in buckets of ``res.step_seconds``."""
    exprs = ", ".join(_expression(f, stat, res.tier is None) for f, stat in columns)
    sql, params = read_query(table, _raw_source(table), res, node_id, exprs, start_ms, end_ms, "?", "%")
    return series_rows(db.execute(sql, params).fetchall())


def read_query(
    table: TierTable,
    raw_source: str,
    res: Resolution,
    node_id: str,
    exprs: str,
    start_ms: int,
    end_ms: int,
    mark: str,
    modulo: str,
) -> tuple[str, list[object]]:
    """The bucketed read of ``read`` as SQL with the driver's placeholder ``mark`` and ``modulo`` operator."""
    step = res.step_seconds * 1000
    label = table.keys[0] if table.keys else "NULL"
    if res.tier is None:
        sql = (
            f"SELECT ts - ts {modulo} {mark} AS b, {label}, {exprs} FROM {raw_source} AS r "  # noqa: S608
            f"WHERE node_id = {mark} AND ts >= {mark} AND ts < {mark}"
        )
        params: list[object] = [step, node_id, start_ms, end_ms]
    else:
        sql = (
            f"SELECT bucket - bucket {modulo} {mark} AS b, {label}, {exprs} FROM {table.name} "  # noqa: S608
            f"WHERE tier = {mark} AND node_id = {mark} AND bucket >= {mark} AND bucket < {mark}"
        )
        params = [step, res.tier.seconds, node_id, start_ms - start_ms % res.tier.bucket_ms, end_ms]
    group = "b" if not table.keys else f"b, {label}"
    return f"{sql} GROUP BY {group} ORDER BY b", params


def series_rows(rows: Sequence[Sequence[Any]]) -> SeriesRows:
    return SeriesRows([(int(r[0]), None if r[1] is None else str(r[1]), list(r[2:])) for r in rows])

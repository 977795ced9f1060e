"""History storage: a small interface and its SQLite implementation (one file, WAL, batched writes).

Columns are derived from the wire contract: every numeric or boolean field of NodeMetrics (and of
its ``agent`` object, prefixed ``agent_``) and of ContainerMetrics is a typed column, so history
queries need no JSON parsing and a field added to the contract becomes a column on next start.
Rows are keyed by (node, [container name,] timestamp): a message delivered twice is stored once.

Durability: ``synchronous=FULL`` makes every commit reach the disk (the WAL is fsynced) before
``write`` returns, so a message acknowledged after its commit survives a power cut, not only a
crash of the process. Failures of the medium (disk full, read-only, locked, I/O error) raise
``StoreUnavailable``; anything else ``write`` raises is about the rows themselves.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

from common.cli import RateLimitedLog
from contract.models import (
    AgentStats,
    ContainerEvent,
    ContainerMetrics,
    ContainerMetricsBatch,
    NodeMetrics,
    NodeStatus,
)
from subscriber import sqlite_events, sqlite_tiers
from subscriber.rollup import (
    CONTAINER_COUNTERS,
    CONTAINER_DERIVED,
    NODE_COUNTERS,
    NODE_DERIVED,
    Derivation,
    Previous,
    Resolution,
    Retention,
    Tier,
    TierField,
    cycles_lost,
    rates,
)
from subscriber.state import NodeView

log = logging.getLogger(__name__)
#: Replicas read every stored view at each scrape: one line a minute however many no longer validate.
_invalid_views = RateLimitedLog(log, period=60.0)


def _scalar_type(annotation: Any) -> type | None:
    """The scalar behind Optional/Annotated wrappers, or None for lists, models and the like."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _scalar_type(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _scalar_type(inner[0]) if len(inner) == 1 else None
    return annotation if annotation in (int, float, bool, str) else None


def _columns(model: type[BaseModel], kinds: tuple[type, ...], skip: set[str]) -> list[str]:
    return [
        name
        for name, field in model.model_fields.items()
        if name not in skip and _scalar_type(field.annotation) in kinds
    ]


NUMERIC = (int, float, bool)
# History derives the network rates from the counters itself (every agent version, across lost
# messages): the agent's own rate fields, for consumers of single messages, are not stored twice.
NODE_FIELDS = _columns(NodeMetrics, NUMERIC, {"schema_version", "network_sent_rate", "network_recv_rate"})
AGENT_FIELDS = _columns(AgentStats, NUMERIC, set())
#: Queryable node history fields (the agent's own figures are prefixed ``agent_``).
NODE_SERIES_FIELDS = NODE_FIELDS + [f"agent_{name}" for name in AGENT_FIELDS]
#: Queryable container history fields.
CONTAINER_SERIES_FIELDS = _columns(ContainerMetrics, NUMERIC, set())
CONTAINER_TEXT_FIELDS = ["container_id", "image", "state", "health"]


def column_kind(column: str) -> type:
    """The Python type of a stored node, agent or container column (int, float, bool or str)."""
    agent = column.startswith("agent_")
    model: type[BaseModel]
    for model, name in (
        ((AgentStats, column.removeprefix("agent_")),) if agent else ((NodeMetrics, column), (ContainerMetrics, column))
    ):
        field = model.model_fields.get(name)
        kind = _scalar_type(field.annotation) if field is not None else None
        if kind is not None:
            return kind
    return float  # derived columns: rates and cycles lost


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
class Written:
    """New rows per table (copies of rows already stored are not counted)."""

    nodes: int
    containers: int
    #: Events stored by this write that were not stored before, in the order given.
    events: tuple[ContainerEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class Series:
    """A time series, oldest first; ``truncated`` when older points in the range were left out."""

    points: list[tuple[datetime, float | None]]
    truncated: bool


#: What a bucketed read returns: ``(bucket start in ms, label, one value per requested column)``;
#: the label is the container name or core number, None for node series.
SeriesRows = sqlite_tiers.SeriesRows
#: Which rows a bucketed read covers: the node's own, each container's, or each core's.
Scope = typing.Literal["node", "containers", "cores"]
SCOPE_TABLES = {"node": sqlite_tiers.NODES, "containers": sqlite_tiers.CONTAINERS, "cores": sqlite_tiers.CORES}


@dataclass(frozen=True, slots=True)
class RecentHealth:
    """A node's last day as the tiers tell it (they lag the live data by a minute or two)."""

    cycles_lost: int
    under_voltage: bool


class StoreUnavailable(Exception):
    """The store cannot write now (disk full, read-only, locked, I/O error); the same write may work later."""


class HistoryStore(Protocol):
    """What the subscriber needs from a history store; SQLite today, a server database later."""

    def write(
        self,
        nodes: Sequence[NodeMetrics],
        batches: Sequence[ContainerMetricsBatch],
        latest: Sequence[NodeView],
        events: Sequence[ContainerEvent] = (),
    ) -> Written:
        """Store samples, container events and the latest views in one transaction."""

    def events(
        self, node_id: str, start: datetime, end: datetime, limit: int, container: str | None = None
    ) -> list[ContainerEvent]:
        """A node's container events in ``[start, end)``, newest first."""

    def node_series(self, node_id: str, field: str, start: datetime, end: datetime, limit: int) -> Series: ...

    def container_series(
        self, node_id: str, container: str, field: str, start: datetime, end: datetime, limit: int
    ) -> Series: ...

    def latest_views(self) -> list[NodeView]: ...

    def prune(self, older_than: datetime) -> int:
        """Delete raw rows older than ``older_than`` and tier buckets older than their retention."""

    retention: Retention

    def maintain(self, now: datetime, budget: float | None = None) -> tuple[int, bool]:
        """Bring the downsampled tiers up to date, for about ``budget`` seconds at most (None: all
        of it); buckets completed, and whether nothing closed is left to compute."""

    def buckets(
        self,
        scope: Scope,
        node_id: str,
        columns: Sequence[tuple[TierField, str]],
        start: datetime,
        end: datetime,
        res: Resolution,
    ) -> SeriesRows:
        """``(field, stat)`` columns in ``[start, end)``, bucketed as ``res`` says."""

    def recent_health(self, since: datetime) -> dict[str, RecentHealth]: ...

    def close(self) -> None: ...


class SqliteHistoryStore:
    """HistoryStore on one SQLite file in WAL mode. One writer thread; any number of reader threads."""

    def __init__(self, path: Path, durable: bool = True, retention: Retention | None = None) -> None:
        """``durable=False`` (synchronous=NORMAL) exists only for the benchmark that prices durability."""
        self.path = path
        self.retention = retention or Retention(raw=timedelta(days=7))
        self._derivation = Derivation()
        #: Samples of the write at hand whose previous sample was read back: derived again after it.
        self._looked_up: list[tuple[bool, tuple[str, ...], int]] = []
        self._synchronous = "FULL" if durable else "NORMAL"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._writer = self._connect()
        self._writer.execute("PRAGMA journal_mode=WAL")
        self._migrate()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        connection.execute(f"PRAGMA synchronous={self._synchronous}")
        connection.execute("PRAGMA busy_timeout=10000")
        return connection

    def _reader(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
        return connection

    # -- schema -----------------------------------------------------------------------------------

    def _migrate(self) -> None:
        # NUMERIC affinity keeps integers exact (counters go beyond 2**53) and floats as floats.
        node_columns = ", ".join(f"{c} NUMERIC" for c in NODE_SERIES_FIELDS)
        container_columns = ", ".join(
            [f"{c} TEXT" for c in CONTAINER_TEXT_FIELDS] + [f"{c} NUMERIC" for c in CONTAINER_SERIES_FIELDS]
        )
        with self._transaction() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS node_samples (node_id TEXT NOT NULL, ts INTEGER NOT NULL, "
                f"cpu_per_core TEXT, {node_columns}, {', '.join(f'{c} NUMERIC' for c in NODE_DERIVED)}, "
                "PRIMARY KEY (node_id, ts)) WITHOUT ROWID"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS container_samples (node_id TEXT NOT NULL, container_name TEXT NOT NULL, "
                f"ts INTEGER NOT NULL, {container_columns}, {', '.join(f'{c} NUMERIC' for c in CONTAINER_DERIVED)}, "
                "PRIMARY KEY (node_id, container_name, ts)) WITHOUT ROWID"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS latest (node_id TEXT PRIMARY KEY, metrics TEXT, containers TEXT, "
                "status TEXT, last_seen REAL, last_metrics REAL, last_containers REAL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS node_samples_ts ON node_samples (ts)")
            db.execute("CREATE INDEX IF NOT EXISTS container_samples_ts ON container_samples (ts)")
            # Rows are keyed (node, name, ts); charts and tiers read one node's containers over a time.
            db.execute("CREATE INDEX IF NOT EXISTS container_samples_node_ts ON container_samples (node_id, ts)")
            # Fields added to the contract since the file was created become new columns.
            for table, wanted in (
                ("node_samples", NODE_SERIES_FIELDS + NODE_DERIVED),
                ("container_samples", CONTAINER_TEXT_FIELDS + CONTAINER_SERIES_FIELDS + CONTAINER_DERIVED),
                ("latest", ["last_containers"]),
            ):
                existing = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                for column in wanted:
                    if column not in existing:
                        kind = "TEXT" if column in CONTAINER_TEXT_FIELDS else "REAL" if table == "latest" else "NUMERIC"
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            sqlite_tiers.migrate(db)
            sqlite_events.migrate(db)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._writer)

    # -- writing ----------------------------------------------------------------------------------

    def write(
        self,
        nodes: Sequence[NodeMetrics],
        batches: Sequence[ContainerMetricsBatch],
        latest: Sequence[NodeView],
        events: Sequence[ContainerEvent] = (),
    ) -> Written:
        try:
            return self._write(nodes, batches, latest, events)
        except (sqlite3.OperationalError, OSError) as exc:
            raise StoreUnavailable(str(exc)) from exc

    def events(
        self, node_id: str, start: datetime, end: datetime, limit: int, container: str | None = None
    ) -> list[ContainerEvent]:
        return sqlite_events.read(self._reader(), node_id, start, end, limit, container)

    def _write(
        self,
        nodes: Sequence[NodeMetrics],
        batches: Sequence[ContainerMetricsBatch],
        latest: Sequence[NodeView],
        events: Sequence[ContainerEvent] = (),
    ) -> Written:
        with self._transaction() as db:
            self._looked_up = []
            node_rows = [(*node_row(m), *self._node_derived(db, m)) for m in nodes]
            container_rows = [
                (*container_row(b, ts, c), *self._container_derived(db, b.node_id, ts, c))
                for b in batches
                for ts in (to_ms(b.timestamp),)
                for c in b.containers
            ]
            before = db.total_changes
            if node_rows:
                columns = ["node_id", "ts", "cpu_per_core", *NODE_SERIES_FIELDS, *NODE_DERIVED]
                db.executemany(_insert("node_samples", columns), node_rows)
            after_nodes = db.total_changes
            if container_rows:
                columns = [
                    "node_id", "container_name", "ts", *CONTAINER_TEXT_FIELDS, *CONTAINER_SERIES_FIELDS,
                    *CONTAINER_DERIVED,
                ]  # fmt: skip
                db.executemany(_insert("container_samples", columns), container_rows)
            stored = Written(
                after_nodes - before, db.total_changes - after_nodes, tuple(sqlite_events.insert(db, events))
            )
            for is_node, key, ts in self._looked_up:
                _rederive_from(db, is_node, key, ts)
            sqlite_tiers.mark(
                db,
                [(m.node_id, to_ms(m.timestamp)) for m in nodes] + [(b.node_id, to_ms(b.timestamp)) for b in batches],
            )
            if latest:
                db.executemany(
                    "INSERT OR REPLACE INTO latest (node_id, metrics, containers, status, last_seen, last_metrics, "
                    "last_containers) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            v.node_id,
                            v.metrics.model_dump_json() if v.metrics else None,
                            v.containers.model_dump_json() if v.containers else None,
                            v.status.model_dump_json() if v.status else None,
                            v.last_seen,
                            v.last_metrics,
                            v.last_containers,
                        )
                        for v in latest
                    ],
                )
        return stored

    def _node_derived(self, db: sqlite3.Connection, message: NodeMetrics) -> list[Any]:
        ts = to_ms(message.timestamp)
        counters = tuple(getattr(message, c) for c in NODE_COUNTERS)
        previous = self._derivation.exchange((message.node_id,), Previous(ts, counters, message.cycle))
        if previous is None:  # not seen since start, or an older sample: read the one before back
            self._looked_up.append((True, (message.node_id,), ts))
            row = db.execute(
                f"SELECT ts, cycle, {', '.join(NODE_COUNTERS)} FROM node_samples "  # noqa: S608
                "WHERE node_id = ? AND ts < ? ORDER BY ts DESC LIMIT 1",
                (message.node_id, ts),
            ).fetchone()
            previous = Previous(row[0], tuple(row[2:]), int(row[1] or 0)) if row is not None else None
        return [*rates(previous, ts, counters), cycles_lost(previous, ts, message.cycle, message.interval_seconds)]

    def _container_derived(
        self, db: sqlite3.Connection, node_id: str, ts: int, container: ContainerMetrics
    ) -> list[float | None]:
        key = (node_id, container.container_name)
        counters = tuple(getattr(container, c) for c in CONTAINER_COUNTERS)
        previous = self._derivation.exchange(key, Previous(ts, counters))
        if previous is None:
            self._looked_up.append((False, key, ts))
            row = db.execute(
                f"SELECT ts, {', '.join(CONTAINER_COUNTERS)} FROM container_samples "  # noqa: S608
                "WHERE node_id = ? AND container_name = ? AND ts < ? ORDER BY ts DESC LIMIT 1",
                (*key, ts),
            ).fetchone()
            previous = Previous(row[0], tuple(row[1:])) if row is not None else None
        return rates(previous, ts, counters)

    def prune(self, older_than: datetime) -> int:
        cutoff = sqlite_tiers.aligned_cutoff(to_ms(older_than), self.retention.tiers, None)
        with self._transaction() as db:
            before = db.total_changes
            db.execute("DELETE FROM node_samples WHERE ts < ?", (cutoff,))
            db.execute("DELETE FROM container_samples WHERE ts < ?", (cutoff,))
            db.execute("DELETE FROM latest WHERE last_seen < ?", (cutoff / 1000,))
            pruned = db.total_changes - before
            # Events are few and what a post-mortem needs: they are kept as long as the longest tier.
            keep = max([self.retention.raw, *(tier.retention for tier in self.retention.tiers)])
            pruned += sqlite_events.prune(db, datetime.now(UTC) - keep)
            return pruned + sqlite_tiers.prune(db, self.retention.tiers, to_ms(datetime.now(UTC)))

    def maintain(self, now: datetime, budget: float | None = None) -> tuple[int, bool]:
        deadline = time.monotonic() + budget if budget is not None else math.inf
        try:
            with self._transaction() as db:
                return sqlite_tiers.maintain(db, self.retention.tiers, to_ms(now), deadline)
        except (sqlite3.OperationalError, OSError) as exc:
            raise StoreUnavailable(str(exc)) from exc

    def buckets(
        self,
        scope: Scope,
        node_id: str,
        columns: Sequence[tuple[TierField, str]],
        start: datetime,
        end: datetime,
        res: Resolution,
    ) -> SeriesRows:
        return sqlite_tiers.read(self._reader(), SCOPE_TABLES[scope], res, node_id, columns, to_ms(start), to_ms(end))

    def recent_health(self, since: datetime) -> dict[str, RecentHealth]:
        reader = self._reader()
        return gather_recent_health(
            self.retention.tiers,
            to_ms(since),
            lambda tier: reader.execute("SELECT max(bucket) FROM node_rollups WHERE tier = ?", (tier,)).fetchone()[0],
            lambda tier, begin, end: reader.execute(
                # Without the hint SQLite walks the whole tier in key order to save a sort.
                "SELECT node_id, total(cycles_lost_sum), max(under_voltage_max) FROM node_rollups "
                "INDEXED BY node_rollups_age WHERE tier = ? AND bucket >= ? AND bucket < ? GROUP BY node_id",
                (tier, begin, end),
            ),
        )

    # -- reading ----------------------------------------------------------------------------------

    def node_series(self, node_id: str, field: str, start: datetime, end: datetime, limit: int) -> Series:
        return self._series(*series_query(node_id, None, field, start, end, limit, "?"), limit)

    def container_series(
        self, node_id: str, container: str, field: str, start: datetime, end: datetime, limit: int
    ) -> Series:
        return self._series(*series_query(node_id, container, field, start, end, limit, "?"), limit)

    def _series(self, sql: str, params: tuple[Any, ...], limit: int) -> Series:
        return series_from_rows(self._reader().execute(sql, params).fetchall(), limit)

    def latest_views(self) -> list[NodeView]:
        rows = self._reader().execute(
            "SELECT node_id, metrics, containers, status, last_seen, last_metrics, last_containers FROM latest"
        )
        return [view for row in rows if (view := view_from_row(*row)) is not None]

    def count(self, table: str) -> int:
        """Rows in ``node_samples`` or ``container_samples`` (for tests and diagnostics)."""
        if table not in ("node_samples", "container_samples"):
            raise ValueError(table)
        return int(self._reader().execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608

    def close(self) -> None:
        self._writer.close()
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()


class _Transaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection

    def __enter__(self) -> sqlite3.Connection:
        self.connection.execute("BEGIN IMMEDIATE")
        return self.connection

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            try:
                self.connection.execute("COMMIT")
                return
            except sqlite3.Error:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        # After some errors (SQLITE_FULL, SQLITE_IOERR) SQLite has already rolled the transaction
        # back; a second ROLLBACK would raise and hide the error that matters.
        if self.connection.in_transaction:
            self.connection.execute("ROLLBACK")


def _rederive_from(db: sqlite3.Connection, node: bool, key: tuple[str, ...], ts: int) -> None:
    """Derive again the stored sample at ``ts`` of one series and the one after it, from the rows now
    stored: a sample derived before its batch was inserted (or out of order) may have missed the
    sample just before it, and the one after may have been derived from an older one."""
    table, keys, counters = (
        ("node_samples", ("node_id",), NODE_COUNTERS)
        if node
        else ("container_samples", ("node_id", "container_name"), CONTAINER_COUNTERS)
    )
    match = " AND ".join(f"{k} = ?" for k in keys)
    cycle = "cycle, interval_seconds, " if node else ""
    derived = NODE_DERIVED if node else CONTAINER_DERIVED
    rows = db.execute(
        f"SELECT ts, {cycle}{', '.join(counters)} FROM {table} WHERE {match} AND ts >= ? ORDER BY ts LIMIT 2",  # noqa: S608
        (*key, ts),
    ).fetchall()
    for row in rows:
        before = db.execute(
            f"SELECT ts, {'cycle' if node else '0'}, {', '.join(counters)} FROM {table} "  # noqa: S608
            f"WHERE {match} AND ts < ? ORDER BY ts DESC LIMIT 1",
            (*key, row[0]),
        ).fetchone()
        previous = Previous(before[0], tuple(before[2:]), int(before[1] or 0)) if before is not None else None
        if node:
            values = [*rates(previous, row[0], tuple(row[3:])), cycles_lost(previous, row[0], row[1], row[2])]
        else:
            values = [*rates(previous, row[0], tuple(row[1:]))]
        db.execute(
            f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in derived)} WHERE {match} AND ts = ?",  # noqa: S608
            (*values, *key, row[0]),
        )


def _insert(table: str, columns: list[str]) -> str:
    return f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"  # noqa: S608


def node_row(message: NodeMetrics) -> tuple[Any, ...]:
    agent = message.agent
    return (
        message.node_id,
        to_ms(message.timestamp),
        json.dumps(message.cpu_per_core),
        *(getattr(message, c) for c in NODE_FIELDS),
        *(getattr(agent, c) for c in AGENT_FIELDS),
    )


def container_row(batch: ContainerMetricsBatch, ts: int, container: ContainerMetrics) -> tuple[Any, ...]:
    return (
        batch.node_id,
        container.container_name,
        ts,
        *(getattr(container, c) for c in CONTAINER_TEXT_FIELDS),
        *(getattr(container, c) for c in CONTAINER_SERIES_FIELDS),
    )


def series_query(
    node_id: str, container: str | None, field: str, start: datetime, end: datetime, limit: int, mark: str
) -> tuple[str, tuple[Any, ...]]:
    """SQL and parameters of one field's raw series, newest first (``mark``: the driver's placeholder);
    ValueError for a field that is not a column (the name goes into the SQL: only known ones do)."""
    known, table = (
        (NODE_SERIES_FIELDS, "node_samples") if container is None else (CONTAINER_SERIES_FIELDS, "container_samples")
    )
    if field not in known:
        raise ValueError(f"unknown {'node' if container is None else 'container'} field {field!r}")
    where = f"node_id = {mark}" + ("" if container is None else f" AND container_name = {mark}")
    sql = (
        f"SELECT ts, {field} FROM {table} WHERE {where} AND ts BETWEEN {mark} AND {mark} "  # noqa: S608
        f"ORDER BY ts DESC LIMIT {mark}"
    )
    keys = (node_id,) if container is None else (node_id, container)
    return sql, (*keys, to_ms(start), to_ms(end), limit + 1)


def series_from_rows(rows: Sequence[Sequence[Any]], limit: int) -> Series:
    """A Series from ``(ts_ms, value)`` rows read newest first, ``limit + 1`` at most."""
    points = [(from_ms(int(ts)), value) for ts, value in reversed(rows[:limit])]
    return Series(points, truncated=len(rows) > limit)


def view_from_row(
    node_id: str,
    metrics: str | None,
    containers: str | None,
    status: str | None,
    last_seen: float | None,
    last_metrics: float | None,
    last_containers: float | None,
) -> NodeView | None:
    """A stored live view, or None (logged) when it no longer validates: the next message replaces it."""
    try:
        return NodeView(
            node_id=node_id,
            metrics=NodeMetrics.model_validate_json(metrics) if metrics else None,
            containers=ContainerMetricsBatch.model_validate_json(containers) if containers else None,
            status=NodeStatus.model_validate_json(status) if status else None,
            last_seen=last_seen,
            last_metrics=last_metrics,
            last_containers=last_containers,
        )
    except ValidationError as exc:  # written under an older contract
        _invalid_views.warning("view", "not restoring node %r: its stored state no longer validates (%s)", node_id, exc)
        return None


def gather_recent_health(
    tiers: Sequence[Tier],
    start_ms: int,
    newest_bucket: Callable[[int], int | None],
    per_node: Callable[[int, int, int], Iterable[Sequence[Any]]],
) -> dict[str, RecentHealth]:
    """``recent_health`` from ``start_ms`` on, over two reads of one store: ``newest_bucket(tier)``
    and ``per_node(tier, begin, end)`` giving ``(node, cycles lost, under-voltage seen)`` rows.

    Closed quarter hours come from the 15-minute tier, the minutes around them from the 1-minute
    tier: a day for a thousand nodes is about 110,000 rows instead of 1.4 million.
    """
    finest, quarter = tiers[0], tiers[1] if len(tiers) > 1 else None
    split = start_ms
    parts: list[tuple[int, int, int]] = []
    if quarter is not None:
        first = start_ms + (-start_ms) % quarter.bucket_ms  # quarters wholly inside the range only
        last = newest_bucket(quarter.seconds)
        if last is not None and last >= first:
            split = int(last) + quarter.bucket_ms
            parts += [(finest.seconds, start_ms, first), (quarter.seconds, first, split)]
    parts.append((finest.seconds, split, 2**62))
    health: dict[str, RecentHealth] = {}
    for tier, begin, end in parts:
        for node, lost, uv in per_node(tier, begin, end):
            before = health.get(node, RecentHealth(0, False))
            health[node] = RecentHealth(before.cycles_lost + int(lost or 0), before.under_voltage or bool(uv))
    return health

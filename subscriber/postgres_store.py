"""History in PostgreSQL (psycopg 3): the HistoryStore for fleets past one SQLite file, and for replicas.

Same rows, keys and tiers as ``SqliteHistoryStore``; what differs:

- Raw rows live in tables partitioned by day (``node_samples_d20261129``); retention drops whole
  partitions (a day's rows are kept up to a day longer than ``OTTO_RETENTION``), so pruning a
  thousand nodes' week costs no row-by-row delete and leaves no bloat. Tiers and events are
  ordinary tables, pruned by ``DELETE`` as in SQLite.
- Rows are staged with ``COPY`` into a temporary table and inserted from it with
  ``ON CONFLICT DO NOTHING`` (a redelivered message is stored once).
- Several subscribers (replicas) may write at once. Rates and cycles lost are derived from the
  sample stored just before each one, read back from the database under a per-node advisory lock
  held until commit, and the sample just after it is derived again when it was stored first (an
  out-of-order arrival): so derived figures are the same whichever replica received what, in
  whichever order. Tier maintenance and pruning run on one replica at a time (a try-lock).
- ``latest`` is merged, not overwritten: a replica's view replaces a node's metrics only if they
  are newer (or the stored ones arrived more than ``HOLD_SECONDS`` earlier: a clock set back).
  Every write stamps its rows with a version taken from one counter row as the transaction's last
  step, so versions commit in order and ``changed_views`` never misses a row.

Connection failures, a server shutting down, a full disk or a read-only server raise
``StoreUnavailable``; the next call reconnects.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import make_conninfo

from contract.models import ContainerEvent, ContainerMetricsBatch, NodeMetrics
from subscriber import postgres_events, postgres_tiers
from subscriber.rollup import (
    CONTAINER_COUNTERS,
    CONTAINER_DERIVED,
    NODE_COUNTERS,
    NODE_DERIVED,
    Previous,
    Resolution,
    Retention,
    TierField,
    cycles_lost,
    rates,
)
from subscriber.state import NodeView
from subscriber.store import (
    CONTAINER_SERIES_FIELDS,
    CONTAINER_TEXT_FIELDS,
    NODE_SERIES_FIELDS,
    SCOPE_TABLES,
    RecentHealth,
    Scope,
    Series,
    SeriesRows,
    StoreUnavailable,
    Written,
    column_kind,
    container_row,
    gather_recent_health,
    node_row,
    series_from_rows,
    series_query,
    to_ms,
    view_from_row,
)

log = logging.getLogger(__name__)

Connection = psycopg.Connection[tuple[Any, ...]]
T = TypeVar("T")

DAY_MS = 86_400_000
#: A stored live view older than this (by arrival) gives way to any newer arrival, whatever its time.
HOLD_SECONDS = 60.0
#: Rates and cycles lost are derived from a previous sample at most this old (the search stays in
#: two daily partitions); rates already stop at MAX_RATE_GAP_SECONDS.
PREVIOUS_WITHIN_MS = DAY_MS
# Advisory lock keys (the second argument of hashtextextended keeps node locks apart from these).
_MIGRATE_LOCK, _PARTITION_LOCK, _MAINTAIN_LOCK = 0x6F74746F01, 0x6F74746F02, 0x6F74746F03
_NODE_LOCK_SEED = 0x6F74

_SQL_TYPES = {int: "bigint", float: "float8", bool: "smallint", str: "text"}
_NODE_COLUMNS = ["node_id", "ts", "cpu_per_core", *NODE_SERIES_FIELDS, *NODE_DERIVED]
_CONTAINER_COLUMNS = [
    "node_id", "container_name", "ts", *CONTAINER_TEXT_FIELDS, *CONTAINER_SERIES_FIELDS, *CONTAINER_DERIVED,
]  # fmt: skip
#: Failures of the server or the link to it, not of the rows: the same write may work later.
UNAVAILABLE: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    pg_errors.ReadOnlySqlTransaction,
)


def _sql_type(column: str) -> str:
    if column in ("node_id", "container_name"):
        return "text NOT NULL"
    if column == "ts":
        return "bigint NOT NULL"
    if column == "cpu_per_core":
        return "jsonb"
    return _SQL_TYPES[column_kind(column)]


def _bool_positions(columns: list[str]) -> list[int]:
    return [i for i, c in enumerate(columns) if c not in ("node_id", "container_name", "ts", "cpu_per_core")
            and column_kind(c) is bool]  # fmt: skip


def _plain(row: tuple[Any, ...], bools: list[int]) -> list[Any]:
    """A row as COPY takes it: booleans as the 0/1 of their smallint columns."""
    out = list(row)
    for i in bools:
        if out[i] is not None:
            out[i] = int(out[i])
    return out


_NODE_BOOLS = _bool_positions(_NODE_COLUMNS)
_CONTAINER_BOOLS = _bool_positions(_CONTAINER_COLUMNS)


class _Series:
    """How one raw table derives its figures: key columns, counters, and cycles (nodes only)."""

    def __init__(self, table: str, keys: tuple[str, ...], counters: tuple[str, ...], cycles: bool) -> None:
        self.table = table
        self.keys = keys
        self.counters = counters
        self.cycles = cycles
        self.derived = NODE_DERIVED if cycles else CONTAINER_DERIVED

    def derive(
        self, previous: Previous | None, ts: int, counters: tuple[Any, ...], cycle: int, interval: float
    ) -> list[Any]:
        values: list[Any] = rates(previous, ts, counters)
        if self.cycles:
            values.append(cycles_lost(previous, ts, cycle, interval))
        return values

    def _unnest(self) -> str:
        arrays = ["%b::text[]" for _ in self.keys] + ["%b::bigint[]"]
        return f"unnest({', '.join(arrays)})"

    def _match(self, alias: str, other: str) -> str:
        return " AND ".join(f"{alias}.{k} = {other}.{k}" for k in self.keys)

    def _previous_columns(self, alias: str) -> str:
        cycle = f"{alias}.cycle" if self.cycles else "0"
        return ", ".join([f"{alias}.ts", cycle, *(f"{alias}.{c}" for c in self.counters)])

    def stored(
        self, db: Connection, samples: list[tuple[tuple[str, ...], int]]
    ) -> dict[tuple[str, ...], list[Previous]]:
        """Per series of ``samples``: the stored sample before its first one, and every stored one
        from its first to its last, oldest first (one index probe per series, not per sample)."""
        spans: dict[tuple[str, ...], tuple[int, int]] = {}
        for key, ts in samples:
            first, last = spans.get(key, (ts, ts))
            spans[key] = (min(first, ts), max(last, ts))
        if not spans:
            return {}
        keys = sorted(spans)
        cycle = "cycle, " if self.cycles else "0, "
        columns = f"ts, {cycle}{', '.join(self.counters)}"
        arrays = ", ".join(["%b::text[]"] * len(self.keys) + ["%b::bigint[]", "%b::bigint[]"])
        sql = (
            f"SELECT k.i, p.* FROM unnest({arrays}) WITH ORDINALITY AS k({', '.join(self.keys)}, first, last, i) "  # noqa: S608
            f"CROSS JOIN LATERAL ((SELECT {columns} FROM {self.table} s WHERE {self._match('s', 'k')} "
            "AND s.ts < k.first AND s.ts >= k.first - %s ORDER BY s.ts DESC LIMIT 1) UNION ALL "
            f"(SELECT {columns} FROM {self.table} s WHERE {self._match('s', 'k')} AND s.ts >= k.first "
            "AND s.ts <= k.last)) AS p"
        )
        params = [
            *([key[j] for key in keys] for j in range(len(self.keys))),
            [spans[key][0] for key in keys],
            [spans[key][1] for key in keys],
            PREVIOUS_WITHIN_MS,
        ]
        found: dict[tuple[str, ...], list[Previous]] = defaultdict(list)
        for row in db.execute(sql, params):
            found[keys[int(row[0]) - 1]].append(Previous(int(row[1]), tuple(row[3:]), int(row[2] or 0)))
        for rows in found.values():
            rows.sort(key=lambda p: p.ts_ms)
        return found

    def rederive_successors(
        self, db: Connection, probes: set[tuple[tuple[str, ...], int]], new: set[tuple[tuple[str, ...], int]]
    ) -> int:
        """Derive again the stored sample after each probe, unless it is new itself; how many."""
        ordered = sorted(probes & new)
        if not ordered:
            return 0
        cycle = "s.cycle, s.interval_seconds, " if self.cycles else ""
        keys = ", ".join("k." + k for k in self.keys)
        sql = (
            f"SELECT {keys}, s.ts, {cycle}{', '.join('s.' + c for c in self.counters)}, "  # noqa: S608
            f"{self._previous_columns('p')} FROM {self._unnest()} AS k({', '.join(self.keys)}, ts) "
            f"CROSS JOIN LATERAL (SELECT * FROM {self.table} s WHERE {self._match('s', 'k')} AND s.ts > k.ts "
            f"AND s.ts <= k.ts + %s ORDER BY s.ts LIMIT 1) s "
            f"CROSS JOIN LATERAL (SELECT * FROM {self.table} p WHERE {self._match('p', 'k')} AND p.ts < s.ts "
            "AND p.ts >= s.ts - %s ORDER BY p.ts DESC LIMIT 1) p"
        )
        params = [*([key[j] for key, _ in ordered] for j in range(len(self.keys))), [ts for _, ts in ordered]]
        updates: dict[tuple[tuple[str, ...], int], list[Any]] = {}
        width = len(self.keys)
        for row in db.execute(sql, [*params, PREVIOUS_WITHIN_MS, PREVIOUS_WITHIN_MS]):
            key, ts = tuple(str(v) for v in row[:width]), int(row[width])
            if (key, ts) in new:
                continue
            rest = list(row[width + 1 :])
            number, interval = (int(rest.pop(0) or 0), float(rest.pop(0) or 0.0)) if self.cycles else (0, 0.0)
            counters = tuple(rest[: len(self.counters)])
            p = rest[len(self.counters) :]
            previous = Previous(int(p[0]), tuple(p[2:]), int(p[1] or 0))
            updates[(key, ts)] = self.derive(previous, ts, counters, number, interval)
        if updates:
            assignments = ", ".join(f"{c} = v.{c}" for c in self.derived)
            types = ", ".join(["%b::text[]"] * width + ["%b::bigint[]"] + ["%b::float8[]"] * len(self.derived))
            names = ", ".join([*self.keys, "ts", *self.derived])
            items = sorted(updates.items())
            columns: list[list[Any]] = [[k[j] for (k, _), _ in items] for j in range(width)]
            columns.append([t for (_, t), _ in items])
            columns += [[values[j] for _, values in items] for j in range(len(self.derived))]
            db.execute(
                f"UPDATE {self.table} t SET {assignments} FROM unnest({types}) AS v({names}) "  # noqa: S608
                f"WHERE {self._match('t', 'v')} AND t.ts = v.ts",
                columns,
            )
        return len(updates)


_NODES = _Series("node_samples", ("node_id",), NODE_COUNTERS, cycles=True)
_CONTAINERS = _Series("container_samples", ("node_id", "container_name"), CONTAINER_COUNTERS, cycles=False)


class PostgresHistoryStore:
    """HistoryStore on a PostgreSQL database (see the module docstring). One writer thread; any readers."""

    def __init__(
        self,
        url: str,
        retention: Retention | None = None,
        *,
        password: str | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self._password = password
        self.retention = retention or Retention(raw=timedelta(days=7))
        self.connect_timeout = connect_timeout
        self._local = threading.local()
        self._writer_connection: Connection | None = None
        self._partitions: set[tuple[str, int]] = set()
        self._readers: list[Connection] = []
        self._readers_lock = threading.Lock()
        try:
            self._migrate()
        except UNAVAILABLE as exc:
            raise StoreUnavailable(_describe(exc)) from exc

    # -- connections --------------------------------------------------------------------------------

    def _connect(self, autocommit: bool) -> Connection:
        url = self.url if self._password is None else make_conninfo(self.url, password=self._password)
        return psycopg.connect(
            url,
            autocommit=autocommit,
            connect_timeout=max(1, round(self.connect_timeout)),
            application_name="otto-subscriber",
        )

    def _writer(self) -> Connection:
        connection = self._writer_connection
        if connection is None or connection.closed or connection.broken:
            connection = self._connect(autocommit=False)
            with connection.transaction():
                for table, columns in (("node_samples", _NODE_COLUMNS), ("container_samples", _CONTAINER_COLUMNS)):
                    connection.execute(
                        f"CREATE TEMP TABLE IF NOT EXISTS stage_{table} "
                        f"({', '.join(f'{c} {_sql_type(c)}' for c in columns)}) ON COMMIT DELETE ROWS"
                    )
            self._writer_connection = connection
            self._partitions.clear()
        return connection

    def _reader(self) -> Connection:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.closed or connection.broken:
            connection = self._connect(autocommit=True)
            self._local.connection = connection
            with self._readers_lock:
                self._readers.append(connection)
        return connection

    def _read(self, work: Callable[[Connection], T]) -> T:
        try:
            return work(self._reader())
        except UNAVAILABLE as exc:
            raise StoreUnavailable(_describe(exc)) from exc

    def _written(self, work: Callable[[Connection], T]) -> T:
        try:
            db = self._writer()
            with db.transaction():
                return work(db)
        except Exception as exc:
            self._partitions.clear()  # rolled back: the partitions it created are gone too
            if isinstance(exc, UNAVAILABLE):
                raise StoreUnavailable(_describe(exc)) from exc
            raise

    # -- schema -----------------------------------------------------------------------------------

    def _migrate(self) -> None:
        def migrate(db: Connection) -> None:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            for table, columns, key in (
                ("node_samples", _NODE_COLUMNS, "node_id, ts"),
                ("container_samples", _CONTAINER_COLUMNS, "node_id, container_name, ts"),
            ):
                db.execute(
                    f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(f'{c} {_sql_type(c)}' for c in columns[:3])}, "
                    f"PRIMARY KEY ({key})) PARTITION BY RANGE (ts)"
                )
                for column in columns[3:]:  # fields added to the contract become columns
                    db.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {_sql_type(column)}")
            db.execute(
                "CREATE TABLE IF NOT EXISTS latest (node_id text PRIMARY KEY, metrics text, metrics_ts bigint, "
                "containers text, containers_ts bigint, status text, last_seen float8, last_metrics float8, "
                "last_containers float8, version bigint NOT NULL)"
            )
            db.execute("CREATE INDEX IF NOT EXISTS latest_version ON latest (version)")
            db.execute(
                "CREATE TABLE IF NOT EXISTS latest_clock (one boolean PRIMARY KEY CHECK (one), v bigint NOT NULL)"
            )
            db.execute("INSERT INTO latest_clock VALUES (true, 0) ON CONFLICT DO NOTHING")
            postgres_tiers.migrate(db)
            postgres_events.migrate(db)

        self._written(migrate)

    def _ensure_partitions(self, db: Connection, touched: set[int]) -> None:
        days = {ts - ts % DAY_MS for ts in touched}
        missing = sorted(
            (t, d) for t in ("node_samples", "container_samples") for d in days if (t, d) not in self._partitions
        )
        if not missing:
            return
        # A savepoint-free way to create them: serialize creators (replicas) on one lock.
        db.execute("SELECT pg_advisory_xact_lock(%s)", (_PARTITION_LOCK,))
        for table, day in missing:
            name = f"{table}_d{datetime.fromtimestamp(day / 1000, UTC):%Y%m%d}"
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} FOR VALUES FROM ({day}) TO ({day + DAY_MS})"
            )
            self._partitions.add((table, day))

    # -- writing ----------------------------------------------------------------------------------

    def write(
        self,
        nodes: Sequence[NodeMetrics],
        batches: Sequence[ContainerMetricsBatch],
        latest: Sequence[NodeView],
        events: Sequence[ContainerEvent] = (),
    ) -> Written:
        try:
            return self._written(lambda db: self._write(db, nodes, batches, latest, events))
        except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as exc:  # two replicas: try again later
            raise StoreUnavailable(_describe(exc)) from exc

    def _write(
        self,
        db: Connection,
        nodes: Sequence[NodeMetrics],
        batches: Sequence[ContainerMetricsBatch],
        latest: Sequence[NodeView],
        events: Sequence[ContainerEvent],
    ) -> Written:
        node_ids = sorted({m.node_id for m in nodes} | {b.node_id for b in batches})
        if node_ids:  # in one order everywhere, so replicas never deadlock on them
            db.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(n, %s)) FROM unnest(%b::text[]) WITH ORDINALITY "
                "AS u(n, i) ORDER BY i",
                (_NODE_LOCK_SEED, node_ids),
            )
        node_samples: list[tuple[tuple[str, ...], int]] = [((m.node_id,), to_ms(m.timestamp)) for m in nodes]
        container_samples: list[tuple[tuple[str, ...], int]] = [
            ((b.node_id, c.container_name), to_ms(b.timestamp)) for b in batches for c in b.containers
        ]
        self._ensure_partitions(db, {ts for _, ts in node_samples} | {ts for _, ts in container_samples})
        node_derived, node_probes = _derive_all(
            db,
            _NODES,
            node_samples,
            [tuple(getattr(m, c) for c in NODE_COUNTERS) for m in nodes],
            [(m.cycle, m.interval_seconds) for m in nodes],
        )
        node_rows = [[*_plain(node_row(m), _NODE_BOOLS), *d] for m, d in zip(nodes, node_derived, strict=True)]
        containers = [(b, c) for b in batches for c in b.containers]
        container_derived, container_probes = _derive_all(
            db,
            _CONTAINERS,
            container_samples,
            [tuple(getattr(c, k) for k in CONTAINER_COUNTERS) for _, c in containers],
            [(0, 0.0)] * len(containers),
        )
        container_rows = [
            [*_plain(container_row(b, to_ms(b.timestamp), c), _CONTAINER_BOOLS), *d]
            for (b, c), d in zip(containers, container_derived, strict=True)
        ]
        new_nodes = _insert(db, _NODES, _NODE_COLUMNS, node_rows)
        new_containers = _insert(db, _CONTAINERS, _CONTAINER_COLUMNS, container_rows)
        _NODES.rederive_successors(db, node_probes, new_nodes)
        _CONTAINERS.rederive_successors(db, container_probes, new_containers)
        stored = Written(len(new_nodes), len(new_containers), tuple(postgres_events.insert(db, events)))
        postgres_tiers.mark(
            db, [(k[0], ts) for k, ts in node_samples] + [(b.node_id, to_ms(b.timestamp)) for b in batches]
        )
        if latest:
            self._merge_latest(db, latest)
        return stored

    def _merge_latest(self, db: Connection, views: Sequence[NodeView]) -> None:
        # The counter row is taken last: it is held only for this and the commit, and the versions
        # it hands out become visible in order.
        (version,) = db.execute("UPDATE latest_clock SET v = v + 1 RETURNING v").fetchone() or (0,)
        rows = sorted(
            (
                v.node_id,
                v.metrics.model_dump_json() if v.metrics else None,
                to_ms(v.metrics.timestamp) if v.metrics else None,
                v.containers.model_dump_json() if v.containers else None,
                to_ms(v.containers.timestamp) if v.containers else None,
                v.status.model_dump_json() if v.status else None,
                v.last_seen,
                v.last_metrics,
                v.last_containers,
            )
            for v in views
        )
        newer = (
            "excluded.{p}_ts IS NOT NULL AND (latest.{p}_ts IS NULL OR excluded.{p}_ts >= latest.{p}_ts "
            "OR excluded.last_{p} > latest.last_{p} + {hold})"
        )
        merges = []
        for part in ("metrics", "containers"):
            condition = newer.format(p=part, hold=HOLD_SECONDS)
            merges += [
                f"{column} = CASE WHEN {condition} THEN excluded.{column} ELSE latest.{column} END"
                for column in (part, f"{part}_ts", f"last_{part}")
            ]
        columns = "node_id, metrics, metrics_ts, containers, containers_ts, status, last_seen, last_metrics"
        db.execute(  # merges hold column names and a number of ours
            f"INSERT INTO latest ({columns}, last_containers, version) SELECT *, %s "  # noqa: S608
            "FROM unnest(%b::text[], %b::text[], %b::bigint[], "
            "%b::text[], %b::bigint[], %b::text[], %b::float8[], %b::float8[], %b::float8[]) "
            f"ON CONFLICT (node_id) DO UPDATE SET {', '.join(merges)}, "
            "status = coalesce(excluded.status, latest.status), "
            "last_seen = greatest(excluded.last_seen, latest.last_seen), version = excluded.version",
            [version, *(list(column) for column in zip(*rows, strict=True))],
        )

    # -- maintenance --------------------------------------------------------------------------------

    def prune(self, older_than: datetime) -> int:
        def prune(db: Connection) -> int:
            if not _try_lock(db, _MAINTAIN_LOCK):
                return 0  # another replica is at it
            cutoff = to_ms(older_than)
            removed = 0
            for table in ("node_samples", "container_samples"):
                for name, upper in _partitions(db, table):
                    if upper <= cutoff:
                        (rows,) = db.execute(f"SELECT count(*) FROM {name}").fetchone() or (0,)  # noqa: S608
                        db.execute(f"DROP TABLE {name}")
                        removed += int(rows)
                        self._partitions.discard((table, upper - DAY_MS))
            removed += max(0, db.execute("DELETE FROM latest WHERE last_seen < %s", (cutoff / 1000,)).rowcount)
            keep = max([self.retention.raw, *(tier.retention for tier in self.retention.tiers)])
            removed += postgres_events.prune(db, datetime.now(UTC) - keep)
            return removed + postgres_tiers.prune(db, self.retention.tiers, to_ms(datetime.now(UTC)))

        return self._written(prune)

    def maintain(self, now: datetime, budget: float | None = None) -> tuple[int, bool]:
        deadline = time.monotonic() + budget if budget is not None else math.inf

        def maintain(db: Connection) -> tuple[int, bool]:
            if not _try_lock(db, _MAINTAIN_LOCK):
                return 0, True
            return postgres_tiers.maintain(db, self.retention.tiers, to_ms(now), deadline)

        return self._written(maintain)

    # -- reading ----------------------------------------------------------------------------------

    def events(
        self, node_id: str, start: datetime, end: datetime, limit: int, container: str | None = None
    ) -> list[ContainerEvent]:
        return self._read(lambda db: postgres_events.read(db, node_id, start, end, limit, container))

    def buckets(
        self,
        scope: Scope,
        node_id: str,
        columns: Sequence[tuple[TierField, str]],
        start: datetime,
        end: datetime,
        res: Resolution,
    ) -> SeriesRows:
        return self._read(
            lambda db: postgres_tiers.read(db, SCOPE_TABLES[scope], res, node_id, columns, to_ms(start), to_ms(end))
        )

    def recent_health(self, since: datetime) -> dict[str, RecentHealth]:
        return self._read(lambda db: self._recent_health(db, since))

    def _recent_health(self, db: Connection, since: datetime) -> dict[str, RecentHealth]:
        def newest(tier: int) -> int | None:
            row = db.execute("SELECT max(bucket) FROM node_rollups WHERE tier = %s", (tier,)).fetchone()
            return row[0] if row else None

        return gather_recent_health(
            self.retention.tiers,
            to_ms(since),
            newest,
            lambda tier, begin, end: db.execute(
                "SELECT node_id, coalesce(sum(cycles_lost_sum), 0), max(under_voltage_max) FROM node_rollups "
                "WHERE tier = %s AND bucket >= %s AND bucket < %s GROUP BY node_id",
                (tier, begin, end),
            ),
        )

    def node_series(self, node_id: str, field: str, start: datetime, end: datetime, limit: int) -> Series:
        return self._series(*series_query(node_id, None, field, start, end, limit, "%s"), limit)

    def container_series(
        self, node_id: str, container: str, field: str, start: datetime, end: datetime, limit: int
    ) -> Series:
        return self._series(*series_query(node_id, container, field, start, end, limit, "%s"), limit)

    def _series(self, sql: str, params: tuple[Any, ...], limit: int) -> Series:
        return series_from_rows(self._read(lambda db: db.execute(sql, params).fetchall()), limit)

    def latest_views(self) -> list[NodeView]:
        return self.changed_views(0)[0]

    def changed_views(self, after: int) -> tuple[list[NodeView], int]:
        """Views written since version ``after`` (0: all), and the version to ask from next time."""
        rows = self._read(
            lambda db: db.execute(
                "SELECT node_id, metrics, containers, status, last_seen, last_metrics, last_containers, version "
                "FROM latest WHERE version > %s ORDER BY version",
                (after,),
            ).fetchall()
        )
        views = [view for *row, _ in rows if (view := view_from_row(*row)) is not None]
        return views, max([after, *(int(row[-1]) for row in rows)])

    def count(self, table: str) -> int:
        """Rows in ``node_samples`` or ``container_samples`` (for tests and diagnostics)."""
        if table not in ("node_samples", "container_samples"):
            raise ValueError(table)
        return self._read(lambda db: int((db.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,))[0]))  # noqa: S608

    def close(self) -> None:
        if self._writer_connection is not None:
            self._writer_connection.close()
        with self._readers_lock:
            for connection in self._readers:
                connection.close()
            self._readers.clear()


def _derive_all(
    db: Connection,
    series: _Series,
    samples: list[tuple[tuple[str, ...], int]],
    counters: list[tuple[Any, ...]],
    cycles: list[tuple[int, float]],
) -> tuple[list[list[Any]], set[tuple[tuple[str, ...], int]]]:
    """Derived columns of every sample (its previous one is the latest before it, stored or in this
    batch), and the samples after which a stored one may now have a new previous: the last of each
    series, and any with a stored sample between it and the next of the batch (out of order)."""
    stored = series.stored(db, samples)
    by_key: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, (key, _) in enumerate(samples):
        by_key[key].append(i)
    out: list[list[Any]] = [[] for _ in samples]
    probes: set[tuple[tuple[str, ...], int]] = set()
    for key, indexes in by_key.items():
        indexes.sort(key=lambda i: samples[i][1])
        rows = stored.get(key, [])
        stamps = [r.ts_ms for r in rows]
        probes.add((key, samples[indexes[-1]][1]))
        earlier: Previous | None = None  # the latest of this batch before the sample at hand
        for position, i in enumerate(indexes):
            ts = samples[i][1]
            if position and samples[indexes[position - 1]][1] < ts:
                j = indexes[position - 1]
                earlier = Previous(samples[j][1], counters[j], cycles[j][0])
            before = bisect.bisect_left(stamps, ts)  # stored strictly before ts
            previous = rows[before - 1] if before else None
            if earlier is not None and previous is not None and previous.ts_ms > earlier.ts_ms:
                probes.add((key, earlier.ts_ms))
            if earlier is not None and (previous is None or earlier.ts_ms > previous.ts_ms):
                previous = earlier
            out[i] = series.derive(previous, ts, counters[i], *cycles[i])
    return out, probes


def _insert(
    db: Connection, series: _Series, columns: list[str], rows: list[list[Any]]
) -> set[tuple[tuple[str, ...], int]]:
    """COPY ``rows`` into the stage, insert the new ones; their ``(key, ts)``."""
    if not rows:
        return set()
    stage = f"stage_{series.table}"
    with db.cursor() as cursor:
        with cursor.copy(f"COPY {stage} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        keys = ", ".join(series.keys)
        cursor.execute(
            f"INSERT INTO {series.table} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM {stage} "  # noqa: S608
            f"ON CONFLICT DO NOTHING RETURNING {keys}, ts"
        )
        width = len(series.keys)
        return {(tuple(str(v) for v in row[:width]), int(row[width])) for row in cursor.fetchall()}


def _partitions(db: Connection, table: str) -> list[tuple[str, int]]:
    """``(name, upper bound in ms)`` of a partitioned table's partitions."""
    rows = db.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
        (table,),
    ).fetchall()
    out = []
    for name, bound in rows:  # FOR VALUES FROM ('1764374400000') TO ('1764460800000')
        upper = str(bound).rsplit("(", 1)[-1].strip("')")
        if upper.isdigit():
            out.append((str(name), int(upper)))
    return out


def _try_lock(db: Connection, key: int) -> bool:
    row = db.execute("SELECT pg_try_advisory_xact_lock(%s)", (key,)).fetchone()
    return bool(row and row[0])


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"PostgreSQL: {text[0] if text else type(exc).__name__}"[:300]

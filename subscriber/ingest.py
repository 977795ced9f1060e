"""Everything the subscriber does with one message, minus MQTT: validate, apply, store in batches.

``Ingestor.handle`` never raises for any input: a message is either rejected (counted by reason,
at most one log line per reason per minute, never touching the history) or applied to the fleet
state, passed to the handlers and added to the open batch. Whatever raises while one message is
handled makes that message a rejection (``internal_error``, logged with its traceback), so a
redelivered message can never stop the worker or wedge the subscriber across restarts.

Time: a sample's (or an event's) timestamp is the node's clock, which may be wrong (``FleetState`` says how the
live view copes). History keeps the node's timestamp, with two exceptions: a sample stamped more
than ``max_clock_skew`` ahead of its arrival is stored at its arrival time (nothing legitimately
arrives from the future, and a row in the future would outlive every retention pass), and a
sample older than the retention is not stored (the next pass would delete it). Both are counted
(``otto_subscriber_history_adjusted``); the node's skew is shown by the API and Prometheus.

Storing: ``flush`` commits the batch and returns the acknowledgement tokens of the messages that
are now durable. If the store is unavailable (``StoreUnavailable``: disk full, read-only, locked)
the batch is kept, nothing is acknowledged, ``store_problem`` says why, and the next attempt waits
(0.5 s doubling to 30 s). If the store refuses the batch for another reason, its messages are
written one by one and those still refused are rejected as ``store_poison`` and acknowledged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from common.cli import RateLimitedLog
from contract.models import ContainerEvent, ContainerMetricsBatch, NodeMetrics, NodeStatus
from contract.topics import parse_topic
from subscriber.decoding import Decoded, Reason, Rejected, decode
from subscriber.prometheus import SubscriberCounters
from subscriber.state import FleetState, NodeView
from subscriber.store import HistoryStore, StoreUnavailable, Written

log = logging.getLogger(__name__)

Token = Hashable
Sample = TypeVar("Sample", NodeMetrics, ContainerMetricsBatch, ContainerEvent)

#: Waits between attempts to write to an unavailable store: the first, and the longest.
RETRY_FIRST = 0.5
RETRY_MAX = 30.0


@dataclass(frozen=True, slots=True)
class _Entry:
    """One applied message of the open batch: its rows (if any) and its acknowledgement token."""

    token: Token
    node_id: str
    node: NodeMetrics | None = None
    containers: ContainerMetricsBatch | None = None
    event: ContainerEvent | None = None

    @property
    def has_rows(self) -> bool:
        return self.node is not None or self.containers is not None or self.event is not None


@dataclass(slots=True)
class _Batch:
    entries: list[_Entry] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    opened: float = 0.0

    @property
    def nodes(self) -> list[NodeMetrics]:
        return [e.node for e in self.entries if e.node is not None]

    @property
    def containers(self) -> list[ContainerMetricsBatch]:
        return [e.containers for e in self.entries if e.containers is not None]

    @property
    def events(self) -> list[ContainerEvent]:
        return [e.event for e in self.entries if e.event is not None]


@dataclass(slots=True)
class _Outage:
    """The store has been unavailable since ``since`` (monotonic) for ``reason``."""

    reason: str
    since: float
    failures: int = 1
    retry_at: float = 0.0


class Ingestor:
    """Validation, fleet state and batched history for a stream of (topic, payload) messages."""

    def __init__(
        self,
        state: FleetState,
        store: HistoryStore | None,
        counters: SubscriberCounters,
        dispatch: Callable[[Decoded], None],
        max_payload_bytes: int = 1_048_576,
        retention: timedelta | None = None,
    ) -> None:
        self.state = state
        self.store = store
        self.counters = counters
        self.max_payload_bytes = max_payload_bytes
        self.retention = retention
        self._dispatch = dispatch
        #: Called with the events each commit stored for the first time (after the commit).
        self.event_listeners: list[Callable[[list[ContainerEvent]], None]] = []
        self._batch = _Batch()
        self._outage: _Outage | None = None
        self._rejections = RateLimitedLog(log, period=60.0)
        self._store_failures = RateLimitedLog(log, period=60.0)

    @property
    def pending(self) -> int:
        """Valid messages handled but not yet committed."""
        return len(self._batch.entries)

    @property
    def batch_age(self) -> float:
        """Seconds since the open batch's first message (0 when empty)."""
        return time.monotonic() - self._batch.opened if self._batch.entries else 0.0

    @property
    def store_problem(self) -> str | None:
        """Why the store cannot be written to right now; None while it works."""
        return self._outage.reason if self._outage is not None else None

    def flush_due_in(self, flush_seconds: float) -> float:
        """Seconds until the open batch should be flushed (the retry time while the store is down)."""
        if not self._batch.entries:
            return flush_seconds
        if self._outage is not None:
            return max(0.0, self._outage.retry_at - time.monotonic())
        return max(0.0, flush_seconds - self.batch_age)

    def reject(self, topic: str, rejected: Rejected) -> Rejected:
        """Count and log (rate-limited) a message that will not be applied."""
        self.counters.rejected.labels(rejected.reason.value).inc()
        self._rejections.warning(
            rejected.reason.value, "rejected a message on %r: %s: %s", topic[:120], rejected.reason, rejected.detail
        )
        return rejected

    def count_received(self, topic: str) -> None:
        """Count a message as received, by the kind its topic names."""
        parsed = parse_topic(topic)
        self.counters.received.labels(parsed[1].name.lower() if parsed else "unknown").inc()

    def handle(self, topic: str, payload: bytes, received_at: float, token: Token = None) -> Decoded | Rejected:
        """Decode and apply one message; a rejection is counted and logged, never raised."""
        self.count_received(topic)
        try:
            result = decode(topic, payload, self.max_payload_bytes)
            if isinstance(result, Rejected):
                return self.reject(topic, result)
            self._apply(result, received_at, token)
        except Exception as exc:
            self.counters.rejected.labels(Reason.INTERNAL_ERROR.value).inc()
            self._rejections.exception(
                Reason.INTERNAL_ERROR.value, "handling a message on %r raised; rejected it", topic[:120]
            )
            return Rejected(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"[:200])
        self._dispatch(result)
        return result

    def _apply(self, decoded: Decoded, received_at: float, token: Token) -> None:
        message = decoded.message
        entry = _Entry(token, decoded.node_id)
        if isinstance(message, NodeMetrics):
            self.state.apply_node_metrics(message, received_at)
            entry = _Entry(token, decoded.node_id, node=self._for_history(message, received_at))
        elif isinstance(message, ContainerMetricsBatch):
            self.state.apply_container_metrics(message, received_at)
            entry = _Entry(token, decoded.node_id, containers=self._for_history(message, received_at))
        elif isinstance(message, NodeStatus):
            self.state.apply_status(message, received_at)
        elif isinstance(message, ContainerEvent):
            entry = _Entry(token, decoded.node_id, event=self._for_history(message, received_at))
        batch = self._batch
        if not batch.entries:
            batch.opened = time.monotonic()
        batch.entries.append(entry)
        batch.touched.add(decoded.node_id)

    def _for_history(self, message: Sample, received_at: float) -> Sample | None:
        """The sample as history keeps it (see the module docstring), or None if it keeps it not."""
        skew = message.timestamp.timestamp() - received_at
        if skew > self.state.max_clock_skew:
            self.counters.history_adjusted.labels("clock_ahead").inc()
            self._rejections.warning(
                "clock_ahead",
                "node %s stamps its samples %.0f s ahead of their arrival; storing them at arrival time (check NTP)",
                message.node_id,
                skew,
            )
            return message.model_copy(update={"timestamp": datetime.fromtimestamp(received_at, UTC)})
        if self.retention is not None and -skew > self.retention.total_seconds():
            self.counters.history_adjusted.labels("older_than_retention").inc()
            return None
        return message

    def flush(self) -> list[Token] | None:
        """Commit the open batch; the tokens of what is now settled, or None if the store is unavailable."""
        batch = self._batch
        if not batch.entries:
            return []
        if self.store is not None:
            if self._outage is not None and time.monotonic() < self._outage.retry_at:
                return None
            latest = [view for node_id in batch.touched if (view := self.state.get(node_id)) is not None]
            try:
                written = self._write(batch, latest)
            except StoreUnavailable as exc:
                self._store_down(str(exc))
                return None
            self._store_up()
            self.counters.rows_stored.labels("node_samples").inc(written.nodes)
            self.counters.rows_stored.labels("container_samples").inc(written.containers)
            self.counters.rows_stored.labels("container_events").inc(len(written.events))
            new_events = list(written.events)
        else:
            new_events = batch.events
        self._batch = _Batch()
        if new_events:
            self._tell(new_events)
        return [entry.token for entry in batch.entries if entry.token is not None]

    def _tell(self, events: list[ContainerEvent]) -> None:
        for listener in self.event_listeners:
            try:
                listener(events)
            except Exception:  # a listener's bug must not stop ingestion
                self.counters.handler_errors.inc()
                self._rejections.exception("listener", "an event listener raised; continuing")

    def _write(self, batch: _Batch, latest: list[NodeView]) -> Written:
        """The batch in one transaction; if the store refuses it (not the medium), one by one."""
        assert self.store is not None
        try:
            return self.store.write(batch.nodes, batch.containers, latest, batch.events)
        except StoreUnavailable:
            raise
        except Exception as exc:
            return self._write_one_by_one(batch, latest, exc)

    def _write_one_by_one(self, batch: _Batch, latest: list[NodeView], error: Exception) -> Written:
        assert self.store is not None
        log.warning("the store refused a batch (%s: %s); writing its messages one by one", type(error).__name__, error)
        nodes = containers = 0
        events: list[ContainerEvent] = []
        for entry in batch.entries:
            if not entry.has_rows:
                continue
            try:
                written = self.store.write(
                    [entry.node] if entry.node else [],
                    [entry.containers] if entry.containers else [],
                    [],
                    [entry.event] if entry.event else [],
                )
            except StoreUnavailable:
                raise
            except Exception as exc:
                detail = f"node {entry.node_id}: {type(exc).__name__}: {exc}"[:200]
                self.reject("(store)", Rejected(Reason.STORE_POISON, detail))
                continue
            nodes += written.nodes
            containers += written.containers
            events.extend(written.events)
        try:
            self.store.write([], [], latest)
        except StoreUnavailable:
            raise
        except Exception:
            log.exception("the store refused the nodes' latest state; it is written with the next batch")
        return Written(nodes, containers, tuple(events))

    def _store_down(self, reason: str) -> None:
        now = time.monotonic()
        outage = self._outage
        if outage is None:
            outage = self._outage = _Outage(reason, since=now)
        else:
            outage.failures += 1
            outage.reason = reason
        self.counters.store_errors.inc()
        delay = min(RETRY_MAX, RETRY_FIRST * 2 ** (outage.failures - 1))
        outage.retry_at = now + delay
        self._store_failures.warning(
            "store", "cannot write history (%s); %d messages held, next attempt in %.1f s", reason, self.pending, delay
        )

    def _store_up(self) -> None:
        if self._outage is not None:
            log.info(
                "history store available again after %.1f s; %d messages stored",
                time.monotonic() - self._outage.since,
                self.pending,
            )
            self._outage = None

    def maintain(self, budget: float) -> bool:
        """Work on the downsampled tiers for about ``budget`` seconds; True when none is left.

        A failure is counted, logged once a minute and retried at the next call.
        """
        if self.store is None:
            return True
        started = time.monotonic()
        try:
            computed, finished = self.store.maintain(datetime.now(UTC), budget)
        except Exception as exc:
            self.counters.store_errors.inc()
            self._store_failures.warning("maintain", "cannot update the downsampled tiers (%s)", exc)
            return True
        self.counters.rollup_buckets.inc(computed)
        self.counters.rollup_seconds.inc(time.monotonic() - started)
        return finished

    def prune(self, retention: timedelta) -> None:
        """Delete history older than ``retention``, and forget nodes silent for that long."""
        gone = self.state.forget(time.time() - retention.total_seconds())
        if gone:
            log.info("retention: forgot %d nodes silent for %s: %s", len(gone), retention, ", ".join(gone[:10]))
        if self.store is None:
            return
        try:
            removed = self.store.prune(datetime.now(UTC) - retention)
        except Exception as exc:  # a failed prune is retried next time
            self.counters.store_errors.inc()
            self._store_failures.warning("prune", "cannot prune history (%s)", exc)
            return
        self.counters.rows_pruned.inc(removed)
        if removed:
            log.info("retention: removed %d rows older than %s", removed, retention)

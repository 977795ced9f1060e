"""Everything the subscriber does with one message, minus MQTT: validate, apply, store in batches.

``Ingestor.handle`` never raises for any input: a message is either rejected (counted by reason,
at most one log line per reason per minute, never touching the state or the history) or applied
to the fleet state, passed to the handlers and added to the open batch. ``flush`` commits the
batch and returns the acknowledgement tokens of the messages that are now durable; if the store
fails, the batch is kept for the next flush and nothing is acknowledged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from common.cli import RateLimitedLog
from contract.models import ContainerMetricsBatch, NodeMetrics, NodeStatus
from contract.topics import parse_topic
from subscriber.decoding import Decoded, Rejected, decode
from subscriber.prometheus import SubscriberCounters
from subscriber.state import FleetState
from subscriber.store import HistoryStore

log = logging.getLogger(__name__)

Token = Hashable


@dataclass(slots=True)
class _Batch:
    nodes: list[NodeMetrics] = field(default_factory=list)
    containers: list[ContainerMetricsBatch] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    tokens: list[Token] = field(default_factory=list)
    opened: float = 0.0
    size: int = 0


class Ingestor:
    """Validation, fleet state and batched history for a stream of (topic, payload) messages."""

    def __init__(
        self,
        state: FleetState,
        store: HistoryStore | None,
        counters: SubscriberCounters,
        dispatch: Callable[[Decoded], None],
        max_payload_bytes: int = 1_048_576,
    ) -> None:
        self.state = state
        self.store = store
        self.counters = counters
        self.max_payload_bytes = max_payload_bytes
        self._dispatch = dispatch
        self._batch = _Batch()
        self._rejections = RateLimitedLog(log, period=60.0)
        self._store_failures = RateLimitedLog(log, period=60.0)

    @property
    def pending(self) -> int:
        """Valid messages handled but not yet committed."""
        return self._batch.size

    @property
    def batch_age(self) -> float:
        """Seconds since the open batch's first message (0 when empty)."""
        return time.monotonic() - self._batch.opened if self._batch.size else 0.0

    def handle(self, topic: str, payload: bytes, received_at: float, token: Token = None) -> Decoded | Rejected:
        """Decode and apply one message; a rejection is counted and logged, never raised."""
        parsed = parse_topic(topic)
        self.counters.received.labels(parsed[1].name.lower() if parsed else "unknown").inc()
        result = decode(topic, payload, self.max_payload_bytes)
        if isinstance(result, Rejected):
            self.counters.rejected.labels(result.reason.value).inc()
            self._rejections.warning(
                result.reason.value, "rejected a message on %r: %s: %s", topic[:120], result.reason, result.detail
            )
            return result
        batch = self._batch
        if not batch.size:
            batch.opened = time.monotonic()
        batch.size += 1
        if token is not None:
            batch.tokens.append(token)
        batch.touched.add(result.node_id)
        message = result.message
        if isinstance(message, NodeMetrics):
            self.state.apply_node_metrics(message, received_at)
            batch.nodes.append(message)
        elif isinstance(message, ContainerMetricsBatch):
            self.state.apply_container_metrics(message, received_at)
            batch.containers.append(message)
        elif isinstance(message, NodeStatus):
            self.state.apply_status(message, received_at)
        self._dispatch(result)
        return result

    def flush(self) -> list[Token] | None:
        """Commit the open batch; the tokens of what is now durable, or None if the store failed."""
        batch = self._batch
        if not batch.size:
            return []
        if self.store is not None:
            latest = [view for node_id in batch.touched if (view := self.state.get(node_id)) is not None]
            try:
                written = self.store.write(batch.nodes, batch.containers, latest)
            except Exception as exc:  # any store failure: keep the batch, retry later, acknowledge nothing
                self.counters.store_errors.inc()
                self._store_failures.warning("store", "cannot write history (%s); will retry", exc)
                batch.opened = time.monotonic()
                return None
            self.counters.rows_stored.labels("node_samples").inc(written.nodes)
            self.counters.rows_stored.labels("container_samples").inc(written.containers)
        self._batch = _Batch()
        return batch.tokens

    def prune(self, retention: timedelta) -> None:
        """Delete history older than ``retention``."""
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

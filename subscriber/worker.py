"""IngestWorker: the subscriber's worker loop, without MQTT.

It takes received messages from its queue one at a time, hands each to the Ingestor, commits the
open batch every ``flush_seconds`` or ``flush_messages``, and acknowledges through a callback: a
rejected message at once (never worth redelivering), a valid one only once its batch is
committed. While the store is unavailable it stops taking messages once ``max_pending`` are held,
so memory stays bounded and the broker keeps the rest. It prunes history every ``prune_every``
seconds and computes closed buckets of the downsampled tiers every ``maintain_every``. Whatever
one step raises is counted and logged, and the loop goes on.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import timedelta

from common.cli import RateLimitedLog
from subscriber.decoding import Rejected
from subscriber.ingest import Ingestor

log = logging.getLogger(__name__)

#: A batch is committed (and acknowledged) this long after its first message, or at FLUSH_MESSAGES.
FLUSH_SECONDS = 0.02
FLUSH_MESSAGES = 1000
PRUNE_EVERY_SECONDS = 600.0
#: How often closed buckets of the downsampled tiers are computed, and for how long at a time;
#: while work is left, a pass follows every MAINTAIN_CATCH_UP_SECONDS, so catching up takes at
#: most a fifth of the worker's time and ingestion never waits more than a pass.
MAINTAIN_EVERY_SECONDS = 20.0
MAINTAIN_BUDGET_SECONDS = 0.02
MAINTAIN_CATCH_UP_SECONDS = 0.1


@dataclass(frozen=True, slots=True)
class Received:
    """One message as it arrived: its acknowledgement token and its arrival time (epoch seconds)."""

    topic: str
    payload: bytes
    token: Hashable
    at: float


_IDLE = Received("", b"", None, 0.0)


class IngestWorker:
    """The loop one thread runs: see the module docstring."""

    def __init__(
        self,
        ingestor: Ingestor,
        acknowledge: Callable[[Hashable], None],
        *,
        taken: Callable[[Received], None] = lambda _r: None,
        retention: timedelta | None = None,
        max_pending: int = 4096,
        flush_seconds: float = FLUSH_SECONDS,
        flush_messages: int = FLUSH_MESSAGES,
        prune_every: float = PRUNE_EVERY_SECONDS,
        maintain_every: float = MAINTAIN_EVERY_SECONDS,
    ) -> None:
        self.ingestor = ingestor
        self.acknowledge = acknowledge
        self.taken = taken
        self.retention = retention
        self.max_pending = max_pending
        self.flush_seconds = flush_seconds
        self.flush_messages = flush_messages
        self.prune_every = prune_every
        self.maintain_every = maintain_every
        self._next_maintain = time.monotonic() + min(5.0, maintain_every)
        self.errors = 0
        self._queue: queue.SimpleQueue[Received | None] = queue.SimpleQueue()
        self._next_prune = time.monotonic() + min(5.0, prune_every)
        self._warnings = RateLimitedLog(log, period=60.0)

    def put(self, received: Received) -> None:
        """Queue a message (any thread)."""
        self._queue.put(received)

    def stop(self) -> None:
        """Ask the loop to store what it holds, acknowledge it and return (any thread)."""
        self._queue.put(None)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def run(self) -> None:
        """Step until ``stop``; a step that raises is counted and logged, not fatal."""
        while True:
            try:
                if not self.step():
                    return
            except Exception:  # a bug: count it, say where, go on with the next message
                self.errors += 1
                self._warnings.exception("worker", "the worker's loop raised; continuing")
                time.sleep(0.1)

    def step(self) -> bool:
        """Take at most one message, flush prune and maintain the tiers when due; False once asked to stop."""
        ingestor = self.ingestor
        wait = ingestor.flush_due_in(self.flush_seconds) if ingestor.pending else 1.0
        item: Received | None = _IDLE
        if ingestor.store_problem is not None and ingestor.pending >= self.max_pending:
            time.sleep(max(0.01, min(wait, 1.0)))  # the store is down and the batch full: the broker keeps the rest
        else:
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = _IDLE
        if item is None:
            self._settle(ingestor.flush())
            return False
        if item is not _IDLE:
            self.taken(item)
            if isinstance(ingestor.handle(item.topic, item.payload, item.at, item.token), Rejected):
                self.acknowledge(item.token)
        if ingestor.pending >= self.flush_messages or (
            ingestor.pending and ingestor.flush_due_in(self.flush_seconds) == 0
        ):
            self._settle(ingestor.flush())
        if time.monotonic() >= self._next_prune:
            if self.retention is not None:
                ingestor.prune(self.retention)
            self._next_prune = time.monotonic() + self.prune_every
        if time.monotonic() >= self._next_maintain:
            finished = ingestor.maintain(MAINTAIN_BUDGET_SECONDS)
            self._next_maintain = time.monotonic() + (self.maintain_every if finished else MAINTAIN_CATCH_UP_SECONDS)
        return True

    def _settle(self, tokens: list[Hashable] | None) -> None:
        for token in tokens or []:
            self.acknowledge(token)

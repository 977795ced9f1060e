"""Keeps a replica's live state complete: what the other replicas stored, folded in every second.

With ``OTTO_SHARED_GROUP`` each replica receives a share of the node and container metrics; all of
them merge what they received into the ``latest`` table (``PostgresHistoryStore``). This thread
reads the rows changed since its last pass (by version, which commits in order) and merges them
into the replica's ``FleetState``, so the API, the dashboard and the alerts of every replica see
the whole fleet, at most about a second behind. Why not every replica receiving every message:
validating messages is most of a subscriber's work, and replicas exist to divide it.
"""

from __future__ import annotations

import logging
import threading

from common.cli import RateLimitedLog
from subscriber.postgres_store import PostgresHistoryStore
from subscriber.state import FleetState

log = logging.getLogger(__name__)

SYNC_SECONDS = 1.0


class ReplicaSync:
    """The thread described in the module docstring; ``thread`` for the supervisor."""

    def __init__(self, store: PostgresHistoryStore, state: FleetState, every: float = SYNC_SECONDS) -> None:
        self.store = store
        self.state = state
        self.every = every
        self.version = 0
        self.merged = 0
        self._stop = threading.Event()
        self._warnings = RateLimitedLog(log, period=60.0)
        self.thread = threading.Thread(target=self._run, name="otto-replica-sync", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout)

    def sync_once(self) -> int:
        """Merge the views stored since the last pass; how many."""
        views, self.version = self.store.changed_views(self.version)
        for view in views:
            self.state.merge(view)
        self.merged += len(views)
        return len(views)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.sync_once()
            except Exception as exc:  # the database is down, or a bug: the next pass tries again
                self._warnings.warning("sync", "cannot read the other replicas' live state (%s)", exc)

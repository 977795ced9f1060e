"""The subscriber's worker loop without a broker: what it acknowledges, when, and what it holds back."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from contract import to_payload
from contract.topics import container_metrics_topic, node_metrics_topic
from subscriber.ingest import Ingestor
from subscriber.prometheus import SubscriberCounters
from subscriber.state import FleetState
from subscriber.store import SqliteHistoryStore
from subscriber.worker import IngestWorker, Received
from tests.support.disk import fill, small_tmpfs
from tests.support.messages import T0, container, container_batch, node_metrics

TOPIC = node_metrics_topic("node-a")


def received(cycle: int) -> Received:
    stamp = T0 + timedelta(seconds=cycle)
    return Received(TOPIC, to_payload(node_metrics(at=stamp, cycle=cycle)), cycle, stamp.timestamp())


def big(cycle: int) -> Received:
    """A containers batch of 50: more rows than the pages SQLite already holds can take."""
    stamp = T0 + timedelta(seconds=cycle)
    batch = container_batch(at=stamp, cycle=cycle, containers=[container(f"c{i}") for i in range(50)])
    return Received(container_metrics_topic("node-a"), to_payload(batch), cycle, stamp.timestamp())


class Running:
    """An IngestWorker on its own thread, as the subscriber runs it; acknowledgements in a list."""

    def __init__(self, store: SqliteHistoryStore, **options: object) -> None:
        self.acked: list[Hashable] = []
        self.taken: list[Received] = []
        self.ingestor = Ingestor(FleetState(3.0), store, SubscriberCounters(CollectorRegistry()), lambda _d: None)
        self.worker = IngestWorker(self.ingestor, self.acked.append, taken=self.taken.append, **options)  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.worker.run, daemon=True)
        self.thread.start()

    def wait(self, condition: object, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
            time.sleep(0.01)
        assert condition(), "condition not met"  # type: ignore[operator]

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteHistoryStore]:
    opened = SqliteHistoryStore(tmp_path / "h.db")
    yield opened
    opened.close()


def test_valid_messages_are_acknowledged_after_their_commit_rejected_ones_at_once(store: SqliteHistoryStore) -> None:
    running = Running(store, flush_seconds=0.5)
    running.worker.put(received(1))
    running.worker.put(Received(TOPIC, b"not json", "bad", T0.timestamp()))
    running.wait(lambda: running.acked == ["bad"])  # the rejection: at once, before the batch is due
    assert store.count("node_samples") == 0
    running.wait(lambda: running.acked == ["bad", 1])  # the valid one: once committed
    assert store.count("node_samples") == 1
    assert [r.token for r in running.taken] == [1, "bad"]
    running.stop()


def test_a_full_batch_is_committed_at_once_and_stop_settles_the_rest(store: SqliteHistoryStore) -> None:
    running = Running(store, flush_seconds=60.0, flush_messages=10)
    for cycle in range(1, 16):
        running.worker.put(received(cycle))
    running.wait(lambda: len(running.acked) == 10)
    time.sleep(0.2)
    assert len(running.acked) == 10  # the other 5 wait for their batch
    running.stop()
    assert running.acked == list(range(1, 16))
    assert store.count("node_samples") == 15


def test_while_the_store_is_down_it_holds_at_most_max_pending_and_leaves_the_rest_queued(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        store = SqliteHistoryStore(disk / "h.db")
        fill(disk / "filler")
        running = Running(store, max_pending=5)
        running.worker.put(big(1))
        running.wait(lambda: running.ingestor.store_problem is not None)
        for cycle in range(2, 21):
            running.worker.put(big(cycle))
        running.wait(lambda: running.ingestor.pending == 5)
        time.sleep(1.0)
        assert running.ingestor.pending == 5  # no more taken: the rest stays queued (with the broker, for real)
        assert running.worker.queued == 15
        assert running.acked == []
        (disk / "filler").unlink()
        running.wait(lambda: len(running.acked) == 20, timeout=40)
        assert running.acked == list(range(1, 21))
        running.stop()
        assert store.count("container_samples") == 20 * 50
        store.close()


def test_a_step_that_raises_is_counted_and_the_loop_goes_on(store: SqliteHistoryStore) -> None:
    calls: list[Hashable] = []

    def flaky_ack(token: Hashable) -> None:
        calls.append(token)
        if token == 1:
            raise RuntimeError("the broker connection went away mid-ack")

    ingestor = Ingestor(FleetState(3.0), store, SubscriberCounters(CollectorRegistry()), lambda _d: None)
    worker = IngestWorker(ingestor, flaky_ack)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    worker.put(received(1))
    deadline = time.monotonic() + 5
    while worker.errors == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.put(received(2))
    worker.stop()
    thread.join(10)
    assert worker.errors == 1
    assert calls == [1, 2]
    assert store.count("node_samples") == 2


def test_prune_runs_on_schedule(store: SqliteHistoryStore) -> None:
    running = Running(store, retention=timedelta(days=1), prune_every=0.05)
    now = time.time()
    running.worker.put(Received(TOPIC, to_payload(node_metrics(at=T0)), 1, T0.timestamp()))
    running.wait(lambda: running.acked == [1])
    running.wait(lambda: running.ingestor.state.get("node-a") is None)  # silent since T0, past a day: forgotten
    assert now - T0.timestamp() > 86400
    running.stop()

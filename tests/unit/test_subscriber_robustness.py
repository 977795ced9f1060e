"""No single message, clock or store failure stops the subscriber's ingestion or loses good data."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from common.supervision import Supervisor
from contract import ContainerEvent, ContainerMetricsBatch, NodeMetrics, to_payload
from contract.topics import container_metrics_topic, node_metrics_topic
from subscriber.admission import Admission, sample_age
from subscriber.decoding import Decoded, Reason, Rejected
from subscriber.ingest import RETRY_MAX, Ingestor
from subscriber.postgres_store import PostgresHistoryStore
from subscriber.prometheus import SubscriberCounters
from subscriber.state import Availability, FleetState, NodeView
from subscriber.store import SqliteHistoryStore, Written
from tests.conftest import StoreOpener
from tests.support.disk import fill, small_tmpfs
from tests.support.messages import T0, container, container_batch, node_metrics, ticks
from tests.support.postgres import Postgres

QUEUE_FULL = Reason.QUEUE_FULL

NODE_TOPIC = node_metrics_topic("node-a")


def counted(counters: SubscriberCounters, reason: Reason) -> float:
    return float(counters.rejected.labels(reason.value)._value.get())


def make_ingestor(store: object | None = None, **kwargs: object) -> tuple[Ingestor, SubscriberCounters]:
    counters = SubscriberCounters(CollectorRegistry())
    ingestor = Ingestor(FleetState(3.0), store, counters, lambda _d: None, **kwargs)  # type: ignore[arg-type]
    return ingestor, counters


@pytest.mark.parametrize("stamp", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_timestamp_whose_utc_overflows_is_a_counted_rejection(stamp: str) -> None:
    """Valid ISO 8601 with an offset at the calendar's edge: today's main raised OverflowError here."""
    ingestor, counters = make_ingestor()
    document = json.loads(to_payload(node_metrics()))
    document["timestamp"] = stamp
    outcome = ingestor.handle(NODE_TOPIC, json.dumps(document).encode(), time.time())
    assert isinstance(outcome, Rejected)
    assert outcome.reason is Reason.BAD_SCHEMA
    assert "out of range" in outcome.detail
    assert counted(counters, Reason.BAD_SCHEMA) == 1
    # The next message is handled as usual.
    assert isinstance(ingestor.handle(NODE_TOPIC, to_payload(node_metrics()), T0.timestamp()), Decoded)


class ExplodingState(FleetState):
    """Fleet state with a bug that only one node's messages reach."""

    def apply_node_metrics(self, message: NodeMetrics, received_at: float | None = None) -> bool:
        if message.node_id == "node-bug":
            raise ZeroDivisionError("a bug no check foresaw")
        return super().apply_node_metrics(message, received_at)


def test_any_exception_while_handling_is_a_counted_rejection_and_the_rest_go_on() -> None:
    counters = SubscriberCounters(CollectorRegistry())
    ingestor = Ingestor(ExplodingState(3.0), None, counters, lambda _d: None)
    bad = node_metrics("node-bug")
    for _ in range(3):  # redelivered: rejected the same way each time, never raised
        outcome = ingestor.handle(node_metrics_topic("node-bug"), to_payload(bad), T0.timestamp(), token="bad")
        assert isinstance(outcome, Rejected)
        assert outcome.reason is Reason.INTERNAL_ERROR
        assert "ZeroDivisionError" in outcome.detail
    assert counted(counters, Reason.INTERNAL_ERROR) == 3
    assert isinstance(ingestor.handle(NODE_TOPIC, to_payload(node_metrics()), T0.timestamp(), token="good"), Decoded)
    assert ingestor.flush() == ["good"]  # the rejected one is not in the batch (the consumer acks it at once)


class RefusingStore(SqliteHistoryStore):
    """The real SQLite store, refusing the rows of one node as a store can refuse odd data."""

    def write(
        self,
        nodes: Sequence[NodeMetrics],
        batches: Sequence[ContainerMetricsBatch],
        latest: Sequence[NodeView],
        events: Sequence[ContainerEvent] = (),
    ) -> Written:
        if any(m.node_id == "node-odd" for m in nodes) or any(e.node_id == "node-odd" for e in events):
            raise ValueError("value cannot be stored")
        return super().write(nodes, batches, latest, events)


def test_a_message_the_store_refuses_is_rejected_as_poison_and_the_rest_of_its_batch_stored(tmp_path: Path) -> None:
    store = RefusingStore(tmp_path / "h.db")
    ingestor, counters = make_ingestor(store)
    stamps = ticks(5)
    for i, at in enumerate(stamps):
        node = "node-odd" if i == 2 else "node-a"
        ingestor.handle(node_metrics_topic(node), to_payload(node_metrics(node, at=at)), at.timestamp(), token=i)
    # Every token is settled: four stored, the poison one rejected (acknowledged, never redelivered).
    assert ingestor.flush() == [0, 1, 2, 3, 4]
    assert counted(counters, Reason.STORE_POISON) == 1
    assert store.count("node_samples") == 4
    assert ingestor.store_problem is None
    # The same message again is refused again, and the batch after it is stored whole.
    ingestor.handle(node_metrics_topic("node-odd"), to_payload(node_metrics("node-odd")), T0.timestamp(), token=5)
    later = T0 + timedelta(hours=1)
    ingestor.handle(NODE_TOPIC, to_payload(node_metrics(at=later)), later.timestamp(), token=6)
    assert ingestor.flush() == [5, 6]
    assert counted(counters, Reason.STORE_POISON) == 2
    assert store.count("node_samples") == 5


def test_text_a_database_cannot_hold_costs_only_its_own_message(open_store: StoreOpener) -> None:
    """A container name with a NUL (PostgreSQL text cannot hold one): refused as a schema violation
    on either store, the messages around it stored."""
    store = open_store()
    ingestor, counters = make_ingestor(store)
    odd = json.loads(to_payload(container_batch(at=T0)))
    odd["containers"][0]["container_name"] = "we\x00b"
    outcome = ingestor.handle(container_metrics_topic("node-a"), json.dumps(odd).encode(), T0.timestamp(), token=0)
    assert isinstance(outcome, Rejected)
    assert outcome.reason is Reason.BAD_SCHEMA
    ingestor.handle(NODE_TOPIC, to_payload(node_metrics(at=T0)), T0.timestamp(), token=1)
    assert ingestor.flush() == [1]
    assert counted(counters, Reason.BAD_SCHEMA) == 1
    assert counted(counters, Reason.STORE_POISON) == 0
    assert (store.count("node_samples"), store.count("container_samples")) == (1, 0)


@pytest.mark.docker
def test_a_transaction_postgres_refuses_leaves_later_writes_working(postgres_server: Postgres) -> None:
    """The day partition created by a refused transaction is rolled back with it; the store's cache
    of partitions forgot it too, so the next write to that day creates it again."""
    store = PostgresHistoryStore(postgres_server.new_database())
    try:
        later = T0 + timedelta(days=1)  # a day no partition exists for yet
        refused = container_batch(
            at=later, containers=[container("web").model_copy(update={"container_name": "we\x00b"})]
        )
        with pytest.raises(psycopg.DataError):
            store.write([node_metrics(at=later)], [refused], [])
        assert store.count("node_samples") == 0
        store.write([node_metrics(at=later)], [container_batch(at=later)], [])
        assert (store.count("node_samples"), store.count("container_samples")) == (1, 1)
    finally:
        store.close()


def test_a_sample_a_day_ahead_does_not_freeze_the_live_view(tmp_path: Path) -> None:
    """Today's main showed the day-ahead sample and 'stale' forever, across restarts."""
    store = SqliteHistoryStore(tmp_path / "h.db")
    ingestor, counters = make_ingestor(store, retention=timedelta(days=7))
    now = T0.timestamp()
    ahead = node_metrics(at=T0 + timedelta(days=1), cpu_percent=99.0, cycle=1)
    ingestor.handle(NODE_TOPIC, to_payload(ahead), now)
    for i in range(1, 4):  # the clock was fixed (NTP): samples with the right time follow
        at = T0 + timedelta(seconds=5 * i)
        ingestor.handle(NODE_TOPIC, to_payload(node_metrics(at=at, cpu_percent=float(i), cycle=1 + i)), at.timestamp())
    assert ingestor.flush() == []
    view = ingestor.state.get("node-a")
    assert view is not None
    assert view.metrics is not None
    assert view.metrics.cpu_percent == 3.0
    assert view.availability(now + 15, 3.0) is Availability.ONLINE
    assert view.clock_skew == pytest.approx(0.0)
    # History: the day-ahead sample is stored at its arrival time, not a day in the future.
    points = store.node_series("node-a", "cpu_percent", T0 - timedelta(hours=1), T0 + timedelta(days=2), 100).points
    assert points == [(T0, 99.0), *((T0 + timedelta(seconds=5 * i), float(i)) for i in range(1, 4))]
    assert counters.history_adjusted.labels("clock_ahead")._value.get() == 1

    # After a restart the restored view behaves the same way.
    restarted = FleetState(3.0)
    for restored in store.latest_views():
        restarted.restore(restored)
    late = T0 + timedelta(seconds=20)
    assert restarted.apply_node_metrics(node_metrics(at=late, cpu_percent=4.0, cycle=5), late.timestamp())
    assert restarted.apply_node_metrics(node_metrics(at=T0 + timedelta(days=1), cycle=9), late.timestamp() + 1)
    assert restarted.apply_node_metrics(node_metrics(at=late + timedelta(seconds=5), cycle=6), late.timestamp() + 5)


def test_a_clock_behind_is_shown_and_an_older_sample_never_hides_a_fresh_trusted_one() -> None:
    state = FleetState(3.0)
    now = T0.timestamp()
    assert state.apply_node_metrics(node_metrics(at=T0 - timedelta(hours=2), cycle=1), now)
    view = state.get("node-a")
    assert view is not None
    assert view.clock_skew == pytest.approx(-7200.0)
    # A fresh sample with a trusted clock, then a redelivered older one: the fresh one stays.
    assert state.apply_node_metrics(node_metrics(at=T0 + timedelta(seconds=5), cycle=2), now + 5)
    assert not state.apply_node_metrics(node_metrics(at=T0, cycle=1), now + 6)
    # The node's clock then steps back a day (a Pi rebooted without its RTC): once the last trusted
    # sample is stale, the backwards samples take the live view instead of leaving it frozen.
    behind = T0 - timedelta(days=1)
    assert not state.apply_node_metrics(node_metrics(at=behind, cycle=1), now + 7)
    assert state.apply_node_metrics(node_metrics(at=behind + timedelta(seconds=20), cycle=4), now + 5 + 16)


def test_samples_older_than_the_retention_are_not_stored(tmp_path: Path) -> None:
    store = SqliteHistoryStore(tmp_path / "h.db")
    ingestor, counters = make_ingestor(store, retention=timedelta(days=7))
    ancient = node_metrics(at=T0 - timedelta(days=30))
    ingestor.handle(NODE_TOPIC, to_payload(ancient), T0.timestamp(), token=1)
    assert ingestor.flush() == [1]
    assert store.count("node_samples") == 0
    assert counters.history_adjusted.labels("older_than_retention")._value.get() == 1


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs: a filesystem that fills up."""
    with small_tmpfs(tmp_path / "disk", "1m") as mountpoint:
        yield mountpoint


def test_a_full_disk_is_retried_with_backoff_holding_everything_then_recovers(small_disk: Path) -> None:
    store = SqliteHistoryStore(small_disk / "history.db")
    ingestor, counters = make_ingestor(store)
    filler = small_disk / "filler"
    fill(filler)
    sent = []
    attempts_before = counters.store_errors._value.get()
    deadline = time.monotonic() + 2.0
    cycle = 0
    while time.monotonic() < deadline:  # a busy fleet keeps sending; the worker keeps flushing
        cycle += 1
        at = T0 + timedelta(seconds=cycle)
        batch = container_batch(at=at, cycle=cycle, containers=[container(f"c{i}") for i in range(20)])
        ingestor.handle(container_metrics_topic("node-a"), to_payload(batch), at.timestamp(), token=cycle)
        sent.append(cycle)
        assert ingestor.flush() is None  # nothing is acknowledged while nothing is stored
        time.sleep(0.05)
    assert ingestor.store_problem is not None
    assert "full" in ingestor.store_problem
    # Backoff, not a tight loop: 0.5 + 1 s between the first attempts, so at most 3 in 2 s.
    assert 1 <= counters.store_errors._value.get() - attempts_before <= 3
    assert ingestor.pending == len(sent)
    assert 0 < ingestor.flush_due_in(0.02) <= RETRY_MAX

    filler.unlink()  # the disk has room again
    deadline = time.monotonic() + RETRY_MAX + 1
    settled = None
    while settled is None and time.monotonic() < deadline:
        time.sleep(ingestor.flush_due_in(0.02))
        settled = ingestor.flush()
    assert settled == sent
    assert ingestor.store_problem is None
    assert store.count("container_samples") == 20 * len(sent)


def test_admission_limits_each_node_and_bounds_the_queue() -> None:
    now = T0.timestamp()
    fresh = to_payload(node_metrics("flood", at=T0))
    admission = Admission(rate=10.0, burst=20.0, max_messages=50, max_bytes=100_000)
    flood = [admission.admit("otto/nodes/flood/metrics/node", fresh, 1, now=now) for _ in range(100)]
    assert flood.count(None) == 20
    assert set(flood[20:]) == {Reason.RATE_LIMITED}
    # Another node is not held up by the flood.
    assert admission.admit("otto/nodes/quiet/metrics/node", to_payload(node_metrics("quiet", at=T0)), 1, now) is None
    # One second later the flood may send its rate again.
    later = [admission.admit("otto/nodes/flood/metrics/node", fresh, 1, now=now + 1) for _ in range(11)]
    assert later.count(None) == 10
    # Bytes bound every QoS; the message count bounds QoS 0.
    assert admission.admit("otto/nodes/big/metrics/node", b"x" * 200_000, 1, now=now) is Reason.QUEUE_FULL
    unlimited = Admission(rate=0.0, burst=1.0, max_messages=3, max_bytes=10_000)
    status = b'{"status":"online"}'
    assert [unlimited.admit("otto/nodes/a/status", status, 0, now) for _ in range(4)] == [None, None, None, QUEUE_FULL]
    unlimited.release(len(status))
    assert unlimited.admit("otto/nodes/a/status", status, 0, now) is None
    assert unlimited.admit("otto/nodes/a/status", status, 1, now) is None  # QoS 1: Receive Maximum bounds it


def test_a_backlog_replayed_after_an_outage_is_never_rate_limited() -> None:
    """Four hours of one node's cycles, queued by the broker while the subscriber was away, in one burst."""
    admission = Admission(rate=50.0, burst=500.0, max_messages=10_000, max_bytes=256 * 2**20)
    arrival = T0.timestamp() + 2880 * 5
    backlog = [to_payload(node_metrics(at=at, cycle=i + 1)) for i, at in enumerate(ticks(2880))]
    outcomes = [admission.admit(NODE_TOPIC, payload, 1, now=arrival) for payload in backlog]
    assert outcomes.count(None) == 2880  # the last minute's 12 are fresh: inside the burst
    assert sample_age(backlog[0], arrival) == 14_400.0
    assert sample_age(b"not json at all", arrival) is None


def test_the_supervisor_reports_a_dead_thread_once() -> None:
    deaths: list[str] = []
    stop = threading.Event()
    healthy = threading.Thread(target=stop.wait, daemon=True)
    failing = threading.Thread(target=lambda: None, daemon=True)  # ends: as good as dead
    supervisor = Supervisor({"healthy": healthy, "failing": failing}, deaths.append, period=0.05)
    healthy.start()
    supervisor.start()
    time.sleep(0.2)
    assert deaths == []  # a thread not started yet is not dead
    failing.start()
    deadline = time.monotonic() + 5
    while not deaths and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    assert deaths == ["failing"]
    stop.set()
    supervisor.stop()

"""Downsampled tiers on a real SQLite file: exact against the raw samples, incremental, durable."""

from __future__ import annotations

import random
import sqlite3
import statistics
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from subscriber.postgres_store import PostgresHistoryStore
from subscriber.rollup import CONTAINER_TIER_FIELDS, DEFAULT_TIERS, NODE_TIER_FIELDS, Resolution, Retention
from subscriber.sqlite_tiers import CORES
from subscriber.store import SqliteHistoryStore, to_ms
from tests.conftest import AnyStore, StoreOpener
from tests.support.messages import T0, container, container_batch, node_metrics, ticks

NODE = {f.name: f for f in NODE_TIER_FIELDS}
CONTAINER = {f.name: f for f in CONTAINER_TIER_FIELDS}
RAW = Resolution(None, 60)
ONE_MINUTE = Resolution(DEFAULT_TIERS[0], 60)
QUARTER = Resolution(DEFAULT_TIERS[1], 900)
LATER = T0 + timedelta(hours=3)


@pytest.fixture
def store(open_store: StoreOpener) -> AnyStore:
    return open_store()


def cpu_samples(n: int = 360, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [round(rng.uniform(0, 100), 3) for _ in range(n)]


def write_cpu(store: AnyStore, values: list[float], start: datetime = T0) -> None:
    times = ticks(len(values), start)
    store.write(
        [node_metrics(at=t, cycle=i + 1, cpu_percent=v) for i, (t, v) in enumerate(zip(times, values, strict=True))],
        [],
        [],
    )


def cpu(store: AnyStore, res: Resolution, stat: str = "avg", start: datetime = T0) -> list[tuple[int, float]]:
    rows = store.buckets("node", "node-a", [(NODE["cpu_percent"], stat)], start, start + timedelta(hours=1), res).rows
    return [(b, v[0]) for b, _, v in rows]


def test_each_minute_holds_the_average_minimum_and_maximum_of_its_samples(store: AnyStore) -> None:
    values = cpu_samples()  # 30 minutes at 5 s
    write_cpu(store, values)
    store.maintain(LATER)
    minutes = [values[i : i + 12] for i in range(0, len(values), 12)]
    for stat, expected in (("avg", statistics.fmean), ("min", min), ("max", max)):
        got = cpu(store, ONE_MINUTE, stat)
        assert [b for b, _ in got] == [to_ms(T0) + 60_000 * i for i in range(30)]
        assert [v for _, v in got] == pytest.approx([expected(m) for m in minutes])
    quarters = [values[i : i + 180] for i in range(0, len(values), 180)]
    assert [v for _, v in cpu(store, QUARTER)] == pytest.approx([statistics.fmean(q) for q in quarters])
    assert [v for _, v in cpu(store, QUARTER, "max")] == pytest.approx([max(q) for q in quarters])


def test_raw_and_every_tier_agree_on_the_same_buckets(store: AnyStore) -> None:
    write_cpu(store, cpu_samples())
    store.maintain(LATER)
    fifteen_raw = Resolution(None, 900)
    fifteen_from_minutes = Resolution(DEFAULT_TIERS[0], 900)
    from_raw = cpu(store, fifteen_raw)
    assert len(from_raw) == 2
    for other in (cpu(store, fifteen_from_minutes), cpu(store, QUARTER)):
        assert [b for b, _ in other] == [b for b, _ in from_raw]
        assert [v for _, v in other] == pytest.approx([v for _, v in from_raw])


def test_a_bucket_still_open_is_not_computed_yet(store: AnyStore) -> None:
    write_cpu(store, cpu_samples(24))  # two minutes
    assert store.maintain(T0 + timedelta(seconds=70)) == (0, True)  # first minute closes 15 s after its end
    assert store.maintain(T0 + timedelta(seconds=76)) == (1, True)
    assert len(cpu(store, ONE_MINUTE)) == 1


def test_redelivered_samples_change_nothing_and_a_late_one_is_folded_in(store: AnyStore) -> None:
    values = cpu_samples(180)
    write_cpu(store, values)
    store.maintain(LATER)
    before = cpu(store, ONE_MINUTE)
    write_cpu(store, values)  # the broker redelivers everything
    store.maintain(LATER)
    assert cpu(store, ONE_MINUTE) == before
    store.write([node_metrics(at=T0 + timedelta(seconds=2), cpu_percent=100.0)], [], [])  # late, between two ticks
    assert store.maintain(LATER) == (3, True)  # its minute, quarter hour and two hours again, nothing else
    after = cpu(store, ONE_MINUTE)
    assert after[1:] == before[1:]
    assert after[0][1] == pytest.approx(statistics.fmean([*values[:12], 100.0]))
    assert cpu(store, QUARTER)[0][1] == pytest.approx(statistics.fmean([*values, 100.0]))


def test_work_left_before_a_restart_is_done_after_it(open_store: StoreOpener) -> None:
    first = open_store()
    write_cpu(first, cpu_samples(120))
    first.close()
    again = open_store()
    assert again.maintain(LATER) == (10 + 1 + 1, True)
    assert len(cpu(again, ONE_MINUTE)) == 10


def test_history_from_before_the_tiers_existed_is_rolled_up(tmp_path: Path) -> None:
    old = SqliteHistoryStore(tmp_path / "h.db")
    write_cpu(old, cpu_samples(120))
    old.close()
    with sqlite3.connect(tmp_path / "h.db") as db:  # the file as an older subscriber left it
        for table in ("node_rollups", "container_rollups", "core_rollups", "rollup_dirty"):
            db.execute(f"DROP TABLE {table}")
    upgraded = SqliteHistoryStore(tmp_path / "h.db")
    upgraded.maintain(LATER)
    assert len(cpu(upgraded, ONE_MINUTE)) == 10


def test_counters_become_rates_and_a_restart_never_reads_negative(store: AnyStore) -> None:
    received = [0, 500, 1000, 1500, 100, 600]  # the container restarted before the fifth sample
    store.write(
        [],
        [
            container_batch(at=t, containers=[container("web", network_rx_bytes=r)])
            for t, r in zip(ticks(6), received, strict=True)
        ],
        [],
    )
    store.maintain(LATER)
    rows = store.buckets(
        "containers", "node-a", [(CONTAINER["network_rx_rate"], s) for s in ("avg", "min", "max")], T0, LATER, RAW
    ).rows
    assert rows == [(to_ms(T0), "web", [pytest.approx(84.0), 20.0, 100.0])]  # (100*3 + 20 + 100) / 5
    tier = store.buckets("containers", "node-a", [(CONTAINER["network_rx_rate"], "avg")], T0, LATER, ONE_MINUTE)
    assert tier.rows[0][2] == [pytest.approx(84.0)]


def test_rates_continue_across_a_subscriber_restart(open_store: StoreOpener) -> None:
    first = open_store()
    first.write([node_metrics(at=T0, network_bytes_recv=1000)], [], [])
    first.close()
    again = open_store()  # remembers nothing: reads the previous row back
    again.write([node_metrics(at=T0 + timedelta(seconds=5), cycle=2, network_bytes_recv=6000)], [], [])
    rows = again.buckets("node", "node-a", [(NODE["network_recv_rate"], "max")], T0, LATER, RAW).rows
    assert rows[0][2] == [1000.0]


def test_each_core_has_its_own_series(store: AnyStore) -> None:
    store.write([node_metrics(at=t, cpu_per_core=[float(i), 50.0]) for i, t in enumerate(ticks(12))], [], [])
    store.maintain(LATER)
    for res in (RAW, ONE_MINUTE):
        rows = store.buckets("cores", "node-a", [(CORES.fields[0], "avg")], T0, LATER, res).rows
        assert [(label, v[0]) for _, label, v in rows] == [("0", 5.5), ("1", 50.0)]


def test_cycles_lost_and_under_voltage_of_the_last_day(store: AnyStore) -> None:
    cycles = [1, 2, 3, 6, 7, 8]  # 4 and 5 never arrived
    store.write(
        [node_metrics(at=T0 + timedelta(seconds=5 * (c - 1)), cycle=c, under_voltage=c == 7) for c in cycles]
        + [node_metrics("node-b", at=T0)],
        [],
        [],
    )
    store.maintain(LATER)
    health = store.recent_health(T0 - timedelta(hours=1))
    assert (health["node-a"].cycles_lost, health["node-a"].under_voltage) == (2, True)
    assert (health["node-b"].cycles_lost, health["node-b"].under_voltage) == (0, False)
    rows = store.buckets("node", "node-a", [(NODE["cycles_lost"], "sum")], T0, LATER, RAW).rows
    assert rows[0][2] == [2.0]


def test_counters_a_node_inflates_cannot_break_the_sums(store: AnyStore) -> None:
    huge = 2**63 - 1
    batches = [container_batch(at=t, containers=[container("web", restart_count=huge, pids=huge)]) for t in ticks(3)]
    store.write([], batches, [])
    assert store.maintain(LATER) == (3, True)
    rows = store.buckets("containers", "node-a", [(CONTAINER["restart_count"], "avg")], T0, LATER, ONE_MINUTE).rows
    assert rows[0][2] == [pytest.approx(float(huge))]


def test_each_tier_is_pruned_by_its_own_retention_in_whole_buckets(open_store: StoreOpener) -> None:
    retention = Retention(raw=timedelta(hours=1), tiers=DEFAULT_TIERS)
    store = open_store(retention=retention)
    write_cpu(store, cpu_samples(360))
    store.maintain(LATER)
    # Raw rows older than 10:17:30 go, rounded down to whole minutes: 10:17:00 onwards stays
    # (PostgreSQL drops whole days: the day is not over, so all of it stays).
    store.prune(T0 + timedelta(minutes=17, seconds=30))
    whole_days = isinstance(store, PostgresHistoryStore)
    assert store.count("node_samples") == (360 if whole_days else 360 - 17 * 12)
    assert len(cpu(store, ONE_MINUTE)) == 30  # the 1-minute tier keeps 14 days


def test_work_is_done_in_small_units_when_time_is_short(open_store: StoreOpener) -> None:
    """A crowded minute is split by nodes; each call stops after a unit; the result is the same."""
    nodes = [f"pi-{n:03d}" for n in range(600)]
    samples = [node_metrics(n, at=t, cpu_percent=float(i % 7)) for n in nodes for i, t in enumerate(ticks(12))]
    budgeted, whole = open_store("a"), open_store("b")
    for store in (budgeted, whole):
        store.write(samples, [], [])
    calls, finished = 0, False
    while not finished:
        _, finished = budgeted.maintain(LATER, budget=0.0)
        calls += 1
    assert calls >= 3  # 600 nodes' minute: 240 marks a unit
    assert whole.maintain(LATER) == (3, True)
    for node in ("pi-000", "pi-599"):
        rows = [
            store.buckets("node", node, [(NODE["cpu_percent"], "avg")], T0, LATER, ONE_MINUTE).rows
            for store in (budgeted, whole)
        ]
        assert rows[0] == rows[1]
        assert rows[0][0][2] == [pytest.approx(statistics.fmean(i % 7 for i in range(12)))]


def test_samples_arriving_out_of_order_derive_what_in_order_would(store: AnyStore) -> None:
    """A redelivered backlog mixes old and new samples: rates and cycles lost are those of the stored order."""
    samples = [
        node_metrics(at=T0 + timedelta(seconds=5 * (c - 1)), cycle=c, network_bytes_recv=1000 * c) for c in range(1, 11)
    ]
    store.write([samples[i] for i in (0, 1, 4, 2)], [], [])
    for batch in ([5, 3], [9], [6, 8, 7]):
        store.write([samples[i] for i in batch], [], [])
    rows = store.buckets("node", "node-a", [(NODE["network_recv_rate"], "min"), (NODE["network_recv_rate"], "max"),
                                            (NODE["cycles_lost"], "sum")], T0, LATER, RAW).rows  # fmt: skip
    assert rows == [(to_ms(T0), None, [200.0, 200.0, 0.0])]


def test_replicas_writing_one_node_out_of_order_derive_what_one_writer_would(open_store: StoreOpener) -> None:
    """Samples of one node spread over two writers, each out of order: every rate and cycle count is exact."""
    a, b = open_store(), open_store()
    if not isinstance(a, PostgresHistoryStore):
        pytest.skip("one SQLite subscriber receives in order; only replicas on PostgreSQL interleave like this")
    cycles = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    samples = [
        node_metrics(at=T0 + timedelta(seconds=5 * (c - 1)), cycle=c, network_bytes_recv=1000 * c) for c in cycles
    ]
    for i in (4, 0, 9, 2, 1, 7, 3, 8, 6, 5):  # what two replicas might get, one message at a time
        (a if i % 2 else b).write([samples[i]], [], [])
    rows = a.buckets("node", "node-a", [(NODE["network_recv_rate"], "min"), (NODE["network_recv_rate"], "max"),
                                        (NODE["cycles_lost"], "sum")], T0, LATER, RAW).rows  # fmt: skip
    assert rows == [(to_ms(T0), None, [200.0, 200.0, 0.0])]  # 1000 B every 5 s, nothing lost

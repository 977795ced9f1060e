"""Property-based fuzzing of the subscriber's decoding and ingestion (10,000 hostile payloads).

Every example is 40 hostile (topic, payload) pairs with valid messages around them: nothing
raises, every rejection is counted under a reason, and every valid message is stored; in SQLite
and in PostgreSQL alike (a NUL character, which PostgreSQL text cannot hold, is refused at decoding).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from contract import to_payload
from subscriber.decoding import Decoded, Reason, Rejected
from subscriber.ingest import Ingestor
from subscriber.postgres_store import PostgresHistoryStore
from subscriber.prometheus import SubscriberCounters
from subscriber.state import FleetState
from subscriber.store import SqliteHistoryStore
from tests.conftest import AnyStore
from tests.support.hostile import LIMIT, payloads, topics
from tests.support.messages import T0, node_metrics

EXAMPLES = 250
PER_EXAMPLE = 40  # 250 x 40 = 10,000 hostile payloads

_stamps = itertools.count(1)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.docker)])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnyStore]:
    opened: AnyStore
    if request.param == "postgres":
        opened = PostgresHistoryStore(request.getfixturevalue("postgres_server").new_database())
    else:
        opened = SqliteHistoryStore(tmp_path_factory.mktemp("fuzz") / "fuzz.db")
    yield opened
    opened.close()


def rejected_total(counters: SubscriberCounters) -> float:
    return sum(counters.rejected.labels(reason.value)._value.get() for reason in Reason)


@settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(st.lists(st.tuples(topics, payloads), min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
def test_hostile_input_never_raises_is_counted_and_spares_valid_messages(
    store: AnyStore, hostile: list[tuple[str, bytes]]
) -> None:
    counters = SubscriberCounters(CollectorRegistry())
    ingestor = Ingestor(FleetState(3.0), store, counters, dispatch=lambda _m: None, max_payload_bytes=LIMIT)
    valid = []
    accepted = 0
    for topic, payload in hostile:
        message = node_metrics(at=T0 + timedelta(seconds=next(_stamps)), cpu_percent=33.0)
        valid.append(message)
        arrival = message.timestamp.timestamp()
        assert isinstance(ingestor.handle("otto/nodes/node-a/metrics/node", to_payload(message), arrival), Decoded)
        outcome = ingestor.handle(topic, payload, arrival)  # must not raise, whatever it is
        assert isinstance(outcome, Decoded | Rejected)
        if isinstance(outcome, Rejected):
            assert outcome.reason in Reason
            assert outcome.detail
        else:
            accepted += 1
    assert ingestor.flush() == []
    # Every hostile message was either accepted or rejected with a counted reason.
    assert rejected_total(counters) + accepted == PER_EXAMPLE
    # The valid messages around them were all stored, each once.
    first, last = valid[0].timestamp, valid[-1].timestamp
    stored = store.node_series("node-a", "cpu_percent", first, last, limit=10_000).points
    assert {t for t, v in stored if v == 33.0} >= {m.timestamp for m in valid}

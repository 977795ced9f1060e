"""MetricsSubscriber's plumbing without a broker: paho's own message objects through its callbacks."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from prometheus_client import CollectorRegistry

from contract import ContainerMetricsBatch, NodeMetrics, NodeStatus, to_payload
from contract.topics import container_metrics_topic, node_metrics_topic, status_topic
from subscriber.consumer import BrokerConfig, Limits, MetricsSubscriber
from subscriber.prometheus import SubscriberCounters
from subscriber.state import FleetState
from subscriber.store import SqliteHistoryStore
from tests.support.broker import free_port
from tests.support.messages import container_batch, node_metrics, status


def message(topic: str, payload: bytes, mid: int) -> mqtt.MQTTMessage:
    received = mqtt.MQTTMessage(mid=mid, topic=topic.encode())
    received.payload = payload
    received.qos = 1
    return received


def test_messages_reach_state_history_and_handlers_and_a_flood_is_refused_early(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    store = SqliteHistoryStore(tmp_path / "h.db")
    counters = SubscriberCounters(CollectorRegistry())
    subscriber = MetricsSubscriber(
        BrokerConfig("127.0.0.1", free_port()), FleetState(3.0), store, counters, limits=Limits(node_burst=5)
    )
    seen: list[object] = []
    subscriber.add_node_handler(seen.append)
    subscriber.add_container_handler(seen.append)
    subscriber.add_status_handler(seen.append)
    subscriber.add_node_handler(lambda _m: 1 / 0)  # a user's broken handler must not stop ingestion
    subscriber.threads["worker"].start()  # the worker only: there is no broker to connect to
    now = datetime.now(UTC)
    arriving = [
        (node_metrics_topic("node-a"), to_payload(node_metrics(at=now))),
        (container_metrics_topic("node-a"), to_payload(container_batch(at=now))),
        (status_topic("node-a"), to_payload(status(at=now))),
    ]
    for mid, (topic, payload) in enumerate(arriving, start=1):
        subscriber._on_message(subscriber._client, None, message(topic, payload, mid))
    flood = to_payload(node_metrics("node-b", at=now))
    for mid in range(100, 120):  # node-b may send 5 at once
        subscriber._on_message(subscriber._client, None, message(node_metrics_topic("node-b"), flood, mid))
    deadline = time.monotonic() + 5
    while len(seen) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    subscriber.worker.stop()
    subscriber.threads["worker"].join(5)
    assert [type(m) for m in seen[:3]] == [NodeMetrics, ContainerMetricsBatch, NodeStatus]
    assert counters.handler_errors._value.get() == 6  # every node message: node-a's and the 5 of node-b's admitted
    assert counters.rejected.labels("rate_limited")._value.get() == 15
    assert store.count("node_samples") == 2  # node-a's and the first of node-b's (identical stamps)
    assert store.count("container_samples") == 1
    assert "[node-a] CPU: 12.5% MEM: 40.0%" in caplog.text  # the per-message line
    assert "  [web] CPU: 3.5% MEM: 40.0MB" in caplog.text
    assert counters.queue_depth._value.get() == 0
    assert subscriber.admission.messages == 0
    store.close()

"""Faults at the broker: a minute-long outage, and a restart with persistence."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contract import NodeMetrics, NodeStatus, to_payload
from contract.topics import container_metrics_topic, node_metrics_topic, status_topic
from tests.support.agent_process import AgentProcess
from tests.support.broker import Broker
from tests.support.load import wait_until
from tests.support.messages import node_metrics, status
from tests.support.mqtt import Publisher, Recorder
from tests.support.subscriber_process import SubscriberProcess

pytestmark = [pytest.mark.docker, pytest.mark.slow]

OUTAGE = 60.0
SMALL_BUFFER = 20  # messages: ten cycles of node + containers


def cycles(recorder: Recorder, topic: str) -> list[int]:
    """Cycle numbers in the order first received (at-least-once duplicates removed)."""
    return list(dict.fromkeys(json.loads(m.payload)["cycle"] for m in recorder.on(topic)))


def test_a_minute_without_broker(broker: Broker, tmp_path: Path) -> None:
    """node-a keeps the default buffer (an hour) and loses nothing; node-b keeps 20 messages."""
    recorder = Recorder(broker, persistent=True)
    big = AgentProcess(broker, "node-a", tmp_path, interval="1")
    small = AgentProcess(broker, "node-b", tmp_path, interval="1", buffer_size=str(SMALL_BUFFER))
    try:
        for node in ("node-a", "node-b"):
            recorder.wait_for(lambda m, n=node: sum(x.topic == node_metrics_topic(n) for x in m) >= 2)
        broker.stop()
        went_down = time.time()
        time.sleep(OUTAGE)
        assert big.process.poll() is None  # neither agent exits
        assert small.process.poll() is None
        broker.start()
        came_back = time.time()
        big.wait_for_log("replaying", timeout=45)
        small.wait_for_log("replaying", timeout=45)
        # Replay is in order (and paced): once a sample taken after the broker came back has
        # arrived, the whole backlog before it has.
        for node in ("node-a", "node-b"):
            recorder.wait_for(
                lambda m, n=node: any(
                    NodeMetrics.model_validate_json(x.payload).timestamp.timestamp() > came_back + 1
                    for x in m
                    if x.topic == node_metrics_topic(n)
                ),
                timeout=60,
            )

        # node-a: every sample, in order, each with the time it was taken.
        order = cycles(recorder, node_metrics_topic("node-a"))
        assert order == list(range(order[0], order[-1] + 1))
        assert cycles(recorder, container_metrics_topic("node-a"))[: len(order) - 2] == order[: len(order) - 2]
        samples = {
            n.cycle: n
            for n in (NodeMetrics.model_validate_json(m.payload) for m in recorder.on(node_metrics_topic("node-a")))
        }
        during = [n for n in samples.values() if went_down < n.timestamp.timestamp() < came_back]
        assert len(during) >= OUTAGE * 0.9  # one per second of the outage
        stamps = [samples[c].timestamp for c in sorted(samples)]
        assert stamps == sorted(stamps)
        assert max(samples.values(), key=lambda n: n.cycle).agent.dropped == 0

        # node-b: exactly the oldest were dropped, one contiguous run, and each one was counted.
        received = sorted(cycles(recorder, node_metrics_topic("node-b")))
        missing = sorted(set(range(received[0], received[-1] + 1)) - set(received))
        assert len(missing) >= OUTAGE * 0.9 - SMALL_BUFFER / 2
        assert missing == list(range(missing[0], missing[-1] + 1))
        last = max(
            (NodeMetrics.model_validate_json(m.payload) for m in recorder.on(node_metrics_topic("node-b"))),
            key=lambda n: n.cycle,
        )
        assert last.agent.dropped == 2 * len(missing)
        assert f"{2 * len(missing)} messages were dropped while the broker was away" in small.logs()
        for agent in (big, small):
            assert "Traceback" not in agent.logs()
    finally:
        big.stop()
        small.stop()
        recorder.close()


def test_broker_restart_keeps_retained_statuses_and_queued_messages(broker: Broker, tmp_path: Path) -> None:
    subscriber = SubscriberProcess(broker, tmp_path).start()
    assert subscriber.stop() == 0  # its persistent session waits on the broker
    publisher = Publisher(broker, "node-a")
    publisher.publish(status_topic("node-a"), to_payload(status(state="online")), retain=True)
    first = datetime.now(UTC) - timedelta(minutes=5)
    for cycle in range(1, 101):
        publisher.publish(
            node_metrics_topic("node-a"), to_payload(node_metrics(at=first + timedelta(seconds=cycle), cycle=cycle))
        )
    publisher.close()

    broker.stop()  # a clean stop: Mosquitto saves its persistence file
    broker.start()

    late = Recorder(broker, topic=status_topic("node-a"))
    retained = late.wait_for(lambda m: len(m) >= 1)[0]
    assert retained.retain
    assert NodeStatus.model_validate_json(retained.payload).status == "online"
    late.close()
    subscriber.start()
    try:
        wait_until(
            lambda: subscriber.metric("otto_subscriber_rows_stored_total", table="node_samples") == 100.0, timeout=30
        )
        since = (first - timedelta(seconds=1)).isoformat().replace("+", "%2B")
        history = subscriber.get(f"/api/nodes/node-a/history?field=cycle&limit=1000&start={since}")
        assert [p["value"] for p in history["points"]] == list(range(1, 101))
        assert subscriber.get("/api/nodes/node-a")["node_status"]["status"] == "online"
    finally:
        assert subscriber.stop() == 0

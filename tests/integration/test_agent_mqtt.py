"""The real agent process against a real Mosquitto (shipped config, per-node credentials)."""

from __future__ import annotations

import itertools
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from contract import ContainerMetricsBatch, NodeMetrics, NodeStatus
from contract.topics import container_metrics_topic, node_metrics_topic, status_topic
from tests.support.agent_process import AgentProcess
from tests.support.broker import Broker
from tests.support.mqtt import Received, Recorder

pytestmark = [pytest.mark.docker]

NODE = "node-a"


def node_messages(recorder: Recorder) -> list[NodeMetrics]:
    return [NodeMetrics.model_validate_json(m.payload) for m in recorder.on(node_metrics_topic(NODE))]


def statuses(messages: list[Received]) -> list[NodeStatus]:
    return [NodeStatus.model_validate_json(m.payload) for m in messages if m.topic == status_topic(NODE)]


def count_on(topic: str, n: int) -> Callable[[list[Received]], bool]:
    return lambda messages: sum(m.topic == topic for m in messages) >= n


def test_publishes_valid_messages_and_a_retained_online_status(broker: Broker, tmp_path: Path) -> None:
    recorder = Recorder(broker)
    agent = AgentProcess(broker, NODE, tmp_path)
    try:
        recorder.wait_for(count_on(node_metrics_topic(NODE), 3))
        recorder.wait_for(count_on(container_metrics_topic(NODE), 3))
        nodes = node_messages(recorder)
        batches = [
            ContainerMetricsBatch.model_validate_json(m.payload) for m in recorder.on(container_metrics_topic(NODE))
        ]
        assert {n.node_id for n in nodes} == {b.node_id for b in batches} == {NODE}
        assert all(b.error is None for b in batches)  # the engine is reachable here
        for n in nodes:
            assert 0 <= n.cpu_percent <= 100, n
            assert 0 < n.memory_used_mb < n.memory_total_mb, n
            assert 0 < n.disk_used_gb < n.disk_total_gb, n
        assert all(n.agent.collect_seconds < 1.0 and n.agent.rss_mb > 5 and n.interval_seconds == 1.0 for n in nodes)
        # Fixed-rate schedule: the node timestamps sit one interval apart, without drift.
        stamps = [n.timestamp.timestamp() for n in nodes]
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert all(0.8 < gap < 1.2 for gap in gaps), gaps

        online = statuses(recorder.messages)[0]
        assert (online.status, online.agent_version, online.interval_seconds) == ("online", "0.1.0", 1.0)
        late = Recorder(broker, topic=status_topic(NODE))  # a subscriber arriving later gets it retained
        retained = late.wait_for(lambda m: len(m) >= 1)[0]
        assert retained.retain
        assert NodeStatus.model_validate_json(retained.payload).status == "online"
        late.close()
        assert agent.logs().count("connected to broker") == 1
    finally:
        agent.stop()
        recorder.close()


def test_sigterm_publishes_offline_and_exits_0_within_5s(broker: Broker, tmp_path: Path) -> None:
    recorder = Recorder(broker)
    agent = AgentProcess(broker, NODE, tmp_path)
    try:
        recorder.wait_for(count_on(node_metrics_topic(NODE), 1))
        started = time.monotonic()
        agent.signal(signal.SIGTERM)
        assert agent.wait(timeout=5.5) == 0
        assert time.monotonic() - started < 5.0
        messages = recorder.wait_for(lambda m: any(s.status == "offline" for s in statuses(m)), timeout=5)
        offline = [s for s in statuses(messages) if s.status == "offline"]
        assert offline[-1].timestamp is not None  # the explicit one, not the will (which has none)
        assert "Traceback" not in agent.logs()
    finally:
        agent.stop()
        recorder.close()


def test_kill_9_leaves_the_last_will(broker: Broker, tmp_path: Path) -> None:
    recorder = Recorder(broker)
    agent = AgentProcess(broker, NODE, tmp_path)
    try:
        recorder.wait_for(count_on(node_metrics_topic(NODE), 1))
        agent.signal(signal.SIGKILL)
        messages = recorder.wait_for(lambda m: any(s.status == "offline" for s in statuses(m)), timeout=20)
        will = [s for s in statuses(messages) if s.status == "offline"][-1]
        assert will.timestamp is None  # published by the broker on the agent's behalf
        late = Recorder(broker, topic=status_topic(NODE))
        retained = late.wait_for(lambda m: len(m) >= 1)[0]
        assert NodeStatus.model_validate_json(retained.payload).status == "offline"
        late.close()
    finally:
        agent.stop()
        recorder.close()


def cycles(recorder: Recorder, topic: str) -> list[int]:
    """Cycle numbers in the order they were first received (at-least-once duplicates removed)."""
    return list(dict.fromkeys(json.loads(m.payload)["cycle"] for m in recorder.on(topic)))


def test_broker_outage_is_replayed_in_order_with_original_timestamps(broker: Broker, tmp_path: Path) -> None:
    recorder = Recorder(broker, persistent=True)
    agent = AgentProcess(broker, NODE, tmp_path, interval="0.5")
    try:
        recorder.wait_for(count_on(node_metrics_topic(NODE), 2))
        broker.stop()
        outage = (time.time(), time.time() + 6)
        time.sleep(6)
        broker.start()
        agent.wait_for_log("replaying")
        stop_at = len(cycles(recorder, node_metrics_topic(NODE))) + 20
        recorder.wait_for(count_on(node_metrics_topic(NODE), stop_at), timeout=60)

        for topic in (node_metrics_topic(NODE), container_metrics_topic(NODE)):
            order = cycles(recorder, topic)
            assert order == sorted(order), "replayed out of order"
            assert order == list(range(order[0], order[-1] + 1)), "a cycle is missing"
        nodes = {n.cycle: n for n in node_messages(recorder)}
        taken_during = [n for n in nodes.values() if outage[0] < n.timestamp.timestamp() < outage[1]]
        assert len(taken_during) >= 4  # samples taken while the broker was away, each with its own time
        stamps = [nodes[c].timestamp for c in sorted(nodes)]
        assert stamps == sorted(stamps)
        assert max(nodes.values(), key=lambda n: n.cycle).agent.dropped == 0
        logs = agent.logs()
        assert "disconnected from broker" in logs
        assert "Traceback" not in logs
    finally:
        agent.stop()
        recorder.close()


def test_buffer_smaller_than_the_outage_drops_exactly_the_oldest(broker: Broker, tmp_path: Path) -> None:
    recorder = Recorder(broker, persistent=True)
    # Events share the outbox; any container event on this engine meanwhile would take a slot.
    agent = AgentProcess(broker, NODE, tmp_path, interval="0.5", buffer_size="6", events="false")
    try:
        recorder.wait_for(count_on(node_metrics_topic(NODE), 2))
        broker.stop()
        time.sleep(6)
        broker.start()
        agent.wait_for_log("replaying")
        stop_at = len(cycles(recorder, node_metrics_topic(NODE))) + 6
        recorder.wait_for(count_on(node_metrics_topic(NODE), stop_at), timeout=60)

        received = sorted(cycles(recorder, node_metrics_topic(NODE)))
        missing = sorted(set(range(received[0], received[-1] + 1)) - set(received))
        assert missing, "the outage was meant to be longer than the buffer"
        assert missing == list(range(missing[0], missing[-1] + 1)), "only one run of the oldest may be lost"
        # The three cycles (six messages) after the hole were kept and replayed, then live traffic.
        assert set(range(missing[-1] + 1, missing[-1] + 4)) <= set(received)
        batches = sorted(cycles(recorder, container_metrics_topic(NODE)))
        assert sorted(set(range(batches[0], batches[-1] + 1)) - set(batches)) == missing
        # Each lost cycle lost two messages (node + containers), and the agent counted every one.
        last = max(node_messages(recorder), key=lambda n: n.cycle)
        assert last.agent.dropped == 2 * len(missing)
        logs = agent.logs()
        assert logs.count("outbox full") == 1
        assert f"{2 * len(missing)} messages were dropped while the broker was away" in logs
    finally:
        agent.stop()
        recorder.close()

"""The real subscriber process against a real Mosquitto: what reaches the API, /metrics and the store."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import docker
import pytest

from contract import to_payload
from contract.topics import container_metrics_topic, node_metrics_topic, status_topic
from tests.support.agent_process import AgentProcess
from tests.support.broker import Broker
from tests.support.load import LoadContainers, wait_until
from tests.support.messages import container, container_batch, node_metrics, status
from tests.support.mqtt import Publisher
from tests.support.subscriber_process import SubscriberProcess

pytestmark = [pytest.mark.docker]


def now() -> datetime:
    return datetime.now(UTC)


def rows(db: Path, table: str, node_id: str) -> int:
    with sqlite3.connect(db) as connection:
        return int(connection.execute(f"SELECT count(*) FROM {table} WHERE node_id = ?", (node_id,)).fetchone()[0])  # noqa: S608


def test_valid_messages_reach_api_metrics_and_store(broker: Broker, tmp_path: Path) -> None:
    subscriber = SubscriberProcess(broker, tmp_path).start()
    publisher = Publisher(broker, "node-a")
    try:
        at = now()
        publisher.publish(status_topic("node-a"), to_payload(status(at=at)), retain=True)
        publisher.publish(node_metrics_topic("node-a"), to_payload(node_metrics(at=at, cpu_percent=42.0)))
        publisher.publish(container_metrics_topic("node-a"), to_payload(container_batch(at=at)))
        publisher.flush()
        wait_until(lambda: subscriber.get("/api/nodes") != [] and subscriber.get("/api/nodes")[0]["containers"] == 1)
        summary = subscriber.get("/api/nodes")[0]
        assert (summary["node_id"], summary["status"], summary["cpu_percent"]) == ("node-a", "online", 42.0)
        assert subscriber.metric("otto_node_cpu_percent", node="node-a") == 42.0
        assert subscriber.metric("otto_container_cpu_percent", node="node-a", container="web") == 3.5
        assert subscriber.metric("otto_subscriber_messages_received_total", kind="node") == 1.0
        wait_until(lambda: rows(tmp_path / "history.db", "container_samples", "node-a") == 1)  # committed in batches
        assert rows(tmp_path / "history.db", "node_samples", "node-a") == 1
        history = subscriber.get("/api/nodes/node-a/history?field=cpu_percent")
        assert [p["value"] for p in history["points"]] == [42.0]
        assert subscriber.metric("otto_subscriber_rows_stored_total", table="node_samples") == 1.0
    finally:
        publisher.close()
        assert subscriber.stop() == 0


def test_bad_input_is_rejected_and_counted_while_valid_traffic_continues(broker: Broker, tmp_path: Path) -> None:
    subscriber = SubscriberProcess(broker, tmp_path, max_payload_bytes="4096").start()
    publisher = Publisher(broker, "node-a")
    topic = node_metrics_topic("node-a")
    start = now() - timedelta(minutes=1)
    bad = {
        "bad_json": b'{"node_id": "node-a", "cpu_percent": ',
        "bad_schema": json.dumps({**json.loads(to_payload(node_metrics(at=start))), "cpu_percent": "high"}).encode(),
        "oversize": b'{"pad": "' + b"x" * 8000 + b'"}',
        "spoofed": to_payload(node_metrics("node-b", at=start, cpu_percent=99.0)),
    }
    try:
        for i, payload in enumerate(bad.values()):
            publisher.publish(topic, to_payload(node_metrics(at=start + timedelta(seconds=i), cycle=i + 1)))
            publisher.publish(topic, payload)
        publisher.publish(topic, to_payload(node_metrics(at=start + timedelta(seconds=10), cycle=9, cpu_percent=7.0)))
        publisher.flush()
        wait_until(lambda: subscriber.metric("otto_subscriber_messages_received_total", kind="node") == 9.0)
        for reason in bad:
            assert subscriber.metric("otto_subscriber_messages_rejected_total", reason=reason) == 1.0, reason
        # Valid traffic around the bad messages: all five stored, the newest one is the live picture.
        wait_until(lambda: rows(tmp_path / "history.db", "node_samples", "node-a") == 5)
        history = subscriber.get(f"/api/nodes/node-a/history?field=cycle&start={start.isoformat().replace('+', '%2B')}")
        assert [p["value"] for p in history["points"]] == [1, 2, 3, 4, 9]
        assert subscriber.get("/api/nodes/node-a")["metrics"]["cpu_percent"] == 7.0
        assert [n["node_id"] for n in subscriber.get("/api/nodes")] == ["node-a"]  # the spoofed node-b never appears
        logs = subscriber.logs()
        for reason in bad:
            assert logs.count(f"{reason}:") == 1, reason  # one clear line per reason
        assert subscriber.get("/healthz")["status"] == "ok"
    finally:
        publisher.close()
        assert subscriber.stop() == 0


def test_last_will_turns_a_node_offline(broker: Broker, tmp_path: Path) -> None:
    subscriber = SubscriberProcess(broker, tmp_path).start()
    agent = AgentProcess(broker, "node-b", tmp_path)
    try:
        wait_until(lambda: any(n["status"] == "online" for n in subscriber.get("/api/nodes")), timeout=30)
        agent.signal(signal.SIGKILL)
        wait_until(lambda: subscriber.get("/api/nodes/node-b")["status"] == "offline", timeout=30)
        assert subscriber.get("/api/nodes/node-b")["node_status"]["timestamp"] is None  # the will
        assert subscriber.metric("otto_node_up", node="node-b") == 0.0
        assert subscriber.metric("otto_node_status", node="node-b", status="offline") == 1.0
    finally:
        agent.stop()
        assert subscriber.stop() == 0


def test_silence_turns_a_node_stale(broker: Broker, tmp_path: Path) -> None:
    subscriber = SubscriberProcess(broker, tmp_path, stale_after="2").start()
    publisher = Publisher(broker, "node-a")
    try:
        publisher.publish(node_metrics_topic("node-a"), to_payload(node_metrics(at=now(), interval_seconds=1.0)))
        publisher.flush()
        wait_until(lambda: subscriber.get("/api/nodes") != [])
        assert subscriber.get("/api/nodes")[0]["status"] == "online"
        wait_until(lambda: subscriber.get("/api/nodes")[0]["status"] == "stale", timeout=10)
        assert subscriber.metric("otto_node_status", node="node-a", status="stale") == 1.0
    finally:
        publisher.close()
        assert subscriber.stop() == 0


def test_messages_published_while_stopped_are_all_there_after_restart(broker: Broker, tmp_path: Path) -> None:
    subscriber = SubscriberProcess(broker, tmp_path).start()
    assert subscriber.stop() == 0  # the persistent session stays on the broker
    publisher = Publisher(broker, "node-a")
    first = now() - timedelta(minutes=10)
    for cycle in range(1, 201):
        at = first + timedelta(seconds=cycle)
        publisher.publish(node_metrics_topic("node-a"), to_payload(node_metrics(at=at, cycle=cycle)))
        publisher.publish(container_metrics_topic("node-a"), to_payload(container_batch(at=at, cycle=cycle)))
    publisher.close()
    subscriber.start()
    try:
        db = tmp_path / "history.db"
        wait_until(lambda: rows(db, "node_samples", "node-a") == 200 and rows(db, "container_samples", "node-a") == 200)
        history = subscriber.get(
            f"/api/nodes/node-a/history?field=cycle&limit=1000&start={first.isoformat().replace('+', '%2B')}"
        )
        assert [p["value"] for p in history["points"]] == list(range(1, 201))
        assert "resumed session" in subscriber.logs()
    finally:
        assert subscriber.stop() == 0


def test_history_survives_restart_and_retention_prunes(broker: Broker, tmp_path: Path) -> None:
    # Samples already older than the retention are never stored, so "old" ages past it while stopped.
    # Raw rows go in whole minutes (the 1-minute tier is never computed from half a minute): "old" is
    # the last second of a minute, so it goes once the cutoff (now - 40 s) reaches the next minute;
    # the node, last heard 10 to 25 s into that minute, is not yet silent for 40 s then.
    minute = now().replace(second=0, microsecond=0)
    if now() - minute > timedelta(seconds=25):
        minute += timedelta(minutes=1)
    time.sleep(max(0.0, (minute + timedelta(seconds=10) - now()).total_seconds()))
    subscriber = SubscriberProcess(broker, tmp_path, retention="40s").start()
    publisher = Publisher(broker, "node-a")
    old, recent = minute - timedelta(seconds=1), now() - timedelta(seconds=1)
    try:
        publisher.publish(
            container_metrics_topic("node-a"), to_payload(container_batch(at=old, containers=[container("db")]))
        )
        publisher.publish(node_metrics_topic("node-a"), to_payload(node_metrics(at=old, cycle=1)))
        publisher.publish(node_metrics_topic("node-a"), to_payload(node_metrics(at=recent, cycle=2)))
        publisher.flush()
        db = tmp_path / "history.db"
        wait_until(lambda: rows(db, "node_samples", "node-a") == 2)
        assert subscriber.stop() == 0
        time.sleep(max(0.0, (minute + timedelta(seconds=41) - now()).total_seconds()))
        # Restarted: the live picture and the history are back before any new message arrives,
        # and the retention pass (a few seconds after start) removes the samples older than 40 s.
        subscriber.start()
        assert subscriber.get("/api/nodes")[0]["node_id"] == "node-a"
        wait_until(lambda: rows(db, "node_samples", "node-a") == 1, timeout=30)
        assert rows(db, "container_samples", "node-a") == 0
        cycles = subscriber.get(
            f"/api/nodes/node-a/history?field=cycle&start={(old - timedelta(hours=1)).isoformat().replace('+', '%2B')}"
        )
        assert [p["value"] for p in cycles["points"]] == [2]
        assert subscriber.metric("otto_subscriber_rows_pruned_total") == 2.0
        assert "retention: removed 2 rows" in subscriber.logs()
    finally:
        publisher.close()
        assert subscriber.stop() == 0


def test_end_to_end_real_agent_and_subscriber(
    broker: Broker, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    """The real agent and this subscriber on one broker: the node and its containers through the API."""
    load = LoadContainers(docker_client)
    load.run("e2e", "sleep 3600")
    subscriber = SubscriberProcess(broker, tmp_path).start()
    agent = AgentProcess(broker, "node-a", tmp_path)
    try:
        name = f"{load.prefix}-e2e"

        def visible() -> bool:
            detail = subscriber.get("/api/nodes/node-a") if subscriber.get("/api/nodes") else None
            return bool(
                detail
                and detail["containers"]
                and name in [c["container_name"] for c in detail["containers"]["containers"]]
            )

        wait_until(visible, timeout=30)
        detail = subscriber.get("/api/nodes/node-a")
        assert detail["status"] == "online"
        assert 0 < detail["metrics"]["memory_used_mb"] < detail["metrics"]["memory_total_mb"]
        mine = next(c for c in detail["containers"]["containers"] if c["container_name"] == name)
        assert mine["image"] == "busybox:1.36"
        assert mine["memory_usage_mb"] > 0
        assert subscriber.metric("otto_container_pids", node="node-a", container=name) == 1.0
    finally:
        agent.stop()
        assert subscriber.stop() == 0
        load.close()

"""The wire contract: topics, strict validation, UTC timestamps, forward compatibility."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from contract import (
    SCHEMA_VERSION,
    ContainerMetrics,
    ContainerMetricsBatch,
    NodeMetrics,
    NodeStatus,
    TopicKind,
    container_metrics_topic,
    node_metrics_topic,
    parse_topic,
    status_topic,
    to_payload,
)
from contract.topics import SUBSCRIPTIONS

AGENT = {
    "version": "0.1.0", "arch": "aarch64", "collect_seconds": 0.01, "rss_mb": 20.0,
    "cpu_percent": 0.2, "buffered": 0, "dropped": 0,
}  # fmt: skip
NODE = {
    "node_id": "pi-01", "timestamp": "2026-11-27T10:00:00Z", "cpu_percent": 12.5, "memory_percent": 40.0,
    "memory_used_mb": 1500.0, "memory_total_mb": 3750.0, "disk_percent": 55.0, "disk_used_gb": 16.0,
    "disk_total_gb": 29.0, "network_bytes_sent": 10, "network_bytes_recv": 20, "agent": AGENT,
}  # fmt: skip
CONTAINER = {
    "container_id": "abc123", "container_name": "web", "cpu_percent": 150.0, "memory_percent": 1.0,
    "memory_usage_mb": 10.0, "memory_limit_mb": 1000.0, "network_rx_bytes": 1, "network_tx_bytes": 2,
    "block_read_bytes": 3, "block_write_bytes": 4,
}  # fmt: skip


def test_topics_in_one_place() -> None:
    assert node_metrics_topic("pi-01") == "otto/nodes/pi-01/metrics/node"
    assert container_metrics_topic("pi-01") == "otto/nodes/pi-01/metrics/containers"
    assert status_topic("pi-01") == "otto/nodes/pi-01/status"
    assert SUBSCRIPTIONS[TopicKind.NODE] == "otto/nodes/+/metrics/node"
    assert parse_topic("otto/nodes/pi-01/metrics/containers") == ("pi-01", TopicKind.CONTAINERS)
    assert parse_topic("otto/nodes/pi-01/status") == ("pi-01", TopicKind.STATUS)


@pytest.mark.parametrize("bad", ["a/b", "a+b", "a#", "", "x" * 65, "pi 01", "pi\u00e9"])
def test_invalid_node_ids_are_refused_everywhere(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid node id"):
        node_metrics_topic(bad)
    assert parse_topic(f"otto/nodes/{bad}/metrics/node") is None
    with pytest.raises(ValidationError):
        NodeMetrics.model_validate({**NODE, "node_id": bad})


@pytest.mark.parametrize("topic", ["otto/nodes/pi-01/metrics", "otto/nodes/pi-01/metrics/node/x", "other/pi/status"])
def test_foreign_topics_are_not_parsed(topic: str) -> None:
    assert parse_topic(topic) is None


def test_node_message_round_trip_and_schema_field() -> None:
    node = NodeMetrics.model_validate_json(json.dumps(NODE))
    wire = json.loads(to_payload(node))
    assert wire["schema"] == SCHEMA_VERSION
    assert wire["timestamp"] == "2026-11-27T10:00:00Z"
    assert NodeMetrics.model_validate_json(to_payload(node)) == node
    assert wire["temperature_c"] is None  # optional sources are explicit nulls


def test_timestamps_must_be_aware_and_become_utc() -> None:
    node = NodeMetrics.model_validate_json(json.dumps({**NODE, "timestamp": "2026-11-27T12:00:00+02:00"}))
    assert node.timestamp == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert node.timestamp.utcoffset() == timedelta(0)
    with pytest.raises(ValidationError, match="timezone"):
        NodeMetrics.model_validate_json(json.dumps({**NODE, "timestamp": "2026-11-27T12:00:00"}))
    local = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=-5)))
    assert NodeMetrics.model_validate({**NODE, "agent": AGENT, "timestamp": local}, strict=False).timestamp.hour == 17


@pytest.mark.parametrize(
    "change",
    [{"cpu_percent": "12.5"}, {"cpu_percent": 100.5}, {"cpu_percent": -1.0}, {"network_bytes_sent": 1.5},
     {"network_bytes_sent": 2**63}, {"under_voltage": 1}, {"agent": {**AGENT, "buffered": "3"}}],
)  # fmt: skip
def test_wrong_types_and_ranges_are_rejected(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        NodeMetrics.model_validate_json(json.dumps({**NODE, **change}))


def test_nan_and_infinity_are_rejected() -> None:
    text = json.dumps(NODE).replace('"cpu_percent": 12.5', '"cpu_percent": NaN')
    with pytest.raises(ValidationError, match="finite"):
        NodeMetrics.model_validate_json(text)


def test_unknown_fields_from_newer_agents_are_ignored() -> None:
    node = NodeMetrics.model_validate_json(json.dumps({**NODE, "gpu_percent": 3.0, "schema": 2}))
    assert node.schema_version == 2
    assert not hasattr(node, "gpu_percent")


def test_container_batch_and_status() -> None:
    batch = ContainerMetricsBatch.model_validate_json(
        json.dumps({"node_id": "pi-01", "timestamp": "2026-11-27T10:00:00Z", "containers": [CONTAINER], "error": None})
    )
    assert batch.containers[0] == ContainerMetrics.model_validate(CONTAINER)
    assert batch.containers[0].cpu_percent == 150.0  # 1.5 cores: above 100 by design
    status = NodeStatus.model_validate(
        {"node_id": "pi-01", "status": "offline", "agent_version": "0.1.0", "interval_seconds": 5.0}
    )
    assert status.timestamp is None
    with pytest.raises(ValidationError):
        NodeStatus.model_validate({**status.model_dump(by_alias=False), "status": "sleeping"})

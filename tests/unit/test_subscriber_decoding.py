"""Every kind of bad input gets its own counted reason; good input passes untouched."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contract import to_payload
from contract.models import NodeMessage
from contract.topics import TopicKind
from subscriber.decoding import Decoded, Reason, Rejected, decode
from tests.support.messages import container_batch, event, node_metrics, status

LIMIT = 65536


def test_valid_messages_of_each_kind() -> None:
    for topic, message, kind in (
        ("otto/nodes/node-a/metrics/node", node_metrics(), TopicKind.NODE),
        ("otto/nodes/node-a/metrics/containers", container_batch(), TopicKind.CONTAINERS),
        ("otto/nodes/node-a/status", status(), TopicKind.STATUS),
    ):
        result = decode(topic, to_payload(message), LIMIT)
        assert isinstance(result, Decoded)
        assert (result.kind, result.node_id, result.message) == (kind, "node-a", message)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("otto/nodes/node-a/metrics/node", b"x" * (LIMIT + 1), Reason.OVERSIZE),
        ("otto/nodes/node-a/metrics/bogus", b"{}", Reason.BAD_TOPIC),
        ("otto/nodes/a+b/metrics/node", b"{}", Reason.BAD_TOPIC),
        ("elsewhere/node-a", b"{}", Reason.BAD_TOPIC),
        ("otto/nodes/node-a/metrics/node", b"{not json", Reason.BAD_JSON),
        ("otto/nodes/node-a/metrics/node", b"\xff\xfe\x00", Reason.BAD_JSON),
        ("otto/nodes/node-a/metrics/node", b"[" * 5000, Reason.BAD_JSON),
        ("otto/nodes/node-a/metrics/node", to_payload(node_metrics())[:-10], Reason.BAD_JSON),
        ("otto/nodes/node-a/metrics/node", b"{}", Reason.BAD_SCHEMA),
        ("otto/nodes/node-a/metrics/node", b"[]", Reason.BAD_SCHEMA),
        ("otto/nodes/node-a/status", b'"online"', Reason.BAD_SCHEMA),
        ("otto/nodes/node-a/metrics/node", to_payload(node_metrics(node_id="node-b")), Reason.SPOOFED),
        ("otto/nodes/node-a/status", to_payload(status(node_id="node-b")), Reason.SPOOFED),
    ],
)
def test_rejections_carry_their_reason(topic: str, payload: bytes, reason: Reason) -> None:
    result = decode(topic, payload, LIMIT)
    assert isinstance(result, Rejected)
    assert result.reason is reason
    assert result.detail


@pytest.mark.parametrize(
    "change",
    [{"cpu_percent": "12"}, {"cpu_percent": 1e309}, {"network_bytes_sent": 2**64}, {"agent": None},
     {"timestamp": "yesterday"}, {"timestamp": "2026-11-27T10:00:00"}, {"cpu_per_core": [1, "x"]}],
)  # fmt: skip
def test_wrong_types_are_schema_violations(change: dict[str, object]) -> None:
    document = json.loads(to_payload(node_metrics()))
    document.update(change)
    result = decode("otto/nodes/node-a/metrics/node", json.dumps(document).encode(), LIMIT)
    assert isinstance(result, Rejected)
    assert result.reason is Reason.BAD_SCHEMA


def test_nan_is_rejected_but_unknown_fields_are_accepted() -> None:
    text = to_payload(node_metrics()).decode().replace('"cpu_percent":12.5', '"cpu_percent":NaN')
    nan = decode("otto/nodes/node-a/metrics/node", text.encode(), LIMIT)
    assert isinstance(nan, Rejected)
    assert nan.reason is Reason.BAD_SCHEMA
    newer = json.loads(to_payload(node_metrics()))
    newer["fan_rpm"] = 1200
    newer["agent"]["gc_seconds"] = 0.1
    assert isinstance(decode("otto/nodes/node-a/metrics/node", json.dumps(newer).encode(), LIMIT), Decoded)


def _put(message: NodeMessage, path: tuple[str | int, ...], text: str) -> bytes:
    """``message`` as JSON with ``text`` at ``path`` (for ``problems``, as its only key)."""
    document = json.loads(to_payload(message))
    where: Any = document
    for part in path[:-1]:
        where = where[part]
    where[path[-1]] = {text: 1} if path[-1] == "problems" else text
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("topic", "message", "path"),
    [
        ("otto/nodes/node-a/metrics/containers", container_batch(), ("containers", 0, "container_name")),
        ("otto/nodes/node-a/metrics/containers", container_batch(), ("containers", 0, "image")),
        ("otto/nodes/node-a/metrics/containers", container_batch(), ("containers", 0, "container_id")),
        ("otto/nodes/node-a/metrics/containers", container_batch(), ("containers", 0, "health")),
        ("otto/nodes/node-a/metrics/containers", container_batch(), ("error",)),
        ("otto/nodes/node-a/metrics/node", node_metrics(), ("agent", "version")),
        ("otto/nodes/node-a/metrics/node", node_metrics(), ("agent", "problems")),
        ("otto/nodes/node-a/events", event("die", exit_code=1), ("container_name",)),
        ("otto/nodes/node-a/events", event("die", exit_code=1), ("detail",)),
        ("otto/nodes/node-a/status", status(), ("agent_version",)),
    ],
)
def test_a_nul_character_in_any_text_is_a_schema_violation(
    topic: str, message: NodeMessage, path: tuple[str | int, ...]
) -> None:
    """No Docker name holds a NUL and PostgreSQL's text cannot store one: refused at the door, on
    every store alike (SQLite used to store it, PostgreSQL to refuse the message as store poison)."""
    refused = decode(topic, _put(message, path, "we\x00b"), LIMIT)
    assert isinstance(refused, Rejected)
    assert refused.reason is Reason.BAD_SCHEMA
    assert isinstance(decode(topic, _put(message, path, "web"), LIMIT), Decoded)

"""Turn (topic, payload) into a validated message or a counted rejection. Pure.

``Reason`` also names the rejections decided after decoding (by the ingestion, the queue and the
rate limit), so that every message not applied is counted under one label set.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pydantic import ValidationError

from contract.models import ContainerEvent, ContainerMetricsBatch, NodeMessage, NodeMetrics, NodeStatus
from contract.topics import TopicKind, parse_topic

MODELS: dict[TopicKind, type[NodeMessage]] = {
    TopicKind.NODE: NodeMetrics,
    TopicKind.CONTAINERS: ContainerMetricsBatch,
    TopicKind.STATUS: NodeStatus,
    TopicKind.EVENTS: ContainerEvent,
}


class Reason(enum.StrEnum):
    """Why a message was rejected (the ``reason`` label of the rejection counter)."""

    OVERSIZE = "oversize"
    BAD_TOPIC = "bad_topic"
    BAD_JSON = "bad_json"
    BAD_SCHEMA = "bad_schema"
    SPOOFED = "spoofed"
    #: Handling the message raised (a bug, or an input no check foresaw); it is acknowledged, not retried.
    INTERNAL_ERROR = "internal_error"
    #: The store refused this message's rows (not the disk: the others of its batch were stored).
    STORE_POISON = "store_poison"
    #: The node sent more than its rate limit allows.
    RATE_LIMITED = "rate_limited"
    #: The subscriber's queue was at its bound in messages or bytes.
    QUEUE_FULL = "queue_full"


@dataclass(frozen=True, slots=True)
class Decoded:
    kind: TopicKind
    node_id: str
    message: NodeMessage


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: Reason
    detail: str


def decode(topic: str, payload: bytes, max_bytes: int) -> Decoded | Rejected:
    """Validate one MQTT message against the wire contract."""
    if len(payload) > max_bytes:
        return Rejected(Reason.OVERSIZE, f"{len(payload)} bytes > {max_bytes}")
    parsed = parse_topic(topic)
    if parsed is None:
        return Rejected(Reason.BAD_TOPIC, f"not an otto topic: {topic[:120]!r}")
    node_id, kind = parsed
    try:
        message = MODELS[kind].model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        if first["type"] == "json_invalid":
            return Rejected(Reason.BAD_JSON, str(first["msg"])[:200])
        where = ".".join(str(part) for part in first["loc"])
        return Rejected(Reason.BAD_SCHEMA, f"{where}: {first['msg']}"[:200])
    if message.node_id != node_id:
        return Rejected(Reason.SPOOFED, f"topic says {node_id!r}, payload says {message.node_id!r}")
    return Decoded(kind, node_id, message)

"""MQTT topic names, in one place.

otto/nodes/{node_id}/metrics/node         NodeMetrics, QoS 1
otto/nodes/{node_id}/metrics/containers   ContainerMetricsBatch, QoS 1
otto/nodes/{node_id}/status               NodeStatus, QoS 1, retained (also the last will)
otto/nodes/{node_id}/events               ContainerEvent, QoS 1, one per container lifecycle event
"""

from __future__ import annotations

import enum
import re

PREFIX = "otto/nodes"
NODE_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
_NODE_ID_RE = re.compile(NODE_ID_PATTERN)


class TopicKind(enum.StrEnum):
    """What a topic carries; the value is the topic's suffix after the node id."""

    NODE = "metrics/node"
    CONTAINERS = "metrics/containers"
    STATUS = "status"
    EVENTS = "events"


def topic_for(kind: TopicKind, node_id: str) -> str:
    """The topic on which ``node_id`` publishes messages of ``kind``."""
    if not _NODE_ID_RE.match(node_id):
        raise ValueError(f"invalid node id {node_id!r}")
    return f"{PREFIX}/{node_id}/{kind.value}"


def node_metrics_topic(node_id: str) -> str:
    return topic_for(TopicKind.NODE, node_id)


def container_metrics_topic(node_id: str) -> str:
    return topic_for(TopicKind.CONTAINERS, node_id)


def status_topic(node_id: str) -> str:
    return topic_for(TopicKind.STATUS, node_id)


def events_topic(node_id: str) -> str:
    return topic_for(TopicKind.EVENTS, node_id)


#: Wildcard subscriptions covering every node, one per kind.
SUBSCRIPTIONS: dict[TopicKind, str] = {kind: f"{PREFIX}/+/{kind.value}" for kind in TopicKind}


def parse_topic(topic: str) -> tuple[str, TopicKind] | None:
    """Split a topic into (node_id, kind); None if it is not one of ours or the node id is invalid."""
    if not topic.startswith(PREFIX + "/"):
        return None
    node_id, _, suffix = topic[len(PREFIX) + 1 :].partition("/")
    try:
        kind = TopicKind(suffix)
    except ValueError:
        return None
    if not _NODE_ID_RE.match(node_id):
        return None
    return node_id, kind

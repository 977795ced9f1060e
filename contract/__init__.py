"""The otto-metrics wire contract: topic names and message models shared by agent and subscriber."""

from contract.models import (
    SCHEMA_VERSION,
    AgentStats,
    ContainerEvent,
    ContainerMetrics,
    ContainerMetricsBatch,
    NodeId,
    NodeMetrics,
    NodeStatus,
    to_payload,
)
from contract.topics import (
    TopicKind,
    container_metrics_topic,
    events_topic,
    node_metrics_topic,
    parse_topic,
    status_topic,
)

__all__ = [
    "SCHEMA_VERSION",
    "AgentStats",
    "ContainerEvent",
    "ContainerMetrics",
    "ContainerMetricsBatch",
    "NodeId",
    "NodeMetrics",
    "NodeStatus",
    "TopicKind",
    "container_metrics_topic",
    "events_topic",
    "node_metrics_topic",
    "parse_topic",
    "status_topic",
    "to_payload",
]

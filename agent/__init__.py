"""otto-metrics node agent: host and container metrics of one node, published over MQTT."""

from agent.collector import MetricsCollector
from agent.publisher import MetricsPublisher

__all__ = ["MetricsCollector", "MetricsPublisher"]

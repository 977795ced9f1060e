"""otto-metrics control-plane subscriber: live fleet state, history, HTTP API and Prometheus."""

from subscriber.consumer import MetricsSubscriber

__all__ = ["MetricsSubscriber"]

"""The example Prometheus rules (prometheus/*.yml) name only series the subscriber really exposes.

promtool (in `make test`) checks their syntax; this checks their meaning against /metrics.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from subscriber.alerts.service import AlertCounters
from subscriber.broker_certificate import BrokerCertificateWatch
from subscriber.prometheus import FleetCollector, SubscriberCounters
from subscriber.state import FleetState
from tests.support.messages import container, container_batch, node_metrics, status

RULES = sorted((Path(__file__).parents[2] / "prometheus").glob("*.yml"))


def exposed() -> set[str]:
    state = FleetState(stale_after=3.0)
    message = node_metrics()
    received = message.timestamp.timestamp()
    state.apply_status(status(), received)
    state.apply_node_metrics(message, received)
    state.apply_container_metrics(container_batch(containers=[container(health="unhealthy")]), received)
    registry = CollectorRegistry()
    SubscriberCounters(registry)
    AlertCounters(registry)
    BrokerCertificateWatch("mosquitto:8883", registry)
    registry.register(FleetCollector(state, grace=1e12))
    text = generate_latest(registry).decode()
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def test_every_series_in_the_example_rules_is_exposed() -> None:
    assert RULES
    names = exposed()
    used = set()
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                used |= set(re.findall(r"\b(otto_[a-z0-9_]+)", rule["expr"]))
    assert used
    assert used <= names, sorted(used - names)

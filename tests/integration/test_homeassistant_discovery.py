"""Discovery on a real broker: retained, republished when Home Assistant announces itself, removed.

Home Assistant itself reads these configs in tests/homeassistant (make homeassistant).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contract import to_payload
from contract.topics import container_metrics_topic, node_metrics_topic, status_topic
from subscriber.homeassistant.catalog import NODE_ENTITIES
from tests.support.broker import Broker
from tests.support.messages import container, container_batch, node_metrics, status
from tests.support.mqtt import Recorder, publish_once
from tests.support.subscriber_process import SubscriberProcess

pytestmark = [pytest.mark.docker]

CONFIG = "homeassistant/device/otto_node-a/config"


def send_node(broker: Broker) -> None:
    now = datetime.now(UTC)
    for topic, message, retain in (
        (status_topic("node-a"), status("node-a", at=now), True),
        (node_metrics_topic("node-a"), node_metrics("node-a", at=now), False),
        (container_metrics_topic("node-a"), container_batch("node-a", at=now, containers=[container("web")]), False),
    ):
        assert publish_once(broker, "node-a", topic, to_payload(message), retain=retain).value == 0


def retained(broker: Broker, topic: str, wait: float = 2.0) -> list[bytes]:
    """What a new subscriber gets on ``topic`` (as Home Assistant would, after it starts)."""
    late = Recorder(broker, topic=topic, user="homeassistant")
    time.sleep(wait)
    late.close()
    return [m.payload for m in late.messages if m.retain]


def test_configs_are_retained_republished_on_announcement_and_removed(broker: Broker, tmp_path: Path) -> None:
    broker.add_homeassistant()
    subscriber = SubscriberProcess(broker, tmp_path, ha_containers="components", ha_container_expire="1h").start()
    try:
        watcher = Recorder(broker, topic="homeassistant/#", user="homeassistant")
        send_node(broker)
        watcher.wait_for(lambda m: any(x.topic == CONFIG and x.payload for x in m))
        [payload] = retained(broker, CONFIG)
        config = json.loads(payload)
        assert {key for key in config["components"] if not key.startswith("c_")} == {e.key for e in NODE_ENTITIES}
        assert config["components"]["c_web_state"]["state_topic"] == container_metrics_topic("node-a")
        assert subscriber.metric("otto_homeassistant_configs") == 1
        assert subscriber.metric("otto_homeassistant_configs_published_total", action="config") == 1

        # A broker that lost its retained messages: Home Assistant's birth message brings them back.
        assert publish_once(broker, "controlplane", CONFIG, b"", retain=True).value == 0
        assert retained(broker, CONFIG, wait=1.0) == []
        assert publish_once(broker, "homeassistant", "homeassistant/status", b"online").value == 0
        watcher.wait_for(lambda m: [x.payload for x in m if x.topic == CONFIG][-1] == payload)
        assert retained(broker, CONFIG) == [payload]
        watcher.close()
    finally:
        subscriber.stop()

    # Restarted with a node expiry the node has outlived: it reads its config back and clears it.
    time.sleep(1.5)
    restarted = SubscriberProcess(broker, tmp_path, ha_node_expire="1s").start()
    try:
        deadline = time.monotonic() + 20
        while retained(broker, CONFIG, wait=1.0) and time.monotonic() < deadline:
            pass
        assert retained(broker, CONFIG) == []
        assert "removed 1" in restarted.logs()
    finally:
        restarted.stop()

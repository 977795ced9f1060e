"""The shipped broker config: nobody anonymous, every node confined to its own topics."""

from __future__ import annotations

import time

import pytest

from tests.support.broker import Broker
from tests.support.mqtt import Recorder, connect, publish_once

pytestmark = [pytest.mark.docker]

NOT_AUTHORIZED = 0x87


def test_anonymous_and_wrong_passwords_are_refused(broker: Broker) -> None:
    with pytest.raises(ConnectionRefusedError, match="Not authorized"):
        connect(broker, None)
    with pytest.raises(ConnectionRefusedError, match=r"Not authorized|Bad user name or password"):
        connect(broker, "node-a", password="guess")
    with pytest.raises(ConnectionRefusedError):
        connect(broker, "nobody", password="x")


@pytest.mark.parametrize(
    ("user", "topic"),
    [
        ("node-a", "otto/nodes/node-b/metrics/node"),  # another node's topic
        ("node-a", "otto/nodes/node-b/status"),
        ("node-a", "otto/nodes/node-b/events"),
        ("node-a", "otto/other"),  # outside otto/nodes/<itself>/
        ("node-a", "otto/nodes"),
        ("node-a", "otto/nodes/node-a/anything"),  # under its prefix, but not a topic an agent publishes
        ("node-a", "otto/nodes/node-a/metrics/node/extra"),
        ("node-a", "otto/nodes/node-a"),
        ("controlplane", "otto/nodes/node-a/metrics/node"),  # the control plane only reads
    ],
)
def test_publishing_outside_ones_own_topic_is_denied(broker: Broker, user: str, topic: str) -> None:
    recorder = Recorder(broker)
    reason = publish_once(broker, user, topic, b'{"forged": true}')
    assert reason.value == NOT_AUTHORIZED
    time.sleep(0.5)
    assert recorder.on(topic) == []
    recorder.close()


def test_a_node_may_publish_its_own_topics_but_read_nobody_elses(broker: Broker) -> None:
    spy = Recorder(broker, topic="otto/#", user="node-b")  # SUBACK is granted; messages never arrive
    control = Recorder(broker)
    for suffix in ("metrics/node", "metrics/containers", "status", "events"):
        assert publish_once(broker, "node-a", f"otto/nodes/node-a/{suffix}", b"{}").value == 0, suffix
    control.wait_for(lambda m: len(m) >= 4)
    time.sleep(0.5)
    assert spy.messages == []
    spy.close()
    control.close()


def test_added_node_works_at_once_after_reload(broker: Broker) -> None:
    password = broker.add_node("pi-new")
    control = Recorder(broker)
    assert publish_once(broker, "pi-new", "otto/nodes/pi-new/status", b"{}").value == 0
    assert publish_once(broker, "pi-new", "otto/nodes/node-a/status", b"{}").value == NOT_AUTHORIZED
    control.wait_for(lambda m: [x.topic for x in m] == ["otto/nodes/pi-new/status"])
    assert len(password) == 40
    control.close()


def test_home_assistant_reads_the_fleet_and_writes_only_its_status(broker: Broker) -> None:
    password = broker.add_homeassistant()
    assert len(password) == 40
    home_assistant = Recorder(broker, topic="#", user="homeassistant")
    assert publish_once(broker, "controlplane", "homeassistant/device/otto_node-a/config", b"{}").value == 0
    assert publish_once(broker, "node-a", "otto/nodes/node-a/status", b"{}").value == 0
    assert publish_once(broker, "homeassistant", "homeassistant/status", b"online").value == 0
    home_assistant.wait_for(
        lambda m: (
            {x.topic for x in m}
            >= {"homeassistant/device/otto_node-a/config", "otto/nodes/node-a/status", "homeassistant/status"}
        )
    )
    for topic in ("homeassistant/device/otto_node-a/config", "otto/nodes/node-a/status", "homeassistant"):
        assert publish_once(broker, "homeassistant", topic, b"{}").value == NOT_AUTHORIZED, topic
    # The control plane writes the discovery prefix, and nothing else outside its reading.
    assert publish_once(broker, "controlplane", "homeassistantx/device/a/config", b"{}").value == NOT_AUTHORIZED
    assert publish_once(broker, "controlplane", "otto/nodes/node-a/status", b"{}").value == NOT_AUTHORIZED
    home_assistant.close()

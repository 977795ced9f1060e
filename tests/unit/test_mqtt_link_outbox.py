"""The agent's outbox while the broker is unreachable: bounded in bytes, and a sender that survives."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from agent.mqtt_link import MqttLink, _Acked, _Connected, _Disconnected, _Refused, _Unreachable
from common.mqtt_client import MqttConfig
from tests.support.broker import free_port


def status() -> tuple[str, bytes]:
    return "otto/nodes/node-a/status", b"{}"


@pytest.fixture
def link() -> Iterator[MqttLink]:
    """A link to a port where nothing listens: everything it is given stays in its outbox."""
    unreachable = MqttLink(
        MqttConfig("127.0.0.1", free_port(), client_id="otto-test"),
        buffer_size=100,
        buffer_bytes=1_000,
        will=status(),
        online=status,
        offline=status,
    )
    unreachable.start()
    yield unreachable
    unreachable.close(timeout=0.5)


def settle(link: MqttLink, buffered: int) -> None:
    deadline = time.monotonic() + 5
    while link.buffered != buffered and time.monotonic() < deadline:
        time.sleep(0.01)


def test_the_outbox_is_bounded_in_bytes_dropping_the_oldest(link: MqttLink) -> None:
    for i in range(10):
        link.publish("otto/nodes/node-a/metrics/node", bytes([i]) * 300)
    settle(link, 3)
    assert (link.buffered, link.buffered_bytes, link.dropped) == (3, 900, 7)  # 3 x 300 <= 1,000 < 4 x 300


def test_the_sender_survives_an_exception_and_keeps_the_order(link: MqttLink) -> None:
    link.publish("otto/nodes/node-a/metrics/node", b"first")
    link.publish("otto/nodes/node-a/metrics/node", None)  # type: ignore[arg-type]  # a bug upstream
    link.publish("otto/nodes/node-a/metrics/node", b"second")
    settle(link, 2)
    assert link.errors == 1
    assert link.sender_alive
    assert (link.buffered, link.buffered_bytes) == (2, len(b"first") + len(b"second"))


def test_sender_events_refusal_outage_and_reconnect_are_each_logged_once(
    link: MqttLink, caplog: pytest.LogCaptureFixture
) -> None:
    """The events paho's callbacks post, handled as the sender thread handles them."""
    caplog.set_level("INFO", logger="agent.mqtt_link")
    for _ in range(3):
        link._events.put(_Refused("Not authorized"))
        link._events.put(_Unreachable())
    link.publish("otto/nodes/node-a/metrics/node", b"kept")
    settle(link, 1)
    time.sleep(0.2)
    # The fixture's own first connection attempt may already have found the port closed.
    lines = [r.getMessage() for r in caplog.get_records("setup") + caplog.records]
    assert sum("refused the connection: Not authorized" in line for line in lines) == 1
    assert sum("broker unreachable" in line for line in lines) == 1
    link._events.put(_Connected())  # the transport is not really up: publish fails and the message stays
    link._events.put(_Acked(mid=999, failed=False, reason="Success"))  # an id not in flight: ignored
    link._events.put(_Disconnected("keepalive timeout"))
    settle(link, 1)
    time.sleep(0.2)
    assert (link.buffered, link.errors, link.connected) == (1, 0, False)
    assert any("connected to broker" in r.getMessage() for r in caplog.records)

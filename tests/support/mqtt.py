"""MQTT helpers for tests: a recording subscriber and a one-shot publisher (paho 2, VERSION2)."""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.support.broker import BrokerAddress


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float

    def json(self) -> Any:
        return json.loads(self.payload)


def connect(
    broker: BrokerAddress,
    user: str | None,
    password: str | None = None,
    *,
    client_id: str | None = None,
    persistent: bool = False,
    on_connected: Callable[[mqtt.Client], None] | None = None,
    tls: ssl.SSLContext | None = None,
    port: int | None = None,
) -> mqtt.Client:
    """A connected, looping (and auto-reconnecting) v5 client; raises if the broker refuses it.

    ``tls`` with ``port``: over TLS (a handshake failure raises ssl.SSLError or OSError).

    ``persistent``: clean_start false with a one-hour session expiry, so the broker queues QoS 1
    messages for it while it is away (also across a broker restart, with persistence on).
    """
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id or f"test-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
    )
    if user is not None:
        client.username_pw_set(user, password if password is not None else broker.password(user))
    tls = tls or (broker.tls if port is None else None)
    if tls is not None:
        client.tls_set_context(tls)
    connected = threading.Event()
    outcome: list[Any] = []

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        outcome.append(reason)
        if on_connected is not None and not reason.is_failure:
            on_connected(c)
        connected.set()

    client.on_connect = on_connect
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = 3600 if persistent else 0
    client.connect(broker.host, port or broker.port, keepalive=30, clean_start=not persistent, properties=properties)
    client.loop_start()
    if not connected.wait(10):
        client.loop_stop()
        raise TimeoutError("no CONNACK")
    if outcome[0].is_failure:
        client.loop_stop()
        client.disconnect()
        raise ConnectionRefusedError(str(outcome[0]))
    return client


class Recorder:
    """Subscribes (as the control plane by default) and keeps every message it receives."""

    def __init__(
        self, broker: BrokerAddress, topic: str = "otto/#", user: str = "controlplane", persistent: bool = False
    ) -> None:
        self.messages: list[Received] = []
        self._lock = threading.Condition()
        subscribed = threading.Event()

        def subscribe(client: mqtt.Client) -> None:  # on every (re)connect
            client.on_subscribe = lambda *_args: subscribed.set()
            client.on_message = self._on_message
            client.subscribe(topic, qos=1)

        client_id = f"recorder-{uuid.uuid4().hex[:8]}" if persistent else None
        self.client = connect(broker, user, client_id=client_id, persistent=persistent, on_connected=subscribe)
        assert subscribed.wait(10), "no SUBACK"

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(message.topic, bytes(message.payload), bool(message.retain), time.time()))
            self._lock.notify_all()

    def on(self, topic: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 30.0) -> list[Received]:
        """Block until ``predicate(messages)`` holds; return a snapshot of the messages."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self.messages):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    topics = sorted({m.topic for m in self.messages})
                    raise TimeoutError(f"condition not met in {timeout}s; {len(self.messages)} messages on {topics}")
                self._lock.wait(remaining)
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_once(
    broker: BrokerAddress,
    user: str | None,
    topic: str,
    payload: bytes,
    retain: bool = False,
    *,
    tls: ssl.SSLContext | None = None,
    port: int | None = None,
) -> Any:
    """Publish one QoS 1 message and return the broker's PUBACK reason code (v5); over TLS with ``tls``."""
    client = connect(broker, user, tls=tls, port=port)
    reasons: list[Any] = []
    done = threading.Event()

    def on_publish(_c: mqtt.Client, _u: Any, _mid: int, reason: Any, _p: Any) -> None:
        reasons.append(reason)
        done.set()

    client.on_publish = on_publish
    client.publish(topic, payload, qos=1, retain=retain)
    assert done.wait(10), "no PUBACK"
    client.disconnect()
    client.loop_stop()
    return reasons[0]


class Publisher:
    """One connection publishing many QoS 1 messages; ``flush`` waits for every PUBACK."""

    def __init__(self, broker: BrokerAddress, user: str) -> None:
        self.client = connect(broker, user)
        self._pending: list[mqtt.MQTTMessageInfo] = []

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self._pending.append(self.client.publish(topic, payload, qos=1, retain=retain))

    def flush(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for info in self._pending:
            info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
            assert info.is_published(), "a PUBACK did not arrive"
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()

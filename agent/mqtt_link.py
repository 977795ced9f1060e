"""A bounded, ordered, at-least-once MQTT outbox on top of paho-mqtt 2 (MQTT v5, QoS 1).

paho's callbacks only post events to a queue; one sender thread owns the outbox and is the only
caller of ``publish``, which avoids lock-order problems with paho's internal mutex and the race of
a PUBACK arriving before ``publish`` returns. A message leaves the outbox only when the broker
acknowledges it. While the broker is away messages accumulate (oldest dropped first beyond the
limit); after every (re)connect the outbox is replayed from its oldest message, in order. paho's
own retransmission is switched off (``drop_out_messages`` in ``on_connect``), so the outbox is the
single source of truth.

The outbox is bounded in messages and in payload bytes; replay is paced (``send_rate`` messages
per second on average, bursts of ``max_inflight``) so that an hour of backlog does not arrive at
the control plane as a flood its per-node rate limit would refuse. Any exception while one event
is handled is counted and logged (with its traceback, once a minute) and the loop goes on; the
threads are ours (``threads``) so that the program can watch them.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from common.cli import RateLimitedLog
from common.rate import TokenBucket

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Message:
    topic: str
    payload: bytes
    retain: bool = False


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """Where and as whom to connect."""

    host: str
    port: int = 1883
    client_id: str = ""
    username: str | None = None
    password: str | None = None
    keepalive: int = 30


class MqttLink:
    """Publishes messages reliably and in order; see the module docstring."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        buffer_size: int,
        will: tuple[str, bytes],
        online: Callable[[], tuple[str, bytes]],
        offline: Callable[[], tuple[str, bytes]],
        max_inflight: int = 20,
        buffer_bytes: int = 32 * 2**20,
        send_rate: float = 25.0,
    ) -> None:
        self._config = config
        self._capacity = buffer_size
        self._capacity_bytes = buffer_bytes
        self._bytes = 0
        self._pace = TokenBucket(send_rate, float(max_inflight))
        self.errors = 0
        self._online = online
        self._offline = offline
        self._window = max_inflight
        self._events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._unsent: collections.deque[_Message] = collections.deque()
        self._inflight: dict[int, tuple[int, _Message]] = {}  # mid -> (send sequence, message)
        self._sequence = 0
        self._connected = False
        self._dropped = 0
        self._dropped_in_outage = 0
        self._refusal: str | None = None
        self._unreachable = False
        self._rejections = RateLimitedLog(log, period=60.0)
        self._sender = threading.Thread(target=self._run, name="otto-mqtt-sender", daemon=True)
        self._network = threading.Thread(target=self._network_loop, name="otto-mqtt-network", daemon=True)
        self._done = threading.Event()

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=config.client_id, protocol=mqtt.MQTTv5, reconnect_on_failure=True
        )
        if config.username is not None:
            client.username_pw_set(config.username, config.password)
        client.will_set(will[0], will[1], qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_inflight_messages_set(max_inflight)
        client.suppress_exceptions = True
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client

    # -- public API (any thread) --------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retrying forever with exponential backoff) and start sending."""
        self._sender.start()
        self._client.connect_async(self._config.host, self._config.port, self._config.keepalive, clean_start=True)
        self._network.start()

    def _network_loop(self) -> None:
        # What loop_start() does, in a thread of ours that the program can watch.
        self._client.loop_forever(retry_first_connection=True)

    def publish(self, topic: str, payload: bytes) -> None:
        """Queue a QoS 1 message; it is sent as soon as the broker is reachable."""
        self._events.put(("publish", _Message(topic, payload)))

    def close(self, timeout: float = 4.0) -> None:
        """Flush what can be flushed, publish the explicit offline status, disconnect."""
        self._events.put(("close", time.monotonic() + timeout))
        self._done.wait(timeout + 0.5)

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def threads(self) -> dict[str, threading.Thread]:
        """The link's threads by role, for a supervisor."""
        return {"mqtt sender": self._sender, "mqtt network": self._network}

    @property
    def sender_alive(self) -> bool:
        return self._sender.is_alive()

    @property
    def buffered_bytes(self) -> int:
        """Payload bytes of the messages not yet acknowledged."""
        return self._bytes

    @property
    def buffered(self) -> int:
        """Messages not yet acknowledged by the broker."""
        return len(self._unsent) + len(self._inflight)

    @property
    def dropped(self) -> int:
        """Messages discarded since start because the outbox was full."""
        return self._dropped

    # -- paho callbacks (network thread): post events only --------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._events.put(("refused", str(reason)))
            return
        client.drop_out_messages()  # the outbox, not paho, retransmits: keeps replay in order
        topic, payload = self._online()
        client.publish(topic, payload, qos=1, retain=True)
        self._events.put(("connected",))

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        self._events.put(("unreachable",))

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._events.put(("disconnected", str(reason)))

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        self._events.put(("ack", mid, bool(reason.is_failure), str(reason)))

    # -- sender thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        deadline: float | None = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self._connected and self._unsent and len(self._inflight) < self._window:
                paced = self._pace.wait(time.monotonic())  # replay waiting for its pace
                timeout = paced if timeout is None else min(timeout, paced)
            try:
                event: tuple[Any, ...] = self._events.get(timeout=timeout)
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                event = ("tick",)
            try:
                self._handle(event)
                if event[0] == "close":
                    deadline = event[1]
                self._pump()
            except Exception:  # a bug: count it, say where, keep sending
                self.errors += 1
                self._rejections.exception("sender", "the MQTT sender raised while handling %r; continuing", event[0])
            if deadline is not None and (not self._connected or self.buffered == 0):
                break
        self._shutdown(deadline)

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "publish":
            self._enqueue(event[1])
        elif kind == "ack":
            self._acknowledged(event[1], event[2], event[3])
        elif kind == "connected":
            self._handle_connected()
        elif kind == "disconnected":
            self._handle_disconnected(event[1])
        elif kind == "refused":
            if self._refusal != event[1]:
                log.warning("broker refused the connection: %s; retrying with backoff", event[1])
            self._refusal = event[1]
        elif kind == "unreachable":
            if not self._unreachable:
                log.warning(
                    "broker unreachable at %s:%d; buffering, retrying with backoff",
                    self._config.host,
                    self._config.port,
                )
            self._unreachable = True

    def _enqueue(self, message: _Message) -> None:
        size = len(message.payload)
        while self.buffered and (self.buffered >= self._capacity or self._bytes + size > self._capacity_bytes):
            if self._inflight:
                oldest = min(self._inflight, key=lambda mid: self._inflight[mid][0])
                self._bytes -= len(self._inflight.pop(oldest)[1].payload)
            else:
                self._bytes -= len(self._unsent.popleft().payload)
            self._dropped += 1
            if self._dropped_in_outage == 0:
                log.warning(
                    "outbox full (%d messages, %d bytes): dropping the oldest", self._capacity, self._capacity_bytes
                )
            self._dropped_in_outage += 1
        self._unsent.append(message)
        self._bytes += size

    def _pump(self) -> None:
        while self._connected and self._unsent and len(self._inflight) < self._window:
            if not self._pace.take(time.monotonic()):
                return  # the loop wakes when the pace allows the next one
            message = self._unsent[0]
            info = self._client.publish(message.topic, message.payload, qos=1, retain=message.retain)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return  # connection just went; the disconnected event follows
            self._unsent.popleft()
            self._sequence += 1
            self._inflight[info.mid] = (self._sequence, message)

    def _acknowledged(self, mid: int, failed: bool, reason: str) -> None:
        sent = self._inflight.pop(mid, None)
        if sent is not None:
            self._bytes -= len(sent[1].payload)
        if sent is not None and failed:
            self._rejections.warning("rejected", "broker rejected a message on %s: %s", sent[1].topic, reason)

    def _handle_connected(self) -> None:
        self._connected = True
        self._refusal, self._unreachable = None, False
        backlog = self.buffered
        log.info(
            "connected to broker %s:%d%s",
            self._config.host,
            self._config.port,
            f"; replaying {backlog} buffered messages" if backlog > 2 else "",
        )
        if self._dropped_in_outage:
            log.warning("%d messages were dropped while the broker was away", self._dropped_in_outage)
            self._dropped_in_outage = 0

    def _handle_disconnected(self, reason: str) -> None:
        if self._connected:
            log.warning("disconnected from broker: %s; buffering up to %d messages", reason, self._capacity)
        self._connected = False
        # Unacknowledged messages go back to the front of the outbox, in their original order.
        for _, message in sorted(self._inflight.values(), key=lambda sent: sent[0], reverse=True):
            self._unsent.appendleft(message)
        self._inflight.clear()

    def _shutdown(self, deadline: float | None) -> None:
        try:
            if self._connected:
                topic, payload = self._offline()
                info = self._client.publish(topic, payload, qos=1, retain=True)
                remaining = 1.0 if deadline is None else max(0.5, deadline - time.monotonic())
                info.wait_for_publish(timeout=remaining)
            if self.buffered:
                log.warning("exiting with %d unsent messages", self.buffered)
            self._client.disconnect()
        except (RuntimeError, ValueError, OSError) as exc:
            log.warning("could not publish the offline status: %s", exc)
        finally:
            if self._network.is_alive():
                self._network.join(2.0)  # disconnect() ends loop_forever
            self._done.set()

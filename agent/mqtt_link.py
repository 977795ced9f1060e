"""MqttLink: the agent's MQTT side. An ordered, bounded, at-least-once outbox over paho-mqtt 2 (v5, QoS 1).

The outbox policy lives in ``agent.outbox`` (pure, unit-tested); this class is its plumbing.
paho's callbacks only post typed events to a queue; one sender thread owns the outbox and is the
only caller of ``publish``, which avoids lock-order problems with paho's internal mutex and the
race of a PUBACK arriving before ``publish`` returns. A message leaves the outbox only when the
broker acknowledges it; after every (re)connect the outbox is replayed from its oldest message, in
order. paho's own retransmission is switched off (``drop_out_messages`` in ``on_connect``), so the
outbox is the single source of truth.

Replay is paced (``send_rate`` messages per second on average, bursts of ``max_inflight``) so that
an hour of backlog does not arrive at the control plane as a flood. Any exception while one event
is handled is counted and logged (with its traceback, once a minute) and the loop goes on; the
threads are ours (``threads``) so that the program can watch them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from agent.outbox import Message, Outbox
from common.cli import RateLimitedLog
from common.mqtt_client import MqttConfig, make_client, network_thread, why_unreachable
from common.rate import TokenBucket

log = logging.getLogger(__name__)

# -- events the sender thread handles, posted by paho's callbacks and the public API ---------------


@dataclass(frozen=True, slots=True)
class _Publish:
    message: Message


@dataclass(frozen=True, slots=True)
class _Acked:
    mid: int
    failed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class _Connected:
    pass


@dataclass(frozen=True, slots=True)
class _Disconnected:
    reason: str


@dataclass(frozen=True, slots=True)
class _Refused:
    reason: str


@dataclass(frozen=True, slots=True)
class _Unreachable:
    pass


@dataclass(frozen=True, slots=True)
class _Close:
    deadline: float


@dataclass(frozen=True, slots=True)
class _Tick:
    """Nothing arrived before the pace or the deadline said to look again."""


_Event = _Publish | _Acked | _Connected | _Disconnected | _Refused | _Unreachable | _Close | _Tick


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
        self._outbox = Outbox(buffer_size, buffer_bytes)
        self._pace = TokenBucket(send_rate, float(max_inflight))
        self._window = max_inflight
        self._online = online
        self._offline = offline
        self.errors = 0
        self._events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self._connected = False
        self._dropped_in_outage = 0
        self._refusal: str | None = None
        self._unreachable = False
        self._rejections = RateLimitedLog(log, period=60.0)
        self._done = threading.Event()

        client = make_client(config)
        client.will_set(will[0], will[1], qos=1, retain=True)
        client.max_inflight_messages_set(max_inflight)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client
        self._sender = threading.Thread(target=self._run, name="otto-mqtt-sender", daemon=True)
        self._network = network_thread(client, "otto-mqtt-network")

    # -- public API (any thread) --------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (retrying forever with exponential backoff) and start sending."""
        self._sender.start()
        self._client.connect_async(self._config.host, self._config.port, self._config.keepalive, clean_start=True)
        self._network.start()

    def publish(self, topic: str, payload: bytes) -> None:
        """Queue a QoS 1 message; it is sent as soon as the broker is reachable."""
        self._events.put(_Publish(Message(topic, payload)))

    def close(self, timeout: float = 4.0) -> None:
        """Flush what can be flushed, publish the explicit offline status, disconnect."""
        self._events.put(_Close(time.monotonic() + timeout))
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
    def buffered(self) -> int:
        """Messages not yet acknowledged by the broker."""
        return len(self._outbox)

    @property
    def buffered_bytes(self) -> int:
        """Payload bytes of the messages not yet acknowledged."""
        return self._outbox.bytes

    @property
    def dropped(self) -> int:
        """Messages discarded since start because the outbox was full."""
        return self._outbox.dropped

    # -- paho callbacks (network thread): post events only --------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._events.put(_Refused(str(reason)))
            return
        client.drop_out_messages()  # the outbox, not paho, retransmits: keeps replay in order
        topic, payload = self._online()
        client.publish(topic, payload, qos=1, retain=True)
        self._events.put(_Connected())

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        self._events.put(_Unreachable())

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._events.put(_Disconnected(str(reason)))

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        self._events.put(_Acked(mid, bool(reason.is_failure), str(reason)))

    # -- sender thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        deadline: float | None = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self._connected and self._outbox.next() is not None and self._outbox.in_flight < self._window:
                paced = self._pace.wait(time.monotonic())  # a replay waiting for its pace
                timeout = paced if timeout is None else min(timeout, paced)
            try:
                event: _Event = self._events.get(timeout=timeout)
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                event = _Tick()
            try:
                if isinstance(event, _Close):
                    deadline = event.deadline
                self._handle(event)
                self._pump()
            except Exception:  # a bug: count it, say where, keep sending
                self.errors += 1
                self._rejections.exception("sender", "the MQTT sender raised on %s; continuing", type(event).__name__)
            if deadline is not None and (not self._connected or self.buffered == 0):
                break
        self._shutdown(deadline)

    def _handle(self, event: _Event) -> None:
        match event:
            case _Publish(message):
                self._enqueue(message)
            case _Acked(mid, failed, reason):
                sent = self._outbox.acknowledged(mid)
                if sent is not None and failed:
                    self._rejections.warning("rejected", "broker rejected a message on %s: %s", sent.topic, reason)
            case _Connected():
                self._handle_connected()
            case _Disconnected(reason):
                self._handle_disconnected(reason)
            case _Refused(reason):
                if self._refusal != reason:
                    log.warning("broker refused the connection: %s; retrying with backoff", reason)
                self._refusal = reason
            case _Unreachable():
                if not self._unreachable:
                    log.warning(
                        "broker unreachable at %s:%d (%s); buffering, retrying with backoff",
                        self._config.host,
                        self._config.port,
                        why_unreachable(self._config) or "it answers again",
                    )
                self._unreachable = True
            case _Close() | _Tick():
                pass

    def _enqueue(self, message: Message) -> None:
        dropped = self._outbox.add(message)
        if dropped and self._dropped_in_outage == 0:
            outbox = self._outbox
            log.warning(
                "outbox full (%d messages, %d bytes): dropping the oldest", outbox.max_messages, outbox.max_bytes
            )
        self._dropped_in_outage += len(dropped)

    def _pump(self) -> None:
        while self._connected and self._outbox.in_flight < self._window:
            message = self._outbox.next()
            if message is None or not self._pace.take(time.monotonic()):
                return  # nothing to send, or the loop wakes when the pace allows the next one
            info = self._client.publish(message.topic, message.payload, qos=1, retain=message.retain)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return  # connection just went; the disconnected event follows
            self._outbox.sent(info.mid)

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
            log.warning("disconnected from broker: %s; buffering up to %d messages", reason, self._outbox.max_messages)
        self._connected = False
        self._outbox.requeue()  # unacknowledged messages go back in front, in their original order

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

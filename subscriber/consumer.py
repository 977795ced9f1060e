"""MetricsSubscriber: consumes every node's messages, validates them, keeps state and history.

paho's network thread only admits (subscriber.admission: per-node rate limit, queue bounds) and
queues what arrives. One worker thread hands each message to the Ingestor (subscriber.ingest:
validation, fleet state, handlers, batched history) and commits the batch every FLUSH_SECONDS or
FLUSH_MESSAGES. Messages are acknowledged (manual ack) only once their rows are committed, so
neither a restart nor a crash loses anything: the broker keeps the persistent session's
unacknowledged and queued messages and redelivers them, and the store ignores the copies it
already has. The number of unacknowledged messages the broker may send us (Receive Maximum)
bounds the queue; while the store is unavailable the worker stops taking messages once
MAX_PENDING are held, so memory stays bounded and the broker keeps the rest.

Both threads are ours (``threads``) so that the program can watch them and exit if one dies.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from common.cli import RateLimitedLog
from common.mqtt_client import MqttConfig, make_client, network_thread
from contract.models import ContainerMetricsBatch, NodeMetrics, NodeStatus
from contract.topics import SUBSCRIPTIONS
from subscriber.admission import Admission
from subscriber.decoding import Decoded, Rejected
from subscriber.ingest import Ingestor
from subscriber.prometheus import SubscriberCounters
from subscriber.state import FleetState
from subscriber.store import HistoryStore

log = logging.getLogger(__name__)
message_log = logging.getLogger("subscriber.messages")

#: Unacknowledged messages the broker may have in flight to us (MQTT v5 Receive Maximum).
RECEIVE_MAXIMUM = 4096
#: A batch is committed (and acknowledged) this long after its first message, or at FLUSH_MESSAGES.
FLUSH_SECONDS = 0.02
FLUSH_MESSAGES = 1000
PRUNE_EVERY_SECONDS = 600.0
#: While the store is unavailable, at most this many messages are held in the open batch.
MAX_PENDING = RECEIVE_MAXIMUM

NodeHandler = Callable[[NodeMetrics], None]
ContainerHandler = Callable[[ContainerMetricsBatch], None]
StatusHandler = Callable[[NodeStatus], None]


@dataclass(frozen=True, slots=True)
class BrokerConfig(MqttConfig):
    """The broker, and how long it keeps our persistent session (and queues for it) while we are away."""

    client_id: str = "otto-subscriber"
    session_expiry: timedelta = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Limits:
    """Admission limits (see subscriber.admission); a rate of 0 switches the per-node limit off."""

    node_rate: float = 50.0
    node_burst: float = 500.0
    queue_messages: int = 10_000
    queue_bytes: int = 256 * 2**20


@dataclass(slots=True)
class _Received:
    topic: str
    payload: bytes
    mid: int
    qos: int
    epoch: int
    at: float


class MetricsSubscriber:
    """Subscribes to metrics from all nodes."""

    def __init__(
        self,
        broker: BrokerConfig,
        state: FleetState,
        store: HistoryStore | None,
        counters: SubscriberCounters,
        *,
        max_payload_bytes: int = 1_048_576,
        retention: timedelta | None = None,
        log_messages: bool = True,
        limits: Limits = Limits(),
    ) -> None:
        self.broker = broker
        self.state = state
        self.store = store
        self.counters = counters
        self.retention = retention
        self.log_messages = log_messages
        self.ingestor = Ingestor(state, store, counters, self._dispatch, max_payload_bytes, retention)
        self.admission = Admission(limits.node_rate, limits.node_burst, limits.queue_messages, limits.queue_bytes)
        self._node_handlers: list[NodeHandler] = []
        self._container_handlers: list[ContainerHandler] = []
        self._status_handlers: list[StatusHandler] = []
        self._queue: queue.SimpleQueue[_Received | None] = queue.SimpleQueue()
        self._epoch = 0
        self._connected = False
        self._stopping = False
        self._worker = threading.Thread(target=self._run, name="otto-subscriber-worker", daemon=True)
        self._warnings = RateLimitedLog(log, period=60.0)
        self._client = self._make_client()
        self._network = network_thread(self._client, "otto-subscriber-mqtt")

    # -- the plan's public API ----------------------------------------------------------------------

    def start(self) -> None:
        """Connect (retrying forever) and start handling messages in the background."""
        self._worker.start()
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = int(self.broker.session_expiry.total_seconds())
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        self._client.connect_async(
            self.broker.host, self.broker.port, self.broker.keepalive, clean_start=False, properties=properties
        )
        self._network.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Handle and store everything received so far, then disconnect (the session stays)."""
        self._queue.put(None)
        self._worker.join(timeout)
        self._stopping = True
        self._client.disconnect()
        self._network.join(timeout)
        self.counters.mqtt_connected.set(0)

    @property
    def threads(self) -> dict[str, threading.Thread]:
        """The threads without which the subscriber does nothing useful, by role."""
        return {"worker": self._worker, "mqtt": self._network}

    def on_node_metrics(self, msg: NodeMetrics) -> None:
        """Handle incoming node metrics: log the plan's line, then call registered handlers."""
        if self.log_messages:
            message_log.info("[%s] CPU: %.1f%% MEM: %.1f%%", msg.node_id, msg.cpu_percent, msg.memory_percent)
        self._call(self._node_handlers, msg)

    def on_container_metrics(self, msg: ContainerMetricsBatch) -> None:
        """Handle incoming container metrics: one line per container, then registered handlers."""
        if self.log_messages:
            for c in msg.containers:
                message_log.info("  [%s] CPU: %.1f%% MEM: %.1fMB", c.container_name, c.cpu_percent, c.memory_usage_mb)
        self._call(self._container_handlers, msg)

    def on_status(self, msg: NodeStatus) -> None:
        """Handle a node's (retained) status or last will."""
        if self.log_messages:
            message_log.info("[%s] %s (agent %s)", msg.node_id, msg.status, msg.agent_version)
        self._call(self._status_handlers, msg)

    def add_node_handler(self, handler: NodeHandler) -> None:
        self._node_handlers.append(handler)

    def add_container_handler(self, handler: ContainerHandler) -> None:
        self._container_handlers.append(handler)

    def add_status_handler(self, handler: StatusHandler) -> None:
        self._status_handlers.append(handler)

    @property
    def connected(self) -> bool:
        return self._connected

    # -- paho (network thread): admit, queue and return ----------------------------------------------

    def _make_client(self) -> mqtt.Client:
        client = make_client(self.broker, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._warnings.warning("connect", "broker refused the connection: %s; retrying", reason)
            return
        self._epoch += 1
        self._connected = True
        self.counters.mqtt_connected.set(1)
        client.subscribe([(topic, 1) for topic in SUBSCRIPTIONS.values()])
        log.info(
            "connected to broker %s:%d as %s (%s session)",
            self.broker.host,
            self.broker.port,
            self.broker.client_id,
            "resumed" if flags.session_present else "new",
        )

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if self._connected and not self._stopping:
            log.warning("disconnected from broker: %s; reconnecting", reason)
        self._connected = False
        self.counters.mqtt_connected.set(0)

    def _on_message(self, client: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        payload = bytes(message.payload)
        refused = self.admission.admit(message.topic, payload, message.qos, time.time())
        if refused is not None:
            self.ingestor.count_received(message.topic)
            self.ingestor.reject(message.topic, Rejected(refused, f"{len(payload)} bytes"))
            if message.qos > 0:
                client.ack(message.mid, message.qos)
            return
        self.counters.queue_depth.inc()
        self._queue.put(_Received(message.topic, payload, message.mid, message.qos, self._epoch, time.time()))

    # -- worker thread --------------------------------------------------------------------------------

    def _run(self) -> None:
        self._next_prune = time.monotonic() + 5.0
        while True:
            try:
                if not self._step():
                    return
            except Exception:  # a bug: count it, say where, go on with the next message
                self.counters.worker_errors.inc()
                self._warnings.exception("worker", "the worker's loop raised; continuing")
                time.sleep(0.1)

    def _step(self) -> bool:
        """Take at most one message, flush and prune when due; False once asked to stop."""
        ingestor = self.ingestor
        held_back = ingestor.store_problem is not None and ingestor.pending >= MAX_PENDING
        wait = ingestor.flush_due_in(FLUSH_SECONDS) if ingestor.pending else 1.0
        if held_back:  # the store is down and the batch is full: leave the rest with the broker
            time.sleep(max(0.01, min(wait, 1.0)))
            item: _Received | None = _IDLE
        else:
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = _IDLE
        if item is None:
            self._acknowledge(ingestor.flush())
            return False
        if item is not _IDLE:
            self.counters.queue_depth.dec()
            self.admission.release(len(item.payload))
            token = (item.mid, item.qos, item.epoch)
            if isinstance(ingestor.handle(item.topic, item.payload, item.at, token), Rejected):
                self._ack(token)  # never worth redelivering
        if ingestor.pending >= FLUSH_MESSAGES or (ingestor.pending and ingestor.flush_due_in(FLUSH_SECONDS) == 0):
            self._acknowledge(ingestor.flush())
        if time.monotonic() >= self._next_prune:
            if self.retention is not None:
                ingestor.prune(self.retention)
            self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
        return True

    def _dispatch(self, decoded: Decoded) -> None:
        message = decoded.message
        if isinstance(message, NodeMetrics):
            self.on_node_metrics(message)
        elif isinstance(message, ContainerMetricsBatch):
            self.on_container_metrics(message)
        elif isinstance(message, NodeStatus):
            self.on_status(message)

    def _acknowledge(self, tokens: list[Any] | None) -> None:
        for token in tokens or []:
            self._ack(token)

    def _ack(self, token: tuple[int, int, int]) -> None:
        # A message id belongs to the connection it arrived on; after a reconnect the broker
        # redelivers the unacknowledged ones itself.
        mid, qos, epoch = token
        if qos > 0 and epoch == self._epoch and self._connected:
            self._client.ack(mid, qos)

    def _call(self, handlers: list[Callable[[Any], None]], message: object) -> None:
        for handler in handlers:
            try:
                handler(message)
            except Exception as exc:  # a user handler must not stop ingestion
                self.counters.handler_errors.inc()
                self._warnings.warning("handler", "handler %r failed: %s", handler, exc)


_IDLE = _Received("", b"", 0, 0, 0, 0.0)

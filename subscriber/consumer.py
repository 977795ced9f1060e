"""MetricsSubscriber: consumes every node's messages, validates them, keeps state and history.

paho's network thread only admits (subscriber.admission: per-node rate limit, queue bounds) and
queues what arrives. One worker thread runs the IngestWorker (subscriber.worker: batches,
acknowledgements, backpressure), which hands each message to the Ingestor (subscriber.ingest:
validation, fleet state, handlers, history). Messages are acknowledged (manual ack) only once
their rows are committed, so neither a restart nor a crash loses anything: the broker keeps the
persistent session's unacknowledged and queued messages and redelivers them, and the store
ignores the copies it already has. The number of unacknowledged messages the broker may send us
(Receive Maximum) bounds the queue.

Both threads are ours (``threads``) so that the program can watch them and exit if one dies.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from common.cli import RateLimitedLog
from common.mqtt_client import MqttConfig, make_client, network_thread, why_unreachable
from contract.models import ContainerEvent, ContainerMetricsBatch, NodeMetrics, NodeStatus
from contract.topics import SUBSCRIPTIONS, TopicKind
from subscriber.admission import Admission
from subscriber.decoding import Decoded, Rejected
from subscriber.ingest import Ingestor
from subscriber.prometheus import SubscriberCounters
from subscriber.state import FleetState
from subscriber.store import HistoryStore
from subscriber.worker import IngestWorker, Received

log = logging.getLogger(__name__)
message_log = logging.getLogger("subscriber.messages")

#: Unacknowledged messages the broker may have in flight to us (MQTT v5 Receive Maximum).
RECEIVE_MAXIMUM = 4096

NodeHandler = Callable[[NodeMetrics], None]
ContainerHandler = Callable[[ContainerMetricsBatch], None]
StatusHandler = Callable[[NodeStatus], None]


@dataclass(frozen=True, slots=True)
class BrokerConfig(MqttConfig):
    """The broker, and how long it keeps our persistent session (and queues for it) while we are away."""

    client_id: str = "otto-subscriber"
    session_expiry: timedelta = timedelta(days=7)
    #: As one of several replicas: node and container metrics through ``$share/<group>/...``.
    shared_group: str | None = None


#: What replicas share out (the bulk); status and events, few and stored idempotently, reach every
#: replica: retained statuses are never sent to shared subscriptions, and alerts see every event.
SHARED_KINDS = (TopicKind.NODE, TopicKind.CONTAINERS)


def subscriptions(shared_group: str | None) -> list[str]:
    """The topic filters to subscribe to, shared ones prefixed ``$share/<group>/``."""
    return [
        f"$share/{shared_group}/{topic}" if shared_group and kind in SHARED_KINDS else topic
        for kind, topic in SUBSCRIPTIONS.items()
    ]


@dataclass(frozen=True, slots=True)
class Limits:
    """Admission limits (see subscriber.admission); a rate of 0 switches the per-node limit off."""

    node_rate: float = 50.0
    node_burst: float = 500.0
    queue_messages: int = 10_000
    queue_bytes: int = 256 * 2**20


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
        self.log_messages = log_messages
        self.ingestor = Ingestor(state, store, counters, self._dispatch, max_payload_bytes, retention)
        self.admission = Admission(limits.node_rate, limits.node_burst, limits.queue_messages, limits.queue_bytes)
        self._node_handlers: list[NodeHandler] = []
        self._container_handlers: list[ContainerHandler] = []
        self._status_handlers: list[StatusHandler] = []
        self.worker = IngestWorker(
            self.ingestor, self._ack, taken=self._taken, retention=retention, max_pending=RECEIVE_MAXIMUM
        )
        self._epoch = 0
        self._connected = False
        self._unreachable_logged = False
        self._stopping = False
        self._unsubscribed = threading.Event()
        self._worker = threading.Thread(target=self.worker.run, name="otto-subscriber-worker", daemon=True)
        self._warnings = RateLimitedLog(log, period=60.0)
        self._client = self._make_client()
        self._network = network_thread(self._client, "otto-subscriber-mqtt")

    # -- public API: start, stop, handlers ----------------------------------------------------------------------

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
        """Handle and store everything received so far, then disconnect.

        One subscriber keeps its session, so the broker queues for it until it is back. A replica
        first leaves the shared subscriptions (the others take its share at once) and, once all it
        received is stored and acknowledged, ends its session: a session left behind would still
        take its turn of the shared messages, queued for a replica that may never return.
        """
        shared = self.broker.shared_group is not None and self._connected
        if shared:
            self._unsubscribed.clear()
            self._client.unsubscribe([t for t in subscriptions(self.broker.shared_group) if t.startswith("$share/")])
            self._unsubscribed.wait(min(timeout, 5.0))  # messages sent before the UNSUBACK are ours to store
        self.worker.stop()
        self._worker.join(timeout)
        self._stopping = True
        # Ended only if the broker confirmed we left (nothing shared can still be on its way) and
        # all that came is stored; otherwise the session keeps it for our return.
        settled = self._unsubscribed.is_set() and self.ingestor.pending == 0 and self.ingestor.store_problem is None
        properties = None
        if shared and settled:
            properties = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = 0
        self._client.disconnect(properties=properties)
        self._network.join(timeout)
        self.counters.mqtt_connected.set(0)

    @property
    def threads(self) -> dict[str, threading.Thread]:
        """The threads without which the subscriber does nothing useful, by role."""
        return {"worker": self._worker, "mqtt": self._network}

    def on_node_metrics(self, msg: NodeMetrics) -> None:
        """Handle incoming node metrics: log its one line, then call registered handlers."""
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
        client.on_connect_fail = self._on_connect_fail
        client.on_unsubscribe = self._on_unsubscribe
        return client

    def _on_unsubscribe(self, *_: Any) -> None:
        self._unsubscribed.set()

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        if not self._unreachable_logged:  # once per outage, with the reason paho does not give
            self._unreachable_logged = True
            reason = why_unreachable(self.broker) or "it answers again"
            log.warning("broker unreachable at %s:%d (%s); retrying", self.broker.host, self.broker.port, reason)

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._warnings.warning("connect", "broker refused the connection: %s; retrying", reason)
            return
        self._epoch += 1
        self._connected = True
        self._unreachable_logged = False
        self.counters.mqtt_connected.set(1)
        client.subscribe([(topic, 1) for topic in subscriptions(self.broker.shared_group)])
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
        self.worker.put(Received(message.topic, payload, (message.mid, message.qos, self._epoch), time.time()))

    # -- worker thread --------------------------------------------------------------------------------

    def _taken(self, received: Received) -> None:
        self.counters.queue_depth.dec()
        self.admission.release(len(received.payload))

    def _dispatch(self, decoded: Decoded) -> None:
        message = decoded.message
        if isinstance(message, NodeMetrics):
            self.on_node_metrics(message)
        elif isinstance(message, ContainerMetricsBatch):
            self.on_container_metrics(message)
        elif isinstance(message, NodeStatus):
            self.on_status(message)
        elif isinstance(message, ContainerEvent) and self.log_messages:
            message_log.info(
                "[%s] %s %s%s",
                message.node_id,
                message.container_name or "-",
                message.action,
                "" if message.exit_code is None else f" (exit code {message.exit_code})",
            )

    def _ack(self, token: Hashable) -> None:
        # A message id belongs to the connection it arrived on; after a reconnect the broker
        # redelivers the unacknowledged ones itself.
        assert isinstance(token, tuple)  # the (mid, qos, epoch) _on_message made
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

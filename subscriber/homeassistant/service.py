"""HomeAssistantDiscovery: keeps the broker's retained discovery configs in step with the fleet.

Its own MQTT connection (the control plane's credential, which may write the discovery prefix and
nothing else) and its own thread: ingestion never waits for it, and it never blocks ingestion.
After every connect it reads our retained configs back (the record of what Home Assistant was
told), then every ``tick`` seconds publishes what changed; when Home Assistant announces itself
(``<prefix>/status`` = ``online``) it republishes everything, for brokers that lost retained messages.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions
from prometheus_client import CollectorRegistry, Counter, Gauge

from common.mqtt_client import MqttConfig, make_client, network_thread
from subscriber.homeassistant.reconcile import Reconciler
from subscriber.state import FleetState

log = logging.getLogger(__name__)

#: After subscribing, retained configs arrive at once; this long without one means all are in.
SETTLE_SECONDS = 1.0


class DiscoveryCounters:
    """Home Assistant discovery in Prometheus."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "otto_homeassistant_configs_published",
            "Discovery configs published (config) or cleared (removal), retained.",
            ["action"],
            registry=registry,
        )
        self.retained = Gauge(
            "otto_homeassistant_configs", "Discovery configs of ours retained on the broker.", registry=registry
        )
        self.rejected = Counter(
            "otto_homeassistant_rejected",
            "What discovery left out, by reason: container_name (a container name Docker would not allow), "
            "containers_over_cap (containers beyond 200 on one node), node_error (a node whose configs "
            "could not be made; they stay as they were).",
            ["reason"],
            registry=registry,
        )
        self.announcements = Counter(
            "otto_homeassistant_announcements", "Times Home Assistant announced itself online.", registry=registry
        )
        for action in ("config", "removal"):
            self.published.labels(action)
        for reason in ("container_name", "containers_over_cap", "node_error"):
            self.rejected.labels(reason)


class HomeAssistantDiscovery:
    """See the module docstring."""

    def __init__(
        self,
        config: MqttConfig,
        reconciler: Reconciler,
        state: FleetState,
        counters: DiscoveryCounters,
        *,
        tick: float = 5.0,
    ) -> None:
        self.config = config
        self.reconciler = reconciler
        self.state = state
        self.counters = counters
        self.tick = tick
        self.prefix = reconciler.discovery.prefix
        self.client = make_client(config)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._connected = False
        self._subscribe_mid: int | None = None
        self._synced_after: float | None = None  # monotonic time the retained configs are all in
        self._force = False
        self._rejected_seen: dict[str, int] = {}
        self.thread = threading.Thread(target=self._run, name="homeassistant", daemon=True)
        self.network = network_thread(self.client, "homeassistant-mqtt")

    @property
    def threads(self) -> dict[str, threading.Thread]:
        return {"homeassistant": self.thread, "homeassistant-mqtt": self.network}

    def start(self) -> None:
        self.client.connect_async(self.config.host, self.config.port, self.config.keepalive)
        self.network.start()
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self.client.disconnect()
        for thread in (self.thread, self.network):
            if thread.is_alive():
                thread.join(timeout)

    @property
    def connected(self) -> bool:
        return self._connected

    # -- paho callbacks (network thread) -------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("home assistant: broker refused the connection: %s", reason)
            return
        with self._lock:
            self._connected = True
            self._synced_after = None
            self.reconciler.reset()
        options = SubscribeOptions(qos=1, noLocal=True)
        _result, self._subscribe_mid = client.subscribe(
            [
                (f"{self.prefix}/status", SubscribeOptions(qos=1)),
                (f"{self.prefix}/device/+/config", options),
                (f"{self.prefix}/+/+/+/config", options),
            ]
        )
        log.info("home assistant: connected; reading back our discovery configs under %s/", self.prefix)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self._lock:
            self._connected = False
            self._synced_after = None
        if not self._stop.is_set():
            log.warning("home assistant: disconnected from the broker (%s); reconnecting", reason)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, reasons: Any, _p: Any) -> None:
        if mid == self._subscribe_mid:
            if any(reason.is_failure for reason in reasons):
                log.warning("home assistant: broker refused a subscription: %s", [str(r) for r in reasons])
            with self._lock:
                self._synced_after = time.monotonic() + SETTLE_SECONDS
            self._wake.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == f"{self.prefix}/status":
            if message.payload.strip() == b"online":
                self.counters.announcements.inc()
                log.info("home assistant announced itself online: republishing every discovery config")
                with self._lock:
                    self._force = True
                self._wake.set()
            return
        if not message.retain:
            return
        with self._lock:
            if self.reconciler.learn(message.topic, bytes(message.payload)) and self._synced_after is not None:
                self._synced_after = max(self._synced_after, time.monotonic() + SETTLE_SECONDS)

    # -- our thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                settling = self._synced_after - time.monotonic() if self._synced_after is not None else 0.0
            self._wake.wait(min(self.tick, settling) if settling > 0 else self.tick)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._sync()
            except Exception:
                log.exception("home assistant: discovery round failed (will try again)")

    def _sync(self) -> None:
        with self._lock:
            ready = self._connected and self._synced_after is not None and time.monotonic() >= self._synced_after
            if not ready:
                return
            force, self._force = self._force, False
            changes = self.reconciler.plan(self.state.snapshot(), time.time(), force=force)
        configs = removals = 0
        for topic, payload in changes:
            info = self.client.publish(topic, payload, qos=1, retain=True)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                log.warning("home assistant: publish to %s failed (%s); next round retries", topic, info.rc)
                with self._lock:
                    self._force = True  # published may be out of step: next round sends everything
                break
            with self._lock:
                self.reconciler.done(topic, payload)
            if payload:
                configs += 1
            else:
                removals += 1
        self.counters.published.labels("config").inc(configs)
        self.counters.published.labels("removal").inc(removals)
        self.counters.retained.set(len(self.reconciler.published))
        for reason, count in self.reconciler.rejected.items():
            self.counters.rejected.labels(reason).inc(count - self._rejected_seen.get(reason, 0))
            self._rejected_seen[reason] = count
        if configs or removals:
            log.info("home assistant: published %d discovery configs, removed %d", configs, removals)

"""Discovery configs of one node, in Home Assistant's device-based or per-entity layout; ours read back.

Ids: a node's device is ``otto_<node>``, a container's (when containers are devices of their own)
``otto_<node>_c_<container>``; every entity's unique id is ``otto_<node>_<key>`` or
``otto_<node>_c_<container>_<key>``, the same in every layout, so switching layouts keeps the
entities. Topic ids allow only ``[A-Za-z0-9_-]``: other characters become ``-`` and such an id
gets a hash of the original, so ``pi.1`` and ``pi-1`` stay two devices.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from contract.topics import container_metrics_topic, node_metrics_topic, status_topic
from subscriber.alerts.message import node_link
from subscriber.homeassistant.catalog import NODE_ENTITIES, container_entities, container_name_in

Layout = Literal["device", "entity"]
ContainerLayout = Literal["off", "components", "devices"]

ORIGIN = "otto-metrics"
SUPPORT_URL = "https://github.com/otto-metrics/otto-metrics"
MAX_EXPIRE_AFTER = 86_400
_UNSAFE = re.compile(r"[^A-Za-z0-9-]")
_PLATFORMS = frozenset({"sensor", "binary_sensor"})

Config = dict[str, Any]


def slug(text: str) -> str:
    """``text`` as a discovery topic id; altered text (any ``_``, ``.``, long) carries a hash of the original."""
    safe = _UNSAFE.sub("-", text)[:48]
    if safe == text:
        return safe
    return f"{safe}_{hashlib.sha256(text.encode()).hexdigest()[:8]}"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What a node's configs are made of."""

    node_id: str
    interval: float
    version: str | None = None
    arch: str | None = None
    containers: tuple[str, ...] = ()  # Docker container names (catalog.CONTAINER_NAME)
    markers: tuple[tuple[str, str], ...] = ()  # (component id, platform) to remove from the device


@dataclass(frozen=True, slots=True)
class Owned:
    """A retained config of ours found on the broker: whose it is and which containers it shows."""

    node_slug: str
    containers: frozenset[str] = frozenset()
    markers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Discovery:
    """How configs are laid out: topic prefix, device or per-entity layout, containers, links."""

    prefix: str = "homeassistant"
    layout: Layout = "device"
    containers: ContainerLayout = "off"
    public_url: str = "http://localhost:8080"
    stale_after: float = 3.0
    version: str = "0"

    def device_topic(self, node_id: str) -> str:
        """The node's device config topic in the device layout."""
        return f"{self.prefix}/device/otto_{slug(node_id)}/config"

    def configs(self, node: NodeInfo) -> dict[str, Config]:
        """Topic -> config for every discovery message of ``node``."""
        device_id = f"otto_{slug(node.node_id)}"
        shared: Config = {
            "availability_topic": status_topic(node.node_id),
            "availability_template": "{{ value_json.status }}",
        }
        origin = {"name": ORIGIN, "sw_version": self.version, "support_url": SUPPORT_URL}
        # The interval is the node's word: bounded to a day (an absurd one must not overflow).
        expire_after = max(1, math.ceil(min(node.interval * self.stale_after, MAX_EXPIRE_AFTER)))
        device = {
            "identifiers": [device_id],
            "name": node.node_id,
            "manufacturer": "otto-metrics",
            "model": "Docker host",
            "sw_version": node.version[:64] if node.version else None,
            "hw_version": node.arch[:64] if node.arch else None,
            "configuration_url": node_link(self.public_url, node.node_id),
        }
        device = {key: value for key, value in device.items() if value is not None}

        node_components: dict[str, Config] = {}
        for entity in NODE_ENTITIES:
            node_components[entity.key] = {
                **entity.config(),
                "name": entity.label,
                "unique_id": f"{device_id}_{entity.key}",
                "expire_after": expire_after,
            }
        container_devices: dict[str, tuple[Config, dict[str, Config]]] = {}
        for name in node.containers:
            container_slug = slug(name)
            own_device = self.containers == "devices"
            components: dict[str, Config] = {}
            for entity in container_entities(name):
                label = entity.label[:1].upper() + entity.label[1:] if own_device else f"{name} {entity.label}"
                components[entity.key if own_device else f"c_{container_slug}_{entity.key}"] = {
                    **entity.config(),
                    "name": label,
                    "unique_id": f"{device_id}_c_{container_slug}_{entity.key}",
                    "expire_after": expire_after,
                    "state_topic": container_metrics_topic(node.node_id),
                }
            if own_device:
                container_device = {
                    "identifiers": [f"{device_id}_c_{container_slug}"],
                    "name": f"{node.node_id} {name}",
                    "manufacturer": "otto-metrics",
                    "model": "Docker container",
                    "via_device": device_id,
                }
                container_devices[f"{device_id}_c_{container_slug}"] = (container_device, components)
            else:
                node_components.update(components)

        topics: dict[str, Config] = {}
        if self.layout == "device":
            markers = {key: {"platform": platform} for key, platform in node.markers}
            topics[self.device_topic(node.node_id)] = {
                "device": device,
                "origin": origin,
                "state_topic": node_metrics_topic(node.node_id),
                **shared,
                "components": {**markers, **node_components},
            }
            for object_id, (container_device, components) in container_devices.items():
                topics[f"{self.prefix}/device/{object_id}/config"] = {
                    "device": container_device,
                    "origin": origin,
                    **shared,
                    "components": components,
                }
            return topics
        for key, config in node_components.items():
            topics[self._entity_topic(config, device_id, key)] = self._entity(config, device, origin, shared, node)
        for object_id, (container_device, components) in container_devices.items():
            for key, config in components.items():
                topics[self._entity_topic(config, object_id, key)] = self._entity(
                    config, container_device, origin, shared, node
                )
        return topics

    def _entity_topic(self, config: Config, object_id: str, key: str) -> str:
        return f"{self.prefix}/{config['platform']}/{object_id}/{key}/config"

    @staticmethod
    def _entity(config: Config, device: Config, origin: Config, shared: Config, node: NodeInfo) -> Config:
        entity = {key: value for key, value in config.items() if key != "platform"}
        entity.setdefault("state_topic", node_metrics_topic(node.node_id))
        return {**entity, **shared, "device": device, "origin": origin}

    def owned(self, topic: str, payload: bytes) -> Owned | None:
        """What a retained config on ``topic`` says, if it is one of ours (by topic and origin)."""
        levels = self._levels(topic)
        if levels is None:
            return None
        config = _our_config(payload)
        components = config.get("components") if config is not None and len(levels) == 2 else {levels[-1]: config}
        if config is None or not isinstance(components, dict):
            return None
        names: set[str] = set()
        markers: dict[str, str] = {}
        for key, component in components.items():
            if not isinstance(component, dict):
                continue
            if set(component) == {"platform"} and component["platform"] in _PLATFORMS:
                markers[key] = component["platform"]
            elif isinstance(template := component.get("value_template"), str) and (name := container_name_in(template)):
                names.add(name)
        return Owned(levels[1][len("otto_") :].split("_c_", 1)[0], frozenset(names), markers)

    def belongs(self, topic: str, node_slug: str) -> bool:
        """Whether ``topic`` is one of the configs of the node whose slug is ``node_slug``."""
        levels = self._levels(topic)
        device_id = f"otto_{node_slug}"
        return levels is not None and (levels[1] == device_id or levels[1].startswith(f"{device_id}_c_"))

    def _levels(self, topic: str) -> list[str] | None:
        """``device, <object id>`` or ``<platform>, <object id>, <key>`` of one of our config topics."""
        if not topic.startswith(self.prefix + "/") or not topic.endswith("/config"):
            return None
        levels = topic[len(self.prefix) + 1 : -len("/config")].split("/")
        device = levels[0] == "device"
        if len(levels) != (2 if device else 3) or not levels[1].startswith("otto_"):
            return None
        return levels


def removed_components(previous: bytes, current: bytes) -> dict[str, str]:
    """Component id -> platform of the components ``previous`` device config has and ``current`` lacks.

    Markers in ``previous`` (a platform alone) are not components: they are not carried forward.
    """
    try:
        before = json.loads(previous).get("components")
        after = json.loads(current)["components"]
    except (ValueError, AttributeError, KeyError, TypeError):
        return {}
    if not isinstance(before, dict):
        return {}
    return {
        key: component["platform"]
        for key, component in before.items()
        if key not in after
        and isinstance(component, dict)
        and set(component) != {"platform"}
        and component.get("platform") in _PLATFORMS
    }


def _our_config(payload: bytes) -> dict[str, Any] | None:
    try:
        config = json.loads(payload)
    except ValueError:
        return None
    if isinstance(config, dict) and isinstance(origin := config.get("origin"), dict) and origin.get("name") == ORIGIN:
        return config
    return None


def encode(config: Config) -> bytes:
    """A config as the retained payload (stable: equal configs give equal bytes)."""
    return json.dumps(config, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()

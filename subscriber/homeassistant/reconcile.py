"""What to publish or clear so the broker's retained discovery configs match the fleet. Pure.

The broker's retained configs are the record of what Home Assistant was told: the service feeds
ours back through ``learn`` after every (re)connect, so a restart finds nodes removed and
containers gone meanwhile, and its containers not running stay until they expire.

- A node is shown while the fleet state knows it and it was heard from within ``node_expire``.
- A container is shown from its first batch until it has been missing from ``container_expire``
  worth of its node's batches (a node that is offline keeps its containers); a container id that
  reappears under another name (a rename) takes the old name's entities away at once.
- Home Assistant keeps a component that a device config merely leaves out, so a component that
  leaves a node's device (a container gone, a layout changed) stays in it for ``container_expire``
  as a marker, its platform alone, which Home Assistant reads as removal. Other configs are
  removed by clearing their retained message.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from subscriber.homeassistant.catalog import CONTAINER_NAME
from subscriber.homeassistant.discovery import Discovery, NodeInfo, encode, removed_components, slug
from subscriber.state import NodeView

log = logging.getLogger(__name__)

#: Containers kept and shown per node (the most recently seen): a device config (about 2 KiB each)
#: stays far below the broker's 1 MiB limit, and a node inventing names cannot grow what is kept.
MAX_CONTAINERS = 200
#: Removal markers kept per node (the newest).
MAX_MARKERS = 5 * MAX_CONTAINERS


@dataclass(slots=True)
class _Seen:
    last_seen: float  # receipt time of the node's last batch that had the container
    container_id: str | None


@dataclass(slots=True)
class _Node:
    containers: dict[str, _Seen]
    markers: dict[str, tuple[str, float]]  # component id -> (platform, since)
    batch_seen: float | None = None  # receipt time of the last batch taken in
    warned: bool = False
    rendered: tuple[NodeInfo, dict[str, bytes]] | None = None  # configs of the last NodeInfo, encoded


class Reconciler:
    """Desired configs from fleet views, diffed against what is retained on the broker."""

    def __init__(self, discovery: Discovery, *, container_expire: float, node_expire: float) -> None:
        self.discovery = discovery
        self.container_expire = container_expire
        self.node_expire = node_expire
        self.published: dict[str, bytes] = {}
        self.rejected: Counter[str] = Counter()
        self._nodes: dict[str, _Node] = {}  # by node slug
        self._learned: dict[str, set[str]] = {}  # node slug -> container names in retained configs
        self._learned_markers: dict[str, dict[str, str]] = {}

    def reset(self) -> None:
        """Forget what is retained (a new connection): ``learn`` tells it again."""
        self.published.clear()

    def learn(self, topic: str, payload: bytes) -> bool:
        """Take in a retained config found on the broker; True if it is one of ours."""
        owned = self.discovery.owned(topic, payload)
        if owned is None:
            return False
        self.published[topic] = payload
        self._learned.setdefault(owned.node_slug, set()).update(owned.containers)
        self._learned_markers.setdefault(owned.node_slug, {}).update(owned.markers)
        return True

    def plan(self, views: list[NodeView], now: float, *, force: bool = False) -> list[tuple[str, bytes]]:
        """(topic, payload) to publish retained, removals (empty payload) first; ``force`` republishes all."""
        desired: dict[str, bytes] = {}
        alive: set[str] = set()
        for view in views:
            if view.last_seen is not None and now - view.last_seen > self.node_expire:
                continue
            node_slug = slug(view.node_id)
            alive.add(node_slug)
            node = self._nodes.setdefault(node_slug, _Node({}, {}))
            try:
                self._take(view, node, now)
                desired.update(self._render(view, node, now))
            except Exception:  # a bug or an input not foreseen: this node's configs stay as they are
                self.rejected["node_error"] += 1
                if not node.warned:
                    node.warned = True
                    log.exception("home assistant: node %s: configs not updated", view.node_id)
                desired.update({t: p for t, p in self.published.items() if self.discovery.belongs(t, node_slug)})
        for gone in set(self._nodes) - alive:
            del self._nodes[gone]
        self._learned.clear()
        self._learned_markers.clear()
        removals = [(topic, b"") for topic in self.published if topic not in desired]
        updates = [(topic, data) for topic, data in desired.items() if force or self.published.get(topic) != data]
        return removals + updates

    def done(self, topic: str, payload: bytes) -> None:
        """Record a publish the broker has been handed."""
        if payload:
            self.published[topic] = payload
        else:
            self.published.pop(topic, None)

    def _take(self, view: NodeView, node: _Node, now: float) -> None:
        """Containers from what was learned and the node's latest batch; expiry of both and of markers."""
        reference = view.last_containers if view.last_containers is not None else now
        node_slug = slug(view.node_id)
        for key, platform in self._learned_markers.get(node_slug, {}).items():
            node.markers.setdefault(key, (platform, now))
        for key, (_platform, since) in list(node.markers.items()):
            if now - since > self.container_expire:
                del node.markers[key]
        if self.discovery.containers == "off":
            return
        for name in self._learned.get(node_slug, ()):
            node.containers.setdefault(name, _Seen(reference, None))
        if view.containers is not None and view.last_containers != node.batch_seen:
            node.batch_seen = view.last_containers
            self._take_batch(view, node, reference)
        for name, seen in list(node.containers.items()):
            if reference - seen.last_seen > self.container_expire:
                del node.containers[name]

    def _take_batch(self, view: NodeView, node: _Node, reference: float) -> None:
        assert view.containers is not None
        batch = view.containers.containers
        names = {container.container_name for container in batch}
        by_id = {seen.container_id: name for name, seen in node.containers.items() if seen.container_id}
        invalid = 0
        for container in batch:
            name = container.container_name
            if not CONTAINER_NAME.match(name):
                invalid += 1
                continue
            previous = by_id.get(container.container_id)
            if previous is not None and previous != name and previous not in names:
                node.containers.pop(previous, None)  # renamed: the old name's entities go now
            node.containers[name] = _Seen(reference, container.container_id)
        over = max(0, len(node.containers) - MAX_CONTAINERS)
        if over:
            oldest = sorted(node.containers, key=lambda name: (node.containers[name].last_seen, name))[:over]
            for name in oldest:
                del node.containers[name]
        self.rejected["container_name"] += invalid
        self.rejected["containers_over_cap"] += over
        if (invalid or over) and not node.warned:
            node.warned = True
            log.warning(
                "home assistant: node %s: %d container names Docker would not allow, %d containers over %d: not shown",
                view.node_id,
                invalid,
                over,
                MAX_CONTAINERS,
            )

    def _render(self, view: NodeView, node: _Node, now: float) -> dict[str, bytes]:
        """The node's configs; in the device layout, components that left its device become markers."""
        rendered = self._rendered(view, node)
        if self.discovery.layout == "device":
            topic = self.discovery.device_topic(view.node_id)
            previous = self.published.get(topic)
            if previous and previous != rendered[topic]:
                removed = removed_components(previous, rendered[topic])
                for key, platform in removed.items():
                    node.markers[key] = (platform, now)
                if len(node.markers) > MAX_MARKERS:
                    newest = sorted(node.markers.items(), key=lambda item: item[1][1], reverse=True)[:MAX_MARKERS]
                    node.markers = dict(newest)
                if removed:
                    rendered = self._rendered(view, node)
        return rendered

    def _rendered(self, view: NodeView, node: _Node) -> dict[str, bytes]:
        info = self._info(view, node)
        if node.rendered is None or node.rendered[0] != info:
            node.rendered = (info, {topic: encode(config) for topic, config in self.discovery.configs(info).items()})
        return node.rendered[1]

    def _info(self, view: NodeView, node: _Node) -> NodeInfo:
        shown = node.containers  # at most MAX_CONTAINERS: see _take_batch
        version = view.metrics.agent.version if view.metrics else view.status.agent_version if view.status else None
        return NodeInfo(
            node_id=view.node_id,
            interval=view.interval,
            version=version,
            arch=view.metrics.agent.arch if view.metrics else None,
            containers=tuple(sorted(shown)),
            markers=tuple(sorted((key, platform) for key, (platform, _since) in node.markers.items())),
        )

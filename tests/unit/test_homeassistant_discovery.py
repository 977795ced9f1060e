"""Home Assistant discovery configs and their lifecycle (pure: no broker, no Home Assistant).

The same configs are checked against a real Home Assistant in tests/homeassistant.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from contract import ContainerMetrics
from subscriber.homeassistant.catalog import NODE_ENTITIES, container_entities
from subscriber.homeassistant.discovery import Discovery, NodeInfo, encode, slug
from subscriber.homeassistant.reconcile import MAX_CONTAINERS, Reconciler
from subscriber.state import NodeView
from tests.support.messages import AGENT, container, container_batch, node_metrics, status

DAY = 86_400.0
TOPIC_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def view(node_id: str = "pi-1", at: float = 1000.0, containers: list[ContainerMetrics] | None = None) -> NodeView:
    return NodeView(
        node_id,
        metrics=node_metrics(node_id),
        containers=container_batch(node_id, containers=containers if containers is not None else []),
        status=status(node_id),
        last_seen=at,
        last_metrics=at,
        last_containers=at,
    )


def components(payload: bytes) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(payload)["components"]
    return result


def test_slugs_are_topic_ids_and_keep_distinct_names_distinct() -> None:
    assert slug("pi-kitchen") == "pi-kitchen"
    ids = {slug(name) for name in ("pi.1", "pi-1", "pi_1", "PI-1", "x" * 64, "x" * 63)}
    assert len(ids) == 6
    assert all(TOPIC_ID.match(i) for i in ids)


def test_device_layout_one_config_per_node_reading_the_agents_topics() -> None:
    configs = Discovery(containers="components").configs(NodeInfo("pi.1", 5.0, "0.1.0", "aarch64", ("web",)))
    [(topic, config)] = configs.items()
    device_id = f"otto_{slug('pi.1')}"
    assert topic == f"homeassistant/device/{device_id}/config"
    assert config["state_topic"] == "otto/nodes/pi.1/metrics/node"
    assert config["availability_topic"] == "otto/nodes/pi.1/status"
    assert config["device"]["identifiers"] == [device_id]
    assert config["device"]["configuration_url"] == "http://localhost:8080/nodes/pi.1"
    assert config["origin"]["name"] == "otto-metrics"
    parts = config["components"]
    assert {key for key in parts if not key.startswith("c_")} == {e.key for e in NODE_ENTITIES}
    assert parts["temperature"]["unique_id"] == f"{device_id}_temperature"
    assert parts["temperature"]["expire_after"] == 15  # 3 intervals of 5 s
    assert parts["c_web_cpu"]["state_topic"] == "otto/nodes/pi.1/metrics/containers"
    assert parts["c_web_cpu"]["name"] == "web CPU"
    assert all(TOPIC_ID.match(key) for key in parts)


def test_entity_layout_one_config_per_entity_each_complete() -> None:
    discovery = Discovery(layout="entity", containers="devices")
    configs = discovery.configs(NodeInfo("pi-1", 5.0, "0.1.0", "aarch64", ("web",)))
    assert len(configs) == len(NODE_ENTITIES) + len(container_entities("web"))
    cpu = configs["homeassistant/sensor/otto_pi-1/cpu/config"]
    assert "platform" not in cpu
    assert cpu["state_topic"] == "otto/nodes/pi-1/metrics/node"
    assert cpu["availability_topic"] == "otto/nodes/pi-1/status"
    web = configs["homeassistant/sensor/otto_pi-1_c_web/cpu/config"]
    assert web["device"]["via_device"] == "otto_pi-1"
    assert web["device"]["name"] == "pi-1 web"
    assert web["name"] == "CPU"
    # The same unique ids in every layout: switching layouts keeps Home Assistant's entities.
    device_layout = Discovery(containers="components").configs(NodeInfo("pi-1", 5.0, containers=("web",)))
    unique = {c["unique_id"] for c in next(iter(device_layout.values()))["components"].values()}
    assert unique == {c["unique_id"] for c in configs.values()}


def test_a_config_is_republished_only_when_it_changes_or_home_assistant_asks() -> None:
    reconciler = Reconciler(Discovery(), container_expire=DAY, node_expire=7 * DAY)
    first = reconciler.plan([view()], 1000.0)
    assert [topic for topic, _ in first] == ["homeassistant/device/otto_pi-1/config"]
    for topic, payload in first:
        reconciler.done(topic, payload)
    assert reconciler.plan([view(at=1005.0)], 1005.0) == []
    assert reconciler.plan([view(at=1010.0)], 1010.0, force=True) == first


def run(reconciler: Reconciler, views: list[NodeView], now: float) -> dict[str, bytes]:
    changes = reconciler.plan(views, now)
    for topic, payload in changes:
        reconciler.done(topic, payload)
    return dict(changes)


def test_a_gone_container_stays_until_it_expires_then_leaves_by_marker() -> None:
    reconciler = Reconciler(Discovery(containers="components"), container_expire=DAY, node_expire=7 * DAY)
    topic = "homeassistant/device/otto_pi-1/config"
    run(reconciler, [view(containers=[container("web"), container("db")])], 1000.0)
    assert run(reconciler, [view(at=1005.0, containers=[container("web")])], 1005.0) == {}  # db only stopped
    # A day of the node's batches without db: its components become markers, the platform alone.
    changed = run(reconciler, [view(at=1005.0 + DAY + 1, containers=[container("web")])], 1005.0 + DAY + 1)
    parts = components(changed[topic])
    assert parts["c_db_cpu"] == {"platform": "sensor"}
    assert parts["c_web_cpu"]["name"] == "web CPU"
    # The markers stay a while (Home Assistant may be away), then go.
    assert run(reconciler, [view(at=1010.0 + DAY, containers=[container("web")])], 1010.0 + DAY) == {}
    later = 1010.0 + 2.5 * DAY
    assert "c_db_cpu" not in components(run(reconciler, [view(at=later, containers=[container("web")])], later)[topic])


def test_an_offline_node_keeps_its_containers() -> None:
    reconciler = Reconciler(Discovery(containers="components"), container_expire=DAY, node_expire=7 * DAY)
    run(reconciler, [view(containers=[container("web")])], 1000.0)
    assert run(reconciler, [view(at=1000.0, containers=[container("web")])], 1000.0 + 3 * DAY) == {}


def test_a_renamed_container_takes_its_old_entities_away_at_once() -> None:
    reconciler = Reconciler(Discovery(containers="components"), container_expire=DAY, node_expire=7 * DAY)
    topic = "homeassistant/device/otto_pi-1/config"
    run(reconciler, [view(containers=[container("web", container_id="abc")])], 1000.0)
    parts = components(
        run(reconciler, [view(at=1005.0, containers=[container("www", container_id="abc")])], 1005.0)[topic]
    )
    assert parts["c_web_state"] == {"platform": "sensor"}
    assert parts["c_www_state"]["name"] == "www state"


def test_removed_nodes_are_cleared_and_other_configs_left_alone() -> None:
    reconciler = Reconciler(Discovery(layout="entity"), container_expire=DAY, node_expire=7 * DAY)
    run(reconciler, [view("pi-1"), view("pi-2")], 1000.0)
    assert reconciler.learn("homeassistant/sensor/zigbee_lamp/power/config", b'{"origin": {"name": "z2m"}}') is False
    changed = run(reconciler, [view("pi-2", at=1005.0)], 1005.0)  # pi-1 forgotten by the fleet state
    assert set(changed) == {f"homeassistant/{e.platform}/otto_pi-1/{e.key}/config" for e in NODE_ENTITIES}
    assert set(changed.values()) == {b""}
    silent = run(reconciler, [view("pi-2", at=1005.0)], 1005.0 + 8 * DAY)  # silent past OTTO_HA_NODE_EXPIRE
    assert len(silent) == len(NODE_ENTITIES)
    assert reconciler.published == {}


def test_a_restart_reads_its_configs_back_and_finishes_what_was_started() -> None:
    before = Reconciler(Discovery(layout="entity", containers="components"), container_expire=DAY, node_expire=DAY)
    retained = run(before, [view("pi-1", containers=[container("db")]), view("gone")], 1000.0)
    after = Reconciler(Discovery(containers="components"), container_expire=DAY, node_expire=DAY)  # layout changed
    for topic, payload in retained.items():
        assert after.learn(topic, payload)
    assert after.learn("homeassistant/device/otto_pi-1/config", b"not json") is False
    changed = run(after, [view("pi-1", at=2000.0, containers=[])], 2000.0)
    # Every per-entity config is cleared; the device config shows db, not running, until it expires.
    assert {t for t, p in changed.items() if not p} == set(retained)
    parts = components(changed["homeassistant/device/otto_pi-1/config"])
    assert parts["c_db_state"]["name"] == "db state"
    expired = run(after, [view("pi-1", at=2001.0 + DAY, containers=[])], 2001.0 + DAY)
    assert components(expired["homeassistant/device/otto_pi-1/config"])["c_db_state"] == {"platform": "sensor"}


@pytest.mark.parametrize("name", ["web'}}{{ 7*7 }}", "a b", "-leading", "ü", "x" * 129, ""])
def test_names_docker_would_refuse_never_reach_a_template(name: str) -> None:
    reconciler = Reconciler(Discovery(containers="components"), container_expire=DAY, node_expire=DAY)
    changed = run(reconciler, [view(containers=[container("bad", container_name=name), container("ok")])], 1.0)
    payload = changed["homeassistant/device/otto_pi-1/config"]
    assert {key for key in components(payload) if key.startswith("c_")} == {
        f"c_ok_{k}" for k in ("state", "health", "cpu", "memory", "restarts")
    }
    assert reconciler.rejected["container_name"] == 1
    if name:
        assert name.encode() not in payload


def test_a_prefix_and_a_foreign_topic_shape_are_respected() -> None:
    discovery = Discovery(prefix="ha/discovery")
    [topic] = discovery.configs(NodeInfo("pi-1", 5.0))
    assert topic == "ha/discovery/device/otto_pi-1/config"
    payload = encode(discovery.configs(NodeInfo("pi-1", 5.0))[topic])
    assert discovery.owned(topic, payload) is not None
    assert Discovery().owned(topic, payload) is None  # another prefix
    assert discovery.owned("ha/discovery/device/lamp/config", payload) is None  # not an otto_ id


def test_a_node_with_an_absurd_interval_does_not_stop_the_others() -> None:
    reconciler = Reconciler(Discovery(), container_expire=DAY, node_expire=DAY)
    absurd = view("pi-bad")
    absurd = NodeView(absurd.node_id, node_metrics("pi-bad", interval_seconds=1e308), absurd.containers,
                      status("pi-bad", interval=1e308), 1.0, 1.0, 1.0)  # fmt: skip
    changed = run(reconciler, [absurd, view("pi-ok", at=1.0)], 1.0)
    assert "homeassistant/device/otto_pi-ok/config" in changed
    bad = json.loads(changed["homeassistant/device/otto_pi-bad/config"])
    assert bad["components"]["cpu"]["expire_after"] == 86_400  # bounded


def test_a_node_inventing_names_cannot_grow_what_is_kept() -> None:
    reconciler = Reconciler(Discovery(containers="components"), container_expire=DAY, node_expire=DAY)
    for batch in range(30):  # 30 batches of 50 new names each: 1,500 names within the expiry
        names = [container(f"c{batch}-{i}", container_id=f"{batch:03d}{i:03d}") for i in range(50)]
        run(reconciler, [view(at=1.0 + batch, containers=names)], 1.0 + batch)
    [node] = reconciler._nodes.values()
    assert len(node.containers) <= MAX_CONTAINERS
    assert len(node.markers) <= 5 * MAX_CONTAINERS
    assert reconciler.rejected["containers_over_cap"] > 0
    payload = reconciler.published["homeassistant/device/otto_pi-1/config"]
    assert len(payload) < 1_048_576  # the broker's message limit


class _FailsFor(Discovery):
    """Discovery that raises for one node, as a bug or an unforeseen input would."""

    def configs(self, node: NodeInfo) -> dict[str, dict[str, Any]]:
        if node.node_id == "pi-bad" and node.version == "broken":
            raise ValueError("unforeseen")
        return super().configs(node)


def test_a_failure_on_one_node_keeps_its_configs_and_spares_the_others() -> None:
    reconciler = Reconciler(_FailsFor(layout="entity"), container_expire=DAY, node_expire=DAY)
    before = run(reconciler, [view("pi-bad"), view("pi-2")], 1.0)
    broken = view("pi-bad", at=2.0)
    broken = NodeView(broken.node_id, node_metrics("pi-bad", agent={**AGENT, "version": "broken"}), None,
                      broken.status, 2.0, 2.0, 2.0)  # fmt: skip
    changes = reconciler.plan([broken, view("pi-2", at=2.0), view("pi-3", at=2.0)], 2.0)
    assert not any(topic in before and not payload for topic, payload in changes)  # nothing of pi-bad cleared
    assert {t for t, _ in changes} == {t for t in Discovery(layout="entity").configs(NodeInfo("pi-3", 5.0))}
    assert reconciler.rejected["node_error"] == 1

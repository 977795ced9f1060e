"""A real Home Assistant sees the fleet through our discovery configs, with no YAML.

Home Assistant 2026.2 (PyPI) in a container, onboarded and given the MQTT integration through its
own API with the ``otto-auth add-homeassistant`` credential; the real agent on this host (a node
called pi-ha) with a real container, the real subscriber publishing discovery. Values are compared
with the very messages the agent published.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from subscriber.homeassistant.catalog import NODE_ENTITIES
from tests.support.agent_process import AgentProcess
from tests.support.broker import PUBLIC_HOST, Broker, share_with_broker, start_broker
from tests.support.browser import CHROMIUM, FLAGS, require_browser
from tests.support.home_assistant import HomeAssistant, build_image, wait
from tests.support.mqtt import Recorder
from tests.support.subscriber_process import SubscriberProcess

NODE = "pi-ha"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "homeassistant-device.png"


@dataclass
class Setup:
    broker: Broker
    ha: HomeAssistant
    agent: AgentProcess
    subscriber: SubscriberProcess
    recorder: Recorder
    container: str

    def published(self, suffix: str) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in self.recorder.on(f"otto/nodes/{NODE}/{suffix}")]

    def state(self, entity_id: str) -> str | None:
        found = self.ha.states().get(entity_id)
        return None if found is None else str(found["state"])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    build_image()
    workdir = tmp_path_factory.mktemp("homeassistant")
    name = f"otto-ha-web-{uuid.uuid4().hex[:6]}"
    with start_broker(workdir, nodes=[NODE]) as broker, contextlib.ExitStack() as cleanup:
        # OTTO_PUBLIC_HOST as the README says: the name Home Assistant reaches the broker by.
        pki = broker.pki(public_host=f"{PUBLIC_HOST},host.docker.internal")
        pki.setup_server(pki.ca(), force=True)
        share_with_broker(broker.tls_dir)
        broker.reload()
        broker.add_homeassistant()
        cleanup.callback(subprocess.run, ["docker", "rm", "-f", name], capture_output=True, timeout=60)
        subprocess.run(["docker", "run", "-d", "--name", name, "busybox:1.36", "sleep", "3600"], check=True,
                       capture_output=True, timeout=60)  # fmt: skip
        recorder = Recorder(broker)
        cleanup.callback(recorder.close)
        subscriber = SubscriberProcess(
            broker, workdir, ha_containers="components", ha_container_expire="15s", public_url="http://otto.lan:8080"
        )
        cleanup.callback(subscriber.kill)
        subscriber.start()
        agent = AgentProcess(broker, NODE, workdir, interval="2")
        cleanup.callback(agent.stop)
        ha = HomeAssistant(broker)
        cleanup.callback(ha.stop)
        ha.start()
        yield Setup(broker, ha, agent, subscriber, recorder, name)


def slug(name: str) -> str:
    return name.replace("-", "_")


def test_the_node_and_its_containers_appear_with_the_agents_values(setup: Setup) -> None:
    ha = setup.ha
    wait(lambda: setup.state("sensor.pi_ha_memory_used") not in (None, "unknown", "unavailable"), 120,
         "the node's entities never got a value", ha.logs)  # fmt: skip

    def node_value_matches() -> bool:
        state = setup.state("sensor.pi_ha_memory_used")
        return any(float(state or "nan") == m["memory_used_mb"] for m in setup.published("metrics/node"))

    wait(node_value_matches, 30, "memory used in Home Assistant is not a value the agent sent", ha.logs)
    latest = setup.published("metrics/node")[-1]
    expected_flag = {None: "unknown", True: "on", False: "off"}
    assert setup.state("binary_sensor.pi_ha_under_voltage") == expected_flag[latest["under_voltage"]]
    cgroup_off = None if latest["memory_cgroup_enabled"] is None else not latest["memory_cgroup_enabled"]
    assert setup.state("binary_sensor.pi_ha_memory_cgroup_disabled") == expected_flag[cgroup_off]
    wait(lambda: setup.state("sensor.pi_ha_network_received") not in (None, "unknown"), 30, "no network rate")
    float(setup.state("sensor.pi_ha_network_received") or "nan")

    container = f"sensor.pi_ha_{slug(setup.container)}"
    wait(lambda: setup.state(f"{container}_state") == "running", 30, "the container's state never arrived", ha.logs)

    def container_memory_matches() -> bool:
        state = float(setup.state(f"{container}_memory") or "nan")
        batches = setup.published("metrics/containers")
        return any(c["memory_usage_mb"] == state for b in batches for c in b["containers"]
                   if c["container_name"] == setup.container)  # fmt: skip

    wait(container_memory_matches, 30, "the container's memory is not a value the agent sent")

    device = ha.template("{{ device_id('sensor.pi_ha_cpu') }}")
    assert ha.template(f"{{{{ device_attr('{device}', 'name') }}}}") == NODE
    assert ha.template(f"{{{{ device_attr('{device}', 'manufacturer') }}}}") == "otto-metrics"
    assert ha.template(f"{{{{ device_attr('{device}', 'configuration_url') }}}}") == "http://otto.lan:8080/nodes/pi-ha"
    entities = json.loads(ha.template(f"{{{{ device_entities('{device}') | tojson }}}}"))
    assert len(entities) >= len(NODE_ENTITIES) + 5
    assert f"{container}_cpu" in entities
    screenshot_device_page(ha, device)


def screenshot_device_page(ha: HomeAssistant, device: str) -> None:
    """The device page as a user sees it, for the README (docs/screenshots/homeassistant-device.png)."""
    require_browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        tokens = json.dumps(ha.local_storage_tokens())
        page.add_init_script(f"window.localStorage.setItem('hassTokens', {json.dumps(tokens)});")
        page.goto(f"{ha.url}/config/devices/device/{device}")
        page.get_by_text("otto-metrics", exact=False).first.wait_for(timeout=60_000)
        page.get_by_text("CPU", exact=True).first.wait_for(timeout=30_000)
        page.wait_for_timeout(2000)
        page.screenshot(path=str(SCREENSHOT))
        browser.close()


def test_a_removed_container_leaves_home_assistant(setup: Setup) -> None:
    entity = f"sensor.pi_ha_{slug(setup.container)}_state"
    subprocess.run(["docker", "rm", "-f", setup.container], check=True, capture_output=True, timeout=60)
    wait(lambda: setup.state(entity) == "not running", 30, "the container never showed as not running")
    # OTTO_HA_CONTAINER_EXPIRE=15s of the node's batches later, its entities are removed.
    wait(lambda: setup.state(entity) is None, 60, "the removed container's entities stayed", setup.ha.logs)
    assert setup.state("sensor.pi_ha_cpu") not in (None, "unavailable")


def test_a_restarted_home_assistant_finds_everything_again(setup: Setup) -> None:
    subprocess.run(["docker", "restart", "-t", "10", setup.ha.container], check=True, capture_output=True, timeout=120)
    wait(setup.ha.answers, 120, "Home Assistant did not come back", setup.ha.logs)
    wait(lambda: setup.state("sensor.pi_ha_memory_used") not in (None, "unknown", "unavailable"), 60,
         "the node's entities did not come back after a restart", setup.ha.logs)  # fmt: skip


def test_the_per_entity_layout_with_containers_as_devices(setup: Setup, tmp_path: Path) -> None:
    """Older Home Assistant releases and openHAB: one config per entity; the same entities result."""
    db = f"otto-ha-db-{uuid.uuid4().hex[:6]}"
    subprocess.run(["docker", "run", "-d", "--name", db, "busybox:1.36", "sleep", "3600"], check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    try:
        setup.subscriber.stop()
        setup.subscriber = SubscriberProcess(
            setup.broker, setup.subscriber.workdir, ha_discovery="entity", ha_containers="devices"
        ).start()
        entity = f"sensor.pi_ha_{slug(db)}_state"
        wait(lambda: setup.state(entity) == "running", 60, "the container device never appeared", setup.ha.logs)
        ha = setup.ha
        container_device = ha.template(f"{{{{ device_id('{entity}') }}}}")
        node_device = ha.template("{{ device_id('sensor.pi_ha_cpu') }}")
        assert ha.template(f"{{{{ device_attr('{container_device}', 'name') }}}}") == f"{NODE} {db}"
        assert ha.template(f"{{{{ device_attr('{container_device}', 'via_device_id') }}}}") == node_device
        wait(lambda: setup.state("sensor.pi_ha_cpu") not in (None, "unknown", "unavailable"), 30, "node entities lost")
        node_entities = json.loads(ha.template(f"{{{{ device_entities('{node_device}') | tojson }}}}"))
        assert len(node_entities) == len(NODE_ENTITIES)  # the containers moved to devices of their own
    finally:
        subprocess.run(["docker", "rm", "-f", db], capture_output=True, timeout=60)


def test_a_killed_agent_turns_its_entities_unavailable(setup: Setup) -> None:
    setup.agent.signal(signal.SIGKILL)
    wait(lambda: setup.state("sensor.pi_ha_cpu") == "unavailable", 30, "entities stayed available", setup.ha.logs)
    assert setup.state("binary_sensor.pi_ha_under_voltage") == "unavailable"
    offline = [m for m in setup.published("status") if m["status"] == "offline"]
    assert offline, "the broker never published the agent's last will"

"""End to end: build both images, bring up compose.yaml and a compose.rpi.yaml node, watch metrics flow."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from testcontainers.compose import DockerCompose

from contract import to_payload
from contract.topics import node_metrics_topic
from tests.support.agent_process import REPO
from tests.support.broker import BrokerAddress, free_port
from tests.support.compose import stack
from tests.support.load import wait_until
from tests.support.messages import node_metrics
from tests.support.mqtt import Recorder, publish_once

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LOCAL_NODE = "cp-e2e"
PI_NODE = "pi-e2e"


class Plane:
    """The running control-plane stack and how to reach it from the test."""

    def __init__(self, compose: DockerCompose, mqtt_port: int, api_port: int) -> None:
        self.compose = compose
        self.mqtt_port = mqtt_port
        self.api_port = api_port

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}{path}", timeout=10) as response:
            return json.loads(response.read())

    def nodes(self) -> dict[str, dict[str, Any]]:
        try:
            return {n["node_id"]: n for n in self.api("/api/nodes")}
        except OSError:
            return {}

    def add_node(self, node_id: str) -> dict[str, str]:
        """The documented command; returns the .env lines it printed."""
        stdout, stderr, code = self.compose.exec_in_container(["otto-auth", "add-node", node_id], "mosquitto")
        assert code == 0, stderr
        return dict(line.split("=", 1) for line in stdout.splitlines() if line and not line.startswith("#"))

    def broker(self, passwords: dict[str, str]) -> BrokerAddress:
        return BrokerAddress(port=self.mqtt_port, passwords=passwords)


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    workdir = tmp_path_factory.mktemp("compose")
    mqtt_port, api_port = free_port(), free_port()
    compose = stack(
        "compose.yaml",
        workdir,
        OTTO_PUBLISH_MQTT_PORT=str(mqtt_port),
        OTTO_PUBLISH_API_PORT=str(api_port),
        OTTO_LOCAL_NODE_ID=LOCAL_NODE,
        OTTO_PUBLIC_HOST="host.docker.internal",
    )
    compose.build = True
    with compose:
        yield Plane(compose, mqtt_port, api_port)


def test_control_plane_comes_up_and_the_local_node_reports(plane: Plane) -> None:
    wait_until(lambda: plane.nodes().get(LOCAL_NODE, {}).get("containers", 0) >= 3, timeout=60)
    detail = plane.api(f"/api/nodes/{LOCAL_NODE}")
    assert detail["status"] == "online"
    metrics = detail["metrics"]
    assert 0 <= metrics["cpu_percent"] <= 100
    assert 0 < metrics["memory_used_mb"] < metrics["memory_total_mb"]
    assert 0 < metrics["disk_used_gb"] < metrics["disk_total_gb"]
    assert metrics["network_bytes_recv"] > 0  # the host's interfaces, through /hostfs/proc/1/net/dev
    services = {c["container_name"].split("-")[-2]: c for c in detail["containers"]["containers"]}
    assert {"mosquitto", "subscriber", "agent"} <= set(services)
    for container in services.values():
        assert container["state"] == "running"
        assert 0 < container["memory_usage_mb"] < container["memory_limit_mb"]
        assert container["pids"] >= 1
    assert services["subscriber"]["health"] == "healthy"


def test_home_assistant_finds_the_local_node_with_the_documented_credential(plane: Plane) -> None:
    """README's Home Assistant steps on the stack as composed: add-homeassistant, then read discovery."""
    stdout, stderr, code = plane.compose.exec_in_container(["otto-auth", "add-homeassistant"], "mosquitto")
    assert code == 0, stderr
    password = next(line.split()[-1] for line in stdout.splitlines() if line.startswith("Password:"))
    time.sleep(0.5)  # the broker reloads its ACL on SIGHUP, asynchronously
    broker = plane.broker({"homeassistant": password})
    topic = f"homeassistant/device/otto_{LOCAL_NODE}/config"
    home_assistant = Recorder(broker, topic="homeassistant/#", user="homeassistant")
    try:
        [message] = [m for m in home_assistant.wait_for(lambda m: any(x.topic == topic for x in m)) if m.topic == topic]
        assert message.retain
        config = json.loads(message.payload)
        assert config["state_topic"] == node_metrics_topic(LOCAL_NODE)
        assert config["availability_topic"] == f"otto/nodes/{LOCAL_NODE}/status"
        assert config["components"]["cpu"]["unique_id"] == f"otto_{LOCAL_NODE}_cpu"
        # It reads the fleet, and may write Home Assistant's status and nothing else.
        assert publish_once(broker, "homeassistant", "homeassistant/status", b"online").value == 0
        assert publish_once(broker, "homeassistant", topic, b"").value == 0x87  # Not authorized
    finally:
        home_assistant.close()


def test_a_pi_node_joins_with_its_own_credential(plane: Plane, tmp_path: Path) -> None:
    lines = plane.add_node(PI_NODE)
    assert lines["OTTO_MQTT_HOST"] == "host.docker.internal"
    assert lines["OTTO_MQTT_USERNAME"] == PI_NODE
    pi = stack(
        "compose.rpi.yaml",
        tmp_path,
        OTTO_NODE_ID=lines["OTTO_NODE_ID"],
        OTTO_MQTT_HOST=lines["OTTO_MQTT_HOST"],
        OTTO_MQTT_PORT=str(plane.mqtt_port),
        OTTO_MQTT_USERNAME=lines["OTTO_MQTT_USERNAME"],
        OTTO_MQTT_PASSWORD=lines["OTTO_MQTT_PASSWORD"],
        OTTO_AGENT_IMAGE="otto-metrics/agent:local",
        OTTO_PULL_POLICY="never",
        OTTO_INTERVAL="2",
    )
    with pi:
        wait_until(lambda: plane.nodes().get(PI_NODE, {}).get("status") == "online", timeout=60)
        nodes = plane.nodes()
        assert {LOCAL_NODE, PI_NODE} <= set(nodes)
        assert nodes[LOCAL_NODE]["status"] == "online"
        assert nodes[PI_NODE]["interval_seconds"] == 2.0

        # The Pi's credential cannot publish under the control plane node's topic.
        broker = plane.broker({PI_NODE: lines["OTTO_MQTT_PASSWORD"]})
        forged = node_metrics(LOCAL_NODE, cpu_percent=99.5)
        reason = publish_once(broker, PI_NODE, node_metrics_topic(LOCAL_NODE), to_payload(forged))
        assert reason.value == 0x87  # Not authorized
        history = plane.api(f"/api/nodes/{LOCAL_NODE}/history?field=cpu_percent&limit=10000")
        assert 99.5 not in [p["value"] for p in history["points"]]


def process_status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status of a container's process, seen from this host (the tests run on it)."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def test_running_containers_are_hardened(plane: Plane, docker_client: docker.DockerClient) -> None:
    for image in ("otto-metrics/agent:local", "otto-metrics/subscriber:local"):
        assert docker_client.images.get(image).attrs["Config"]["User"] == "10001:10001", image
    for service in ("mosquitto", "subscriber", "agent"):
        container_id = plane.compose.get_container(service).ID
        attrs = docker_client.api.inspect_container(container_id)
        host = attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True, service
        assert host["CapDrop"] == ["ALL"] or host["CapDrop"] == ["all"], service
        assert "no-new-privileges:true" in host["SecurityOpt"], service
        # What matters is the running process: no root uid and no capability in any set.
        status = process_status(attrs["State"]["Pid"])
        assert "0" not in status["Uid"].split(), (service, status["Uid"])
        assert "0" not in status["Gid"].split(), (service, status["Gid"])
        for capability_set in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            assert int(status[capability_set], 16) == 0, (service, capability_set)
        if service == "agent":
            # Started as root with three capabilities only to take the Docker socket's group (which
            # differs between hosts) and leave root: the bounding set is empty afterwards too.
            assert {c.upper().removeprefix("CAP_") for c in host["CapAdd"]} == {"SETUID", "SETGID", "SETPCAP"}
            assert int(status["CapBnd"], 16) == 0
            assert status["Uid"].split() == ["10001"] * 4
            socket_gid = Path("/var/run/docker.sock").stat().st_gid
            assert str(socket_gid) in status["Groups"].split()
            assert attrs["Config"]["User"] == "0:0"
        else:
            assert not host["CapAdd"], service
            assert attrs["Config"]["User"] not in ("", "0", "root", "0:0"), service
        assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}, service
        assert host["RestartPolicy"]["Name"] == "unless-stopped", service


@pytest.mark.parametrize("compose_file", ["compose.yaml", "compose.rpi.yaml"])
def test_compose_files_are_valid_from_a_fresh_clone(compose_file: str, tmp_path: Path) -> None:
    """`docker compose config` with no .env and no OTTO_* variables, as on a fresh clone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTTO_", "DOCKER_", "COMPOSE_"))}
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = subprocess.run(
        ["docker", "compose", "-f", compose_file, "--env-file", str(empty), "config", "--format", "json"],
        cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    for name, service in services.items():
        assert service.get("read_only") is True, name
        assert service.get("cap_drop") == ["ALL"], name
        # A setting left out of .env is unset in the container (null here), never an empty string.
        assert "" not in (service.get("environment") or {}).values(), name

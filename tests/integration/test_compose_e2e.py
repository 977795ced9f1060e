"""End to end: build both images, bring up compose.yaml and a compose.rpi.yaml node, watch metrics flow.

The whole system runs over TLS (OTTO_LOCAL_MQTT_TLS=true: the broker has no plain listener at all),
with the CA and certificates pki-init made, and the Pi set up by the bundle otto-auth prints.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import urllib.error
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
from tests.support.compose import project_name, stack
from tests.support.load import wait_until
from tests.support.messages import node_metrics
from tests.support.mqtt import Recorder, connect, publish_once

pytestmark = [pytest.mark.docker, pytest.mark.slow]

LOCAL_NODE = "cp-e2e"
PI_NODE = "pi-e2e"


class Plane:
    """The running control-plane stack and how to reach it from the test."""

    def __init__(self, compose: DockerCompose, mqtt_port: int, mtls_port: int, api_port: int, workdir: Path) -> None:
        self.compose = compose
        self.mqtt_port = mqtt_port
        self.mtls_port = mtls_port
        self.api_port = api_port
        self.project = project_name(compose)
        self.ca_file = workdir / "otto-ca.crt"
        self.ca_file.write_text(self.run("mosquitto", "cat", "/mosquitto/tls/nodes-ca.crt"))
        # The documented way to give a script read access (the API is locked by default).
        self.token = self.run("subscriber", "python", "-m", "subscriber.access", "create-token", "e2e").strip()

    def run(self, service: str, *command: str) -> str:
        stdout, stderr, code = self.compose.exec_in_container(list(command), service)
        assert code == 0, stderr
        return stdout

    def api(self, path: str, token: str | None = "") -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.api_port}{path}")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token or self.token}")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  (http to 127.0.0.1)
            return json.loads(response.read())

    def nodes(self) -> dict[str, dict[str, Any]]:
        try:
            return {n["node_id"]: n for n in self.api("/api/nodes")}
        except OSError:
            return {}

    def add_node(self, node_id: str, pi: Path) -> dict[str, str]:
        """The documented steps: the bundle from add-node, run with sh on the Pi; returns the .env it wrote."""
        (pi / "bundle.sh").write_text(self.run("mosquitto", "otto-auth", "add-node", node_id))
        subprocess.run(["sh", "bundle.sh"], cwd=pi, check=True, timeout=30)
        return dict(line.split("=", 1) for line in (pi / ".env").read_text().splitlines() if "=" in line)

    def tls(self) -> ssl.SSLContext:
        """What an agent builds with the bundle's CA: verifies the certificate and the name (127.0.0.1 is in it)."""
        context = ssl.create_default_context(cafile=self.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def broker(self, passwords: dict[str, str]) -> BrokerAddress:
        return BrokerAddress(port=self.mqtt_port, passwords=passwords, tls=self.tls())


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    workdir = tmp_path_factory.mktemp("compose")
    mqtt_port, mtls_port, api_port = free_port(), free_port(), free_port()
    compose = stack(
        "compose.yaml",
        workdir,
        OTTO_PUBLISH_MQTT_PORT=str(mqtt_port),
        OTTO_PUBLISH_MQTT_CLIENT_CERT_PORT=str(mtls_port),
        OTTO_PUBLISH_API_PORT=str(api_port),
        OTTO_LOCAL_NODE_ID=LOCAL_NODE,
        OTTO_PUBLIC_HOST="host.docker.internal",
        OTTO_LOCAL_MQTT_TLS="true",
    )
    compose.build = True
    with compose:
        yield Plane(compose, mqtt_port, mtls_port, api_port, workdir)


def test_control_plane_comes_up_and_the_local_node_reports(plane: Plane) -> None:
    wait_until(lambda: plane.nodes().get(LOCAL_NODE, {}).get("containers", 0) >= 3, timeout=60)
    detail = plane.api(f"/api/nodes/{LOCAL_NODE}")
    assert detail["status"] == "online"
    metrics = detail["metrics"]
    assert 0 <= metrics["cpu_percent"] <= 100
    assert 0 < metrics["memory_used_mb"] < metrics["memory_total_mb"]
    assert 0 < metrics["disk_used_gb"] < metrics["disk_total_gb"]
    assert metrics["network_bytes_recv"] > 0  # the host's interfaces, through /hostfs/proc/1/net/dev
    # This project's containers (the host may run others, with any names): <project>-<service>-<n>.
    prefix = f"{plane.project}-"
    services = {
        c["container_name"].removeprefix(prefix).rsplit("-", 1)[0]: c
        for c in detail["containers"]["containers"]
        if c["container_name"].startswith(prefix)
    }
    assert {"mosquitto", "subscriber", "agent"} <= set(services)
    for container in services.values():
        assert container["state"] == "running"
        assert 0 < container["memory_usage_mb"] < container["memory_limit_mb"]
        assert container["pids"] >= 1
    assert services["subscriber"]["health"] == "healthy"


def test_home_assistant_finds_the_local_node_with_the_documented_credential(plane: Plane) -> None:
    """README's Home Assistant steps on the stack as composed: add-homeassistant, then read discovery."""
    stdout = plane.run("mosquitto", "otto-auth", "add-homeassistant")
    password = next(line.split()[-1] for line in stdout.splitlines() if line.startswith("Password:"))
    assert stdout.count("BEGIN CERTIFICATE") == 1  # the CA to give Home Assistant
    assert "Port:     8883" in stdout
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


def test_a_pi_node_joins_over_tls_with_the_bundle_and_reads_its_password_from_a_file(
    plane: Plane, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    lines = plane.add_node(PI_NODE, tmp_path)
    assert lines["OTTO_MQTT_HOST"] == "host.docker.internal"
    assert lines["OTTO_MQTT_USERNAME"] == PI_NODE
    assert (lines["OTTO_MQTT_PORT"], lines["OTTO_MQTT_CA_FILE"]) == ("8883", "/run/otto/ca.crt")
    assert "OTTO_MQTT_PASSWORD" not in lines
    password = (tmp_path / "otto" / "mqtt.password").read_text().strip()
    assert oct((tmp_path / "otto" / "mqtt.password").stat().st_mode & 0o777) == "0o600"
    pi = stack(
        "compose.rpi.yaml",
        tmp_path,
        **{**lines, "OTTO_MQTT_PORT": str(plane.mqtt_port)},  # the published port of the broker's 8883
        OTTO_NODE_FILES=str(tmp_path / "otto"),
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
        # No secret in what `docker inspect` shows of the Pi's agent.
        inspected = json.dumps(docker_client.api.inspect_container(pi.get_container("agent").ID))
        assert password not in inspected

        # The Pi's credential cannot publish under the control plane node's topic.
        broker = plane.broker({PI_NODE: password})
        forged = node_metrics(LOCAL_NODE, cpu_percent=99.5)
        reason = publish_once(broker, PI_NODE, node_metrics_topic(LOCAL_NODE), to_payload(forged))
        assert reason.value == 0x87  # Not authorized
        history = plane.api(f"/api/nodes/{LOCAL_NODE}/history?field=cpu_percent&limit=10000")
        assert 99.5 not in [p["value"] for p in history["points"]]


def test_the_broker_is_tls_only_and_watched_and_client_certificates_work(plane: Plane, tmp_path: Path) -> None:
    control = plane.run("subscriber", "cat", "/run/otto/controlplane.password").strip()
    with pytest.raises((ssl.SSLError, OSError, TimeoutError)):  # plaintext to the published port
        connect(BrokerAddress(port=plane.mqtt_port, passwords={"controlplane": control}), "controlplane")
    assert plane.run("mosquitto", "sh", "-c", "ls /mosquitto/auth/listeners").strip() == ""  # no plain 1883
    with pytest.raises(urllib.error.HTTPError) as refused:
        plane.api("/api/nodes", token=None)
    assert refused.value.code == 401  # locked by default
    logs = plane.compose.get_logs("subscriber")[0]
    assert logs.count("shown this once") == 1  # the admin's password, made on the first start
    certificate = plane.api("/api/broker/certificate")
    assert certificate["error"] is None
    assert certificate["days_left"] > 800
    assert "host.docker.internal" in certificate["names"]
    # The local agent cannot read the control plane's password (its own volume, its own secret).
    agent_files = plane.run("agent", "ls", "/run/otto").split()
    assert f"{LOCAL_NODE}.password" in agent_files
    assert not [f for f in agent_files if f.endswith(".password") and f != f"{LOCAL_NODE}.password"]

    # `docker compose run --rm pki issue-client`: a node logs in with the certificate alone on 8884.
    result = subprocess.run(
        [*plane.compose.compose_command_property, "run", "--rm", "-T", "pki", "issue-client", LOCAL_NODE],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (tmp_path / "bundle.sh").write_text(result.stdout)
    subprocess.run(["sh", "bundle.sh"], cwd=tmp_path, check=True, timeout=30)
    mutual = plane.tls()
    mutual.load_cert_chain(tmp_path / "otto" / "client.crt", tmp_path / "otto" / "client.key")
    status = f"otto/nodes/{LOCAL_NODE}/status"
    broker = BrokerAddress(port=plane.mtls_port, tls=mutual)
    recorder = Recorder(plane.broker({"controlplane": control}), topic=status)
    try:
        assert publish_once(broker, None, f"otto/nodes/{PI_NODE}/status", b"{}").value == 0x87
        recorder.wait_for(lambda m: any(x.topic == status for x in m))  # its retained status, over TLS
    finally:
        recorder.close()


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


@pytest.mark.parametrize(
    ("compose_file", "profiles"), [("compose.yaml", []), ("compose.yaml", ["postgres"]), ("compose.rpi.yaml", [])]
)
def test_compose_files_are_valid_from_a_fresh_clone(compose_file: str, profiles: list[str], tmp_path: Path) -> None:
    """`docker compose config` with no .env and no OTTO_* variables, as on a fresh clone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTTO_", "DOCKER_", "COMPOSE_"))}
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = subprocess.run(
        ["docker", "compose", "-f", compose_file, *(f"--profile={p}" for p in profiles), "--env-file", str(empty),
         "config", "--format", "json"],
        cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    for name, service in services.items():
        assert service.get("read_only") is True, name
        assert service.get("cap_drop") == ["ALL"], name
        # A setting left out of .env is unset in the container (null here), never an empty string.
        assert "" not in (service.get("environment") or {}).values(), name

"""The agent's command line: configuration errors, --version, --once without a broker or daemon."""

from __future__ import annotations

import json
import os
import subprocess
import time
from importlib import metadata
from pathlib import Path

import pytest

from agent.settings import AgentSettings
from contract import ContainerMetricsBatch, NodeMetrics
from tests.support.agent_process import run_program

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"


def run_agent(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_program("agent", *args, **env)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("OTTO_INTERVAL", "abc", "OTTO_INTERVAL: Input should be a valid number"),
        ("OTTO_INTERVAL", "0", "OTTO_INTERVAL: Input should be greater than 0"),
        ("OTTO_MQTT_PORT", "70000", "OTTO_MQTT_PORT: Input should be less than or equal to 65535"),
        ("OTTO_NODE_ID", "pi/01", "OTTO_NODE_ID: String should match pattern"),
        ("OTTO_LOG_LEVEL", "LOUD", "OTTO_LOG_LEVEL: Input should be"),
        ("OTTO_MQTT_PASSWORD_FILE", "/nonexistent/pw", "OTTO_MQTT_PASSWORD_FILE: cannot read /nonexistent/pw"),
    ],
)
def test_bad_configuration_exits_2_with_one_line(variable: str, value: str, expected: str) -> None:
    result = run_agent("--once", **{variable: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]


def test_version_and_help() -> None:
    version = run_agent("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("otto-agent 0.")
    assert "--once" in run_agent("--help").stdout


def test_once_on_fixture_host_without_docker_or_broker(tmp_path: Path) -> None:
    """--once prints both messages exactly as published; a missing daemon is reported, not fatal."""
    result = run_agent(
        "--once",
        "--interval",
        "0.2",
        OTTO_HOST_ROOT=str(HOSTS / "rpi4-bookworm"),
        DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    node = NodeMetrics.model_validate_json(lines[0])
    batch = ContainerMetricsBatch.model_validate_json(lines[1])
    assert node.node_id == batch.node_id == "pi-kitchen"  # the host's hostname, from the host root
    assert node.timestamp == batch.timestamp
    assert node.temperature_c == 51.121
    assert node.under_voltage is True
    assert node.memory_cgroup_enabled is False
    assert node.agent.arch
    assert batch.containers == []
    assert batch.error is not None
    assert batch.error.startswith("docker daemon unreachable")
    assert "cgroup_enable=memory" in result.stderr  # the one warning that says how to fix it
    assert result.stderr.count("cgroup_enable=memory") == 1
    assert json.loads(lines[0])["schema"] == 1


def test_a_variable_left_empty_is_unset(tmp_path: Path) -> None:
    """compose.rpi.yaml passes OTTO_NODE_ID="" when .env leaves it out: the hostname must be used."""
    result = run_agent(
        "--once",
        "--interval",
        "0.2",
        OTTO_NODE_ID="",
        OTTO_MQTT_USERNAME="",
        OTTO_HOST_ROOT=str(HOSTS / "rpi4-bookworm"),
        DOCKER_HOST=f"unix://{tmp_path}/no-docker.sock",
    )
    assert result.returncode == 0, result.stderr
    assert NodeMetrics.model_validate_json(result.stdout.splitlines()[0]).node_id == "pi-kitchen"


def test_the_version_is_the_build_s_else_the_package_s() -> None:
    """An image built with --build-arg VERSION=1.4.2 reports 1.4.2 (its ENV OTTO_BUILD_VERSION)."""
    assert run_agent("--version", OTTO_BUILD_VERSION="1.4.2").stdout.strip() == "otto-agent 1.4.2"
    assert run_program("subscriber", "--version", OTTO_BUILD_VERSION="1.4.2").stdout.strip() == "otto-subscriber 1.4.2"
    assert run_agent("--version").stdout.strip() == f"otto-agent {metadata.version('otto-metrics')}"


def test_password_file_is_read(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    settings = AgentSettings(mqtt_password_file=secret, mqtt_username="pi-01")
    assert settings.mqtt_password is not None
    assert settings.mqtt_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    assert AgentSettings(interval=5).effective_buffer_size == 1440  # one hour of cycles, two messages each
    assert AgentSettings(interval=5, buffer_size=10).effective_buffer_size == 10


def test_check_health_follows_the_heartbeat(tmp_path: Path) -> None:
    heartbeat = tmp_path / "beat"
    assert run_agent("--check-health", OTTO_HEARTBEAT_FILE=str(heartbeat)).returncode == 1  # never beaten
    heartbeat.touch()
    assert run_agent("--check-health", OTTO_HEARTBEAT_FILE=str(heartbeat), OTTO_INTERVAL="5").returncode == 0
    old = time.time() - 3 * 5 - 11
    os.utime(heartbeat, (old, old))
    assert run_agent("--check-health", OTTO_HEARTBEAT_FILE=str(heartbeat), OTTO_INTERVAL="5").returncode == 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OTTO_MQTT_CA_FILE": "/nonexistent/ca.crt"}, "OTTO_MQTT_CA_FILE: cannot load /nonexistent/ca.crt"),
        ({"OTTO_MQTT_CA_FILE": "/etc/hostname"}, "OTTO_MQTT_CA_FILE: cannot load /etc/hostname"),
        ({"OTTO_MQTT_CERT_FILE": "/etc/hostname"}, "OTTO_MQTT_CERT_FILE and OTTO_MQTT_KEY_FILE go together"),
        ({"OTTO_MQTT_TLS": "false", "OTTO_MQTT_TLS_INSECURE": "true"}, "needs OTTO_MQTT_TLS=true"),
    ],
)
def test_bad_tls_settings_exit_2_naming_the_variable(env: dict[str, str], expected: str, tmp_path: Path) -> None:
    """Checked at start (not at the first connect), before the agent leaves root."""
    result = run_agent(OTTO_HEARTBEAT_FILE=str(tmp_path / "hb"), DOCKER_HOST=f"unix://{tmp_path}/none.sock", **env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]


def test_tls_is_the_default_on_port_8883() -> None:
    settings = AgentSettings()
    assert (settings.mqtt_tls, settings.mqtt_port_value) == (True, 8883)
    assert AgentSettings(mqtt_tls=False).mqtt_port_value == 1883
    assert AgentSettings(mqtt_port=9999).mqtt_port_value == 9999

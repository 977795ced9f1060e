"""Shared fixtures: the Docker gate, a real authenticated Mosquitto, MQTT recorders, agent processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.support.broker import Broker, start_broker
from tests.support.docker_gate import require_docker

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is not None:
        require_docker()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    require_docker()
    client = docker.from_env(timeout=60)
    yield client
    client.close()


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A fresh Mosquitto with the shipped config, credentials for controlplane, node-a and node-b."""
    require_docker()
    with start_broker(tmp_path_factory.mktemp("broker"), nodes=["node-a", "node-b"]) as running:
        yield running

"""Busybox load containers of known behaviour, on the real engine."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

import docker
import requests
from docker.models.containers import Container

BUSYBOX = "busybox:1.36"
LABEL = {"otto-test": "load"}


class LoadContainers:
    """Starts containers and removes every one of them on close()."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.prefix = f"otto-test-{uuid.uuid4().hex[:6]}"
        self.started: list[Container] = []

    def run(self, role: str, command: str, **kwargs: Any) -> Container:
        """A started container; a connection dropped mid-call (an emulated VM's forwarded port does
        that) is tried again once, after removing whatever half of it the engine created."""
        name = f"{self.prefix}-{role}"
        for attempt in range(2):
            try:
                container = self.client.containers.run(
                    BUSYBOX, ["sh", "-c", command], name=name, detach=True, labels=LABEL, **kwargs
                )
                break
            except requests.ConnectionError:
                if attempt:
                    raise
                time.sleep(2)
                with contextlib.suppress(docker.errors.NotFound):
                    self.client.api.remove_container(name, force=True)
        self.started.append(container)
        return container

    def close(self) -> None:
        for container in self.started:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


def wait_for_log(container: Container, marker: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker in container.logs().decode(errors="replace"):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{container.name}: {marker!r} not logged")


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise TimeoutError("condition not met")


def docker_stats_no_stream(names: list[str], env: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """`docker stats --no-stream` for the named containers, by name (``env``: e.g. another DOCKER_HOST)."""
    output = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{json .}}", *names],
        capture_output=True, text=True, check=True, timeout=60, env=env,
    ).stdout  # fmt: skip
    rows = [json.loads(line) for line in output.splitlines() if line.strip()]
    return {row["Name"]: row for row in rows}

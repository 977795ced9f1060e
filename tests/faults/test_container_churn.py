"""Containers created and removed continuously while the agent collects, for a minute."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from pathlib import Path

import docker
import pytest

from contract import ContainerMetricsBatch
from contract.topics import container_metrics_topic
from tests.support.agent_process import AgentProcess
from tests.support.broker import Broker
from tests.support.load import BUSYBOX, LABEL
from tests.support.mqtt import Recorder

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CHURN_SECONDS = 60.0
# At least this many containers, however slow the engine is today: the churn goes on past the
# minute until it has made them (a busy CI machine makes about two a second).
CHURN_CONTAINERS = 120


def churn(client: docker.DockerClient, stop: threading.Event, counts: dict[str, int]) -> None:
    """Start short-lived containers, kill some mid-life, remove the rest: a few per second."""
    rng = random.Random(7)
    alive: list[docker.models.containers.Container] = []
    while not stop.is_set():
        alive.append(
            client.containers.run(
                BUSYBOX, ["sh", "-c", f"sleep {rng.uniform(0.1, 3):.1f}"], detach=True, labels=LABEL, auto_remove=True
            )
        )
        counts["created"] += 1
        if len(alive) > 6 or rng.random() < 0.3:
            victim = alive.pop(rng.randrange(len(alive)))
            try:
                victim.remove(force=True)
                counts["removed"] += 1
            except docker.errors.APIError:
                pass  # already gone by itself (auto_remove) or being removed
        time.sleep(rng.uniform(0.05, 0.3))
    for container in alive:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)


def test_container_churn_for_a_minute(broker: Broker, tmp_path: Path, docker_client: docker.DockerClient) -> None:
    recorder = Recorder(broker)
    agent = AgentProcess(broker, "node-a", tmp_path, interval="1")
    stop, counts = threading.Event(), {"created": 0, "removed": 0}
    worker = threading.Thread(target=churn, args=(docker_client, stop, counts))
    try:
        recorder.wait_for(lambda m: any(x.topic == container_metrics_topic("node-a") for x in m))
        started = time.time()
        worker.start()
        while time.time() - started < CHURN_SECONDS or counts["created"] < CHURN_CONTAINERS:
            assert time.time() - started < CHURN_SECONDS * 3, f"the engine made {counts['created']} containers in 3 min"
            time.sleep(0.5)
        churned = time.time() - started
        stop.set()
        worker.join(60)
        time.sleep(3)

        assert agent.process.poll() is None, "the agent died"
        batches = [
            ContainerMetricsBatch.model_validate_json(m.payload)
            for m in recorder.on(container_metrics_topic("node-a"))
            if m.at > started
        ]
        assert len(batches) >= churned * 0.9  # a batch every second throughout
        seen = {c.container_id for b in batches for c in b.containers}
        assert len(seen) >= counts["created"] / 3  # short-lived containers were measured while they lived
        logs = agent.logs()
        assert "Traceback" not in logs
        problems = [line for line in logs.splitlines() if " WARNING " in line or " ERROR " in line]
        assert len(problems) <= 1, problems  # never one per cycle (none seen; one rate-limited line tolerated)
    finally:
        stop.set()
        agent.stop()
        recorder.close()

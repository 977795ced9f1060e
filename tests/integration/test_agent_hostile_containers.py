"""Hostile containers on the real engine: the agent publishes them by its rule, and never stops."""

from __future__ import annotations

import contextlib
from pathlib import Path

import docker
import pytest

from contract import ContainerMetricsBatch, NodeMetrics
from contract.topics import container_metrics_topic
from tests.support.agent_process import AgentProcess, run_program
from tests.support.broker import Broker
from tests.support.load import LoadContainers
from tests.support.mqtt import Recorder

pytestmark = pytest.mark.docker

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"


def test_long_odd_names_images_and_labels_are_published_by_the_rule(
    docker_client: docker.DockerClient, broker: Broker, tmp_path: Path
) -> None:
    """Today's main raised on the long name: the agent exited and crash-looped on every restart."""
    load = LoadContainers(docker_client)
    try:
        long_name = f"{load.prefix}-" + "x" * 700  # Docker accepts it; the contract allows 512
        odd = docker_client.containers.run(
            "busybox:1.36", ["sleep", "600"], name=f"{load.prefix}-odd", detach=True,
            labels={"k" * 2000: "v" * 20_000, "otto-test": "load"},
        )  # fmt: skip
        load.started.append(odd)
        docker_client.images.get("busybox:1.36").tag(f"{load.prefix}/" + "r" * 200, "t" * 128)
        long_image = f"{load.prefix}/{'r' * 200}:{'t' * 128}"
        named = load.client.containers.run(
            long_image, ["sleep", "600"], name=long_name, detach=True, labels={"otto-test": "load"}
        )
        load.started.append(named)
        result = run_program("agent", "--once", "--interval", "1", OTTO_HOST_ROOT=str(HOSTS / "rpi4-bookworm"))
        assert result.returncode == 0, result.stderr
        node_line, batch_line = result.stdout.splitlines()
        node = NodeMetrics.model_validate_json(node_line)
        batch = ContainerMetricsBatch.model_validate_json(batch_line)
        by_id = {c.container_id: c for c in batch.containers}
        truncated = by_id[named.id]
        assert len(truncated.container_name) == 512
        assert truncated.container_name == long_name[:511] + "\u2026"
        assert truncated.image == long_image  # within the limit: as Docker has it
        assert truncated.pids >= 1
        assert by_id[odd.id].container_name == f"{load.prefix}-odd"
        assert node.agent.problems["truncated"] >= 1
        assert result.stderr.count("truncated:") == 1  # one log line for the kind

        # The running agent: cycle after cycle through the broker, never stopping, one log line.
        recorder = Recorder(broker)
        agent = AgentProcess(broker, "node-a", tmp_path, host_root=str(HOSTS / "rpi4-bookworm"))
        try:
            topic = container_metrics_topic("node-a")
            received = recorder.wait_for(lambda m: len([x for x in m if x.topic == topic]) >= 4, timeout=60)
            batches = [ContainerMetricsBatch.model_validate_json(x.payload) for x in received if x.topic == topic]
            assert [b.cycle for b in batches[:4]] == [1, 2, 3, 4]
            for published in batches[:4]:
                names = {c.container_id: c.container_name for c in published.containers}
                assert names[named.id] == long_name[:511] + "\u2026"
                assert names[odd.id] == f"{load.prefix}-odd"
            assert agent.process.poll() is None
            assert agent.logs().count("truncated:") == 1
        finally:
            agent.stop()
            recorder.close()
    finally:
        load.close()
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(f"{load.prefix}/{'r' * 200}:{'t' * 128}", noprune=True)

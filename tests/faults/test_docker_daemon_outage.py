"""The Docker daemon goes away while the agent runs, then comes back: no restart needed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from contract import ContainerMetricsBatch
from contract.topics import container_metrics_topic, node_metrics_topic
from tests.support.agent_process import AgentProcess
from tests.support.broker import Broker
from tests.support.mqtt import Received, Recorder
from tests.support.socket_proxy import DockerSocketProxy

pytestmark = [pytest.mark.docker]

NODE = "node-a"


def batches(messages: list[Received]) -> list[ContainerMetricsBatch]:
    return [
        ContainerMetricsBatch.model_validate_json(m.payload)
        for m in messages
        if m.topic == container_metrics_topic(NODE)
    ]


def test_node_metrics_continue_and_containers_resume(broker: Broker, tmp_path: Path) -> None:
    proxy = DockerSocketProxy(tmp_path / "docker.sock")
    proxy.start()
    recorder = Recorder(broker)
    agent = AgentProcess(broker, NODE, tmp_path, extra_env={"DOCKER_HOST": proxy.url}, docker_timeout="2")
    try:
        recorder.wait_for(lambda m: any(b.containers for b in batches(m)))
        proxy.stop()
        lost_at = time.time()
        messages = recorder.wait_for(lambda m: sum(b.error is not None for b in batches(m)) >= 3)
        down = [b for b in batches(messages) if b.error is not None]
        assert all(b.containers == [] and b.error.startswith("docker daemon unreachable") for b in down)
        # Node metrics kept flowing every cycle meanwhile.
        nodes_while_down = [m for m in recorder.on(node_metrics_topic(NODE)) if m.at > lost_at + 0.5]
        assert len(nodes_while_down) >= 2

        proxy.start()
        back_at = time.time()
        recorder.wait_for(
            lambda m: any(b.containers and b.error is None and b.timestamp.timestamp() > back_at for b in batches(m))
        )
        logs = agent.logs()
        assert logs.count("docker daemon unreachable") == 1  # one line when lost, not one per cycle
        assert logs.count("docker daemon reachable again") == 1
        assert agent.process.poll() is None
        assert "Traceback" not in logs
    finally:
        agent.stop()
        recorder.close()
        proxy.stop()

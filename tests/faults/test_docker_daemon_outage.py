"""The Docker daemon goes away while the agent runs, then comes back: no restart needed."""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path

import docker
import pytest

from contract import ContainerEvent, ContainerMetricsBatch
from contract.topics import container_metrics_topic, events_topic, node_metrics_topic
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


def events(messages: list[Received]) -> list[ContainerEvent]:
    return [ContainerEvent.model_validate_json(m.payload) for m in messages if m.topic == events_topic(NODE)]


def test_the_event_stream_resumes_recovers_what_it_missed_and_reports_the_gap(
    broker: Broker, tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    proxy = DockerSocketProxy(tmp_path / "docker.sock")
    proxy.start()
    recorder = Recorder(broker)
    agent = AgentProcess(broker, NODE, tmp_path, extra_env={"DOCKER_HOST": proxy.url}, docker_timeout="2")
    name = f"otto-events-outage-{uuid.uuid4().hex[:6]}"
    try:
        recorder.wait_for(lambda m: any(b.containers for b in batches(m)))
        box = docker_client.containers.run("busybox:1.36", ["sleep", "600"], name=name, detach=True)
        recorder.wait_for(lambda m: any(e.container_name == name and e.action == "start" for e in events(m)))
        proxy.stop()  # the stream breaks, as when the daemon restarts
        lost_at = time.time()
        box.kill()  # happens while the agent cannot see: the daemon keeps it in its event buffer
        box.remove()
        time.sleep(2)
        nodes_while_down = [m for m in recorder.on(node_metrics_topic(NODE)) if m.at > lost_at + 0.5]
        assert len(nodes_while_down) >= 1  # metrics never wait for the stream
        proxy.start()
        got = recorder.wait_for(
            lambda m: any(e.container_name == name and e.action == "destroy" for e in events(m)), timeout=60
        )
        mine = [e for e in events(got) if e.container_name == name]
        assert [e.action for e in mine] == ["start", "die", "destroy"]  # in order, each once
        assert mine[1].stop_requested is True  # the kill came through the replay too
        gaps = [e for e in events(got) if e.action == "gap"]
        assert len(gaps) == 1
        assert "event stream lost for" in (gaps[0].detail or "")
        assert agent.process.poll() is None
        assert "Traceback" not in agent.logs()
    finally:
        agent.stop()
        recorder.close()
        proxy.stop()
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.containers.get(name).remove(force=True)

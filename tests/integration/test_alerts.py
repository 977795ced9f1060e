"""Events and alerts end to end: real containers on the real engine, the real agent and subscriber
on a real Mosquitto, notifications received by a real HTTP server (Apprise's JSON webhook) and a
real SMTP server (aiosmtpd)."""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.support.agent_process import AgentProcess
from tests.support.broker import Broker
from tests.support.load import wait_until
from tests.support.receivers import Received, SmtpReceiver, WebhookReceiver
from tests.support.subscriber_process import SubscriberProcess

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BUSYBOX = "busybox:1.36"
PYTHON = "python:3.12-slim"
RULES = """
[node_offline]
for = "1s"
[container_exited]
stable_after = "3s"
[oom_killed]
stable_after = "3s"
[restart_loop]
restarts = 3
within = "2m"
"""


@pytest.fixture
def receivers() -> Iterator[tuple[WebhookReceiver, SmtpReceiver]]:
    hook, mail = WebhookReceiver().start(), SmtpReceiver().start()
    yield hook, mail
    hook.stop()
    mail.stop()


@pytest.fixture
def containers(docker_client: docker.DockerClient) -> Iterator[dict[str, str]]:
    """Names for this test's containers (unique), removed afterwards."""
    prefix = f"otto-alert-{uuid.uuid4().hex[:6]}"
    names = {role: f"{prefix}-{role}" for role in ("exit3", "oom", "sick", "loop", "stopped")}
    yield names
    for name in names.values():
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.containers.get(name).remove(force=True)


def subscriber_for(broker: Broker, workdir: Path, urls: list[str], **settings: str) -> SubscriberProcess:
    rules = workdir / "alerts.toml"
    rules.write_text(RULES)
    return SubscriberProcess(
        broker,
        workdir,
        notify_urls=" ".join(urls),
        alerts_file=str(rules),
        public_url="http://otto.example:8080",
        stale_after="3",
        **settings,
    )


#: The alert (its title's words) each container role must raise, once, and resolve, once.
EXPECTED = (("container exited", "exit3"), ("OOM-killed", "oom"), ("unhealthy", "sick"), ("restart loop", "loop"))


def firing(got: list[Received], rule_title: str, name: str) -> list[Received]:
    return [r for r in got if "FIRING" in r.title and rule_title in r.title and name in r.title]


def resolved(got: list[Received], rule_title: str, name: str) -> list[Received]:
    return [r for r in got if "RESOLVED" in r.title and rule_title in r.title and name in r.title]


def test_container_alerts_reach_a_webhook_and_an_inbox_once_each_and_resolve(
    broker: Broker,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    receivers: tuple[WebhookReceiver, SmtpReceiver],
    containers: dict[str, str],
) -> None:
    hook, mail = receivers
    subscriber = subscriber_for(broker, tmp_path, [hook.url, mail.url]).start()
    agent = AgentProcess(broker, "node-a", tmp_path, event_coalesce_seconds="2")
    try:
        wait_until(lambda: any(n["node_id"] == "node-a" for n in subscriber.get("/api/nodes")), timeout=30)
        run = docker_client.containers.run
        # Exits 3 the first time, runs the second: its resolution is a real start that stays up.
        run(BUSYBOX, ["sh", "-c", "if [ -f /ran ]; then exec sleep 600; fi; touch /ran; sleep 1; exit 3"],
            name=containers["exit3"], detach=True)  # fmt: skip
        run(PYTHON, ["python", "-c", "import time; time.sleep(1); b = bytearray(256 * 2**20)"],
            name=containers["oom"], detach=True, mem_limit="32m", memswap_limit="32m")  # fmt: skip
        run(BUSYBOX, ["sleep", "600"], name=containers["sick"], detach=True,
            healthcheck={"test": ["CMD", "test", "-f", "/ok"], "interval": 500_000_000, "retries": 1})  # fmt: skip
        run(BUSYBOX, ["sh", "-c", "sleep 0.5; exit 1"], name=containers["loop"], detach=True,
            restart_policy={"Name": "always"})  # fmt: skip
        stopped = run(BUSYBOX, ["sleep", "600"], name=containers["stopped"], detach=True)
        time.sleep(1)
        stopped.stop(timeout=1)  # SIGTERM ignored by sleep as PID 1, then SIGKILL: exit 137, asked for

        for receiver in (hook, mail):
            receiver.wait_for(lambda got: all(firing(got, rule, containers[role]) for rule, role in EXPECTED), 60)

        exited = firing(hook.received, "container exited", containers["exit3"])[0]
        assert exited.kind == "failure"
        assert exited.title == f"[otto] FIRING: container exited on node-a/{containers['exit3']}"
        assert "Value: exit code 3" in exited.body
        assert f"Container: {containers['exit3']} (image {BUSYBOX})" in exited.body
        assert "Details: http://otto.example:8080/nodes/node-a" in exited.body
        assert "Since: " in exited.body

        # Resolve each: run again and stay up; removed; healthy; removed.
        docker_client.containers.get(containers["exit3"]).start()
        docker_client.containers.get(containers["oom"]).remove(force=True)
        docker_client.containers.get(containers["sick"]).exec_run(["touch", "/ok"])
        docker_client.containers.get(containers["loop"]).remove(force=True)
        for receiver in (hook, mail):
            receiver.wait_for(lambda got: all(resolved(got, rule, containers[role]) for rule, role in EXPECTED), 60)
        time.sleep(3)  # anything sent twice would have arrived by now
        for receiver in (hook, mail):
            got = receiver.received
            for rule, role in EXPECTED:
                assert len(firing(got, rule, containers[role])) == 1, (rule, receiver.titles())
                assert len(resolved(got, rule, containers[role])) == 1, (rule, receiver.titles())
            assert not any(containers["stopped"] in r.title for r in got)  # stopped by the user: no alert
            # Each firing came before its resolution.
            titles = [r.title for r in got]
            first_fire = titles.index(firing(got, "container exited", containers["exit3"])[0].title)
            assert first_fire < titles.index(resolved(got, "container exited", containers["exit3"])[0].title)
        assert resolved(hook.received, "container exited", containers["exit3"])[0].kind == "success"

        # The API serves the same alerts, with their deliveries, and the events.
        alerts = subscriber.get("/api/alerts?state=all")
        mine = {(a["rule"], a["container"]) for a in alerts}
        assert ("container_exited", containers["exit3"]) in mine
        assert ("oom_killed", containers["oom"]) in mine
        assert all(a["state"] == "resolved" for a in alerts if a["container"] in containers.values())
        exit3 = next(a for a in alerts if a["container"] == containers["exit3"] and a["rule"] == "container_exited")
        assert exit3["value"] == "exit code 3"
        assert exit3["link"] == "http://otto.example:8080/nodes/node-a"
        assert sorted((d["kind"], d["url"], d["state"]) for d in exit3["deliveries"]) == [
            ("firing", 1, "delivered"), ("firing", 2, "delivered"),
            ("resolved", 1, "delivered"), ("resolved", 2, "delivered"),
        ]  # fmt: skip
        assert subscriber.get("/api/alerts") == [] or all(
            a["container"] not in containers.values() for a in subscriber.get("/api/alerts")
        )
        events = subscriber.get(f"/api/nodes/node-a/events?container={containers['exit3']}")
        dies = [e for e in events if e["action"] == "die"]
        assert dies
        assert dies[-1]["exit_code"] == 3
        assert dies[-1]["stop_requested"] is False
        stopped_dies = [
            e
            for e in subscriber.get(f"/api/nodes/node-a/events?container={containers['stopped']}")
            if e["action"] == "die"
        ]
        assert [(e["exit_code"], e["stop_requested"]) for e in stopped_dies] == [(137, True)]
        assert subscriber.metric("otto_alerts_fired_total", rule="oom_killed") == 1.0
        assert subscriber.metric("otto_notifications_total", outcome="delivered") >= 16  # type: ignore[operator]
        assert subscriber.metric("otto_subscriber_container_events_total", action="oom") == 1.0
    finally:
        agent.stop()
        assert subscriber.stop() == 0, subscriber.logs()[-3000:]


def test_an_agent_killed_by_sigkill_raises_node_offline_and_its_return_resolves_it(
    broker: Broker, tmp_path: Path, receivers: tuple[WebhookReceiver, SmtpReceiver]
) -> None:
    hook, _mail = receivers
    subscriber = subscriber_for(broker, tmp_path, [hook.url]).start()
    agent = AgentProcess(broker, "node-a", tmp_path)
    try:
        wait_until(lambda: any(n["status"] == "online" for n in subscriber.get("/api/nodes")), timeout=30)
        agent.signal(signal.SIGKILL)
        killed = time.time()
        # The kernel closes the dead agent's socket, so the broker publishes its last will at once;
        # then the rule's 1 s hold, evaluated every second. (Silence alone: stale after 3 intervals.)
        received = hook.wait_for_title("FIRING", "node offline on node-a", timeout=15)
        assert received.at - killed < 1 + 1 + 2  # the configured time, and two seconds of slack
        assert "Value: offline (last will)" in received.body
        agent.stop()
        agent = AgentProcess(broker, "node-a", tmp_path)
        hook.wait_for_title("RESOLVED", "node offline on node-a", timeout=30)
        assert len([t for t in hook.titles() if "node offline" in t]) == 2
    finally:
        agent.stop()
        subscriber.stop()


def test_a_restart_mid_alert_sends_no_duplicate_and_loses_no_resolution(
    broker: Broker,
    tmp_path: Path,
    docker_client: docker.DockerClient,
    receivers: tuple[WebhookReceiver, SmtpReceiver],
    containers: dict[str, str],
) -> None:
    hook, _mail = receivers
    subscriber = subscriber_for(broker, tmp_path, [hook.url]).start()
    agent = AgentProcess(broker, "node-a", tmp_path)
    try:
        wait_until(lambda: any(n["node_id"] == "node-a" for n in subscriber.get("/api/nodes")), timeout=30)
        name = containers["exit3"]
        box = docker_client.containers.run(
            BUSYBOX, ["sh", "-c", "if [ -f /ran ]; then exec sleep 600; fi; touch /ran; exit 3"], name=name, detach=True
        )
        hook.wait_for_title("FIRING", name)
        assert subscriber.stop() == 0  # mid-alert

        # While it is away: the container runs again, and the endpoint is down when it comes back.
        box.start()
        hook.stop()
        subscriber = subscriber_for(broker, tmp_path, [hook.url]).start()
        wait_until(lambda: (subscriber.metric("otto_notifications_total", outcome="retried") or 0) > 0, timeout=30)
        assert "1 active from before the restart" in subscriber.logs()
        alert = next(a for a in subscriber.get("/api/alerts?state=all") if a["container"] == name)
        assert alert["state"] == "resolved"
        pending = [(d["kind"], d["state"]) for d in alert["deliveries"] if d["state"] != "delivered"]
        assert pending == [("resolved", "pending")]  # in the delivery log, being retried
        assert subscriber.stop() == 0  # and once more, with the resolution still pending
        subscriber = subscriber_for(broker, tmp_path, [hook.url]).start()
        assert "1 deliveries pending from before the restart" in subscriber.logs()
        hook.start()  # back: the pending resolution is delivered
        hook.wait_for_title("RESOLVED", name, timeout=30)
        time.sleep(2)
        titles = [t for t in hook.titles() if name in t]
        assert titles == [
            f"[otto] FIRING: container exited on node-a/{name}",
            f"[otto] RESOLVED: container exited on node-a/{name}",
        ]
        assert subscriber.get("/api/alerts") == []
    finally:
        agent.stop()
        subscriber.stop()

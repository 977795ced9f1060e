"""Benchmark 7: events and alerts.

* Death to notification: real containers exit with status 3 on this engine; the real agent and
  subscriber (processes) carry the die event; a local HTTP server receives Apprise's JSON webhook.
  Latency is the webhook's arrival minus the daemon's time of the die (the alert's ``since``),
  split at the moment the event reached the broker (a recorder subscribed to it).
* Ingestion with the notifier down: the in-process subscriber with alerts on takes the same burst
  of simulated nodes three times: alerts off (the baseline), the notification endpoint up, and
  down (refused; every node's disk alert is retried meanwhile). Ratios of the rates.
* The agent's CPU under container churn: the agent process's CPU time while containers are
  created, run and removed as fast as the engine allows, with the event stream followed and not.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
from prometheus_client import CollectorRegistry

from bench.fleet import collect, start_publishers
from bench.ingest import TimedStore, _plans, _wait
from contract import ContainerEvent
from subscriber.alerts.engine import AlertEngine
from subscriber.alerts.notify import AppriseSender, Notifier
from subscriber.alerts.rules import AlertRules
from subscriber.alerts.service import AlertCounters, AlertService
from subscriber.alerts.store import SqliteAlertStore
from subscriber.consumer import BrokerConfig, Limits, MetricsSubscriber
from subscriber.prometheus import SubscriberCounters
from subscriber.state import FleetState
from tests.support.agent_process import AgentProcess
from tests.support.broker import Broker, free_port, start_broker
from tests.support.mqtt import Recorder
from tests.support.receivers import WebhookReceiver
from tests.support.subscriber_process import SubscriberProcess

NODE = "bench-events"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks (USER_HZ = 100)


def death_to_notification(workdir: Path, client: docker.DockerClient, deaths: int) -> dict[str, Any]:
    hook = WebhookReceiver().start()
    names = [f"otto-bench-death-{i}-{int(time.time())}" for i in range(deaths)]
    with start_broker(workdir / "broker", nodes=[NODE]) as broker:
        subscriber = SubscriberProcess(broker, workdir, notify_urls=hook.url).start()
        agent = AgentProcess(broker, NODE, workdir, interval="5")
        recorder = Recorder(broker, topic=f"otto/nodes/{NODE}/events")
        try:
            _wait(lambda: any(n["node_id"] == NODE for n in subscriber.get("/api/nodes")), 30)
            time.sleep(2)
            for name in names:
                client.containers.run("busybox:1.36", ["sh", "-c", "sleep 0.3; exit 3"], name=name, detach=True)
                time.sleep(1.5)
            _wait(lambda: sum(any(n in t for t in hook.titles()) for n in names) == deaths, 60)
            alerts = {a["container"]: a for a in subscriber.get("/api/alerts?state=all&limit=1000")}
            on_broker = {
                e.container_name: m.at
                for m in recorder.messages
                if (e := ContainerEvent.model_validate_json(m.payload)).action == "die"
            }
            total, to_broker = [], []
            for name in names:
                arrival = next(r.at for r in hook.received if name in r.title and "FIRING" in r.title)
                died = datetime.fromisoformat(alerts[name]["since"]).timestamp()
                total.append(arrival - died)
                to_broker.append(on_broker[name] - died)
        finally:
            recorder.close()
            agent.stop()
            subscriber.stop()
            hook.stop()
            for name in names:
                with contextlib.suppress(docker.errors.NotFound):
                    client.containers.get(name).remove(force=True)
    total.sort()
    return {
        "deaths": deaths,
        "median_s": statistics.median(total),
        "p95_s": total[min(len(total) - 1, int(0.95 * len(total)))],
        "max_s": total[-1],
        "to_broker_median_s": statistics.median(to_broker),
    }


def _burst(
    broker: Broker, workdir: Path, variant: str, url: str | None, messages: int
) -> tuple[float, dict[str, float]]:
    """The in-process subscriber's rate on a burst, with alerts off (url None) or notifying ``url``."""
    logging.getLogger("subscriber.alerts").setLevel(logging.ERROR)  # one line per alert: 100 per burst
    cycles = max(1, messages // 200)
    rules = AlertRules.model_validate({"disk": {"above": 50, "clear_below": 40, "for": "0s"}})
    store = TimedStore(workdir / f"notify-{variant}.db")
    state = FleetState(3.0)
    subscriber = MetricsSubscriber(
        BrokerConfig(broker.host, broker.port, "controlplane", broker.password("controlplane"), f"b-{variant}"),
        state, store, SubscriberCounters(CollectorRegistry()), log_messages=False, limits=Limits(node_rate=0.0),
    )  # fmt: skip
    outcomes: dict[str, float] = {}

    def outcome(name: str) -> None:
        outcomes[name] = outcomes.get(name, 0) + 1

    service = None
    if url is not None:
        alert_store = SqliteAlertStore(workdir / f"notify-{variant}.db")
        notifier = Notifier(alert_store, AppriseSender([url], timeout=2.0), 1, outcome, retry_first=0.2, retry_max=1.0)
        service = AlertService(
            AlertEngine(rules, started_at=time.time()), alert_store, notifier, state,
            AlertCounters(CollectorRegistry()), public_url="http://localhost:8080", tick=0.2,
        )  # fmt: skip
        subscriber.ingestor.event_listeners.append(service.submit)
        service.start()
    subscriber.start()
    try:
        _wait(lambda: subscriber.connected, 30)
        time.sleep(1)
        # A first cycle makes every node fire (and, when down, retry) before the measured burst.
        collect(*start_publishers(_plans(broker, 2, schedule="burst", cycles=1)))
        _wait(lambda: store.committed >= 200, 60)
        time.sleep(1.0)
        before = store.committed
        reports = collect(*start_publishers(_plans(broker, 2, schedule="burst", cycles=cycles)))
        start = min(r["start"] for r in reports)
        _wait(lambda: store.committed - before >= cycles * 200, 300)
        return (store.committed - before) / (store.last_commit - start), outcomes
    finally:
        subscriber.stop()
        if service is not None:
            service.stop()
            service.store.close()
        store.close()


def ingest_with_notifier(workdir: Path, messages: int) -> dict[str, Any]:
    """Burst rates: alerts off, notifier up, notifier down (every simulated node fires a disk alert)."""
    hook = WebhookReceiver().start()
    try:
        with start_broker(workdir / "broker", nodes=[], wildcard_publisher="bench") as broker:
            off, _ = _burst(broker, workdir, "off", None, messages)
            up, outcomes_up = _burst(broker, workdir, "up", hook.url, messages)
            down, outcomes_down = _burst(broker, workdir, "down", f"json://127.0.0.1:{free_port()}/down", messages)
    finally:
        hook.stop()
    return {
        "messages": max(1, messages // 200) * 200,
        "rate_alerts_off_per_s": off,
        "rate_notifier_up_per_s": up,
        "rate_notifier_down_per_s": down,
        "up_vs_off": up / off,
        "down_vs_off": down / off,
        "outcomes_up": outcomes_up,
        "outcomes_down": outcomes_down,
    }


def agent_cpu_under_churn(workdir: Path, client: docker.DockerClient, seconds: float) -> dict[str, Any]:
    """The agent's CPU (percent of one core) with and without the event stream, under the same churn."""
    out: dict[str, Any] = {"seconds": seconds}
    with start_broker(workdir / "broker", nodes=[NODE]) as broker:
        for events in ("false", "true"):
            recorder = Recorder(broker, topic=f"otto/nodes/{NODE}/events")
            agent = AgentProcess(broker, NODE, workdir, interval="5", events=events)
            stop = threading.Event()
            churned = [0]

            def churn(flag: threading.Event = stop, count: list[int] = churned) -> None:
                while not flag.is_set():
                    box = client.containers.run("busybox:1.36", ["true"], detach=True, labels={"otto-bench": "churn"})
                    box.wait(timeout=30)
                    box.remove(force=True)
                    count[0] += 1

            try:
                agent.wait_for_log("otto-agent")
                time.sleep(6)
                worker = threading.Thread(target=churn, daemon=True)
                worker.start()
                time.sleep(2)
                cpu0, t0 = _cpu_seconds(agent.process.pid), time.monotonic()
                churn0 = churned[0]
                time.sleep(seconds)
                cpu1, t1 = _cpu_seconds(agent.process.pid), time.monotonic()
                churn1 = churned[0]
                stop.set()
                worker.join(60)
            finally:
                agent.stop()
                recorder.close()
            key = "with_events" if events == "true" else "without_events"
            out[key] = {
                "cpu_percent": 100 * (cpu1 - cpu0) / (t1 - t0),
                "containers_per_s": (churn1 - churn0) / (t1 - t0),
                "events_published": len(recorder.messages),
            }
    out["cpu_ratio"] = out["with_events"]["cpu_percent"] / max(1e-9, out["without_events"]["cpu_percent"])
    return out


def run(workdir: Path, *, deaths: int, messages: int, churn_seconds: float) -> dict[str, Any]:
    client = docker.from_env(timeout=60)
    try:
        return {
            "death_to_notification": death_to_notification(workdir / "death", client, deaths),
            "ingest_with_notifier": ingest_with_notifier(workdir / "ingest", messages),
            "agent_churn": agent_cpu_under_churn(workdir / "churn", client, churn_seconds),
        }
    finally:
        client.close()


def table(results: dict[str, Any] | None) -> list[str]:
    if not results:
        return []
    if "error" in results:
        return ["", f"7. Events and alerts: failed: {results['error']}"]
    d, i, c = results["death_to_notification"], results["ingest_with_notifier"], results["agent_churn"]
    return [
        "",
        "7. Events and alerts",
        "",
        f"- Container death to notification at a local webhook ({d['deaths']} deaths): median {d['median_s']:.2f} s, "
        f"p95 {d['p95_s']:.2f} s, max {d['max_s']:.2f} s (to the broker: median {d['to_broker_median_s']:.3f} s)",
        f"- Ingest burst of {i['messages']:,} messages with alerts firing: notifier up {i['up_vs_off']:.2f}x, "
        f"notifier down {i['down_vs_off']:.2f}x the rate with alerts off ({i['rate_alerts_off_per_s']:,.0f}/s); "
        f"deliveries up {i['outcomes_up']}, down {i['outcomes_down']}",
        f"- Agent CPU under churn ({c['with_events']['containers_per_s']:.1f} containers/s for {c['seconds']:.0f} s): "
        f"{c['with_events']['cpu_percent']:.2f} % of a core with events ({c['with_events']['events_published']} "
        f"published), {c['without_events']['cpu_percent']:.2f} % without: {c['cpu_ratio']:.2f}x",
    ]

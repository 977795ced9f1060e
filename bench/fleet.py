"""A simulated fleet for the control-plane benchmarks: publisher processes and a raw receiver.

Publishers send valid NodeMetrics and ContainerMetricsBatch messages (rendered from templates so
that generating them costs next to nothing) on one of three schedules: as fast as the broker takes
them, at a fixed total rate, or as N nodes each publishing every ``interval`` seconds. They run in
their own processes so they never share the measured process's interpreter.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from contract import to_payload
from contract.topics import container_metrics_topic, node_metrics_topic
from tests.support.messages import T0, container, container_batch, node_metrics

TEMPLATE_NODE = "sim-00000"
TEMPLATE_TIME = "2026-11-27T10:00:00Z"
CONTEXT = multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class Templates:
    node: str
    containers: str

    @classmethod
    def build(cls, containers_per_node: int) -> Templates:
        node = to_payload(node_metrics(TEMPLATE_NODE, at=T0, cycle=1)).decode()
        batch = container_batch(
            TEMPLATE_NODE, at=T0, cycle=1, containers=[container(f"app-{i:02d}") for i in range(containers_per_node)]
        )
        return cls(node, to_payload(batch).decode())

    def render(self, kind: str, node: int, cycle: int, at: datetime) -> tuple[str, bytes]:
        node_id = f"sim-{node:05d}"
        text = self.node if kind == "node" else self.containers
        stamp = at.isoformat(timespec="microseconds").replace("+00:00", "Z")
        text = (
            text.replace(TEMPLATE_NODE, node_id)
            .replace(TEMPLATE_TIME, stamp)
            .replace('"cycle":1,', f'"cycle":{cycle},')
        )
        topic = node_metrics_topic(node_id) if kind == "node" else container_metrics_topic(node_id)
        return topic, text.encode()


@dataclass
class Plan:
    """What one publisher process sends. ``schedule``: 'burst', 'rate' or 'fleet'."""

    host: str
    port: int
    user: str
    password: str
    schedule: str
    nodes: list[int]
    containers_per_node: int = 5
    cycles: int = 1  # burst: cycles per node
    rate: float = 0.0  # rate: messages per second from this process
    duration: float = 0.0  # rate and fleet: seconds
    interval: float = 5.0  # fleet: seconds between a node's cycles
    extra: dict[str, Any] = field(default_factory=dict)


def _connect(host: str, port: int, user: str, password: str, client_id: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    connected = threading.Event()
    client.on_connect = lambda *_args: connected.set()
    client.connect(host, port, keepalive=60)
    client.loop_start()
    if not connected.wait(15):
        raise TimeoutError("publisher could not connect")
    return client


def _messages(plan: Plan, templates: Templates) -> list[tuple[float | None, str, int, int]]:
    """(send offset or None for 'now', kind, node, cycle), in sending order."""
    if plan.schedule == "burst":
        return [
            (None, kind, n, c) for c in range(1, plan.cycles + 1) for n in plan.nodes for kind in ("node", "containers")
        ]
    if plan.schedule == "rate":
        count = int(plan.rate * plan.duration)
        return [
            (i / plan.rate, ("node", "containers")[i % 2], plan.nodes[(i // 2) % len(plan.nodes)], i // 2 + 1)
            for i in range(count)
        ]
    # fleet: every node publishes both messages once per interval, nodes spread over the interval
    sends: list[tuple[float | None, str, int, int]] = []
    for cycle in range(1, int(plan.duration / plan.interval) + 1):
        for position, node in enumerate(plan.nodes):
            offset = (cycle - 1) * plan.interval + plan.interval * position / len(plan.nodes)
            sends += [(offset, "node", node, cycle), (offset, "containers", node, cycle)]
    return sends


def publish(plan: Plan, results: Any) -> None:
    """Process entry point: send the plan at QoS 1, wait for every PUBACK, report counts and times."""
    templates = Templates.build(plan.containers_per_node)
    sends = _messages(plan, templates)
    client = _connect(plan.host, plan.port, plan.user, plan.password, f"bench-pub-{plan.nodes[0]}-{time.time_ns()}")
    acked = 0
    lock = threading.Lock()

    def on_publish(*_args: Any) -> None:
        nonlocal acked
        with lock:
            acked += 1

    client.on_publish = on_publish
    start = time.time()
    for offset, kind, node, cycle in sends:
        if offset is not None:
            delay = start + offset - time.time()
            if delay > 0:
                time.sleep(delay)
        stamp = datetime.now(UTC) if plan.schedule != "burst" else T0 + timedelta(seconds=cycle)
        topic, payload = templates.render(kind, node, cycle, stamp)
        client.publish(topic, payload, qos=1)
    finished = time.time()
    deadline = time.time() + 120
    while acked < len(sends) and time.time() < deadline:
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()
    results.put({"published": len(sends), "acked": acked, "start": start, "sent": finished, "acked_at": time.time()})


def receive_raw(host: str, port: int, user: str, password: str, expected: int, ready: Any, results: Any) -> None:
    """Process entry point: the practical ceiling, a paho loop that only counts what arrives."""
    count = 0
    first = last = 0.0
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: Any, _m: mqtt.MQTTMessage) -> None:
        nonlocal count, first, last
        last = time.time()
        if count == 0:
            first = last
        count += 1
        if count >= expected:
            done.set()

    client = _connect(host, port, user, password, f"bench-raw-{time.time_ns()}")
    client.on_message = on_message
    client.subscribe([("otto/nodes/+/metrics/node", 1), ("otto/nodes/+/metrics/containers", 1)])
    time.sleep(0.5)
    ready.set()
    done.wait(300)
    client.disconnect()
    client.loop_stop()
    results.put({"received": count, "first": first, "last": last})


def start_publishers(plans: list[Plan]) -> tuple[list[Any], Any]:
    results = CONTEXT.Queue()
    processes = [CONTEXT.Process(target=publish, args=(plan, results)) for plan in plans]
    for process in processes:
        process.start()
    return processes, results


def collect(processes: list[Any], results: Any, timeout: float = 600) -> list[dict[str, Any]]:
    reports = [results.get(timeout=timeout) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    return reports

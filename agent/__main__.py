"""``python -m agent`` / ``otto-agent``: run the node agent."""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import ssl
import sys
import time
from collections.abc import Sequence

from agent.cgroup_stats import CgroupReader
from agent.collector import MetricsCollector
from agent.container_collector import ContainerCollector
from agent.event_stream import EventStream
from agent.healthcheck import is_fresh, max_age
from agent.heartbeat import Heartbeat
from agent.host_collector import HostCollector, HostPaths
from agent.mqtt_link import MqttLink
from agent.privileges import PrivilegeError, drop_root, parse_user, socket_path
from agent.problems import Problems
from agent.publisher import MetricsPublisher
from agent.settings import AgentSettings
from common import __version__
from common.cli import fail_config, load_settings_or_exit, setup_logging
from common.mqtt_client import MqttConfig
from common.supervision import EXIT_THREAD_DIED, Supervisor
from contract.models import ContainerEvent, NodeStatus, to_payload, utc_now
from contract.topics import NODE_ID_PATTERN, events_topic, status_topic

log = logging.getLogger("agent")

PROGRAM = "otto-agent"
MEMORY_CGROUP_HINT = (
    "the kernel's memory cgroup is disabled, so every container's memory reads 0: on Raspberry Pi OS "
    "append 'cgroup_enable=memory' to the single line of /boot/firmware/cmdline.txt and reboot"
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Publish this node's host and container metrics over MQTT. "
        "Configured with OTTO_* environment variables (see README).",
    )
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {__version__}")
    parser.add_argument(
        "--once",
        action="store_true",
        help="sample over one interval, print the node and containers messages as JSON lines, exit; no broker needed",
    )
    parser.add_argument("--interval", type=float, help="override OTTO_INTERVAL (seconds)")
    parser.add_argument(
        "--check-health", action="store_true", help="exit 0 if the running agent's heartbeat is fresh (healthcheck)"
    )
    return parser.parse_args(argv)


def resolve_node_id(settings: AgentSettings, paths: HostPaths) -> str:
    if settings.node_id:
        return settings.node_id
    hostname = paths.hostname()
    if not re.match(NODE_ID_PATTERN, hostname):
        fail_config(PROGRAM, f"invalid configuration: hostname {hostname!r} is not a valid node id; set OTTO_NODE_ID")
    return hostname


def build_collector(settings: AgentSettings) -> MetricsCollector:
    paths = HostPaths(settings.host_root)
    problems = Problems()
    host = HostCollector(paths, problems)
    if host.memory_cgroup_enabled is False:
        log.warning(MEMORY_CGROUP_HINT)
    cgroups = CgroupReader(paths.sys, paths.proc) if settings.container_stats == "auto" else None
    if cgroups is not None and not cgroups.usable:
        cgroups = None
    containers = ContainerCollector(
        timeout=settings.docker_timeout, concurrency=settings.docker_concurrency, cgroups=cgroups, problems=problems
    )
    return MetricsCollector(resolve_node_id(settings, paths), host, containers, settings.interval)


def run_once(collector: MetricsCollector) -> int:
    collector.prime()
    time.sleep(collector.interval)
    node, batch = collector.collect()
    collector.containers.close()
    messages = [batch] if node is None else [node, batch]
    sys.stdout.write("".join(to_payload(m).decode() + "\n" for m in messages))
    sys.stdout.flush()
    return 0


def run(settings: AgentSettings, collector: MetricsCollector, tls: ssl.SSLContext | None = None) -> int:
    node_id = collector.node_id

    def status(state: str, stamped: bool = True) -> tuple[str, bytes]:
        message = NodeStatus.model_validate(
            {
                "node_id": node_id,
                "status": state,
                "agent_version": __version__,
                "interval_seconds": float(settings.interval),
                "timestamp": utc_now() if stamped else None,
            }
        )
        return status_topic(node_id), to_payload(message)

    link = MqttLink(
        MqttConfig(
            host=settings.mqtt_host,
            port=settings.mqtt_port_value,
            client_id=f"otto-agent-{node_id}",
            username=settings.mqtt_username,
            password=settings.mqtt_password_value,
            keepalive=settings.mqtt_keepalive,
            tls=tls,
        ),
        buffer_size=settings.effective_buffer_size,
        buffer_bytes=settings.buffer_bytes,
        send_rate=settings.replay_rate,
        will=status("offline", stamped=False),
        online=lambda: status("online"),
        offline=lambda: status("offline"),
    )
    collector.outbox_state = lambda: (link.buffered, link.dropped)
    publisher = MetricsPublisher(collector, link, settings.interval, Heartbeat(settings.heartbeat_file))
    topic = events_topic(node_id)

    def publish_event(event: ContainerEvent) -> None:
        link.publish(topic, to_payload(event))

    events = (
        EventStream(node_id, publish_event, collector.problems, window=settings.event_coalesce_seconds)
        if settings.events
        else None
    )

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s: publishing offline status and exiting", signal.Signals(signum).name)
        publisher.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    died: list[str] = []

    def on_death(role: str) -> None:
        died.append(role)
        publisher.stop()

    supervisor = Supervisor({**link.threads, **(events.threads if events else {})}, on_death)

    def on_stopping() -> None:
        supervisor.stop()
        if events is not None:
            events.stop()  # its held messages go to the outbox before the link closes

    log.info(
        "otto-agent %s: node %s, every %gs to %s:%d, buffer %d messages or %d MiB, host root %s, events %s",
        __version__,
        node_id,
        settings.interval,
        settings.mqtt_host,
        settings.mqtt_port_value,
        settings.effective_buffer_size,
        settings.buffer_bytes // 2**20,
        settings.host_root or "(this machine)",
        "followed" if events else "off",
    )
    supervisor.start()
    if events is not None:
        events.start()
    publisher.start(on_stopping=on_stopping)
    log.info("stopped")
    return EXIT_THREAD_DIED if died else 0


def leave_root(settings: AgentSettings) -> None:
    """Started as root (the image in the Compose files): become OTTO_RUN_AS with the socket's group."""
    if settings.run_as is None:
        return
    try:
        dropped = drop_root(*parse_user(settings.run_as), socket_path(os.environ.get("DOCKER_HOST")))
    except PrivilegeError as exc:
        fail_config(PROGRAM, f"invalid configuration: {exc}")
    if dropped is not None:
        log.info(
            "left root: running as %d:%d, groups %s (Docker socket's group: %s), no capabilities",
            dropped.uid,
            dropped.gid,
            ",".join(map(str, dropped.groups)) or "none",
            "no socket" if dropped.socket_gid is None else dropped.socket_gid,
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = load_settings_or_exit(AgentSettings, PROGRAM)
    if args.interval is not None:
        if not 0 < args.interval <= 3600:
            fail_config(PROGRAM, "invalid configuration: --interval must be in (0, 3600]")
        settings.interval = args.interval
    setup_logging(settings.log_level)
    if args.check_health:
        leave_root(settings)
        return 0 if is_fresh(settings.heartbeat_file, max_age(settings.interval)) else 1
    tls = None
    if not args.once:
        try:  # before leaving root: the client key and CA may be readable by root alone
            tls = settings.mqtt_tls_context(log)
        except ValueError as exc:
            fail_config(PROGRAM, f"invalid configuration: {exc}")
    leave_root(settings)
    collector = build_collector(settings)
    if args.once:
        return run_once(collector)
    return run(settings, collector, tls)


if __name__ == "__main__":
    sys.exit(main())

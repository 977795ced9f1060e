"""Which entities a node and a container have in Home Assistant, and how each reads its value.

Templates read the agents' JSON messages (contract/models.py). A field that is null or missing
renders ``None``, which Home Assistant shows as unknown; binary sensors render ON, OFF or None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

Platform = Literal["sensor", "binary_sensor"]

#: Docker's own rule for container names: only these can be put in a template literal safely.
CONTAINER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity: its key (part of ids), label, platform, value template and sensor metadata."""

    key: str
    label: str
    platform: Platform
    template: str
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = "measurement"
    precision: int | None = None
    diagnostic: bool = False
    icon: str | None = None

    def config(self) -> dict[str, Any]:
        """The component config without name, ids and topics (discovery adds them)."""
        config: dict[str, Any] = {"platform": self.platform, "value_template": self.template}
        optional = {
            "unit_of_measurement": self.unit,
            "device_class": self.device_class,
            "state_class": self.state_class if self.platform == "sensor" else None,
            "suggested_display_precision": self.precision,
            "entity_category": "diagnostic" if self.diagnostic else None,
            "icon": self.icon,
        }
        config.update({key: value for key, value in optional.items() if value is not None})
        return config


def _field(path: str) -> str:
    """Template of a node message field; ``agent.cpu_percent`` reads a nested one."""
    head, _, tail = path.partition(".")
    if tail:
        return f"{{{{ value_json.get('{head}', {{}}).get('{tail}') }}}}"
    return f"{{{{ value_json.get('{head}') }}}}"


def _flag(field: str, *, problem_when: bool) -> str:
    on, off = ("ON", "OFF") if problem_when else ("OFF", "ON")
    return f"{{% set v = value_json.get('{field}') %}}{{{{ 'None' if v is none else ('{on}' if v else '{off}') }}}}"


#: Entities of a node, read from ``otto/nodes/{id}/metrics/node``.
NODE_ENTITIES: tuple[Entity, ...] = (
    Entity("cpu", "CPU", "sensor", _field("cpu_percent"), "%", precision=1, icon="mdi:cpu-64-bit"),
    Entity("memory", "Memory", "sensor", _field("memory_percent"), "%", precision=1, icon="mdi:memory"),
    Entity("memory_used", "Memory used", "sensor", _field("memory_used_mb"), "MiB", "data_size", precision=0),
    Entity("swap", "Swap", "sensor", _field("swap_percent"), "%", precision=1, icon="mdi:swap-horizontal"),
    Entity("disk", "Disk", "sensor", _field("disk_percent"), "%", precision=1, icon="mdi:harddisk"),
    Entity("disk_used", "Disk used", "sensor", _field("disk_used_gb"), "GiB", "data_size", precision=1),
    Entity("temperature", "Temperature", "sensor", _field("temperature_c"), "°C", "temperature", precision=1),
    Entity("cpu_frequency", "CPU frequency", "sensor", _field("cpu_freq_mhz"), "MHz", "frequency", precision=0),
    Entity("load_1", "Load (1 min)", "sensor", _field("load_1"), precision=2, icon="mdi:gauge"),
    Entity("load_5", "Load (5 min)", "sensor", _field("load_5"), precision=2, icon="mdi:gauge"),
    Entity("load_15", "Load (15 min)", "sensor", _field("load_15"), precision=2, icon="mdi:gauge"),
    Entity("uptime", "Uptime", "sensor", _field("uptime_seconds"), "s", "duration", precision=0),
    Entity("network_sent", "Network sent", "sensor", _field("network_sent_rate"), "B/s", "data_rate", precision=0),
    Entity("network_received", "Network received", "sensor", _field("network_recv_rate"), "B/s", "data_rate",
           precision=0),
    Entity("under_voltage", "Under-voltage", "binary_sensor", _flag("under_voltage", problem_when=True),
           device_class="problem"),
    Entity("memory_cgroup", "Memory cgroup disabled", "binary_sensor",
           _flag("memory_cgroup_enabled", problem_when=False), device_class="problem", diagnostic=True),
    Entity("agent_cpu", "Agent CPU", "sensor", _field("agent.cpu_percent"), "%", precision=2, diagnostic=True,
           icon="mdi:chip"),
    Entity("agent_memory", "Agent memory", "sensor", _field("agent.rss_mb"), "MiB", "data_size", precision=1,
           diagnostic=True),
    Entity("agent_dropped", "Agent dropped messages", "sensor", _field("agent.dropped"),
           state_class="total_increasing", diagnostic=True, icon="mdi:message-alert"),
)  # fmt: skip

CONTAINER_KEYS = ("state", "health", "cpu", "memory", "restarts")


def container_entities(name: str) -> tuple[Entity, ...]:
    """Entities of container ``name`` (it must match CONTAINER_NAME), read from the containers topic.

    A container missing from the batch is ``not running`` (unknown if the agent could not list
    containers); its figures are unknown. Health is ``none`` for a container without a healthcheck.
    """
    if not CONTAINER_NAME.match(name):
        raise ValueError(f"not a Docker container name: {name!r}")
    pick = f"{{% set c = value_json.containers | selectattr('container_name', 'eq', '{name}') | list %}}"

    def figure(field: str) -> str:
        return pick + f"{{{{ c[0].{field} if c else None }}}}"

    state = pick + "{{ c[0].state if c else (None if value_json.get('error') else 'not running') }}"
    return (
        Entity("state", "state", "sensor", state, state_class=None, icon="mdi:docker"),
        Entity(
            "health",
            "health",
            "sensor",
            pick + "{{ (c[0].health or 'none') if c else None }}",
            state_class=None,
            icon="mdi:heart-pulse",
        ),
        Entity("cpu", "CPU", "sensor", figure("cpu_percent"), "%", precision=1, icon="mdi:cpu-64-bit"),
        Entity("memory", "memory", "sensor", figure("memory_usage_mb"), "MiB", "data_size", precision=1),
        Entity("restarts", "restarts", "sensor", figure("restart_count"), icon="mdi:restart"),
    )


TEMPLATE_NAME = re.compile(r"selectattr\('container_name', 'eq', '([A-Za-z0-9][A-Za-z0-9_.-]{0,127})'\)")


def container_name_in(template: str) -> str | None:
    """The container name a container entity's template picks (our own format), or None."""
    match = TEMPLATE_NAME.search(template)
    return match.group(1) if match else None

"""Message models on the wire (JSON, UTF-8).

Units: ``*_mb`` are MiB (2**20 bytes), ``*_gb`` are GiB (2**30 bytes), ``*_bytes`` are bytes,
``*_percent`` are percentages, timestamps are timezone-aware UTC. Validation is strict (no
coercion of strings to numbers, no NaN or infinity); unknown fields are ignored so that a newer
agent can add fields without breaking an older subscriber.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from contract.topics import NODE_ID_PATTERN

#: Bumped when a field changes meaning or is removed; adding optional fields does not bump it.
SCHEMA_VERSION = 1

_INT64_MAX = 2**63 - 1

NodeId = Annotated[str, StringConstraints(pattern=NODE_ID_PATTERN)]


def _to_utc(moment: datetime) -> datetime:
    # An offset at the calendar's edge (9999-12-31T23:59:59-01:00) has no UTC equivalent.
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp is out of range once converted to UTC") from None


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
Percent = Annotated[float, Field(ge=0.0, le=100.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
Counter = Annotated[int, Field(ge=0, le=_INT64_MAX)]
#: Text holds no NUL character: no Docker name or reference has one, and PostgreSQL's text cannot store it.
NO_NUL = r"^[^\x00]*$"
ShortText = Annotated[str, StringConstraints(max_length=512, pattern=NO_NUL)]

CYCLE_DOC = (
    "Collection cycle since the agent started (1, 2, ...), shared by the node and containers messages "
    "of one cycle: a gap means lost messages, a smaller number an agent restart."
)


class WireModel(BaseModel):
    """Base of every message: strict, immutable, tolerant of unknown fields."""

    model_config = ConfigDict(
        strict=True,
        extra="ignore",
        allow_inf_nan=False,
        frozen=True,
        validate_by_name=True,
        serialize_by_alias=True,
    )


class NodeMessage(WireModel):
    """What every message a node publishes starts with: the format version and the node's id."""

    schema_version: int = Field(SCHEMA_VERSION, alias="schema", ge=1, description="Schema version.")
    node_id: NodeId


class AgentStats(WireModel):
    """What the agent itself costs the node, and the state of its outgoing buffer."""

    version: ShortText = Field(description="Agent version.")
    arch: ShortText = Field(description="Machine architecture the agent runs on (uname -m), e.g. aarch64.")
    collect_seconds: NonNegative = Field(description="Wall time of the last collection cycle, seconds.")
    rss_mb: NonNegative = Field(description="Resident memory of the agent process, MiB.")
    cpu_percent: NonNegative = Field(description="Agent CPU time over the last interval, percent of one core.")
    buffered: Counter = Field(description="Messages waiting for the broker to acknowledge them.")
    dropped: Counter = Field(description="Messages discarded since start because the buffer was full (oldest first).")
    problems: dict[Annotated[str, StringConstraints(max_length=64, pattern=NO_NUL)], Counter] = Field(
        default_factory=dict,
        max_length=64,
        description="Readings truncated, nulled or skipped since start, by kind (see the agent's problems rule).",
    )


class NodeMetrics(NodeMessage):
    """Host-level metrics of one node, published on ``otto/nodes/{node_id}/metrics/node``."""

    timestamp: UtcDatetime = Field(description="End of the sampled interval, UTC.")
    cycle: Counter = Field(0, description=CYCLE_DOC)
    interval_seconds: NonNegative = Field(0.0, description="Publish interval of the agent, seconds.")

    cpu_percent: Percent = Field(description="Busy CPU over the whole interval, percent of all cores (0-100).")
    cpu_per_core: list[Percent] = Field(
        default_factory=list, max_length=4096, description="Busy CPU per core over the interval, percent."
    )
    cpu_count: Counter = Field(0, description="Online logical CPUs.")
    cpu_freq_mhz: NonNegative | None = Field(
        None, description="Mean requested CPU clock (cpufreq scaling_cur_freq), MHz; null if unavailable."
    )
    load_1: NonNegative | None = Field(None, description="1-minute load average.")
    load_5: NonNegative | None = Field(None, description="5-minute load average.")
    load_15: NonNegative | None = Field(None, description="15-minute load average.")
    uptime_seconds: NonNegative | None = Field(None, description="Host uptime, seconds.")

    memory_percent: Percent = Field(description="memory_used_mb / memory_total_mb, percent.")
    memory_used_mb: NonNegative = Field(description="MemTotal - MemAvailable, MiB.")
    memory_total_mb: NonNegative = Field(description="MemTotal, MiB.")
    memory_available_mb: NonNegative | None = Field(None, description="MemAvailable, MiB.")
    swap_percent: Percent | None = Field(None, description="Swap used, percent of swap total.")
    swap_used_mb: NonNegative | None = Field(None, description="SwapTotal - SwapFree, MiB.")
    swap_total_mb: NonNegative | None = Field(None, description="SwapTotal, MiB.")

    disk_percent: Percent | None = Field(
        None,
        description="Root filesystem used / (used + available to users), percent, as df shows it; "
        "null if it cannot be read.",
    )
    disk_used_gb: NonNegative | None = Field(None, description="Root filesystem used space, GiB.")
    disk_total_gb: NonNegative | None = Field(None, description="Root filesystem size, GiB.")

    network_bytes_sent: Counter | None = Field(
        None,
        description="Bytes sent since boot over physical interfaces (those with a device in sysfs), bytes; "
        "null if the counters cannot be read.",
    )
    network_bytes_recv: Counter | None = Field(None, description="Bytes received since boot over the same, bytes.")
    network_sent_rate: NonNegative | None = Field(
        None,
        description="Bytes sent per second over the same interfaces since the agent's previous reading, B/s; "
        "null on the first reading.",
    )
    network_recv_rate: NonNegative | None = Field(
        None, description="Bytes received per second over the same, B/s; null on the first reading."
    )

    temperature_c: float | None = Field(
        None, ge=-273.15, le=1000.0, description="SoC temperature, degrees Celsius; null if no sensor."
    )
    under_voltage: bool | None = Field(
        None, description="Raspberry Pi under-voltage alarm (hwmon rpi_volt); null if not a Pi."
    )
    memory_cgroup_enabled: bool | None = Field(
        None, description="Whether the kernel's memory cgroup controller is on; off means container memory is 0."
    )

    agent: AgentStats


class ContainerMetrics(WireModel):
    """One container's figures, computed with the ``docker stats`` CLI's formulas."""

    container_id: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=NO_NUL)]
    container_name: ShortText
    image: ShortText = ""
    state: ShortText = Field("running", description="Docker state: running, paused, restarting, ...")
    health: ShortText | None = Field(None, description="healthy, unhealthy, starting; null without a healthcheck.")
    restart_count: Counter = 0
    started_at: UtcDatetime | None = Field(
        None, description="When the container's current run started (inspect State.StartedAt), UTC; null if unknown."
    )
    pids: Counter = Field(0, description="Processes and threads in the container.")

    cpu_percent: NonNegative = Field(
        description="CPU over the interval, percent of one core (100 = one full core; max cores x 100)."
    )
    memory_percent: NonNegative = Field(description="memory_usage_mb / memory_limit_mb, percent.")
    memory_usage_mb: NonNegative = Field(description="Memory usage minus inactive page cache, MiB.")
    memory_limit_mb: NonNegative = Field(description="Memory limit (host RAM if unlimited), MiB.")
    network_rx_bytes: Counter = Field(description="Bytes received, summed over the container's interfaces.")
    network_tx_bytes: Counter = Field(description="Bytes sent, summed over the container's interfaces.")
    block_read_bytes: Counter = Field(description="Bytes read from block devices, summed over devices.")
    block_write_bytes: Counter = Field(description="Bytes written to block devices, summed over devices.")


class ContainerMetricsBatch(NodeMessage):
    """All running containers of one node, published on ``otto/nodes/{node_id}/metrics/containers``."""

    timestamp: UtcDatetime
    cycle: Counter = Field(0, description=CYCLE_DOC)
    containers: list[ContainerMetrics] = Field(max_length=10_000)
    error: ShortText | None = Field(
        None, description="Why the list is empty or incomplete (e.g. Docker daemon unreachable); null if fine."
    )


class NodeStatus(NodeMessage):
    """Retained availability of a node on ``otto/nodes/{node_id}/status`` (also its last will)."""

    status: Literal["online", "offline"]
    agent_version: ShortText
    interval_seconds: NonNegative
    timestamp: UtcDatetime | None = Field(
        None, description="When the status was published; null in the last will (set by the broker's clock)."
    )


#: Container lifecycle actions an agent reports (Docker's own names; ``health_status`` carries ``health``),
#: and ``gap``: the agent lost the event stream (daemon restarted) and events may be missing until it resumed.
EventAction = Literal["start", "die", "oom", "restart", "health_status", "pause", "unpause", "destroy", "gap"]


class ContainerEvent(NodeMessage):
    """One container lifecycle event, published at once on ``otto/nodes/{node_id}/events`` (QoS 1).

    A container that repeats an action faster than the agent's coalescing window (a crash loop) is
    reported once per window per action: ``count`` says how many events the message stands for,
    ``first_timestamp`` when the first of them happened, the other fields are the latest one's.
    """

    timestamp: UtcDatetime = Field(description="When the Docker daemon recorded the event (its clock), UTC.")
    action: EventAction
    container_id: Annotated[str, StringConstraints(max_length=128, pattern=NO_NUL)] = Field(
        "", description="Full container id; empty only for a gap."
    )
    container_name: ShortText = ""
    image: ShortText = ""
    exit_code: int | None = Field(
        None, ge=-(2**31), le=2**31 - 1, description="die: the main process's exit status (137 = SIGKILL)."
    )
    health: Literal["healthy", "unhealthy", "starting"] | None = Field(
        None, description="health_status: the new health of the container."
    )
    stop_requested: bool = Field(
        False,
        description="die: someone asked the daemon to stop or kill the container first (docker stop, kill, "
        "restart, compose down, daemon shutdown), so it did not exit on its own.",
    )
    oom_killed: bool = Field(False, description="die: the kernel's OOM killer ended it (an oom event came first).")
    count: int = Field(1, ge=1, le=_INT64_MAX, description="Events this message stands for (coalesced).")
    first_timestamp: UtcDatetime | None = Field(None, description="When the first coalesced event happened.")
    detail: ShortText | None = Field(None, description="gap: why and since when events may be missing.")


def to_payload(message: WireModel) -> bytes:
    """Serialise a message for the wire."""
    return message.model_dump_json().encode()


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)

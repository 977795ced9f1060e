"""The agent's configuration: environment variables prefixed ``OTTO_``.

The Docker endpoint is not here: it follows the Docker SDK's own convention (``DOCKER_HOST``,
``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``; default the local socket).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from agent.healthcheck import DEFAULT_HEARTBEAT
from agent.privileges import parse_user
from common.mqtt_settings import MqttSettings
from contract.models import NodeId

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class AgentSettings(MqttSettings):
    """Every setting of the agent, read from ``OTTO_*`` environment variables."""

    node_id: NodeId | None = Field(
        None, description="Node id in topics; default the host's hostname (letters, digits, - _ .)."
    )
    interval: float = Field(5.0, gt=0, le=3600, description="Seconds between samples.")
    host_root: Path | None = Field(
        None, description="Where host / is mounted (e.g. /hostfs); unset: describe this machine."
    )
    mqtt_keepalive: int = Field(30, ge=5, le=3600)
    buffer_size: int | None = Field(
        None, ge=1, le=1_000_000, description="Messages kept while the broker is away; default one hour."
    )
    buffer_bytes: int = Field(
        32 * 2**20, ge=2**16, le=2**31, description="Payload bytes kept while the broker is away (oldest dropped)."
    )
    replay_rate: float = Field(
        25.0, gt=0, le=10_000, description="Messages per second at most when replaying the buffer after an outage."
    )
    docker_timeout: int = Field(4, ge=1, le=60, description="Timeout of one Docker API call, seconds.")
    docker_concurrency: int = Field(0, ge=0, le=256, description="Parallel stats calls; 0 = automatic.")
    container_stats: Literal["auto", "api"] = Field(
        "auto",
        description="auto: read container cgroups directly where visible, else the Engine API; api: always the API.",
    )
    events: bool = Field(True, description="Follow Docker's container events and publish them at once.")
    event_coalesce_seconds: float = Field(
        10.0, ge=0.1, le=3600, description="A container's repeats of one action within this are sent as one message."
    )
    heartbeat_file: Path = Field(Path(DEFAULT_HEARTBEAT))
    run_as: str | None = Field(
        None,
        pattern=r"^[0-9]+(:[0-9]+)?$",
        description="uid:gid to switch to when started as root, keeping the Docker socket's group (the image: 10001).",
    )
    log_level: LogLevel = "INFO"

    @field_validator("run_as")
    @classmethod
    def _not_root(cls, value: str | None) -> str | None:
        if value is not None:
            parse_user(value)
        return value

    @property
    def effective_buffer_size(self) -> int:
        """Configured buffer size, or one hour of cycles (two messages per cycle)."""
        if self.buffer_size is not None:
            return self.buffer_size
        return 2 * math.ceil(3600 / self.interval)

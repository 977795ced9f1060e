"""The agent's configuration: environment variables prefixed ``OTTO_``.

The Docker endpoint is not here: it follows the Docker SDK's own convention (``DOCKER_HOST``,
``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``; default the local socket).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.cli import read_secret_file
from contract.models import NodeId

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class AgentSettings(BaseSettings):
    """Every setting of the agent, read from ``OTTO_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="OTTO_", case_sensitive=False, extra="ignore")

    node_id: NodeId | None = Field(
        None, description="Node id in topics; default the host's hostname (letters, digits, - _ .)."
    )
    interval: float = Field(5.0, gt=0, le=3600, description="Seconds between samples.")
    host_root: Path | None = Field(
        None, description="Where host / is mounted (e.g. /hostfs); unset: describe this machine."
    )

    mqtt_host: str = Field("localhost", min_length=1)
    mqtt_port: int = Field(1883, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_username_file: Path | None = None
    mqtt_password_file: Path | None = None
    mqtt_keepalive: int = Field(30, ge=5, le=3600)

    buffer_size: int | None = Field(
        None, ge=1, le=1_000_000, description="Messages kept while the broker is away; default one hour."
    )
    docker_timeout: int = Field(4, ge=1, le=60, description="Timeout of one Docker API call, seconds.")
    docker_concurrency: int = Field(0, ge=0, le=256, description="Parallel stats calls; 0 = automatic.")
    heartbeat_file: Path = Field(Path("/tmp/otto-agent.heartbeat"))
    log_level: LogLevel = "INFO"

    @model_validator(mode="after")
    def _read_secret_files(self) -> AgentSettings:
        if self.mqtt_username is None and self.mqtt_username_file is not None:
            self.mqtt_username = _read(self.mqtt_username_file, "OTTO_MQTT_USERNAME_FILE")
        if self.mqtt_password is None and self.mqtt_password_file is not None:
            self.mqtt_password = SecretStr(_read(self.mqtt_password_file, "OTTO_MQTT_PASSWORD_FILE"))
        return self

    @property
    def effective_buffer_size(self) -> int:
        """Configured buffer size, or one hour of cycles (two messages per cycle)."""
        if self.buffer_size is not None:
            return self.buffer_size
        return 2 * math.ceil(3600 / self.interval)


def _read(path: Path, variable: str) -> str:
    try:
        return read_secret_file(path)
    except OSError as exc:
        raise ValueError(f"{variable}: cannot read {path}: {exc.strerror}") from None

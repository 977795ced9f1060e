"""The subscriber's configuration: environment variables prefixed ``OTTO_``."""

from __future__ import annotations

import re
import socket
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, model_validator

from common.cli import read_secret_file
from common.mqtt_settings import MqttSettings
from subscriber.rollup import Retention, Tier

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> Any:
    """'7d', '12h', '30m', '90s' or plain seconds; anything else is left to pydantic (ISO 8601)."""
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class SubscriberSettings(MqttSettings):
    """Every setting of the subscriber, read from ``OTTO_*`` environment variables."""

    mqtt_client_id: str = Field("otto-subscriber", min_length=1, max_length=64)
    mqtt_session_expiry: Duration = Field(timedelta(days=7), description="How long the broker queues for us.")

    db_path: Path = Field(
        Path("otto-history.db"),
        description="SQLite file: the history (without OTTO_DATABASE_URL), logins and tokens, alerts.",
    )
    database_url: SecretStr | None = Field(
        None,
        description="PostgreSQL for the history instead of SQLite: postgresql://user@host:5432/db "
        "(a libpq URL; the password here or in OTTO_DATABASE_PASSWORD_FILE).",
    )
    database_url_file: Path | None = Field(
        None,
        description="File holding OTTO_DATABASE_URL; a file that does not exist means SQLite (Compose: the "
        "postgres profile writes it on its first start, and from then on the history is in PostgreSQL).",
    )
    database_password_file: Path | None = Field(None, description="File with the PostgreSQL password (a secret).")
    shared_group: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,32}$",
        description="Run as one of several replicas sharing node metrics through $share/<group>/ (needs PostgreSQL).",
    )
    replica_id: str = Field(
        default_factory=socket.gethostname,
        pattern=r"^[A-Za-z0-9_.-]{1,40}$",
        description="This replica's name (default: the host name, which Docker keeps across restarts).",
    )
    retention: Duration = Field(timedelta(days=7), description="How long raw history (every sample) is kept.")
    retention_1m: Duration = Field(timedelta(days=14), description="How long 1-minute buckets are kept.")
    retention_15m: Duration = Field(timedelta(days=90), description="How long 15-minute buckets are kept.")
    retention_2h: Duration = Field(timedelta(days=400), description="How long 2-hour buckets are kept.")
    stale_after: float = Field(3.0, gt=1.0, le=1000.0, description="Stale after this many silent intervals.")
    max_clock_skew: float = Field(
        300.0, ge=1.0, le=86_400.0, description="Seconds a sample's time may differ from its arrival and be trusted."
    )
    max_payload_bytes: int = Field(1_048_576, ge=1024, le=268_435_456)
    prometheus_grace: Duration = Field(
        timedelta(minutes=5), description="How long an offline or stale node's figures stay in /metrics."
    )
    node_rate_limit: float = Field(50.0, ge=0.0, description="Messages per second a node may send; 0 = no limit.")
    node_rate_burst: float = Field(500.0, ge=1.0, description="Messages a node may send at once beyond its rate.")
    queue_max_messages: int = Field(10_000, ge=100, description="QoS 0 messages that may wait for the worker.")
    queue_max_bytes: int = Field(256 * 2**20, ge=2**20, description="Payload bytes that may wait for the worker.")

    alerts: bool = Field(True, description="Evaluate the alert rules (recorded, served, counted; notified if URLs).")
    alerts_file: Path | None = Field(None, description="TOML file of alert rules over the defaults (docs/alerts.md).")
    notify_urls: SecretStr | None = Field(
        None, description="Apprise URLs, separated by spaces or commas (ntfy://, tgram://, json://, mailto://, ...)."
    )
    notify_urls_file: Path | None = Field(None, description="File holding OTTO_NOTIFY_URLS (a Docker secret).")
    public_url: str = Field(
        "http://localhost:8080", pattern=r"^https?://", description="The dashboard's address, for links in alerts."
    )

    ha_discovery: Literal["device", "entity", "off"] = Field(
        "device",
        description="Home Assistant MQTT discovery: device (one config per node, Home Assistant 2024.12+), "
        "entity (one config per entity: older releases, openHAB) or off.",
    )
    ha_prefix: str = Field(
        "homeassistant", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$", description="Discovery topic prefix."
    )
    ha_containers: Literal["off", "components", "devices"] = Field(
        "off",
        description="Containers in Home Assistant: off, components of their node's device, or devices of their own.",
    )
    ha_container_expire: Duration = Field(
        timedelta(days=1), description="A container missing from its node's batches this long leaves Home Assistant."
    )
    ha_node_expire: Duration = Field(
        timedelta(days=7), description="A node silent this long (or forgotten by retention) leaves Home Assistant."
    )

    broker_tls_address: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$",
        description="host:port of the broker TLS listener whose certificate expiry is watched (mosquitto:8883).",
    )

    auth: bool = Field(True, description="Require the admin's login or an API token on every route but /healthz.")
    admin_password_file: Path | None = Field(
        None, description="File with the admin's password; unset: one is made on the first start and logged once."
    )
    session_lifetime: Duration = Field(timedelta(days=7), description="How long a login lasts.")
    trusted_proxies: str | None = Field(
        None,
        pattern=r"^[0-9A-Fa-f.:/, *]+$",
        description="Addresses of reverse proxies whose X-Forwarded-For/-Proto are believed (comma separated).",
    )
    api_tls_cert_file: Path | None = Field(None, description="Serve HTTPS with this certificate (chain) ...")
    api_tls_key_file: Path | None = Field(None, description="... and this key.")

    api_host: str = "0.0.0.0"  # noqa: S104  (the API is meant to be reachable; compose publishes it)
    api_port: int = Field(8080, ge=1, le=65535)
    log_level: LogLevel = "INFO"
    log_messages: bool = Field(True, description="Log one line per node message and per container at INFO.")

    @model_validator(mode="after")
    def _read_notify_urls(self) -> SubscriberSettings:
        if self.notify_urls is None and self.notify_urls_file is not None:
            try:
                self.notify_urls = SecretStr(read_secret_file(self.notify_urls_file))
            except OSError as exc:
                raise ValueError(
                    f"OTTO_NOTIFY_URLS_FILE: cannot read {self.notify_urls_file}: {exc.strerror}"
                ) from None
        return self

    @property
    def notify_url_list(self) -> list[str]:
        """The notification URLs, in order (none: alerts are recorded and served, not sent)."""
        text = self.notify_urls.get_secret_value() if self.notify_urls is not None else ""
        # A comma separates URLs only where the next one begins (scheme://): mailto://...?to=a@x,b@x stays whole.
        return [url.strip(",") for url in re.split(r"\s+|,\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)", text) if url.strip(",")]

    @model_validator(mode="after")
    def _check_replicas(self) -> SubscriberSettings:
        if self.database_url is None and self.database_url_file is not None:
            try:
                self.database_url = SecretStr(read_secret_file(self.database_url_file).strip())
            except FileNotFoundError:
                self.shared_group = None  # no PostgreSQL yet: one subscriber on SQLite (said by open_history)
            except OSError as exc:
                raise ValueError(
                    f"OTTO_DATABASE_URL_FILE: cannot read {self.database_url_file}: {exc.strerror}"
                ) from None
        if self.shared_group is not None and self.database_url is None:
            raise ValueError("OTTO_SHARED_GROUP needs OTTO_DATABASE_URL: replicas share their history in PostgreSQL")
        return self

    @property
    def database_password(self) -> str | None:
        """The PostgreSQL password from OTTO_DATABASE_PASSWORD_FILE (None: the URL's, or none)."""
        return read_secret_file(self.database_password_file) if self.database_password_file else None

    @property
    def client_id(self) -> str:
        """The MQTT client id: a replica's carries its name, so that its session survives its restarts."""
        return f"{self.mqtt_client_id}-{self.replica_id}"[:64] if self.shared_group else self.mqtt_client_id

    @model_validator(mode="after")
    def _check_api_tls(self) -> SubscriberSettings:
        if (self.api_tls_cert_file is None) != (self.api_tls_key_file is None):
            raise ValueError("OTTO_API_TLS_CERT_FILE and OTTO_API_TLS_KEY_FILE go together")
        return self

    @model_validator(mode="after")
    def _check_retention(self) -> SubscriberSettings:
        for name in (
            "retention",
            "retention_1m",
            "retention_15m",
            "retention_2h",
            "ha_container_expire",
            "ha_node_expire",
            "session_lifetime",
        ):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"OTTO_{name.upper()}: must be positive")
        return self

    @property
    def history_retention(self) -> Retention:
        """Raw rows and every downsampled tier, each with its own retention."""
        return Retention(
            raw=self.retention,
            tiers=(
                Tier("1m", 60, self.retention_1m),
                Tier("15m", 900, self.retention_15m),
                Tier("2h", 7200, self.retention_2h),
            ),
        )

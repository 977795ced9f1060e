"""Broker address and credentials, shared by both programs' settings classes."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator

from common.cli import read_secret_file
from common.env_settings import EnvSettings


class MqttSettings(EnvSettings):
    """``OTTO_MQTT_*``: where the broker is and who we are; ``*_FILE`` variants for Docker secrets."""

    mqtt_host: str = Field("localhost", min_length=1)
    mqtt_port: int = Field(1883, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_username_file: Path | None = None
    mqtt_password_file: Path | None = None

    @model_validator(mode="after")
    def _read_secret_files(self) -> Self:
        if self.mqtt_username is None and self.mqtt_username_file is not None:
            self.mqtt_username = _read(self.mqtt_username_file, "OTTO_MQTT_USERNAME_FILE")
        if self.mqtt_password is None and self.mqtt_password_file is not None:
            self.mqtt_password = SecretStr(_read(self.mqtt_password_file, "OTTO_MQTT_PASSWORD_FILE"))
        return self

    @property
    def mqtt_password_value(self) -> str | None:
        return self.mqtt_password.get_secret_value() if self.mqtt_password is not None else None


def _read(path: Path, variable: str) -> str:
    try:
        return read_secret_file(path)
    except OSError as exc:
        raise ValueError(f"{variable}: cannot read {path}: {exc.strerror}") from None

"""Broker address, credentials and TLS, shared by both programs' settings classes."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator

from common.cli import read_secret_file
from common.env_settings import EnvSettings


class MqttSettings(EnvSettings):
    """``OTTO_MQTT_*``: where the broker is, who we are and how we check it; ``*_FILE`` for Docker secrets.

    TLS is on by default and verifies the broker's certificate and host name against
    ``OTTO_MQTT_CA_FILE`` (the control plane's CA, printed by ``otto-auth add-node``) or, without
    it, the system's trust store (a public certificate such as Let's Encrypt's).
    """

    mqtt_host: str = Field("localhost", min_length=1)
    mqtt_port: int | None = Field(None, ge=1, le=65535, description="Default 8883 with TLS, 1883 without.")
    mqtt_tls: bool = Field(True, description="Connect with TLS (1.2 or newer), verifying the broker.")
    mqtt_ca_file: Path | None = Field(None, description="CA certificate(s) to trust; unset: the system's.")
    mqtt_cert_file: Path | None = Field(None, description="Client certificate for mutual TLS (with the key).")
    mqtt_key_file: Path | None = Field(None, description="Its private key.")
    mqtt_tls_insecure: bool = Field(False, description="Testing only: accept any certificate and host name.")
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
        if (self.mqtt_cert_file is None) != (self.mqtt_key_file is None):
            raise ValueError("OTTO_MQTT_CERT_FILE and OTTO_MQTT_KEY_FILE go together")
        if not self.mqtt_tls and self.mqtt_tls_insecure:
            raise ValueError("OTTO_MQTT_TLS_INSECURE needs OTTO_MQTT_TLS=true")
        return self

    @property
    def mqtt_port_value(self) -> int:
        """The broker's port: as set, else 8883 with TLS and 1883 without."""
        if self.mqtt_port is not None:
            return self.mqtt_port
        return 8883 if self.mqtt_tls else 1883

    def mqtt_tls_context(self, log: logging.Logger) -> ssl.SSLContext | None:
        """The TLS context to connect with (None without TLS); reads the files now (before dropping root).

        Raises ValueError naming the variable when a file cannot be read or holds no certificate/key.
        """
        if not self.mqtt_tls:
            # A Compose service name or the loopback: the local network of one machine; anything else
            # is a network others may share.
            local = "." not in self.mqtt_host or self.mqtt_host.startswith("127.") or self.mqtt_host == "::1"
            log.log(
                logging.INFO if local else logging.WARNING,
                "MQTT without TLS to %s (OTTO_MQTT_TLS=false): credentials and metrics cross the network in clear",
                self.mqtt_host,
            )
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.mqtt_ca_file is not None:
            try:
                context.load_verify_locations(cafile=self.mqtt_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"OTTO_MQTT_CA_FILE: cannot load {self.mqtt_ca_file}: {_reason(exc)}") from None
        if self.mqtt_cert_file is not None and self.mqtt_key_file is not None:
            try:
                context.load_cert_chain(self.mqtt_cert_file, self.mqtt_key_file)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(
                    f"OTTO_MQTT_CERT_FILE/OTTO_MQTT_KEY_FILE: cannot load {self.mqtt_cert_file}: {_reason(exc)}"
                ) from None
        if self.mqtt_tls_insecure:
            log.warning(
                "OTTO_MQTT_TLS_INSECURE=true: the broker's certificate and host name are NOT checked; "
                "anyone between here and the broker can read and change everything (testing only)"
            )
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    @property
    def mqtt_password_value(self) -> str | None:
        return self.mqtt_password.get_secret_value() if self.mqtt_password is not None else None


def _reason(exc: OSError | ssl.SSLError) -> str:
    return str(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)


def _read(path: Path, variable: str) -> str:
    try:
        return read_secret_file(path)
    except OSError as exc:
        raise ValueError(f"{variable}: cannot read {path}: {exc.strerror}") from None

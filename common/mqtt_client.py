"""The MQTT client set-up both programs share: MQTT v5, credentials, backoff, a network thread of ours."""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

#: Reconnect backoff: the first wait and the longest, seconds (paho doubles it in between).
RECONNECT_MIN = 1
RECONNECT_MAX = 30


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """Where and as whom to connect."""

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    client_id: str = ""
    keepalive: int = 30
    tls: ssl.SSLContext | None = None


def make_client(config: MqttConfig, *, manual_ack: bool = False) -> mqtt.Client:
    """A paho client for ``config``: MQTT v5, logged in, TLS when configured, reconnecting with backoff.

    Exceptions in callbacks are suppressed (logged by paho), never raised into the network loop.
    """
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=config.client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
        reconnect_on_failure=True,
    )
    if config.username is not None:
        client.username_pw_set(config.username, config.password)
    if config.tls is not None:
        client.tls_set_context(config.tls)
        if not config.tls.check_hostname:
            client.tls_insecure_set(True)
    client.reconnect_delay_set(min_delay=RECONNECT_MIN, max_delay=RECONNECT_MAX)
    client.suppress_exceptions = True
    return client


def network_thread(client: mqtt.Client, name: str) -> threading.Thread:
    """What ``loop_start()`` runs, in a thread the program owns and can watch (not started)."""
    return threading.Thread(target=client.loop_forever, kwargs={"retry_first_connection": True}, name=name, daemon=True)


def why_unreachable(config: MqttConfig, timeout: float = 5.0) -> str:
    """Why a connection to the broker fails, found by trying it (paho's loop swallows the reason).

    A TCP connect and, with TLS, the handshake: "certificate verify failed: IP address mismatch"
    tells a user what "unreachable" alone does not. Empty when both succeed now.
    """
    try:
        with socket.create_connection((config.host, config.port), timeout=timeout) as raw:
            if config.tls is not None:
                with config.tls.wrap_socket(raw, server_hostname=config.host):
                    pass
    except ssl.SSLCertVerificationError as exc:
        return f"TLS: {exc.verify_message}"
    except ssl.SSLError as exc:
        return f"TLS: {exc.reason or exc}"
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""

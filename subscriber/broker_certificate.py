"""How long the certificate the broker serves to the Pis has left: probed over TLS, as a node sees it.

The subscriber reaches the broker's TLS listener (``OTTO_BROKER_TLS_ADDRESS``, Compose:
``mosquitto:8883``) once an hour, reads the certificate it is served and exposes its expiry on
the API (``/api/broker/certificate``), in Prometheus and to the alert rules. Probing what is
served, not a file, also catches a renewed certificate the broker was never told to reload, and
works the same for a private CA's certificate and for one brought from Let's Encrypt.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from cryptography import x509
from fastapi import APIRouter
from prometheus_client import CollectorRegistry, Gauge
from pydantic import BaseModel, Field

log = logging.getLogger(__name__)


class BrokerCertificate(BaseModel):
    """The broker's certificate as last probed (``error`` set when the probe failed)."""

    address: str
    subject: str | None = None
    names: list[str] = Field(default_factory=list, description="DNS names and addresses it is valid for.")
    issuer: str | None = None
    not_after: datetime | None = None
    days_left: float | None = Field(None, description="Days until it expires; negative once it has.")
    checked_at: datetime | None = None
    error: str | None = None


def describe(der: bytes, address: str, now: datetime) -> BrokerCertificate:
    """A reading from the certificate's DER bytes (pure)."""
    cert = x509.load_der_x509_certificate(der)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [*sans.get_values_for_type(x509.DNSName), *map(str, sans.get_values_for_type(x509.IPAddress))]
    except x509.ExtensionNotFound:
        names = []
    return BrokerCertificate(
        address=address,
        subject=cert.subject.rfc4514_string(),
        names=names,
        issuer=cert.issuer.rfc4514_string(),
        not_after=cert.not_valid_after_utc,
        days_left=round((cert.not_valid_after_utc - now).total_seconds() / 86400, 2),
        checked_at=now,
    )


def fetch_certificate(host: str, port: int, timeout: float = 10.0) -> bytes:
    """The DER certificate ``host:port`` serves; not verified (an expired one must still be read)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the broker sent no certificate")
    return der


class BrokerCertificateWatch:
    """Probes ``address`` (host:port) every ``interval`` seconds in a thread of its own."""

    def __init__(
        self,
        address: str,
        registry: CollectorRegistry,
        interval: float = 3600.0,
        fetch: Callable[[str, int], bytes] = fetch_certificate,
    ) -> None:
        host, _, port = address.rpartition(":")
        self.address, self.host, self.port = address, host, int(port)
        self.interval = interval
        self._fetch = fetch
        self.latest = BrokerCertificate(address=address)
        self._days = Gauge(
            "otto_broker_certificate_days_left",
            "Days until the broker's TLS certificate expires (as served on OTTO_BROKER_TLS_ADDRESS)",
            registry=registry,
        )
        self._expiry = Gauge(
            "otto_broker_certificate_expiry_timestamp_seconds",
            "When the broker's TLS certificate expires (Unix time)",
            registry=registry,
        )
        self._ok = Gauge(
            "otto_broker_certificate_probe_success", "1 when the last probe read the certificate", registry=registry
        )
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="otto-broker-certificate", daemon=True)

    def check(self) -> BrokerCertificate:
        """Probe now; keep and return the reading (a failure is one log line, and the last good expiry stays)."""
        now = datetime.now(UTC)
        try:
            reading = describe(self._fetch(self.host, self.port), self.address, now)
        except (OSError, ValueError) as exc:
            if self.latest.error is None:
                log.warning("cannot read the broker's certificate at %s: %s", self.address, exc)
            self.latest = self.latest.model_copy(update={"error": str(exc) or type(exc).__name__, "checked_at": now})
            self._ok.set(0)
            return self.latest
        self.latest = reading
        assert reading.not_after is not None
        assert reading.days_left is not None
        self._days.set(reading.days_left)
        self._expiry.set(reading.not_after.timestamp())
        self._ok.set(1)
        return reading

    def days_left(self) -> float | None:
        """Days left now, from the last good reading (None before one)."""
        if self.latest.not_after is None:
            return None
        return (self.latest.not_after - datetime.now(UTC)).total_seconds() / 86400

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                reading = self.check()
            except Exception:  # a bug: say so, keep watching
                log.exception("the broker certificate probe raised; continuing")
            else:
                if reading.error is None and reading.days_left is not None:
                    log.debug("broker certificate: %.1f days left", reading.days_left)
            # Hourly; a minute while failing (the broker may just be starting).
            self._stop.wait(self.interval if self.latest.error is None else min(60.0, self.interval))


def certificate_router(watch: Callable[[], BrokerCertificateWatch | None]) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/api/broker/certificate",
        summary="The broker's TLS certificate as served to nodes: names, expiry, days left",
    )
    def broker_certificate() -> BrokerCertificate | None:
        current = watch()
        return current.latest if current is not None else None

    return router


__all__ = ["BrokerCertificate", "BrokerCertificateWatch", "certificate_router", "describe", "fetch_certificate"]

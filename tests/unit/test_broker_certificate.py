"""The broker certificate watch: a reading from served bytes, the gauges, and a failed probe kept apart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from prometheus_client import CollectorRegistry

from pki import authority
from subscriber.broker_certificate import BrokerCertificateWatch, describe

NOW = datetime.now(UTC)


def served(days: int) -> bytes:
    ca = authority.make_ca(NOW)
    cert = authority.make_server_cert(ca, ["pi-hub.lan", "192.168.1.10"], NOW, timedelta(days=days)).cert
    return cert.public_bytes(serialization.Encoding.DER)


def test_a_reading_names_the_certificate_and_its_days_left() -> None:
    reading = describe(served(90), "mosquitto:8883", NOW)
    assert reading.names == ["pi-hub.lan", "192.168.1.10"]
    assert reading.days_left == pytest.approx(90, abs=0.01)
    assert reading.subject is not None
    assert "CN=pi-hub.lan" in reading.subject
    assert reading.error is None


def test_gauges_follow_probes_and_a_failure_keeps_the_last_expiry() -> None:
    registry = CollectorRegistry()
    answers: list[bytes | OSError] = [served(20), OSError("Connection refused")]

    def fetch(_host: str, _port: int) -> bytes:
        answer = answers.pop(0)
        if isinstance(answer, OSError):
            raise answer
        return answer

    watch = BrokerCertificateWatch("mosquitto:8883", registry, fetch=fetch)
    assert watch.days_left() is None
    watch.check()
    assert registry.get_sample_value("otto_broker_certificate_days_left") == pytest.approx(20, abs=0.05)
    assert registry.get_sample_value("otto_broker_certificate_probe_success") == 1
    failed = watch.check()
    assert failed.error == "Connection refused"
    assert registry.get_sample_value("otto_broker_certificate_probe_success") == 0
    days = watch.days_left()
    assert days is not None
    assert days == pytest.approx(20, abs=0.05)  # still alerting on what was last served

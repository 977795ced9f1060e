"""The subscriber's command line: configuration errors exit 2 with one line; --version, --help."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest

from subscriber.settings import SubscriberSettings
from tests.support.agent_process import run_program


def run_subscriber(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_program("subscriber", *args, **env)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("OTTO_API_PORT", "http", "OTTO_API_PORT: Input should be a valid integer"),
        ("OTTO_MQTT_PORT", "0", "OTTO_MQTT_PORT: Input should be greater than or equal to 1"),
        ("OTTO_RETENTION", "forever", "OTTO_RETENTION:"),
        ("OTTO_RETENTION", "0", "OTTO_RETENTION: must be positive"),
        ("OTTO_STALE_AFTER", "1", "OTTO_STALE_AFTER: Input should be greater than 1"),
        ("OTTO_LOG_LEVEL", "chatty", "OTTO_LOG_LEVEL: Input should be"),
        ("OTTO_MQTT_PASSWORD_FILE", "/nonexistent", "OTTO_MQTT_PASSWORD_FILE: cannot read /nonexistent"),
        ("OTTO_DB_PATH", "/proc/otto/history.db", "OTTO_DB_PATH: cannot open /proc/otto/history.db"),
        ("OTTO_HA_PREFIX", "homeassistant/#", "OTTO_HA_PREFIX: String should match pattern"),
        ("OTTO_HA_DISCOVERY", "yes", "OTTO_HA_DISCOVERY: Input should be 'device', 'entity' or 'off'"),
        ("OTTO_HA_CONTAINERS", "all", "OTTO_HA_CONTAINERS: Input should be"),
        ("OTTO_HA_CONTAINER_EXPIRE", "0", "OTTO_HA_CONTAINER_EXPIRE: must be positive"),
    ],
)
def test_bad_configuration_exits_2_with_one_line(variable: str, value: str, expected: str) -> None:
    result = run_subscriber(**{variable: value})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert lines[0].startswith("otto-subscriber: invalid configuration:")


def test_version_and_help() -> None:
    assert run_subscriber("--version").stdout.startswith("otto-subscriber 0.")
    assert "OTTO_" in run_subscriber("--help").stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("90", timedelta(seconds=90)),
        ("P1D", timedelta(days=1)),
    ],
)
def test_retention_accepts_short_and_iso_durations(text: str, expected: timedelta) -> None:
    assert SubscriberSettings(retention=text).retention == expected  # type: ignore[arg-type]

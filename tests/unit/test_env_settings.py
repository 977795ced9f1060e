"""Settings from OTTO_* variables without pydantic-settings: names, case, empty values, conversion."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.settings import AgentSettings
from subscriber.settings import SubscriberSettings


def test_fields_come_from_prefixed_variables_in_any_case_and_are_converted() -> None:
    settings = AgentSettings.from_env(
        {"OTTO_INTERVAL": "2.5", "otto_mqtt_port": "8883", "OTTO_Host_Root": "/hostfs", "OTTO_NODE_ID": "",
         "INTERVAL": "99", "OTTO_UNKNOWN": "x"}
    )  # fmt: skip
    assert (settings.interval, settings.mqtt_port, settings.host_root) == (2.5, 8883, Path("/hostfs"))
    assert settings.node_id is None  # empty: unset, the default applies
    subscriber = SubscriberSettings.from_env({"OTTO_RETENTION": "12h", "OTTO_LOG_MESSAGES": "false"})
    assert (subscriber.retention, subscriber.log_messages) == (timedelta(hours=12), False)


def test_a_bad_value_names_its_field() -> None:
    with pytest.raises(ValidationError) as caught:
        AgentSettings.from_env({"OTTO_INTERVAL": "soon"})
    assert caught.value.errors()[0]["loc"] == ("interval",)

"""Replicas, the pure parts: which settings make one, what it subscribes to, how it merges the others' state."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from subscriber.__main__ import open_history
from subscriber.consumer import subscriptions
from subscriber.settings import SubscriberSettings
from subscriber.state import FleetState, NodeView
from tests.support.messages import T0, container_batch, node_metrics, status


def test_a_database_url_file_switches_to_postgres_and_its_absence_keeps_sqlite(tmp_path: Path) -> None:
    url_file = tmp_path / "database.url"
    compose = {"OTTO_DATABASE_URL_FILE": str(url_file), "OTTO_SHARED_GROUP": "otto", "OTTO_REPLICA_ID": "cp-1"}
    alone = SubscriberSettings.from_env(compose)  # the profile never ran: one subscriber on SQLite
    assert (alone.database_url, alone.shared_group, alone.client_id) == (None, None, "otto-subscriber")
    url_file.write_text("postgresql://otto@postgres:5432/otto\n")
    replica = SubscriberSettings.from_env(compose)
    assert replica.database_url is not None
    assert replica.database_url.get_secret_value() == "postgresql://otto@postgres:5432/otto"
    assert (replica.shared_group, replica.client_id) == ("otto", "otto-subscriber-cp-1")


def test_a_missing_database_url_file_is_said_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The replica group is dropped with the file missing: one line says so, and where the history is."""
    caplog.set_level(logging.INFO)
    env = {"OTTO_DATABASE_URL_FILE": str(tmp_path / "database.url"), "OTTO_SHARED_GROUP": "otto"}
    store, _state, _restored = open_history(
        SubscriberSettings.from_env({**env, "OTTO_DB_PATH": str(tmp_path / "h.db")})
    )
    store.close()
    said = [r.getMessage() for r in caplog.records if "database.url" in r.getMessage()]
    assert len(said) == 1
    assert "SQLite" in said[0]
    assert "h.db" in said[0]


def test_a_shared_group_needs_postgres_and_a_clean_name() -> None:
    with pytest.raises(ValidationError, match="OTTO_SHARED_GROUP needs OTTO_DATABASE_URL"):
        SubscriberSettings.from_env({"OTTO_SHARED_GROUP": "otto"})
    with pytest.raises(ValidationError):
        SubscriberSettings.from_env({"OTTO_DATABASE_URL": "postgresql://db/otto", "OTTO_SHARED_GROUP": "a/+/#"})


def test_replicas_share_the_metrics_and_each_gets_every_status_and_event() -> None:
    assert sorted(subscriptions("otto")) == [
        "$share/otto/otto/nodes/+/metrics/containers",
        "$share/otto/otto/nodes/+/metrics/node",
        "otto/nodes/+/events",
        "otto/nodes/+/status",
    ]
    assert all(not topic.startswith("$share") for topic in subscriptions(None))


def test_merging_another_replicas_view_keeps_the_newer_sample_and_the_own_status() -> None:
    state = FleetState(stale_after=3.0)
    now = T0.timestamp() + 20
    state.apply_node_metrics(node_metrics(at=T0.replace(second=20), cycle=5), received_at=now)
    state.apply_status(status("node-a", "online"), received_at=now)
    older = NodeView(
        "node-a", node_metrics(at=T0.replace(second=15), cycle=4), container_batch(at=T0.replace(second=15)),
        status("node-a", "offline"), now - 1, now - 1, now - 1,
    )  # fmt: skip
    state.merge(older)
    view = state.get("node-a")
    assert view is not None
    assert view.metrics is not None
    assert view.status is not None
    assert view.metrics.cycle == 5  # the newer sample holds
    assert view.containers is not None  # nothing newer here: the other replica's batch is taken
    assert view.status.status == "online"  # statuses reach every replica themselves
    state.merge(NodeView("node-b", node_metrics("node-b", at=T0), None, None, now, now, None))
    assert [v.node_id for v in state.snapshot()] == ["node-a", "node-b"]

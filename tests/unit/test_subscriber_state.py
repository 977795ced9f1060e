"""Fleet state: latest per node, online / offline / stale."""

from __future__ import annotations

from datetime import timedelta

from subscriber.state import Availability, FleetState, NodeView
from tests.support.messages import T0, container_batch, node_metrics, status


def test_metrics_make_a_node_online_and_silence_makes_it_stale() -> None:
    state = FleetState(stale_after=3.0)
    state.apply_node_metrics(node_metrics(interval_seconds=5.0), received_at=1000.0)
    view = state.get("node-a")
    assert view is not None
    assert view.availability(now=1014.9, stale_after=3.0) is Availability.ONLINE
    assert view.availability(now=1015.1, stale_after=3.0) is Availability.STALE  # 3 x 5 s of silence
    assert view.last_seen == 1000.0


def test_last_will_makes_a_node_offline_until_newer_metrics() -> None:
    state = FleetState(stale_after=3.0)
    state.apply_status(status(state="online", at=T0), received_at=1000.0)
    state.apply_node_metrics(node_metrics(at=T0 + timedelta(seconds=5)), received_at=1005.0)
    state.apply_status(status(state="offline", at=None), received_at=1006.0)  # the will: no timestamp
    view = state.get("node-a")
    assert view is not None
    assert view.availability(now=1006.0, stale_after=3.0) is Availability.OFFLINE
    # The agent comes back: online status, then metrics newer than the old offline message.
    state.apply_status(status(state="online", at=T0 + timedelta(seconds=60)), received_at=1060.0)
    state.apply_node_metrics(node_metrics(at=T0 + timedelta(seconds=61)), received_at=1061.0)
    view = state.get("node-a")
    assert view is not None
    assert view.availability(now=1062.0, stale_after=3.0) is Availability.ONLINE


def test_status_alone_without_metrics_is_stale_not_online() -> None:
    state = FleetState(stale_after=3.0)
    state.apply_status(status(state="online"), received_at=1000.0)
    view = state.get("node-a")
    assert view is not None
    assert view.availability(now=1000.0, stale_after=3.0) is Availability.STALE


def test_replayed_older_samples_do_not_replace_the_latest() -> None:
    state = FleetState(stale_after=3.0)
    arrival = T0.timestamp() + 10
    state.apply_node_metrics(node_metrics(at=T0 + timedelta(seconds=10), cpu_percent=90.0), received_at=arrival)
    state.apply_node_metrics(node_metrics(at=T0, cpu_percent=1.0), received_at=arrival + 1)  # redelivered
    state.apply_container_metrics(container_batch(at=T0 + timedelta(seconds=10)), received_at=arrival)
    state.apply_container_metrics(container_batch(at=T0, containers=[]), received_at=arrival + 1)
    view = state.get("node-a")
    assert view is not None
    assert view.metrics is not None
    assert view.metrics.cpu_percent == 90.0
    assert view.containers is not None
    assert len(view.containers.containers) == 1
    assert view.last_seen == arrival + 1  # but we did hear from it


def test_snapshot_is_sorted_and_restore_never_overrides_live_data() -> None:
    state = FleetState(stale_after=3.0)
    state.apply_node_metrics(node_metrics("node-b"), received_at=1.0)
    live = state.get("node-b")
    state.restore(NodeView("node-b"))
    state.restore(NodeView("node-a", last_seen=0.5))
    assert [v.node_id for v in state.snapshot()] == ["node-a", "node-b"]
    assert state.get("node-b") == live

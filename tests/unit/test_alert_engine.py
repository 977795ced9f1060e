"""subscriber.alerts.engine: each rule fires once and resolves once, on events and on the live fleet."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from subscriber.alerts.engine import MAX_CONTAINER_ALERTS_PER_NODE, AlertEngine, Transition
from subscriber.alerts.rules import AlertRules, RulesError, load_rules
from subscriber.state import FleetState, NodeView
from tests.support.messages import AGENT, T0, container, container_batch, event, node_metrics, status

NOW = T0.timestamp()


def engine(**rules: object) -> AlertEngine:
    return AlertEngine(AlertRules.model_validate(rules), started_at=NOW - 3600)


def kinds(transitions: list[Transition]) -> list[tuple[str, str, str]]:
    return [(t.kind, t.alert.rule, t.alert.container or t.alert.node_id) for t in transitions]


def live(node_id: str = "node-a", at: float = NOW, **fields: object) -> NodeView:
    metrics = node_metrics(node_id, at=T0 + timedelta(seconds=at - NOW), **fields)
    return NodeView(node_id, metrics=metrics, status=status(node_id), last_seen=at, last_metrics=at)


def test_exit_with_a_status_fires_once_and_resolves_once_running_again() -> None:
    e = engine()
    died = event("die", exit_code=3)
    fired = e.on_event(died, NOW)
    assert kinds(fired) == [("firing", "container_exited", "web")]
    assert fired[0].alert.value == "exit code 3"
    assert fired[0].alert.since == T0
    assert e.on_event(died.model_copy(), NOW + 1) == []  # the same condition again: nothing new
    assert e.on_event(event("start"), NOW + 2) == []
    assert e.evaluate([], NOW + 20) == []  # not stable yet (30 s by default)
    resolved = e.evaluate([], NOW + 32)
    assert kinds(resolved) == [("resolved", "container_exited", "web")]
    assert resolved[0].alert.resolved_at is not None
    assert e.evaluate([], NOW + 60) == []


@pytest.mark.parametrize(
    "die",
    [
        {"exit_code": 0},  # a job that finished
        {"exit_code": 143, "stop_requested": True},  # docker stop
        {"exit_code": 137, "stop_requested": True},  # docker kill, compose down
        {"exit_code": 137, "oom_killed": True},  # the OOM rule's, not this one's
    ],
)
def test_exits_that_are_not_alerts(die: dict[str, object]) -> None:
    e = engine()
    assert [t for t in e.on_event(event("die", **die), NOW) if t.alert.rule == "container_exited"] == []


def test_oom_fires_on_the_oom_event_and_resolves_on_removal() -> None:
    e = engine()
    assert kinds(e.on_event(event("oom"), NOW)) == [("firing", "oom_killed", "web")]
    assert e.on_event(event("die", exit_code=137, oom_killed=True), NOW) == []
    assert kinds(e.on_event(event("destroy"), NOW + 5)) == [("resolved", "oom_killed", "web")]


def test_restart_loop_counts_coalesced_exits_and_resolves_when_quiet() -> None:
    e = engine(restart_loop={"restarts": 3, "within": "5m"}, container_exited={"enabled": False})
    assert e.on_event(event("die", exit_code=1), NOW) == []
    fired = e.on_event(event("die", exit_code=1, count=4), NOW + 10)  # four more, coalesced by the agent
    assert kinds(fired) == [("firing", "restart_loop", "web")]
    assert fired[0].alert.value == "5 exits in 5 min"
    assert e.evaluate([], NOW + 200) == []
    assert kinds(e.evaluate([], NOW + 311)) == [("resolved", "restart_loop", "web")]


def test_unhealthy_fires_and_resolves_on_health_and_on_a_requested_stop() -> None:
    e = engine()
    assert kinds(e.on_event(event("health_status", health="unhealthy"), NOW)) == [("firing", "unhealthy", "web")]
    assert e.on_event(event("health_status", health="unhealthy"), NOW + 1) == []
    assert kinds(e.on_event(event("health_status", health="healthy"), NOW + 2)) == [("resolved", "unhealthy", "web")]
    e.on_event(event("health_status", health="unhealthy"), NOW + 3)
    assert kinds(e.on_event(event("die", exit_code=143, stop_requested=True), NOW + 4)) == [
        ("resolved", "unhealthy", "web")
    ]


def test_node_offline_by_last_will_after_its_hold_and_back() -> None:
    e = engine(node_offline={"for": "20s"})
    view = live()
    gone = replace(view, status=status(state="offline", at=None))
    assert e.evaluate([view], NOW) == []
    assert e.evaluate([gone], NOW + 1) == []
    fired = e.evaluate([gone], NOW + 21)
    assert kinds(fired) == [("firing", "node_offline", "node-a")]
    assert fired[0].alert.value == "offline (last will)"
    back = live(at=NOW + 30)
    assert kinds(e.evaluate([back], NOW + 30)) == [("resolved", "node_offline", "node-a")]


def test_a_silent_node_goes_stale_then_offline() -> None:
    e = engine(node_offline={"for": "0s"})
    view = live()  # 5 s interval, stale after 3 intervals
    assert e.evaluate([view], NOW + 14) == []
    fired = e.evaluate([view], NOW + 16)
    assert kinds(fired) == [("firing", "node_offline", "node-a")]
    assert fired[0].alert.value == "silent for 16 s"


def test_no_offline_verdict_on_restored_nodes_right_after_a_restart() -> None:
    e = AlertEngine(AlertRules.model_validate({"node_offline": {"for": "0s"}}), started_at=NOW)
    restored = live(at=NOW - 600)  # last heard of before the restart
    assert e.evaluate([restored], NOW + 5) == []  # it has had no time to speak yet
    assert kinds(e.evaluate([restored], NOW + 16)) == [("firing", "node_offline", "node-a")]


def test_thresholds_hold_for_their_duration_and_have_hysteresis() -> None:
    e = engine(temperature={"above": 80, "clear_below": 75, "for": "60s"})
    assert e.evaluate([live(temperature_c=85.0)], NOW) == []
    assert e.evaluate([live(at=NOW + 30, temperature_c=81.0)], NOW + 30) == []
    fired = e.evaluate([live(at=NOW + 61, temperature_c=82.5)], NOW + 61)
    assert kinds(fired) == [("firing", "temperature", "node-a")]
    assert fired[0].alert.value == "82.5°C"
    assert fired[0].alert.since == T0  # since the condition started, not since it fired
    assert e.evaluate([live(at=NOW + 70, temperature_c=77.0)], NOW + 70) == []  # between: still firing
    assert kinds(e.evaluate([live(at=NOW + 80, temperature_c=74.0)], NOW + 80)) == [
        ("resolved", "temperature", "node-a")
    ]


def test_a_dip_restarts_the_hold() -> None:
    e = engine(disk={"above": 90, "clear_below": 85, "for": "60s"})
    e.evaluate([live(disk_percent=95.0)], NOW)
    e.evaluate([live(at=NOW + 40, disk_percent=50.0)], NOW + 40)
    assert e.evaluate([live(at=NOW + 70, disk_percent=95.0)], NOW + 70) == []
    assert kinds(e.evaluate([live(at=NOW + 131, disk_percent=95.0)], NOW + 131)) == [("firing", "disk", "node-a")]


def test_under_voltage_and_memory() -> None:
    e = engine(memory={"above": 90, "clear_below": 85, "for": "0s"})
    fired = e.evaluate([live(under_voltage=True, memory_percent=95.0)], NOW)
    assert sorted(kinds(fired)) == [("firing", "memory", "node-a"), ("firing", "under_voltage", "node-a")]
    resolved = e.evaluate([live(at=NOW + 5, under_voltage=False, memory_percent=10.0)], NOW + 5)
    assert sorted(kinds(resolved)) == [("resolved", "memory", "node-a"), ("resolved", "under_voltage", "node-a")]


def test_agent_dropping_messages() -> None:
    e = engine(agent_dropping={"quiet_for": "10m"})
    assert e.evaluate([live(agent={**AGENT, "dropped": 5})], NOW) == []  # first sight: no baseline
    fired = e.evaluate([live(at=NOW + 5, agent={**AGENT, "dropped": 12})], NOW + 5)
    assert kinds(fired) == [("firing", "agent_dropping", "node-a")]
    assert fired[0].alert.value == "7 messages dropped"
    assert e.evaluate([live(at=NOW + 300, agent={**AGENT, "dropped": 12})], NOW + 300) == []
    assert kinds(e.evaluate([live(at=NOW + 606, agent={**AGENT, "dropped": 12})], NOW + 606)) == [
        ("resolved", "agent_dropping", "node-a")
    ]


def test_a_lost_start_event_is_made_up_for_by_the_container_metrics() -> None:
    e = engine()
    e.on_event(event("die", exit_code=3), NOW)
    e2 = AlertEngine(e.rules, started_at=NOW + 10)  # restarted: the events' memory is gone
    e2.restore(list(e.active.values()))
    running = replace(
        live(at=NOW + 100),
        containers=container_batch(containers=[container("web", started_at=T0 + timedelta(seconds=40))]),
    )
    assert kinds(e2.evaluate([running], NOW + 100)) == [("resolved", "container_exited", "web")]


def test_restored_alerts_are_not_fired_again() -> None:
    e = engine()
    e.on_event(event("die", exit_code=3), NOW)
    again = engine()
    again.restore(list(e.active.values()))
    assert again.on_event(event("die", exit_code=3, at=T0 + timedelta(seconds=1)), NOW + 1) == []


def test_repeat_interval() -> None:
    e = engine(repeat="1h")
    fired = e.on_event(event("die", exit_code=3), NOW)
    e.notified(fired[0].alert, T0)
    assert e.evaluate([], NOW + 1800) == []
    repeats = e.evaluate([], NOW + 3601)
    assert kinds(repeats) == [("repeat", "container_exited", "web")]
    e.notified(repeats[0].alert, T0 + timedelta(seconds=3601))
    assert e.evaluate([], NOW + 3700) == []


def test_invented_container_names_cannot_flood_alerts() -> None:
    e = engine()
    for i in range(MAX_CONTAINER_ALERTS_PER_NODE + 50):
        e.on_event(event("oom", name=f"c{i}"), NOW)
    assert len(e.active) == MAX_CONTAINER_ALERTS_PER_NODE
    assert e.suppressed == 50


def test_muting() -> None:
    rules = AlertRules.model_validate({"mute": [{"node": "lab-*", "rule": "container_*"}]})
    assert rules.muted("container_exited", "lab-3", "web", T0)
    assert not rules.muted("node_offline", "lab-3", "", T0)
    assert not rules.muted("container_exited", "pi-1", "web", T0)
    timed = AlertRules.model_validate({"mute": [{"until": T0 + timedelta(hours=1)}]})
    assert timed.muted("disk", "pi-1", "", T0)
    assert not timed.muted("disk", "pi-1", "", T0 + timedelta(hours=2))


def test_rules_file(tmp_path: Path) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(
        'repeat = "4h"\n[temperature]\nabove = 70\nclear_below = 65\nfor = "2m"\n'
        '[container_exited]\nenabled = false\n[[mute]]\nnode = "lab-*"\nuntil = 2027-01-01T00:00:00Z\n'
    )
    rules = load_rules(path)
    assert rules.temperature.above == 70
    assert rules.temperature.for_ == timedelta(minutes=2)
    assert rules.repeat == timedelta(hours=4)
    assert rules.container_exited.enabled is False
    assert rules.disk.above == 90  # untouched: the default
    assert load_rules(None) == AlertRules()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[temperature]\nabove = 70\nclear_below = 75\n", "clear_below must not be above"),
        ("[disk]\nabov = 70\n", "disk.abov"),
        ("[nonsense]\n", "nonsense"),
        ("[memory\n", "not valid TOML"),
        ("[[mute]]\nuntil = 2027-01-01T00:00:00\n", "mute.0.until"),  # no time zone
        ('[restart_loop]\nwithin = "soon"\n', "restart_loop.within"),
    ],
)
def test_a_bad_rules_file_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "alerts.toml"
    path.write_text(text)
    with pytest.raises(RulesError, match=message):
        load_rules(path)


def test_fleet_state_views_work_as_input() -> None:
    state = FleetState(stale_after=3.0)
    state.apply_node_metrics(node_metrics(disk_percent=99.0), received_at=NOW)
    e = engine(disk={"above": 90, "clear_below": 85, "for": "0s"})
    assert kinds(e.evaluate(state.snapshot(), NOW + 1)) == [("firing", "disk", "node-a")]


def test_the_example_rules_file_is_the_defaults() -> None:
    assert load_rules(Path(__file__).parents[2] / "alerts.example.toml") == AlertRules()


def test_a_restored_restart_loop_is_not_resolved_before_its_window_has_passed_quietly() -> None:
    e = engine(restart_loop={"restarts": 3, "within": "5m"}, container_exited={"enabled": False})
    e.on_event(event("die", exit_code=1, count=3), NOW)
    restarted = AlertEngine(e.rules, started_at=NOW + 10)  # the deaths it counted are gone
    restarted.restore(list(e.active.values()))
    assert restarted.evaluate([], NOW + 11) == []
    assert restarted.on_event(event("die", exit_code=1), NOW + 100) == []  # still looping: no new firing
    assert restarted.evaluate([], NOW + 320) == []  # that death was 220 s ago
    assert kinds(restarted.evaluate([], NOW + 401)) == [("resolved", "restart_loop", "web")]


def test_the_broker_certificate_fires_under_its_days_and_resolves_when_renewed() -> None:
    alerts = engine(broker_certificate={"days": 21})
    assert alerts.evaluate([], NOW, certificate_days=None) == []  # not watched, or not read yet
    assert alerts.evaluate([], NOW, certificate_days=22.0) == []
    fired = alerts.evaluate([], NOW + 60, certificate_days=20.5)
    assert kinds(fired) == [("firing", "broker_certificate", "broker")]
    assert fired[0].alert.value == "20 days left"
    assert "renew-server" in fired[0].alert.summary
    assert alerts.evaluate([], NOW + 120, certificate_days=19.0) == []  # once
    assert kinds(alerts.evaluate([], NOW + 180, certificate_days=824.9)) == [
        ("resolved", "broker_certificate", "broker")
    ]
    expired = alerts.evaluate([], NOW + 240, certificate_days=-1.0)
    assert expired[0].alert.value == "expired"
    assert "has expired" in expired[0].alert.summary
    assert engine(broker_certificate={"enabled": False}).evaluate([], NOW, certificate_days=1.0) == []

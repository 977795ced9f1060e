"""agent.docker_events on events recorded from Docker Engine 20.10 (tests/fixtures/docker-events)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.docker_events import Coalescer, Interpreter, parse
from contract.models import ContainerEvent

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
FIXTURE = Path(__file__).parents[1] / "fixtures" / "docker-events" / "engine-20.10-lifecycle.jsonl"


def recorded() -> list[dict[str, object]]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines()]


def interpreted() -> list[ContainerEvent]:
    interpreter = Interpreter("pi-1")
    out = []
    for raw in recorded():
        event = parse(raw)
        if event is not None and (message := interpreter.interpret(event)) is not None:
            out.append(message)
    return out


def test_only_followed_container_actions_are_parsed() -> None:
    actions = {e.action for raw in recorded() if (e := parse(raw)) is not None}
    assert actions == {"start", "die", "oom", "restart", "health_status", "pause", "unpause", "destroy", "kill"}
    raw_actions = {str(raw["Action"]) for raw in recorded()}
    assert {"create", "attach", "stop", "exec_die"} <= raw_actions  # present in the recording, not followed


def test_die_says_how_the_container_ended() -> None:
    dies = {(e.container_name, e.exit_code, e.stop_requested, e.oom_killed) for e in interpreted() if e.action == "die"}
    assert ("ev-exit3", 3, False, False) in dies  # exited on its own
    assert ("ev-oom", 137, False, True) in dies  # OOM killer
    assert ("ev-stop", 137, True, False) in dies  # docker stop -t 1 (SIGTERM ignored, then SIGKILL)
    assert ("ev-loop", 1, False, False) in dies  # restart policy's crash loop
    assert ("ev-health", 137, True, False) in dies  # docker restart, then docker rm -f


def test_fields_come_from_the_engine() -> None:
    events = interpreted()
    health = [e for e in events if e.action == "health_status"]
    assert [e.health for e in health] == ["unhealthy", "unhealthy"]
    first = events[0]
    assert first.action == "start"
    assert first.container_name == "ev-exit3"
    assert first.image == "busybox:1.36"
    assert len(first.container_id) == 64
    assert first.timestamp.timestamp() == pytest.approx(1795890672.237985341)
    assert not any(e.action == "kill" for e in events)  # remembered, not published


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        "die",
        {"Type": "network", "Action": "connect", "Actor": {"ID": "x"}, "timeNano": 1},
        {"Type": "container", "Action": "die", "Actor": {"ID": "abc"}},  # no time
        {"Type": "container", "Action": "die", "Actor": {"ID": ""}, "timeNano": 1},
        {"Type": "container", "Action": "die", "Actor": {"ID": "a" * 129}, "timeNano": 1},
        {"Type": "container", "Action": "die", "Actor": "abc", "timeNano": 1},
        {"Type": "container", "Action": "health_status: weird", "Actor": {"ID": "abc"}, "timeNano": 1},
        {"Type": "container", "Action": 7, "Actor": {"ID": "abc"}, "timeNano": 1},
        {"Type": "container", "Action": "die", "Actor": {"ID": "abc"}, "timeNano": "-5"},
    ],
)
def test_malformed_events_are_ignored(raw: object) -> None:
    assert parse(raw) is None


def test_hostile_attributes_are_bounded() -> None:
    raw = {
        "Type": "container",
        "Action": "die",
        "Actor": {"ID": "abc", "Attributes": {"name": "n" * 5000, "exitCode": "99999999999", "image": 7}},
        "timeNano": 10**18,
    }
    event = parse(raw)
    assert event is not None
    assert len(event.name) == 512
    assert event.exit_code is None
    assert event.image == ""
    message = Interpreter("pi-1").interpret(event)
    assert message is not None
    assert message.exit_code is None


def test_a_reload_signal_is_not_a_stop_request() -> None:
    interpreter = Interpreter("pi-1")
    for action, attributes in (("kill", {"signal": "1"}), ("die", {"exitCode": "2"})):
        event = parse(
            {"Type": "container", "Action": action, "Actor": {"ID": "c1", "Attributes": attributes}, "timeNano": 5}
        )
        assert event is not None
        message = interpreter.interpret(event)
    assert message is not None
    assert message.stop_requested is False


def loop_event(seconds: float, action: str = "die") -> ContainerEvent:
    return ContainerEvent.model_validate(
        {"node_id": "pi-1", "timestamp": EPOCH + timedelta(seconds=seconds), "action": action, "container_id": "c1"}
    )


def test_a_crash_loop_is_coalesced_into_counted_messages() -> None:
    coalescer = Coalescer(window=10.0)
    sent = []
    for i in range(100):  # 100 dies and 100 starts in 20 s
        now = i * 0.2
        for action in ("die", "start"):
            if (ready := coalescer.offer(loop_event(now / 2, action), now)) is not None:
                sent.append(ready)
        sent.extend(coalescer.due(now))
    sent.extend(coalescer.due(1e9))
    assert sum(m.count for m in sent) == 200  # nothing lost
    assert len(sent) <= 2 * (20 // 10 + 1)  # one message per action per window, plus the last held
    held = [m for m in sent if m.count > 1]
    assert held
    assert all(m.first_timestamp is not None and m.first_timestamp < m.timestamp for m in held)


def test_events_of_different_containers_are_not_coalesced() -> None:
    coalescer = Coalescer(window=10.0)
    a = loop_event(0)
    b = a.model_copy(update={"container_id": "c2"})
    assert coalescer.offer(a, 0.0) is a
    assert coalescer.offer(b, 0.1) is b
    assert coalescer.due(100.0) == []
    assert coalescer.next_due() is None

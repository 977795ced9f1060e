"""agent.event_stream's reading and reconnecting, fed recorded-shape events by a stand-in stream
(the real daemon's side is tests/faults/test_docker_daemon_outage.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from agent.event_stream import EventStream
from agent.problems import Problems
from contract.models import ContainerEvent
from tests.support.load import wait_until


def raw(container: str, action: str, time_ns: int) -> dict[str, Any]:
    return {"Type": "container", "Action": action, "Actor": {"ID": container, "Attributes": {"name": container}},
            "timeNano": time_ns}  # fmt: skip


class Streams:
    """Each connection serves the next list of events, then ends (as a daemon restarting would)."""

    def __init__(self, *connections: list[Any]) -> None:
        self.connections = list(connections)
        self.since: list[int | None] = []
        self.done = threading.Event()

    def __call__(self, since: int | None) -> tuple[Any, Iterator[Any]]:
        self.since.append(since)
        if not self.connections:
            self.done.set()
            raise ConnectionError("daemon away")
        return _Client(), iter(self.connections.pop(0))


class _Client:
    def close(self) -> None:
        pass


def follow(streams: Streams) -> tuple[list[ContainerEvent], Problems]:
    published: list[ContainerEvent] = []
    problems = Problems()
    stream = EventStream("pi-1", published.append, problems, window=0.1, factory=streams)
    stream.start()
    try:
        assert streams.done.wait(10)
        wait_until(lambda: stream.coalescer.held == 0, timeout=5)
    finally:
        stream.stop()
    return published, problems


def test_a_clock_stepped_back_loses_no_event_and_a_replay_repeats_none() -> None:
    second = 1_000_000_000
    streams = Streams(
        # The daemon's clock steps back 50 s between two events (NTP on a Pi without a real-time clock).
        [raw("a", "start", 100 * second), raw("b", "start", 50 * second)],
        # After the reconnect the daemon replays what it holds since the asked second, then goes on.
        [raw("b", "start", 50 * second), raw("c", "start", 60 * second)],
    )
    published, _ = follow(streams)
    starts = [e.container_id for e in published if e.action == "start"]
    assert starts == ["a", "b", "c"]
    assert streams.since[:2] == [None, 50]  # from the last event received, not the latest time seen
    assert [e.action for e in published].count("gap") == 1


def test_a_malformed_event_is_counted_and_skipped() -> None:
    streams = Streams([{"Type": "container", "Action": "die"}, raw("a", "start", 5), "junk"])
    published, problems = follow(streams)
    assert [e.container_id for e in published] == ["a"]
    assert problems.snapshot()["event_unparsed"] == 2

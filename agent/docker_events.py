"""Docker's event stream turned into ``ContainerEvent`` messages. Pure: no I/O, no threads, no clock.

Three steps, each a small piece tested on recorded events (tests/fixtures/docker-events):

- ``parse``: one raw event (the Engine's JSON, hostile input) to a ``DockerEvent``, or None for
  what we do not follow (exec_*, attach, networks, ...).
- ``Interpreter``: what a single event cannot say. Docker reports ``kill`` (someone asked: docker
  stop, kill, restart, compose down, the daemon shutting down) and ``oom`` before ``die``; it
  remembers them per container so that the ``die`` says whether the container exited on its own.
- ``Coalescer``: a crash loop must not flood the broker. Per container and action, the first event
  of a window goes out at once; the rest of the window is held and sent as one message with a
  count when the window ends. At most one message per container, action and window.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from contract.models import ContainerEvent, EventAction

#: The actions asked of the daemon (its ``event`` filter); ``kill`` and ``stop`` are only remembered.
FOLLOWED = ("start", "die", "oom", "restart", "health_status", "pause", "unpause", "destroy", "kill")
#: Signals a ``docker kill -s`` sends without meaning "stop": HUP, USR1, USR2, CHLD, CONT, WINCH.
NOT_STOPPING_SIGNALS = frozenset({1, 10, 12, 17, 18, 28})
HEALTH = ("healthy", "unhealthy", "starting")
#: Containers remembered by the interpreter at most (a stop requested of each, an OOM kill).
MAX_REMEMBERED = 4096
MAX_TEXT = 512

Health = Literal["healthy", "unhealthy", "starting"]


@dataclass(frozen=True, slots=True)
class DockerEvent:
    """One container event as the daemon reported it."""

    action: str
    container_id: str
    name: str
    image: str
    time_ns: int
    exit_code: int | None = None
    health: Health | None = None
    signal: int | None = None


def _int(value: Any, low: int, high: int) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if low <= number <= high else None


def _text(value: Any) -> str:
    return value[:MAX_TEXT] if isinstance(value, str) else ""


def parse(raw: Any) -> DockerEvent | None:
    """The event if it is a container event we follow and is well formed; None otherwise."""
    if not isinstance(raw, Mapping) or raw.get("Type") != "container":
        return None
    action = raw.get("Action")
    if not isinstance(action, str):
        return None
    health: Health | None = None
    if action.startswith("health_status"):
        state = action.partition(":")[2].strip()
        if state not in HEALTH:
            return None
        action, health = "health_status", cast(Health, state)
    if action not in FOLLOWED:
        return None
    actor = raw.get("Actor")
    attributes = actor.get("Attributes") if isinstance(actor, Mapping) else None
    attributes = attributes if isinstance(attributes, Mapping) else {}
    container_id = actor.get("ID") if isinstance(actor, Mapping) else None
    time_ns = _int(raw.get("timeNano"), 1, 2**63 - 1)
    if not isinstance(container_id, str) or not 0 < len(container_id) <= 128 or time_ns is None:
        return None
    return DockerEvent(
        action=action,
        container_id=container_id,
        name=_text(attributes.get("name")),
        image=_text(attributes.get("image")),
        time_ns=time_ns,
        exit_code=_int(attributes.get("exitCode"), -(2**31), 2**31 - 1) if action == "die" else None,
        health=health,
        signal=_int(attributes.get("signal"), 0, 255) if action == "kill" else None,
    )


def _when(time_ns: int) -> datetime:
    return datetime.fromtimestamp(time_ns / 1e9, UTC)


class Interpreter:
    """Remembers stop requests and OOM kills per container until its ``die`` (bounded)."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._stop_requested: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._oom_killed: collections.OrderedDict[str, None] = collections.OrderedDict()

    @staticmethod
    def _remember(memory: collections.OrderedDict[str, None], container_id: str) -> None:
        memory[container_id] = None
        memory.move_to_end(container_id)
        while len(memory) > MAX_REMEMBERED:
            memory.popitem(last=False)

    def _forget(self, container_id: str) -> None:
        self._stop_requested.pop(container_id, None)
        self._oom_killed.pop(container_id, None)

    def interpret(self, event: DockerEvent) -> ContainerEvent | None:
        """The message for ``event``, or None if it is only remembered (kill)."""
        stop_requested = oom_killed = False
        if event.action == "kill":
            if event.signal not in NOT_STOPPING_SIGNALS:
                self._remember(self._stop_requested, event.container_id)
            return None
        if event.action == "oom":
            self._remember(self._oom_killed, event.container_id)
        elif event.action == "die":
            stop_requested = event.container_id in self._stop_requested
            oom_killed = event.container_id in self._oom_killed
            self._forget(event.container_id)
        elif event.action in ("start", "destroy"):
            self._forget(event.container_id)
        return ContainerEvent.model_validate(
            {
                "node_id": self.node_id,
                "timestamp": _when(event.time_ns),
                "action": event.action,
                "container_id": event.container_id,
                "container_name": event.name,
                "image": event.image,
                "exit_code": event.exit_code,
                "health": event.health,
                "stop_requested": stop_requested,
                "oom_killed": oom_killed,
            }
        )


@dataclass(slots=True)
class _Window:
    ends: float
    held: ContainerEvent | None = None


class Coalescer:
    """At most one message per (container, action) and ``window`` seconds; see the module docstring."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._windows: dict[tuple[str, EventAction], _Window] = {}

    def offer(self, event: ContainerEvent, now: float) -> ContainerEvent | None:
        """The event to send now, or None if it is held for the end of its window."""
        key = (event.container_id, event.action)
        window = self._windows.get(key)
        if window is None or now >= window.ends:
            if window is not None and window.held is not None:  # due() was not called in time: keep both
                self._windows[key] = _Window(now + self.window, _merge(window.held, event))
                return None
            self._windows[key] = _Window(now + self.window)
            return event
        window.held = event if window.held is None else _merge(window.held, event)
        return None

    def due(self, now: float) -> list[ContainerEvent]:
        """Held messages whose window has ended, oldest first; forgets idle windows."""
        out = []
        for key, window in list(self._windows.items()):
            if now < window.ends:
                continue
            if window.held is None:
                del self._windows[key]
            else:
                out.append(window.held)
                self._windows[key] = _Window(now + self.window)
        return sorted(out, key=lambda e: e.timestamp)

    def next_due(self) -> float | None:
        """When the earliest window with a held message ends (monotonic), or None."""
        ends = [w.ends for w in self._windows.values() if w.held is not None]
        return min(ends) if ends else None

    @property
    def held(self) -> int:
        return sum(1 for w in self._windows.values() if w.held is not None)


def _merge(held: ContainerEvent, newer: ContainerEvent) -> ContainerEvent:
    first = held.first_timestamp or held.timestamp
    return replace_event(newer, count=held.count + newer.count, first_timestamp=first)


def replace_event(event: ContainerEvent, **changes: Any) -> ContainerEvent:
    """A copy of a frozen event with ``changes`` (validated)."""
    return ContainerEvent.model_validate({**event.model_dump(by_alias=False), **changes})


def gap_event(node_id: str, now_ns: int, detail: str) -> ContainerEvent:
    """The message saying events may be missing (the stream broke and resumed)."""
    return ContainerEvent.model_validate(
        {"node_id": node_id, "timestamp": _when(now_ns), "action": "gap", "detail": detail[:MAX_TEXT]}
    )

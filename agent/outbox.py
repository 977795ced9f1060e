"""The agent's outbox: ordered, bounded, at-least-once. Pure: no MQTT, no threads, no clock.

Modelled on Telegraf's ``models/buffer.go``. Messages wait in the order they were added. ``next``
is the oldest one not yet sent; ``sent`` records that the transport took it under an id;
``acknowledged`` forgets it; ``requeue`` (the connection went) puts every message in flight back
in front of the others, in its original order, so a replay is strictly in order. The outbox is
bounded in messages and in payload bytes: ``add`` drops the oldest (in flight or not) to make
room and returns what it dropped.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message as the agent publishes it (QoS 1)."""

    topic: str
    payload: bytes
    retain: bool = False


class Outbox:
    """Messages not yet acknowledged by the broker: unsent ones, then those in flight."""

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.bytes = 0
        self.dropped = 0
        self._unsent: collections.deque[Message] = collections.deque()
        self._inflight: dict[int, Message] = {}  # by transport id, in the order sent (dicts keep it)

    def __len__(self) -> int:
        return len(self._unsent) + len(self._inflight)

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def add(self, message: Message) -> list[Message]:
        """Queue ``message`` last; the oldest messages dropped to make room for it, oldest first."""
        dropped = []
        size = len(message.payload)
        while len(self) and (len(self) >= self.max_messages or self.bytes + size > self.max_bytes):
            dropped.append(self._drop_oldest())
        self._unsent.append(message)
        self.bytes += size
        self.dropped += len(dropped)
        return dropped

    def _drop_oldest(self) -> Message:
        if self._inflight:
            oldest = next(iter(self._inflight))
            message = self._inflight.pop(oldest)
        else:
            message = self._unsent.popleft()
        self.bytes -= len(message.payload)
        return message

    def next(self) -> Message | None:
        """The oldest message not yet sent, or None."""
        return self._unsent[0] if self._unsent else None

    def sent(self, message_id: int) -> None:
        """The message ``next`` returned was handed to the transport under ``message_id``."""
        self._inflight[message_id] = self._unsent.popleft()

    def acknowledged(self, message_id: int) -> Message | None:
        """The broker has it: forget it. None for an id not in flight (acknowledged twice, or dropped)."""
        message = self._inflight.pop(message_id, None)
        if message is not None:
            self.bytes -= len(message.payload)
        return message

    def requeue(self) -> int:
        """Put the messages in flight back in front, in the order they were sent; how many."""
        moved = len(self._inflight)
        self._unsent.extendleft(reversed(self._inflight.values()))
        self._inflight.clear()
        return moved

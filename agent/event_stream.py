"""EventStream: follows the Docker daemon's events and publishes them, apart from metrics.

Two threads of its own, and a Docker connection of its own, so metrics collection never waits on
the stream: a reader blocks on the daemon's stream and queues what it parses; a dispatcher
interprets, coalesces (agent.docker_events) and hands messages to the MQTT outbox, and sends held
messages when their window ends. When the stream breaks (the daemon restarted or is away), the
reader reconnects with backoff (1 s doubling to 30 s) and asks for the events since the last one
it received: the daemon replays those it still holds (its last 256), recognised when already
received by container, action and time (not by time order: a Pi's clock may step back). Because a restarted daemon holds
none from before, a ``gap`` event says how long the stream was away, once it is back.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import docker

from agent.docker_events import FOLLOWED, Coalescer, DockerEvent, Interpreter, gap_event, parse
from agent.problems import Problems
from common.cli import RateLimitedLog
from contract.models import ContainerEvent

log = logging.getLogger(__name__)

RETRY_FIRST = 1.0
RETRY_MAX = 30.0
#: Events waiting for the dispatcher at most; beyond, the oldest are dropped (and counted).
MAX_QUEUED = 10_000
#: Events remembered to drop a reconnect's replay of them (the daemon replays at most its last 256).
SEEN = 1024

StreamFactory = Callable[[int | None], tuple[Any, Any]]
_IDLE = object()  # the dispatcher's wait ended with nothing queued


def docker_stream(since_seconds: int | None) -> tuple[Any, Any]:
    """(client, stream) of the daemon's container events from ``since_seconds`` (epoch; None: from now)."""
    client = docker.from_env(timeout=10, max_pool_size=1)
    filters = {"type": ["container"], "event": list(FOLLOWED)}
    return client, client.api.events(since=since_seconds, filters=filters, decode=True)


class EventStream:
    """Publishes container events at once (``publish``); see the module docstring."""

    def __init__(
        self,
        node_id: str,
        publish: Callable[[ContainerEvent], None],
        problems: Problems,
        *,
        window: float = 10.0,
        factory: StreamFactory = docker_stream,
    ) -> None:
        self.node_id = node_id
        self.publish = publish
        self.problems = problems
        self.factory = factory
        self.interpreter = Interpreter(node_id)
        self.coalescer = Coalescer(window)
        self.published = 0
        self._queue: queue.Queue[object] = queue.Queue(MAX_QUEUED)
        self._stop = threading.Event()
        self._stream: Any = None
        self._last_ns = 0
        self._seen: collections.OrderedDict[tuple[str, str, int], None] = collections.OrderedDict()
        self._warn = RateLimitedLog(log, period=300.0)
        self.reader = threading.Thread(target=self._read_forever, name="otto-events-reader", daemon=True)
        self.dispatcher = threading.Thread(target=self._dispatch_forever, name="otto-events", daemon=True)

    @property
    def threads(self) -> dict[str, threading.Thread]:
        return {"events-reader": self.reader, "events": self.dispatcher}

    def start(self) -> None:
        self.reader.start()
        self.dispatcher.start()

    def stop(self) -> None:
        """Stop both threads; held messages are sent first (to the outbox)."""
        self._stop.set()
        self._close_stream()
        self._put(None)
        self.dispatcher.join(2.0)

    # -- reader --------------------------------------------------------------------------------

    def _read_forever(self) -> None:
        failures = 0
        broken_at: float | None = None
        reason = ""
        while not self._stop.is_set():
            since = self._last_ns // 1_000_000_000 if self._last_ns else None
            try:
                client, self._stream = self.factory(since)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if broken_at is not None:
                    self._resumed(broken_at, reason)
                    broken_at = None
                failures = 0
                reason = self._read(client)
            if self._stop.is_set():
                return
            if broken_at is None:
                broken_at = time.time()
            failures += 1
            delay = min(RETRY_MAX, RETRY_FIRST * 2 ** (failures - 1))
            self._warn.warning(
                "stream", "Docker event stream lost (%s); reconnecting (every %.0f s at most)", reason, RETRY_MAX
            )
            self._stop.wait(delay)

    def _read(self, client: Any) -> str:
        """Read until the stream ends; why it ended."""
        try:
            for raw in self._stream:
                event = parse(raw)
                if event is None:  # the daemon's filter sends only what we follow: this one is malformed
                    self.problems.count("event_unparsed", repr(raw)[:120])
                    continue
                key = (event.container_id, event.action, event.time_ns)
                if key in self._seen:  # replayed after a reconnect, already seen
                    continue
                self._seen[key] = None
                if len(self._seen) > SEEN:
                    self._seen.popitem(last=False)
                self._last_ns = event.time_ns  # the last received, not the latest: clocks step back
                self._put(event)
            return "the daemon closed it"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"[:200]
        finally:
            self._close_stream()
            try:
                client.close()
            except Exception as exc:  # closing a dead connection may fail too; nothing is lost
                log.debug("closing the events client: %s", exc)

    def _resumed(self, broken_at: float, reason: str) -> None:
        away = time.time() - broken_at
        log.info("Docker event stream back after %.1f s", away)
        self._put(
            gap_event(
                self.node_id,
                time.time_ns(),
                f"event stream lost for {away:.1f} s ({reason}); events the daemon no longer held are missing",
            )
        )

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception as exc:
                log.debug("closing the event stream: %s", exc)

    def _put(self, item: object) -> None:
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.problems.count("event_dropped", "the event queue was full; dropped the oldest")
                except queue.Empty:
                    pass

    # -- dispatcher ----------------------------------------------------------------------------

    def _dispatch_forever(self) -> None:
        while True:
            due = self.coalescer.next_due()
            wait = None if due is None else max(0.0, due - time.monotonic())
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = _IDLE
            try:
                if item is None:
                    for held in self.coalescer.due(float("inf")):
                        self._send(held)
                    return
                if isinstance(item, DockerEvent | ContainerEvent):
                    self._dispatch(item)
                for held in self.coalescer.due(time.monotonic()):
                    self._send(held)
            except Exception as exc:  # a bug must not end the stream
                self.problems.count("event_failed", f"{type(exc).__name__}: {exc}", with_traceback=True)

    def _dispatch(self, item: DockerEvent | ContainerEvent) -> None:
        message = item if isinstance(item, ContainerEvent) else self.interpreter.interpret(item)
        if message is None:
            return
        if message.action == "gap":
            self._send(message)
            return
        ready = self.coalescer.offer(message, time.monotonic())
        if ready is not None:
            self._send(ready)

    def _send(self, message: ContainerEvent) -> None:
        self.publish(message)
        self.published += 1

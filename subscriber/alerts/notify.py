"""Notifier: delivers notifications through Apprise, one lane (thread and queue) per URL.

Each URL gets every notification, in order: a resolution is never delivered before its firing. A
failed attempt is retried with backoff (``retry_first`` doubling to ``retry_max``) until it is
delivered or ``give_up_after`` has passed; a URL that is down holds only its own lane. Every
delivery is a row of the delivery log (``SqliteAlertStore``) before it is tried, so one still
pending at a restart is sent afterwards. Nothing here runs on the ingestion thread: ``submit``
only writes the row and queues it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from common.cli import RateLimitedLog
from subscriber.alerts.message import Notification
from subscriber.alerts.store import Delivery, SqliteAlertStore

log = logging.getLogger(__name__)

#: Sends one notification to URL number ``index``; None when delivered, else why not.
Sender = Callable[[int, Notification], str | None]
#: Called with each outcome: delivered, retried, failed (given up), muted.
Outcome = Callable[[str], None]


class AppriseSender:
    """A Sender over Apprise, one Apprise object per URL (so each can fail on its own)."""

    def __init__(self, urls: Sequence[str], timeout: float = 10.0) -> None:
        # Imported here: Apprise and its plugins cost 17 MiB, paid only when there is a URL to notify.
        import apprise  # noqa: PLC0415

        self._text = apprise.NotifyFormat.TEXT
        self._notify_type = apprise.NotifyType
        self._targets = []
        for number, url in enumerate(urls, 1):
            target = apprise.Apprise()
            if not target.add(url):
                raise ValueError(f"entry {number} is not a URL Apprise supports (see its list of services)")
            self._targets.append(target)
        self.timeout = timeout
        #: What logs may say of each URL: its number, scheme and (masked) host, never a token or topic.
        self.descriptions = [_describe(n, str(t[0].url(privacy=True))) for n, t in enumerate(self._targets, 1)]  # type: ignore[no-untyped-call]

    def __len__(self) -> int:
        return len(self._targets)

    def __call__(self, index: int, notification: Notification) -> str | None:
        result = self._targets[index].notify(
            body=notification.body,
            title=notification.title,
            notify_type=self._notify_type(notification.notify_type),
            body_format=self._text,
            timeout=self.timeout,
        )
        if result:
            return None
        messages = [entry.message for entry in result.logs() if getattr(entry, "message", None)]
        return (messages[-1] if messages else f"Apprise reported {result.status}")[:300]


def _describe(number: int, masked_url: str) -> str:
    parts = urlsplit(masked_url)
    try:
        host = parts.hostname or ""
    except ValueError:
        host = ""
    return f"#{number} {parts.scheme}://{host}"


class _Lane:
    """One URL's queue and the thread that works through it."""

    def __init__(self, notifier: Notifier, index: int) -> None:
        self.notifier = notifier
        self.index = index
        self.queue: collections.deque[Delivery] = collections.deque()
        self.wake = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name=f"otto-notify-{index + 1}", daemon=True)

    def put(self, delivery: Delivery) -> None:
        with self.wake:
            self.queue.append(delivery)
            self.wake.notify()

    def _run(self) -> None:
        notifier = self.notifier
        while True:
            with self.wake:
                while not self.queue and not self.stopping:
                    self.wake.wait()
                if self.stopping:
                    return
                delivery = self.queue[0]
            attempts = delivery.attempts
            while True:
                attempts += 1
                error = notifier.attempt(self.index, delivery)
                if error is None:
                    notifier.finished(delivery, "delivered", attempts, None)
                    break
                if time.time() - delivery.created >= notifier.give_up_after:
                    notifier.finished(delivery, "failed", attempts, error)
                    break
                notifier.retrying(delivery, attempts, error)
                delay = min(notifier.retry_max, notifier.retry_first * 2 ** (attempts - 1))
                with self.wake:
                    if self.wake.wait_for(lambda: self.stopping, timeout=delay):
                        return
            with self.wake:
                self.queue.popleft()


class Notifier:
    """See the module docstring."""

    def __init__(
        self,
        store: SqliteAlertStore,
        sender: Sender,
        url_count: int,
        outcome: Outcome = lambda _o: None,
        *,
        describe: Sequence[str] = (),
        retry_first: float = 1.0,
        retry_max: float = 120.0,
        give_up_after: float = 86_400.0,
    ) -> None:
        self.store = store
        self.sender = sender
        self.outcome = outcome
        self.describe = list(describe) or [f"URL {i + 1}" for i in range(url_count)]
        self.retry_first = retry_first
        self.retry_max = retry_max
        self.give_up_after = give_up_after
        self.lanes = [_Lane(self, index) for index in range(url_count)]
        self._warnings = RateLimitedLog(log, period=60.0)

    def start(self) -> int:
        """Start the lanes with the deliveries still pending from before; how many those were."""
        pending = [d for d in self.store.deliveries(pending_only=True) if d.url_index < len(self.lanes)]
        for delivery in pending:
            self.lanes[delivery.url_index].put(delivery)
        for lane in self.lanes:
            lane.thread.start()
        if pending:
            log.info("notifications: %d deliveries pending from before the restart", len(pending))
        return len(pending)

    def stop(self, timeout: float = 2.0) -> None:
        for lane in self.lanes:
            with lane.wake:
                lane.stopping = True
                lane.wake.notify()
        for lane in self.lanes:
            if lane.thread.is_alive():
                lane.thread.join(timeout)

    @property
    def pending(self) -> int:
        return sum(len(lane.queue) for lane in self.lanes)

    def submit(self, notification: Notification, muted: bool = False) -> None:
        """Log the notification for every URL and queue it (muted: logged only)."""
        for lane in self.lanes:
            delivery = self.store.queue(notification, lane.index, "muted" if muted else "pending")
            if muted:
                self.outcome("muted")
            else:
                lane.put(delivery)

    # -- called by the lanes -------------------------------------------------------------------------

    def attempt(self, index: int, delivery: Delivery) -> str | None:
        try:
            return self.sender(index, delivery.notification)
        except Exception as exc:  # a plugin's bug is a failed attempt, not a dead lane
            return f"{type(exc).__name__}: {exc}"[:300]

    def finished(self, delivery: Delivery, state: str, attempts: int, error: str | None) -> None:
        self.store.attempted(delivery.id, state, attempts, error)
        self.outcome(state)
        target = self.describe[delivery.url_index]
        if state == "delivered":
            log.info("notified %s: %s (attempt %d)", target, delivery.notification.title, attempts)
        else:
            log.warning(
                "gave up notifying %s after %d attempts: %s (%s)", target, attempts, delivery.notification.title, error
            )

    def retrying(self, delivery: Delivery, attempts: int, error: str) -> None:
        self.store.attempted(delivery.id, "pending", attempts, error)
        self.outcome("retried")
        self._warnings.warning(
            f"retry-{delivery.url_index}",
            "could not notify %s (%s); retrying with backoff",
            self.describe[delivery.url_index],
            error,
        )

"""Admission in front of the worker queue: a per-node rate limit and a bound in messages and bytes.

It runs on paho's network thread for every message before it is queued, so a flood costs a topic
split and a dict lookup, never a decode, and the other nodes' messages are not held up behind it.
A message not admitted is rejected with a counted reason and acknowledged at once.

* Rate: each node may send ``rate`` fresh messages per second on average and ``burst`` at once (an
  agent sends 2 per interval and paces its own replay after an outage below this). A sample stamped
  at least BACKLOG_AGE before it arrived is a replay, not a flood: the broker's queue for our
  session after the subscriber was away, or an agent's outbox, both traffic already accepted, so it
  is exempt (its timestamp is read from the payload's head without decoding the rest). A node
  faking old timestamps to escape the limit is still bounded by the queue and the ACL.
* Queue: at most ``max_messages`` QoS 0 messages and ``max_bytes`` of payload of any QoS wait for
  the worker. QoS 1 messages are bounded in number by the session's Receive Maximum, since they
  are acknowledged only once stored.
"""

from __future__ import annotations

import threading
from datetime import datetime

from common.rate import TokenBucket
from contract.topics import parse_topic
from subscriber.decoding import Reason

#: Past this many nodes with a bucket, idle (refilled) buckets are forgotten.
MAX_BUCKETS = 20_000
#: A sample at least this old when it arrives is a replay (exempt from the rate limit). With the
#: default burst, a node's fresh backlog (younger than this) stays under the burst down to 0.25 s intervals.
BACKLOG_AGE = 60.0
_TIMESTAMP = b'"timestamp":"'


def sample_age(payload: bytes, now: float) -> float | None:
    """Seconds between the sample's ``timestamp`` (near the start of an agent's JSON) and ``now``."""
    start = payload.find(_TIMESTAMP, 0, 256)
    if start < 0:
        return None
    start += len(_TIMESTAMP)
    end = payload.find(b'"', start, start + 40)
    try:
        return now - datetime.fromisoformat(payload[start:end].decode()).timestamp() if end > 0 else None
    except (ValueError, OverflowError):
        return None


class Admission:
    """Decides, per message, whether it may wait in the queue; tracks what the queue holds."""

    def __init__(self, rate: float, burst: float, max_messages: int, max_bytes: int) -> None:
        self.rate = rate
        self.burst = burst
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.messages = 0
        self.bytes = 0
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def admit(self, topic: str, payload: bytes, qos: int, now: float) -> Reason | None:
        """None if the message may be queued (and is now counted as queued), else why not.

        ``now`` is epoch seconds (the sample's age is judged against it).
        """
        size = len(payload)
        with self._lock:
            if self.rate > 0 and not self._replayed(payload, now) and not self._bucket(topic, now).take(now):
                return Reason.RATE_LIMITED
            if self.bytes + size > self.max_bytes or (qos == 0 and self.messages >= self.max_messages):
                return Reason.QUEUE_FULL
            self.messages += 1
            self.bytes += size
            return None

    def release(self, size: int) -> None:
        """A queued message of ``size`` bytes was taken by the worker."""
        with self._lock:
            self.messages -= 1
            self.bytes -= size

    @staticmethod
    def _replayed(payload: bytes, now: float) -> bool:
        age = sample_age(payload, now)
        return age is not None and age >= BACKLOG_AGE

    def _bucket(self, topic: str, now: float) -> TokenBucket:
        parsed = parse_topic(topic)
        key = parsed[0] if parsed else ""  # foreign topics share one bucket: decoding rejects them anyway
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._buckets = {k: b for k, b in self._buckets.items() if not b.full(now)}
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket

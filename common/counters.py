"""Rates from monotonic counters (bytes sent, received, read, written). Pure."""

from __future__ import annotations


def counter_rate(before: int | None, after: int | None, seconds: float) -> float | None:
    """Per-second increase of a counter from ``before`` to ``after`` over ``seconds``; None if unknown.

    A smaller value means the counter restarted from zero (a container restarted, a host
    rebooted), so the increase since then is the value itself, as Prometheus' rate() assumes.
    """
    if before is None or after is None or seconds <= 0:
        return None
    return (after - before if after >= before else after) / seconds

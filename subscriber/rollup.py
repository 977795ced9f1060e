"""Downsampled history, the pure part: tiers, which figures they keep, and figures derived at ingest.

Raw samples are the source of truth. Counters (network and block bytes) become rates and cycle
numbers become cycles lost when a sample is stored (``Derivation``), so every tier aggregates plain
numbers: each bucket keeps, per field, how many values it saw, their sum, minimum and maximum.
The 1-minute tier is computed from raw rows, each coarser tier from the tier below it, once a
bucket has closed (``subscriber.sqlite_tiers`` does the SQL). Which tier answers a query is
decided here (``resolution``), so that a chart never receives more than about ``MAX_POINTS``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

from common.counters import counter_rate

#: Points per series a chart asks for at most (a wide screen has about as many pixels).
MAX_POINTS = 1500
#: A rate is not derived across a silence longer than this; the chart shows the gap instead.
MAX_RATE_GAP_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Tier:
    """One downsampled resolution: buckets of ``seconds``, kept for ``retention``."""

    name: str
    seconds: int
    retention: timedelta

    @property
    def bucket_ms(self) -> int:
        return self.seconds * 1000


DEFAULT_TIERS = (
    Tier("1m", 60, timedelta(days=14)),
    Tier("15m", 900, timedelta(days=90)),
    Tier("2h", 7200, timedelta(days=400)),
)


class Kind(Enum):
    """How a field is aggregated and served: gauges and rates as avg/min/max, counts as a sum."""

    GAUGE = "gauge"
    RATE = "rate"
    COUNT = "count"


@dataclass(frozen=True, slots=True)
class TierField:
    name: str
    kind: Kind
    unit: str
    source: str | None = None  # the counter a rate is derived from


#: Node figures kept in the tiers (raw rows keep every contract field). Units as in the contract.
NODE_TIER_FIELDS = (
    TierField("cpu_percent", Kind.GAUGE, "%"),
    TierField("cpu_freq_mhz", Kind.GAUGE, "MHz"),
    TierField("load_1", Kind.GAUGE, ""),
    TierField("load_5", Kind.GAUGE, ""),
    TierField("load_15", Kind.GAUGE, ""),
    TierField("memory_percent", Kind.GAUGE, "%"),
    TierField("memory_used_mb", Kind.GAUGE, "MiB"),
    TierField("memory_total_mb", Kind.GAUGE, "MiB"),
    TierField("swap_percent", Kind.GAUGE, "%"),
    TierField("swap_used_mb", Kind.GAUGE, "MiB"),
    TierField("disk_percent", Kind.GAUGE, "%"),
    TierField("disk_used_gb", Kind.GAUGE, "GiB"),
    TierField("temperature_c", Kind.GAUGE, "°C"),
    TierField("under_voltage", Kind.GAUGE, ""),
    TierField("network_recv_rate", Kind.RATE, "B/s", "network_bytes_recv"),
    TierField("network_sent_rate", Kind.RATE, "B/s", "network_bytes_sent"),
    TierField("cycles_lost", Kind.COUNT, "cycles"),
    TierField("agent_rss_mb", Kind.GAUGE, "MiB"),
    TierField("agent_cpu_percent", Kind.GAUGE, "%"),
    TierField("agent_collect_seconds", Kind.GAUGE, "s"),
    TierField("agent_buffered", Kind.GAUGE, "messages"),
)

CONTAINER_TIER_FIELDS = (
    TierField("cpu_percent", Kind.GAUGE, "%"),
    TierField("memory_usage_mb", Kind.GAUGE, "MiB"),
    TierField("memory_limit_mb", Kind.GAUGE, "MiB"),
    TierField("memory_percent", Kind.GAUGE, "%"),
    TierField("pids", Kind.GAUGE, ""),
    TierField("restart_count", Kind.GAUGE, ""),
    TierField("network_rx_rate", Kind.RATE, "B/s", "network_rx_bytes"),
    TierField("network_tx_rate", Kind.RATE, "B/s", "network_tx_bytes"),
    TierField("block_read_rate", Kind.RATE, "B/s", "block_read_bytes"),
    TierField("block_write_rate", Kind.RATE, "B/s", "block_write_bytes"),
)

#: Counters a node's and a container's rates are derived from, in the order of their rate columns.
NODE_COUNTERS = tuple(f.source for f in NODE_TIER_FIELDS if f.kind is Kind.RATE and f.source)
CONTAINER_COUNTERS = tuple(f.source for f in CONTAINER_TIER_FIELDS if f.kind is Kind.RATE and f.source)
#: Columns added to raw rows at ingest: the rates, then (nodes) the cycles lost before the sample.
NODE_DERIVED = [f.name for f in NODE_TIER_FIELDS if f.kind is Kind.RATE] + ["cycles_lost"]
CONTAINER_DERIVED = [f.name for f in CONTAINER_TIER_FIELDS if f.kind is Kind.RATE]


@dataclass(frozen=True, slots=True)
class Previous:
    """The last sample of one series as far as derivation is concerned."""

    ts_ms: int
    counters: tuple[int | None, ...]  # NODE_COUNTERS or CONTAINER_COUNTERS, in that order
    cycle: int = 0


def rates(previous: Previous | None, ts_ms: int, counters: tuple[int | None, ...]) -> list[float | None]:
    """Bytes per second of each counter since ``previous`` (None where there is no rate; see counter_rate)."""
    seconds = (ts_ms - previous.ts_ms) / 1000 if previous is not None else 0.0
    if previous is None or not 0 < seconds <= MAX_RATE_GAP_SECONDS:
        return [None] * len(counters)
    return [counter_rate(before, value, seconds) for value, before in zip(counters, previous.counters, strict=True)]


def cycles_lost(previous: Previous | None, ts_ms: int, cycle: int, interval: float) -> int:
    """Cycles the node published that never arrived, between ``previous`` and this sample.

    A smaller cycle number means the agent restarted: the cycles before this one in the new run
    are lost. The node controls the numbers, so the count is bounded by the time that passed
    (and is 0 when the node gives no interval to measure it by).
    """
    if previous is None or cycle <= 0 or interval <= 0:
        return 0
    lost = cycle - previous.cycle - 1 if cycle > previous.cycle else cycle - 1
    intervals = (ts_ms - previous.ts_ms) / 1000 / interval  # inf for a tiny interval: no bound
    return max(0, lost if lost + 1 <= intervals else round(intervals) - 1)


class Derivation:
    """Remembers the latest sample of every series, to derive the next one's rates from.

    Bounded: past ``max_series`` it forgets samples older than ``MAX_RATE_GAP_SECONDS`` before
    the newest (no rate is derived across them anyway), then, if need be, the older half.
    """

    def __init__(self, max_series: int = 500_000) -> None:
        self.max_series = max_series
        self._latest: dict[tuple[str, ...], Previous] = {}

    def exchange(self, key: tuple[str, ...], sample: Previous) -> Previous | None:
        """Remember ``sample`` and return the sample before it, or None when the caller must look
        that up in the stored rows: a series not seen since start, or a sample older than (or
        as old as) the one remembered, which stays the reference."""
        found = self._latest.get(key)
        if found is not None and found.ts_ms >= sample.ts_ms:
            return None
        self._latest[key] = sample
        if len(self._latest) > self.max_series:
            self._forget(sample.ts_ms)
        return found

    def _forget(self, now_ms: int) -> None:
        horizon = now_ms - MAX_RATE_GAP_SECONDS * 1000
        self._latest = {k: v for k, v in self._latest.items() if v.ts_ms >= horizon}
        if len(self._latest) > self.max_series:
            newest = sorted(self._latest.items(), key=lambda item: item[1].ts_ms)[len(self._latest) // 2 :]
            self._latest = dict(newest)


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where a query reads (``tier`` None: raw rows) and the width of the buckets it returns."""

    tier: Tier | None
    step_seconds: int

    @property
    def name(self) -> str:
        return self.tier.name if self.tier else "raw"


@dataclass(frozen=True, slots=True)
class Retention:
    """How long raw rows and each tier are kept."""

    raw: timedelta
    tiers: tuple[Tier, ...] = DEFAULT_TIERS  # kept finest first

    def __post_init__(self) -> None:
        object.__setattr__(self, "tiers", tuple(sorted(self.tiers, key=lambda t: t.seconds)))

    def resolution(self, start_s: float, end_s: float, now_s: float, points: int = MAX_POINTS) -> Resolution:
        """The coarsest source finer than the step ``points`` allows, that still holds ``start``.

        The step is rounded up to whole buckets of that source, so buckets never straddle two.
        """
        wanted = max(1.0, (end_s - start_s) / max(1, points))
        usable: list[Tier | None] = [
            t for t in [None, *self.tiers] if start_s >= now_s - (t.retention if t else self.raw).total_seconds()
        ]
        fine_enough = [t for t in usable if (t.seconds if t else 1) <= wanted]
        chosen = fine_enough[-1] if fine_enough else usable[0] if usable else self.tiers[-1]
        size = chosen.seconds if chosen else 1
        return Resolution(chosen, size * max(1, math.ceil(wanted / size)))


def mark_gaps(
    timestamps: list[float], columns: Sequence[list[float | None]], expected: float
) -> tuple[list[float], list[list[float | None]]]:
    """Insert a null row where consecutive points are further apart than twice ``expected``.

    Charts then break the line there instead of drawing across a time nothing arrived.
    """
    out_ts: list[float] = []
    out_cols: list[list[float | None]] = [[] for _ in columns]
    for i, ts in enumerate(timestamps):
        if out_ts and ts - out_ts[-1] > 2 * expected:
            out_ts.append(out_ts[-1] + expected)
            for column in out_cols:
                column.append(None)
        out_ts.append(ts)
        for column, source in zip(out_cols, columns, strict=True):
            column.append(source[i])
    return out_ts, out_cols

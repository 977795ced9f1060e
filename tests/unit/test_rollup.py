"""The pure part of downsampling: rates, cycles lost, which tier answers, gaps."""

from __future__ import annotations

from datetime import timedelta

import pytest

from subscriber.rollup import (
    CONTAINER_COUNTERS,
    DEFAULT_TIERS,
    MAX_POINTS,
    NODE_COUNTERS,
    NODE_DERIVED,
    Derivation,
    Previous,
    Retention,
    cycles_lost,
    mark_gaps,
    rates,
)

BEFORE = Previous(ts_ms=1_000_000, counters=(10_000, None), cycle=41)


def test_rate_is_bytes_per_second_between_readings() -> None:
    assert rates(BEFORE, 1_005_000, (15_000, 7)) == [1000.0, None]  # no rate without a reading before


def test_a_smaller_reading_is_a_counter_that_restarted_from_zero() -> None:
    assert rates(BEFORE, 1_005_000, (2_500, None)) == [500.0, None]  # never negative


@pytest.mark.parametrize(
    ("previous", "ts", "value"),
    [(BEFORE, 1_000_000, 20_000), (BEFORE, 999_000, 20_000), (BEFORE, 1_000_000 + 3_601_000, 20_000),
     (BEFORE, 1_005_000, None), (None, 1_005_000, 20_000)],
    ids=["same time", "earlier", "after a long silence", "no reading", "nothing before"],
)  # fmt: skip
def test_no_rate_without_two_readings_close_in_time(previous: Previous | None, ts: int, value: int | None) -> None:
    assert rates(previous, ts, (value, 5)) == [None, None]


def test_rate_columns_follow_the_counters_they_come_from() -> None:
    assert NODE_COUNTERS == ("network_bytes_recv", "network_bytes_sent")
    assert NODE_DERIVED == ["network_recv_rate", "network_sent_rate", "cycles_lost"]
    assert CONTAINER_COUNTERS == ("network_rx_bytes", "network_tx_bytes", "block_read_bytes", "block_write_bytes")


def test_cycles_lost_counts_the_numbers_that_never_arrived() -> None:
    assert cycles_lost(BEFORE, 1_005_000, 42, 5.0) == 0
    assert cycles_lost(BEFORE, 1_020_000, 45, 5.0) == 3
    assert cycles_lost(None, 1_020_000, 45, 5.0) == 0  # nothing to compare with


def test_an_agent_restart_loses_the_cycles_before_its_first_received_one() -> None:
    assert cycles_lost(BEFORE, 1_015_000, 1, 5.0) == 0
    assert cycles_lost(BEFORE, 1_015_000, 3, 5.0) == 2


def test_a_node_cannot_claim_more_lost_cycles_than_time_allows() -> None:
    assert cycles_lost(BEFORE, 1_010_000, 2**62, 5.0) == 1  # 10 s at 5 s: at most one missed
    assert cycles_lost(BEFORE, 1_010_000, 2**62, 0.0) == 0  # no interval to judge by
    assert cycles_lost(BEFORE, 1_010_000, 45, 5e-324) == 3  # an interval so small the bound is infinite


def test_derivation_keeps_the_newest_sample_and_asks_for_older_ones() -> None:
    derivation = Derivation()
    assert derivation.exchange(("a",), Previous(5000, ())) is None  # first sight: look it up
    assert derivation.exchange(("a",), Previous(1000, ())) is None  # late: look it up, keep 5000
    assert derivation.exchange(("a",), Previous(9000, ())) == Previous(5000, ())
    assert derivation.exchange(("a",), Previous(9000, ())) is None  # a redelivery


def test_derivation_forgets_what_no_rate_could_use_first() -> None:
    derivation = Derivation(max_series=2)
    derivation.exchange(("old",), Previous(0, ()))
    derivation.exchange(("b",), Previous(4_000_000, ()))
    derivation.exchange(("c",), Previous(4_000_001, ()))  # over the bound: "old" is an hour behind
    assert derivation.exchange(("b",), Previous(4_000_005, ())) == Previous(4_000_000, ())
    assert derivation.exchange(("old",), Previous(4_000_010, ())) is None


RETENTION = Retention(raw=timedelta(days=7), tiers=DEFAULT_TIERS)
NOW = 2_000_000_000.0
DAY = 86_400


@pytest.mark.parametrize(
    ("seconds", "source", "step"),
    [(3600, "raw", 3), (6 * 3600, "raw", 15), (DAY, "raw", 58), (7 * DAY, "1m", 420), (30 * DAY, "15m", 1800),
     (365 * DAY, "2h", 21600)],
)  # fmt: skip
def test_each_range_reads_the_coarsest_source_fine_enough(seconds: int, source: str, step: int) -> None:
    res = RETENTION.resolution(NOW - seconds, NOW, NOW, MAX_POINTS)
    assert (res.name, res.step_seconds) == (source, step)
    assert seconds / res.step_seconds <= MAX_POINTS


def test_tiers_given_in_any_order_are_kept_finest_first() -> None:
    shuffled = Retention(raw=timedelta(days=7), tiers=(DEFAULT_TIERS[2], DEFAULT_TIERS[0], DEFAULT_TIERS[1]))
    assert shuffled.tiers == DEFAULT_TIERS
    assert shuffled.resolution(NOW - 30 * DAY, NOW, NOW, MAX_POINTS).name == "15m"


def test_fewer_points_asked_means_a_coarser_source() -> None:
    assert RETENTION.resolution(NOW - DAY, NOW, NOW, 600).name == "1m"


def test_a_range_older_than_a_source_keeps_goes_to_one_that_holds_it() -> None:
    eight_days_ago = NOW - 8 * DAY
    assert RETENTION.resolution(eight_days_ago, eight_days_ago + 3600, NOW, MAX_POINTS).name == "1m"
    assert RETENTION.resolution(NOW - 1000 * DAY, NOW - 999 * DAY, NOW, MAX_POINTS).name == "2h"


def test_gaps_become_a_null_point_so_lines_break() -> None:
    stamps, (values,) = mark_gaps([0, 5, 10, 60, 65], [[1.0, 2.0, 3.0, 4.0, 5.0]], expected=5.0)
    assert stamps == [0, 5, 10, 15, 60, 65]
    assert values == [1.0, 2.0, 3.0, None, 4.0, 5.0]
    assert mark_gaps([0, 9], [[1.0, 2.0]], expected=5.0) == ([0, 9], [[1.0, 2.0]])  # jitter is not a gap

"""The CPU-baseline policy, with the clock and the system reading passed in."""

from __future__ import annotations

from agent.cpu_baseline import SystemReading, baseline, rebase_after_restart

PREVIOUS = {"cpu_usage": {"total_usage": 5_000_000_000}, "system_cpu_usage": 900_000_000_000, "online_cpus": 4}
LAST_CYCLE = SystemReading(at=1_000.0, system_ns=950_000_000_000)


def test_a_known_container_is_measured_against_our_previous_sample_of_it() -> None:
    assert baseline(PREVIOUS, started_at=10.0, last_cycle=LAST_CYCLE) is PREVIOUS


def test_a_container_started_after_the_last_cycle_counts_all_its_cpu_time_in_the_interval() -> None:
    chosen = baseline(None, started_at=1_000.5, last_cycle=LAST_CYCLE)
    assert chosen == {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 950_000_000_000}
    assert baseline(None, started_at=1_000.0, last_cycle=LAST_CYCLE) == chosen  # started at the reading itself


def test_any_other_first_sight_is_left_to_the_daemons_two_samples() -> None:
    assert baseline(None, started_at=999.9, last_cycle=LAST_CYCLE) is None  # older: a since-start average
    assert baseline(None, started_at=None, last_cycle=LAST_CYCLE) is None  # start time unknown
    assert baseline(None, started_at=2_000.0, last_cycle=None) is None  # no previous cycle (first, or daemon was away)


def test_a_restart_in_between_rebases_on_zero_usage_at_the_same_reading() -> None:
    restarted = {"cpu_usage": {"total_usage": 40_000_000}, "system_cpu_usage": 960_000_000_000}
    assert rebase_after_restart(PREVIOUS, restarted) == {**PREVIOUS, "cpu_usage": {"total_usage": 0}}
    went_on = {"cpu_usage": {"total_usage": 6_000_000_000}, "system_cpu_usage": 960_000_000_000}
    assert rebase_after_restart(PREVIOUS, went_on) is None

"""The LLM routing benchmark's reading of the hit rate's recovery after a preemption.

``recovery_paired`` compares each 10 s window of the preempted run with the same
window of the same seed run without the preemption; ``recovery_before`` (the
reading before it) compares with the minute before the preemption, and so reads
a window that falls short by chance as a slow recovery.
"""

from __future__ import annotations

import math

from benchmarks.llm_routing.run import (
    NEVER,
    REPLACEMENT,
    WINDOW,
    Config,
    pooled,
    recovery_before,
    recovery_paired,
    run,
)

AT = 150.0  # the preemption: window 15 starts there
END = AT + REPLACEMENT


def timeline(shares: dict[int, float], prompt: int = 1000) -> dict[int, list[int]]:
    """Windows 0..29 at 80% cached, but those in ``shares``."""
    return {w: [round(shares.get(w, 0.8) * prompt), prompt] for w in range(30)}


def test_back_from_the_end_of_the_last_window_short_of_the_run_without_the_preemption() -> None:
    steady = timeline({})
    assert recovery_paired(timeline({15: 0.5}), steady, AT, END) == WINDOW
    # back after one window, short again in the fourth: it stays back only from 40 s on
    assert recovery_paired(timeline({15: 0.5, 18: 0.6}), steady, AT, END) == 4 * WINDOW
    # 90% of the run without it is back (72% against 80%); just under is not
    assert recovery_paired(timeline({15: 0.72}), steady, AT, END) == 0.0
    assert recovery_paired(timeline({15: 0.71}), steady, AT, END) == WINDOW


def test_a_window_short_in_both_runs_is_not_read_as_a_slow_recovery() -> None:
    # the workload itself has a poor window 20 s after the preemption (long first
    # prompts): the preempted run is as good as it could be from 10 s on
    unpreempted = timeline({17: 0.6})
    preempted = timeline({15: 0.5, 17: 0.6})
    assert recovery_paired(preempted, unpreempted, AT, END) == WINDOW
    # the reading before compared with the minute before, and waited for window 18
    assert recovery_before(preempted, AT) == 2 * WINDOW
    assert recovery_before(timeline({15: 0.5, 16: 0.7, 17: 0.6}), AT) == 4 * WINDOW


def test_still_short_when_the_replacement_joins_is_never_back_and_later_windows_do_not_count() -> (
    None
):
    steady = timeline({})
    short = {w: 0.6 for w in range(15, 21)}
    assert recovery_paired(timeline(short), steady, AT, END) == NEVER
    assert math.isinf(NEVER)
    # the replacement's join (window 21 on) is an event of its own, not read here
    assert recovery_paired(timeline({15: 0.5, 21: 0.3}), steady, AT, END) == WINDOW
    # windows without prompt tokens in either run are skipped, not read as short
    gap = timeline({15: 0.5})
    gap[16] = [0, 0]
    assert recovery_paired(gap, steady, AT, END) == WINDOW


def test_nothing_cached_without_the_preemption_is_nothing_to_recover() -> None:
    nothing = {w: [0, 1000] for w in range(30)}
    assert recovery_paired(nothing, nothing, AT, END) is None
    assert recovery_before(nothing, AT) is None


def test_the_paired_runs_share_every_window_before_the_preemption() -> None:
    """Same seed, same conversations, same think times: the run without the
    preemption is the same run until it, so the comparison after it is fair."""
    config = Config("chat", "cache_aware", replicas=3, load=0.7, seed=5, duration=160.0)
    preempted = run(config)
    unpreempted = run(Config("chat", "cache_aware", 3, 0.7, 5, 160.0, preempt=False))
    half = int(config.duration / 2 // WINDOW)
    assert [preempted.timeline.get(w) for w in range(half)] == [
        unpreempted.timeline.get(w) for w in range(half)
    ]
    assert preempted.timeline.get(half) != unpreempted.timeline.get(half)
    assert preempted.recovery is not None and 0.0 <= preempted.recovery <= REPLACEMENT
    assert preempted.recovery_before is not None
    assert unpreempted.recovery is None and unpreempted.recovery_before is None


def test_seeds_pooled_window_by_window_read_a_chance_window_of_one_seed_as_noise() -> None:
    """One seed's window short by chance (a few long prompts) is diluted by the other
    seed's same window; a shortfall in both seeds is still read."""
    steady = timeline({})
    one = timeline({15: 0.5, 18: 0.65})  # seed 1: short again at 30-40 s
    two = timeline({15: 0.5})
    assert recovery_paired(one, steady, AT, END) == 4 * WINDOW
    both = pooled([one, two])
    assert both[18] == [650 + 800, 2000] and both[15] == [1000, 2000]
    assert recovery_paired(both, pooled([steady, steady]), AT, END) == WINDOW
    assert recovery_paired(pooled([one, one]), pooled([steady, steady]), AT, END) == 4 * WINDOW


def test_the_replica_the_preemption_takes_can_be_absent_from_the_start() -> None:
    """``absent``: the run a recovery could be read against to leave out the capacity
    the preemption takes (the replicas left at steady state)."""
    config = Config("chat", "least_load", 3, 0.7, 5, 160.0, preempt=False, absent=True)
    result = run(config)
    assert result.requests > 0 and result.recovery is None
    assert result.balance > 0.0  # measured over the two replicas there

"""A location whose API keeps failing is left alone for a while, then tried again."""

from __future__ import annotations

from skyctl.clock import FakeClock
from skyctl.controller.breaker import BASE_COOLDOWN, FAILURES_TO_OPEN, Breakers
from skyctl.types import Location

EAST = Location("aws", "us-east-1", "us-east-1a")
WEST = Location("aws", "us-west-2", "us-west-2a")


async def test_consecutive_transient_failures_open_only_that_location() -> None:
    clock = FakeClock()
    b = Breakers(clock)
    opened = [b.failure(EAST) for _ in range(FAILURES_TO_OPEN)]
    assert opened == [False] * (FAILURES_TO_OPEN - 1) + [True]
    assert not b.allows(EAST)
    assert b.allows(WEST)
    assert b.open_locations() == [EAST]


async def test_a_success_resets_the_count() -> None:
    b = Breakers(FakeClock())
    for _ in range(FAILURES_TO_OPEN - 1):
        b.failure(EAST)
    b.success(EAST)
    assert b.failure(EAST) is False
    assert b.allows(EAST)


async def test_after_the_cooldown_one_trial_goes_out_and_a_failure_doubles_the_wait() -> None:
    clock = FakeClock()
    b = Breakers(clock)
    for _ in range(FAILURES_TO_OPEN):
        b.failure(EAST)
    await clock.advance(BASE_COOLDOWN)
    assert b.allows(EAST)  # half-open: one trial
    assert b.failure(EAST) is True  # the trial failed: open again, for longer
    await clock.advance(BASE_COOLDOWN)
    assert not b.allows(EAST)
    await clock.advance(BASE_COOLDOWN)
    assert b.allows(EAST)
    b.success(EAST)
    assert b.open_locations() == []

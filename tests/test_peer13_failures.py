"""Peer review of issue 13: odd but legal failure patterns, and what they leave in the log.

A replica that passes its probe and then crashes within seconds, again and
again, is a crash loop: its relaunches back off as a never-ready one's do (the
issue: "relaunches back off exponentially per service and version"), rather
than going at once until the hourly cap and then leaving the service with no
replica for the rest of the hour. A replica that served for a while before it
broke is still replaced at once. Driven through the real plan() in virtual time
(the scripted world of tests/test_policies_failures.py).

A condition a plan notes tick after tick (no on-demand offering while every
location's breaker is open) is one event per spell, not one per tick: the
event log is bounded and must keep the launch failures that explain it.
"""

from __future__ import annotations

import itertools

from policies import failures
from tests.fakes.memory_provider import ZONES
from tests.test_controller import FIXED, Harness
from tests.test_policies_failures import Scripted, World
from tests.test_policies_support import make_spec


def crash_world(script: Scripted) -> World:
    return World(make_spec(replicas=1, use_spot=False, initial_delay=20.0), script)


def gaps(w: World) -> list[float]:
    return [b - a for (a, _), (b, _) in itertools.pairwise(w.launches)]


def test_a_replica_crashing_seconds_after_ready_is_relaunched_with_growing_waits() -> None:
    w = crash_world(Scripted(ready_after=2.0, exit_after=8.0))
    w.run(1800.0)
    assert not any(p.failure for p in w.plans)  # it served: the version is not given up
    waits = gaps(w)
    assert waits == sorted(waits) and waits[-1] >= failures.MAX_BACKOFF
    # at once, then 10 s, 20 s ... 600 s: about 10 launches in half an hour, not the
    # hourly cap's 60 within the first 9 minutes
    assert len(w.launches) <= 12


def test_a_replica_that_served_for_minutes_before_it_crashed_is_replaced_at_once() -> None:
    w = crash_world(Scripted(ready_after=2.0, exit_after=300.0))
    w.run(1800.0)
    assert len(w.launches) >= 6
    assert max(gaps(w)) <= 302.0  # each crash: a relaunch at the next tick, no backoff


# --------------------------------------------------------------- the controller
async def test_a_plan_note_that_holds_tick_after_tick_is_logged_once_not_every_tick(
    h: Harness,
) -> None:
    # every location answers 503: the breakers open, no on-demand offering is left,
    # and every plan says so; the event log (bounded) must not fill with that line
    h.provider.sick = set(ZONES)
    await h.controller.create_service(FIXED.format(name="sick", replicas=1), None)
    await h.until(lambda: any("breaker" in e.kind for e in h.store.events("sick")))
    for _ in range(120):
        await h.clock.advance(1.0)
    notes = [e for e in h.store.events("sick", limit=1000) if "no on-demand offering" in e.message]
    assert 1 <= len(notes) <= 10, len(notes)  # once per spell, not once per tick


async def test_launches_that_keep_failing_are_the_services_last_error_until_one_lands(
    h: Harness,
) -> None:
    # every launch answered 503: REPLICA_INIT with an empty last error told the user
    # nothing (`serve up` printed no `last error` line, then timed out)
    h.provider.sick = set(ZONES)
    await h.controller.create_service(FIXED.format(name="sick", replicas=1), None)
    await h.until(lambda: "503" in h.controller.describe("sick")["last_error"])
    assert "launch failed" in h.controller.describe("sick")["last_error"]
    h.provider.sick = set()  # the cloud recovers: a launch lands and the error goes
    await h.until(lambda: h.controller.describe("sick")["ready_replicas"] == 1, seconds=1200)
    assert h.controller.describe("sick")["last_error"] == ""

"""Peer review of issue 13's failure discipline: odd but legal failure patterns.

A replica that passes its probe and then crashes within seconds, again and
again, is a crash loop: its relaunches back off as a never-ready one's do (the
issue: "relaunches back off exponentially per service and version"), rather
than going at once until the hourly cap and then leaving the service with no
replica for the rest of the hour. A replica that served for a while before it
broke is still replaced at once. Driven through the real plan() in virtual time
(the scripted world of tests/test_policies_failures.py).
"""

from __future__ import annotations

import itertools

from policies import failures
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

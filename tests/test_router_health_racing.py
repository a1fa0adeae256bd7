"""Issue 14's passive health under the racing policies: a replica that answers its
probe but hangs on `/` stops receiving requests after a handful of failures.

- hedge: the hung replica's first copies time out (504 with the request timeout:
  the hedge budget had no token yet); after :data:`outlier.CONSECUTIVE_FAILURES`
  of them it is ejected, and every request after is answered.
- fan_out: every request is answered by the other copy; the hung replica's
  losing copy runs on as a check to the request timeout (policies/outlier.py),
  and while it does the replica gets no new copies; failed checks eject it
  (tests/test_router_checks.py follows it to the ejection).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from policies import outlier
from tests.test_router_health import hangs_except_health, routed, statuses
from tests.test_router_helpers import Harness, open_harness, section

N = outlier.CONSECUTIVE_FAILURES


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with open_harness() as harness:
        yield harness


async def test_under_hedge_a_hung_replica_times_out_a_handful_of_times_then_is_ejected(
    h: Harness,
) -> None:
    hung = await h.replica(1, behaviour=hangs_except_health)
    good = await h.replica(2)
    router, url = await h.router(
        [hung.backend, good.backend], section("hedge", request_timeout_seconds=0.2)
    )
    got = await statuses(h, url, 30)
    assert got.count(504) == N and got[-15:] == [200] * 15
    assert routed(hung) == N  # no request after its ejection
    assert set(router.ejected()) == {1}
    assert h.backend_errors == [1]  # the controller is told, and probes it


async def test_under_fan_out_a_hung_replica_stops_getting_copies(h: Harness) -> None:
    hung = await h.replica(1, behaviour=hangs_except_health)
    good = await h.replica(2)
    _, url = await h.router(
        [hung.backend, good.backend], section("fan_out", request_timeout_seconds=0.2)
    )
    # a replica joining counts as just checked (its probe passed): checks start an interval later
    await h.clock.advance(outlier.CHECK_INTERVAL_SECONDS)
    assert await statuses(h, url, 30) == [200] * 30  # the other copy answers each one
    assert routed(hung) <= 2 * N  # was 30: a copy on every request, each cancelled

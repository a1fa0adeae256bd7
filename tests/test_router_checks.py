"""Passive health under fan_out and hedge: a copy that loses a race before its
response head runs on as a *check* (policies/outlier.py), so a hung replica is
told from a slower one.

- A replica joining routing counts as just checked (its readiness probe
  passed): its losing copies are cancelled as before for one interval.
- Then a hung replica gets one copy at a time, each checked to the request timeout;
  after CONSECUTIVE_FAILURES of them it is ejected and the controller told.
- A slow but alive replica is never ejected and gets at most one check per
  CHECK_INTERVAL_SECONDS of the (injected) clock; its other losing copies are
  cancelled as before.
- A check's answer, streamed or not, reaches no client.
- The router stopping, or the replica leaving routing, cuts its check.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from policies import outlier
from skyctl.router import Router
from skyctl.spec import ServiceSection
from tests.helpers.waiting import eventually
from tests.test_router_health import hangs_except_health, routed
from tests.test_router_helpers import FakeReplica, Harness, open_harness, section

N = outlier.CONSECUTIVE_FAILURES


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with open_harness() as harness:
        yield harness


async def checked_pair(
    h: Harness, behaviour: object, sec: ServiceSection
) -> tuple[FakeReplica, FakeReplica, Router, str]:
    """Replica 1 behaving as ``behaviour``, a good replica 2, a router over both
    with ``sec``, and one check interval gone by: checks are due from now on."""
    first = await h.replica(1, behaviour=behaviour)
    second = await h.replica(2)
    router, url = await h.router([first.backend, second.backend], sec)
    await h.clock.advance(outlier.CHECK_INTERVAL_SECONDS)
    return first, second, router, url


async def slow(replica: FakeReplica, request: web.BaseRequest) -> web.Response:
    await asyncio.sleep(0.3)
    return web.Response(text="slow")


async def slow_500(replica: FakeReplica, request: web.BaseRequest) -> web.Response:
    await asyncio.sleep(0.05)
    return web.Response(status=500, text="broken")


async def slow_reset(replica: FakeReplica, request: web.BaseRequest) -> web.Response:
    await asyncio.sleep(0.05)
    assert request.transport is not None
    request.transport.abort()  # no answer: the connection is reset
    await asyncio.sleep(10)  # (cancelled by the disconnect)
    return web.Response(text="never")


async def slow_stream(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
    await asyncio.sleep(0.3)
    resp = web.StreamResponse()
    await resp.prepare(request)
    for i in range(5):
        await resp.write(b"check-only-%d;" % i)
        await asyncio.sleep(0.01)
    await resp.write_eof()
    return resp


async def long_stream(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
    await asyncio.sleep(0.3)
    resp = web.StreamResponse()
    await resp.prepare(request)
    for _ in range(200):  # 10 s: longer than the request timeout
        await resp.write(b"token;")
        await asyncio.sleep(0.05)
    await resp.write_eof()
    return resp


async def get(h: Harness, url: str) -> tuple[int, bytes]:
    async with h.client.get(url + "/") as resp:
        return resp.status, await resp.read()


async def until_ejected(h: Harness, router: Router, url: str, limit: int = 2000) -> list[int]:
    """Requests one after the other until a replica is ejected; their statuses."""
    got: list[int] = []
    while not router.ejected():
        assert len(got) < limit, f"no ejection after {limit} requests"
        got.append((await get(h, url))[0])
        await asyncio.sleep(0.01)  # real time: checks last the request timeout
    return got


@pytest.mark.parametrize("behaviour", [hangs_except_health, slow_500], ids=["hung", "slow-5xx"])
async def test_under_fan_out_a_failing_loser_is_checked_until_ejected(
    h: Harness, behaviour: object
) -> None:
    bad, _, router, url = await checked_pair(
        h, behaviour, section("fan_out", request_timeout_seconds=0.2)
    )
    got = await until_ejected(h, router, url)
    assert set(got) == {200}  # the other copy answered every request
    assert N <= routed(bad) <= 2 * N  # one copy at a time, each a check that failed
    assert set(router.ejected()) == {1}
    assert h.backend_errors == [1]  # the controller is told, and probes it
    sent = routed(bad)
    for _ in range(10):
        assert (await get(h, url))[0] == 200
    assert routed(bad) == sent  # out of routing: no more copies


async def test_a_check_reset_by_its_replica_is_a_failure_reported_to_the_controller(
    h: Harness,
) -> None:
    bad, _, router, url = await checked_pair(
        h, slow_reset, section("fan_out", request_timeout_seconds=5.0)
    )
    got = await until_ejected(h, router, url)
    assert set(got) == {200}
    assert N <= routed(bad) <= 2 * N
    # each reset is reported (the controller probes it), then the ejection
    assert h.backend_errors == [1] * (N + 1)


async def test_under_hedge_a_hung_hedge_copy_is_checked_until_ejected(h: Harness) -> None:
    hung, _, router, url = await checked_pair(
        h,
        hangs_except_health,
        section("hedge", request_timeout_seconds=0.2, hedge_delay_seconds=0.01),
    )
    got = await until_ejected(h, router, url)
    assert got.count(504) <= N  # only first copies with no hedge token time out
    assert routed(hung) <= 2 * N
    assert h.backend_errors == [1]


async def test_a_slow_replica_is_never_ejected_and_checked_once_per_interval(
    h: Harness,
) -> None:
    slower = await h.replica(1, behaviour=slow)
    fast = await h.replica(2)
    router, url = await h.router(
        [slower.backend, fast.backend], section("fan_out", request_timeout_seconds=5.0)
    )
    health = router._health
    for _ in range(5):
        assert await get(h, url) == (200, b"replica-2")
    assert health.checks_started == 0  # it just joined: its probe passed
    await h.clock.advance(outlier.CHECK_INTERVAL_SECONDS)
    for _ in range(10):
        assert await get(h, url) == (200, b"replica-2")
    await eventually(lambda: not health.checks, "the check answered")
    copies = router.replica_stats()[1]["requests"]
    for _ in range(10):
        assert await get(h, url) == (200, b"replica-2")
    assert health.checks_started == 1  # once per interval of the clock ...
    assert router.replica_stats()[1]["requests"] == copies + 10  # ... racing again meanwhile
    await h.clock.advance(outlier.CHECK_INTERVAL_SECONDS)
    for _ in range(3):
        await get(h, url)
    assert health.checks_started == 2
    await eventually(lambda: not health.checks, "the second check answered")
    assert router.ejected() == {} and h.backend_errors == []
    assert router._states[1].consecutive == 0


async def test_a_checks_streamed_answer_is_read_and_discarded(h: Harness) -> None:
    streaming, _, router, url = await checked_pair(
        h, slow_stream, section("fan_out", request_timeout_seconds=5.0)
    )
    bodies = [await get(h, url) for _ in range(5)]
    await eventually(lambda: not router._health.checks, "the check read its body")
    assert bodies == [(200, b"replica-2")] * 5  # nothing of the check reaches a client
    assert router._health.checks_started == 1
    assert streaming.finished == 1  # the check's request, answered to its end
    assert router.ejected() == {} and router._states[1].consecutive == 0
    assert router._upstream is not None
    # read to its end: the connection went back to the pool
    assert router._upstream.pool.idle_count(router._states[1].origin) >= 1


async def test_a_check_streaming_past_the_request_timeout_is_cut_as_an_answer(
    h: Harness,
) -> None:
    streaming, _, router, url = await checked_pair(
        h, long_stream, section("fan_out", request_timeout_seconds=1.0)
    )
    assert await get(h, url) == (200, b"replica-2")
    await eventually(lambda: not router._health.checks, "the check was cut")
    await eventually(lambda: streaming.hung_up >= 1, "the replica saw the disconnect")
    for _ in range(5):
        assert await get(h, url) == (200, b"replica-2")
    assert router._health.checks_started == 1  # it answered: next check an interval on
    assert router.ejected() == {} and h.backend_errors == []


async def test_stopping_the_router_cuts_a_check_in_flight(h: Harness) -> None:
    hung, _, router, url = await checked_pair(
        h, hangs_except_health, section("fan_out", request_timeout_seconds=60.0)
    )
    assert (await get(h, url))[0] == 200
    await eventually(lambda: router._health.checks, "a check started")
    await router.stop(grace_seconds=5.0)  # no client waits: it does not wait for the check
    assert router._health.checks == {}
    await eventually(lambda: hung.hung_up == 1, "the hung replica saw the disconnect")
    assert router.replica_stats()[1]["in_flight"] == 0
    assert h.backend_errors == []  # cut, not failed


async def test_a_replica_leaving_routing_has_its_check_cut(h: Harness) -> None:
    hung, good, router, url = await checked_pair(
        h, hangs_except_health, section("fan_out", request_timeout_seconds=60.0)
    )
    assert (await get(h, url))[0] == 200
    await eventually(lambda: router._health.checks, "a check started")
    router.set_backends([good.backend])  # scale-down: nothing waits for its check
    assert router._health.checks == {}
    await eventually(lambda: hung.hung_up == 1, "the hung replica saw the disconnect")
    assert 1 not in router.replica_stats()  # no request in flight holds it


def test_check_rule() -> None:
    interval = outlier.CHECK_INTERVAL_SECONDS
    assert outlier.check_due(False, 0.0, 0.0)  # never checked: due
    assert not outlier.check_due(True, 100.0, 0.0)  # one at a time
    after_answer = outlier.next_check(50.0, answered=True)
    assert after_answer == 50.0 + interval
    assert not outlier.check_due(False, 50.0 + interval - 1, after_answer)
    assert outlier.check_due(False, 50.0 + interval, after_answer)
    assert outlier.check_due(False, 50.0, outlier.next_check(50.0, answered=False))

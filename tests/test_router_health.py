"""Passive health: a replica failing requests in a row leaves routing (outlier ejection).

Its readiness probe may well pass (it covers one path; the replica can hang
on another): the router ejects it after a handful of consecutive failures
(timeouts, resets, 5xx) for a growing interval, by the injected clock, and
tells the controller (``on_backend_error(replica_id, reason)``), which
probes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from policies import outlier
from tests.test_router_helpers import FakeReplica, Harness, open_harness, section


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with open_harness() as harness:
        yield harness


async def hangs_except_health(replica: FakeReplica, request: web.BaseRequest) -> web.Response:
    """Answers its probe path, hangs on every other one."""
    if request.path == "/health":
        return web.Response(text="ok")
    await replica.gate.wait()
    return web.Response(text="late")


async def fails_with_500(replica: FakeReplica, request: web.BaseRequest) -> web.Response:
    return web.Response(status=500, text="broken")


def routed(replica: FakeReplica) -> int:
    """Requests the router sent it (the probe's own are not)."""
    return sum(1 for seen in replica.seen if seen.path == "/")


async def statuses(h: Harness, url: str, n: int) -> list[int]:
    out = []
    for _ in range(n):
        async with h.client.get(url + "/") as resp:
            await resp.read()
            out.append(resp.status)
    return out


async def test_a_replica_hung_on_a_path_its_probe_does_not_cover_leaves_routing(
    h: Harness,
) -> None:
    hung = await h.replica(1, behaviour=hangs_except_health)
    good = await h.replica(2)
    router, url = await h.router([hung.backend, good.backend], section(request_timeout_seconds=0.2))
    async with h.client.get(f"http://127.0.0.1:{hung.port}/health") as probe:
        assert probe.status == 200  # the probe passes all along

    got = await statuses(h, url, 20)
    # least_load alternates until the hung replica has failed 5 times in a row ...
    assert routed(hung) == outlier.CONSECUTIVE_FAILURES
    assert got.count(504) == outlier.CONSECUTIVE_FAILURES and got[-8:] == [200] * 8
    # ... then it is out for 30 s by the clock, and the controller is told
    assert router.ejected() == {1: h.clock.now() + 30.0}
    assert h.backend_errors == [1]

    await h.clock.advance(30.0)  # back in routing; still hung: out again, for longer
    await statuses(h, url, 20)
    assert routed(hung) == 2 * outlier.CONSECUTIVE_FAILURES
    assert router.ejected() == {1: h.clock.now() + 60.0}
    assert h.backend_errors == [1, 1]


async def test_consecutive_5xx_eject_and_an_answer_in_between_resets_the_count(
    h: Harness,
) -> None:
    broken = await h.replica(1, behaviour=fails_with_500)
    good = await h.replica(2)
    router, url = await h.router([broken.backend, good.backend])
    await statuses(h, url, 8)  # 4 failures on replica 1, alternating
    assert router.ejected() == {}
    state = router._states[1]
    state.answered()  # a good answer in between: the count starts over
    await statuses(h, url, 8)
    assert router.ejected() == {}
    await statuses(h, url, 4)
    assert router.ejected() == {1: h.clock.now() + 30.0}
    assert router.replica_stats()[1]["errors"] == 9  # the 5th in a row ejected it


async def test_the_last_replica_and_more_than_half_are_never_ejected(h: Harness) -> None:
    broken = [await h.replica(i, behaviour=fails_with_500) for i in (1, 2)]
    router, url = await h.router([r.backend for r in broken])
    got = await statuses(h, url, 30)
    assert set(got) == {500}  # the replicas' own answers, passed on
    assert len(router.ejected()) == 1  # one of two: the other keeps serving
    assert len(h.backend_errors) >= 2  # the kept one is still reported


def test_ejection_intervals_grow_and_are_capped() -> None:
    assert [outlier.ejection_seconds(n) for n in (1, 2, 3, 10, 11)] == [30, 60, 90, 300, 300]
    assert not outlier.may_eject(0, 1)
    assert outlier.may_eject(0, 2) and not outlier.may_eject(1, 2)
    assert outlier.may_eject(1, 4) and not outlier.may_eject(2, 4)
    assert outlier.forgiven(120.0, 2) and not outlier.forgiven(119.0, 2)

"""Fan-out, hedging, instance-aware routing and metrics of the router (issue 4)."""

from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp import web

from skyctl.router import Router
from skyctl.types import Location
from tests.helpers.waiting import eventually
from tests.test_router_helpers import (
    FakeReplica,
    Harness,
    harness,
    in_flight,
    refused_backend,
    section,
)

__all__ = ["harness"]

Z1 = Location("aws", "us-east-1", "us-east-1a")
Z2 = Location("aws", "us-east-1", "us-east-1b")
GCP = Location("gcp", "us-central1", "us-central1-a")


async def wait_for_gate(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
    await replica.gate.wait()
    return web.Response(text=f"replica-{replica.replica_id}")


async def fail_fast(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
    return web.Response(status=500, text=f"broken-{replica.replica_id}")


async def get_text(h: Harness, url: str, method: str = "GET", **kw: object) -> tuple[int, str]:
    async with h.client.request(method, url, **kw) as resp:  # type: ignore[arg-type]
        return resp.status, await resp.text()


async def test_fan_out_answers_with_the_first_good_response_and_cancels_the_rest(
    harness: Harness,
) -> None:
    slow = await harness.replica(1, location=Z1, behaviour=wait_for_gate)
    fast = await harness.replica(2, location=GCP)
    router, url = await harness.router([slow.backend, fast.backend], section("fan_out"))
    assert await get_text(harness, url + "/") == (200, "replica-2")
    await eventually(lambda: slow.hung_up == 1, "the losing replica sees the cancellation")
    assert slow.hits == 1 and slow.finished == 0
    stats = router.replica_stats()
    assert stats[2]["wins"] == 1 and stats[1]["cancelled"] == 1
    assert in_flight(router) == {1: 0.0, 2: 0.0}


async def test_a_5xx_never_beats_a_slower_200(harness: Harness) -> None:
    broken = await harness.replica(1, location=Z1, behaviour=fail_fast)
    slow = await harness.replica(2, location=GCP, behaviour=wait_for_gate)
    router, url = await harness.router([broken.backend, slow.backend], section("fan_out"))
    answer = asyncio.ensure_future(get_text(harness, url + "/"))
    await eventually(lambda: router.replica_stats()[1]["errors"] == 1, "the 5xx arrived first")
    assert not answer.done()
    slow.gate.set()
    assert await answer == (200, "replica-2")


async def test_when_all_fail_the_replica_error_beats_a_connection_error(
    harness: Harness,
) -> None:
    broken = await harness.replica(1, location=Z1, behaviour=fail_fast)
    _, url = await harness.router(
        [broken.backend, refused_backend(2, GCP)], section("fan_out", retries=0)
    )
    async with harness.client.get(url + "/") as resp:
        assert resp.status == 500
        assert await resp.text() == "broken-1"
        assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-Id"])
    assert harness.backend_errors == [2]


async def test_when_all_connections_fail_the_answer_is_a_502(harness: Harness) -> None:
    backends = [refused_backend(1, Z1), refused_backend(2, GCP), refused_backend(3, Z2)]
    router, url = await harness.router(backends, section("fan_out", retries=1))
    async with harness.client.get(url + "/") as resp:
        assert resp.status == 502
        assert (await resp.json())["service"] == "svc"
    # the two first picks, then one retry on the untried third replica
    assert sorted(harness.backend_errors) == [1, 2, 3]
    assert all(s["requests"] == 1 for s in router.replica_stats().values())


async def test_no_answer_before_the_deadline_gives_504(harness: Harness) -> None:
    one = await harness.replica(1, location=Z1, behaviour=wait_for_gate)
    two = await harness.replica(2, location=GCP, behaviour=wait_for_gate)
    router, url = await harness.router(
        [one.backend, two.backend], section("fan_out", request_timeout_seconds=0.5)
    )
    status, body = await get_text(harness, url + "/")
    assert status == 504 and "in time" in body
    # every copy a replica received is hung up on (a loaded machine may not have
    # delivered the second one before the deadline: it is cancelled unsent)
    sent = lambda: one.hits + two.hits  # noqa: E731
    await eventually(lambda: sent() >= 1 and one.hung_up + two.hung_up == sent(), "cancelled")
    assert in_flight(router) == {1: 0.0, 2: 0.0}


async def stream_slowly(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    await resp.write(f"from-{replica.replica_id};".encode())
    await replica.gate.wait()
    await resp.write(b"end")
    await resp.write_eof()
    return resp


async def test_a_streamed_response_commits_to_the_first_replica_to_answer(
    harness: Harness,
) -> None:
    first = await harness.replica(1, location=Z1, behaviour=stream_slowly)
    later = await harness.replica(2, location=GCP, behaviour=wait_for_gate)
    router, url = await harness.router([first.backend, later.backend], section("fan_out"))
    async with harness.client.get(url + "/") as resp:
        assert await resp.content.readuntil(b";") == b"from-1;"
        await eventually(lambda: later.hung_up == 1, "the other replica is cancelled")
        first.gate.set()
        assert await resp.content.read() == b"end"
    stats = router.replica_stats()
    assert (stats[1]["wins"], stats[2]["cancelled"]) == (1, 1)


async def test_fan_out_sends_copies_to_different_failure_domains(harness: Harness) -> None:
    a = await harness.replica(1, location=Z1)
    b = await harness.replica(2, location=Z1)
    c = await harness.replica(3, location=GCP)
    router, url = await harness.router([a.backend, b.backend, c.backend], section("fan_out"))
    for _ in range(4):
        assert (await get_text(harness, url + "/"))[0] == 200
    # copies sent (a loser may be cancelled before its replica sees it)
    sent = {rid: stats["requests"] for rid, stats in router.replica_stats().items()}
    assert sent[3] == 4  # every request has one copy in the other cloud
    assert sent[1] + sent[2] == 4


async def test_k_copies_are_sent(harness: Harness) -> None:
    replicas = [await harness.replica(i, location=Location("local", f"r{i}")) for i in range(4)]
    _, url = await harness.router([r.backend for r in replicas], section("fan_out", fan_out=3))
    await get_text(harness, url + "/")
    await eventually(lambda: sum(r.hits for r in replicas) == 3, "three copies")


@pytest.mark.parametrize(
    ("methods", "copies"),
    [(("GET", "HEAD", "OPTIONS"), 1), (("GET", "POST"), 2)],
)
async def test_post_fans_out_only_when_the_spec_opts_in(
    harness: Harness, methods: tuple[str, ...], copies: int
) -> None:
    one = await harness.replica(1, location=Z1)
    two = await harness.replica(2, location=GCP)
    _, url = await harness.router(
        [one.backend, two.backend], section("fan_out", fan_out_methods=methods)
    )
    status, _ = await get_text(harness, url + "/v1/completions", "POST", data=b'{"p": 1}')
    assert status == 200
    await eventually(lambda: one.hits + two.hits == copies, f"{copies} copies")
    await asyncio.sleep(0.05)  # a wrong extra copy would have arrived by now
    assert one.hits + two.hits == copies


async def test_bodies_above_the_buffer_limit_are_not_fanned_out(harness: Harness) -> None:
    one = await harness.replica(1, location=Z1)
    two = await harness.replica(2, location=GCP)
    sec = section("fan_out", fan_out_methods=("POST",), max_buffer_bytes=100)
    _, url = await harness.router([one.backend, two.backend], sec)
    await get_text(harness, url + "/", "POST", data=b"x" * 50)
    await eventually(lambda: one.hits + two.hits == 2, "small body: two copies")
    await get_text(harness, url + "/", "POST", data=b"x" * 500)
    await asyncio.sleep(0.05)
    assert one.hits + two.hits == 3


async def answer_after_gate_or_hedge(
    replica: FakeReplica, request: web.BaseRequest
) -> web.StreamResponse:
    await replica.gate.wait()
    return web.Response(text=f"replica-{replica.replica_id}")


async def hedged_slow_primary(
    harness: Harness,
) -> tuple[Router, FakeReplica, FakeReplica, asyncio.Future[tuple[int, str]]]:
    """A request racing on a held (slow) primary, hedge delay 0.5 s, budget for every request."""
    slow = await harness.replica(1, location=Z1, behaviour=wait_for_gate)
    fast = await harness.replica(2, location=GCP)
    sec = section("hedge", hedge_delay_seconds=0.5, hedge_budget=1.0)
    router, url = await harness.router([slow.backend, fast.backend], sec)
    router._cursor = 0  # the slow replica is the primary
    answer = asyncio.ensure_future(get_text(harness, url + "/"))
    await eventually(lambda: slow.hits == 1 and harness.clock.pending_sleepers == 1, "racing")
    return router, slow, fast, answer


async def test_hedge_sends_a_second_copy_only_after_the_delay(harness: Harness) -> None:
    router, slow, fast, answer = await hedged_slow_primary(harness)
    await harness.clock.advance(0.4)
    await asyncio.sleep(0.02)
    assert fast.hits == 0  # not before the delay
    await harness.clock.advance(0.2)
    assert await answer == (200, "replica-2")
    await eventually(lambda: slow.hung_up == 1, "the primary is cancelled")
    assert router._hedging.sent == 1


async def test_a_primary_that_lost_to_its_hedge_still_counts_in_the_delay_sample(
    harness: Harness,
) -> None:
    """Its time so far is a lower bound of its latency: without it the slow
    answers would vanish from the P95 and hedges would fire too often."""
    router, _, _, answer = await hedged_slow_primary(harness)
    await harness.clock.advance(0.6)
    assert await answer == (200, "replica-2")
    # the hedge went out at 0.5 s and answered by 0.6 s; the primary had run 0.6 s
    hedge, primary = sorted(router._latency.values())
    assert hedge == pytest.approx(0.1, abs=1e-3) and primary == pytest.approx(0.6, abs=1e-3)
    assert router.replica_stats()[1]["latency_p50_ms"] == 0.0  # no sample for the replica


async def test_hedging_stays_within_the_budget(harness: Harness) -> None:
    one = await harness.replica(1, location=Z1, behaviour=wait_for_gate)
    two = await harness.replica(2, location=GCP, behaviour=wait_for_gate)
    sec = section("hedge", hedge_delay_seconds=0.1, hedge_budget=0.25)
    router, url = await harness.router([one.backend, two.backend], sec)
    requests = 12
    for _ in range(requests):
        before = one.hits + two.hits
        answer = asyncio.ensure_future(get_text(harness, url + "/"))
        await eventually(lambda: harness.clock.pending_sleepers == 1, "racing")
        await harness.clock.advance(0.2)  # past the hedge delay: hedge if the budget allows
        sent = sum(s["requests"] for s in router.replica_stats().values())
        await eventually(lambda: one.hits + two.hits == sent, "copies arrived")  # noqa: B023
        assert one.hits + two.hits - before in (1, 2)
        one.gate.set()
        two.gate.set()
        assert (await answer)[0] == 200
        one.gate.clear()
        two.gate.clear()
    extra = one.hits + two.hits - requests
    assert extra == router._hedging.sent == 3  # 0.25 x 12
    await eventually(lambda: all(v == 0 for v in in_flight(router).values()), "all released")


async def test_a_hedge_the_budget_refused_is_asked_for_again_while_the_request_waits(
    harness: Harness,
) -> None:
    slow = await harness.replica(1, location=Z1, behaviour=wait_for_gate)
    fast = await harness.replica(2, location=GCP)
    sec = section("hedge", hedge_delay_seconds=0.1, hedge_budget=0.5)
    router, url = await harness.router([slow.backend, fast.backend], sec)
    router._cursor = 0  # the slow replica is the first request's primary
    first = asyncio.ensure_future(get_text(harness, url + "/"))  # earns half a token
    await eventually(lambda: slow.hits == 1 and harness.clock.pending_sleepers == 1, "racing")
    await harness.clock.advance(0.1)  # its hedge is due; the budget is dry: ask again at +0.2
    assert router._hedging.sent == 0 and fast.hits == 0
    # a second request (to the idle fast replica, answered at once) earns the other half
    assert await get_text(harness, url + "/") == (200, "replica-2")
    await harness.clock.advance(0.2)  # the first request asks again and gets the token
    assert await asyncio.wait_for(first, 10) == (200, "replica-2")
    assert router._hedging.sent == 1  # within the budget: 0.5 x 2 requests
    await eventually(lambda: slow.hung_up == 1, "the slow primary is cancelled")


async def test_hedge_waits_for_latency_samples_before_using_the_p95(harness: Harness) -> None:
    one = await harness.replica(1, location=Z1)
    two = await harness.replica(2, location=GCP)
    router, url = await harness.router([one.backend, two.backend], section("hedge"))
    assert router._hedging.delay(None) is None
    for _ in range(25):
        await get_text(harness, url + "/")
    assert router._hedging.delay(None) == 0.0  # the fake clock does not move: P95 of zeros
    # the first 20 requests were never hedged; the rest within the 10% budget
    assert one.hits + two.hits - 25 == router._hedging.sent <= 2


async def test_instance_aware_least_load_weighs_in_flight_by_target_qps(
    harness: Harness,
) -> None:
    big = await harness.replica(1, accelerators="A100:8", behaviour=wait_for_gate)
    small = await harness.replica(2, accelerators="L4:1", behaviour=wait_for_gate)
    sec = section("instance_aware_least_load", qps={"A100": 5.0, "L4": 1.0})
    _, url = await harness.router([big.backend, small.backend], sec)
    pending = [asyncio.ensure_future(get_text(harness, url + "/")) for _ in range(5)]
    await eventually(lambda: big.hits + small.hits == 5, "all in flight")
    # loads: A100 n/5, L4 n/1 -> the L4 replica takes one, the A100 one the rest
    assert (big.hits, small.hits) == (4, 1)
    big.gate.set()
    small.gate.set()
    assert all(status == 200 for status, _ in await asyncio.gather(*pending))


async def test_request_ids_are_unique_and_router_state_stays_bounded(harness: Harness) -> None:
    one = await harness.replica(1, location=Z1)
    two = await harness.replica(2, location=GCP)
    router, url = await harness.router([one.backend, two.backend], section("fan_out"))
    ids = set()
    for i in range(300):
        async with harness.client.get(url + "/") as resp:
            ids.add(resp.headers["X-Request-Id"])
        if i % 10 == 0:
            await harness.clock.advance(1.0)
    assert len(ids) == 300 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    sent = router.replica_stats()
    assert sent[1]["requests"] + sent[2]["requests"] == 600  # both copies of every request
    seen = {s.headers["X-Request-Id"] for r in (one, two) for s in r.seen}
    assert seen == ids  # both copies carry the request's id
    assert len(router._latency) <= 512 and len(router._rate) <= 3600
    assert all(len(s.latency) <= 1024 for s in router._states.values())


async def test_metrics_expose_per_replica_counters(harness: Harness) -> None:
    slow = await harness.replica(1, location=Z1, behaviour=wait_for_gate)
    fast = await harness.replica(2, location=GCP)
    _, url = await harness.router([slow.backend, fast.backend], section("fan_out"))
    await get_text(harness, url + "/")
    status, text = await get_text(harness, url + "/-/skyctl/metrics")
    assert status == 200
    assert 'skyctl_router_replica_wins_total{replica="2",service="svc"} 1.0' in text
    assert 'skyctl_router_replica_cancelled_total{replica="1",service="svc"} 1.0' in text
    assert 'skyctl_router_requests_total{service="svc"} 1.0' in text
    assert 'skyctl_router_upstream_connections_total{service="svc"} 2.0' in text
    assert "skyctl_router_time_to_first_byte_seconds_bucket" in text
    assert "python_gc" not in text  # a registry of its own, not the global one


class AnswerTogether:
    """Two replicas that answer a fan-out's two copies in the very same instant
    (or, with ``apart``, the second one event-loop iteration after the first)."""

    def __init__(self, apart: bool = False, loser_status: int = 200) -> None:
        self.apart = apart
        self.loser_status = loser_status
        self.waiting: list[asyncio.StreamWriter] = []
        self.connections = 0
        self.servers: list[asyncio.Server] = []

    async def start(self) -> list[int]:
        for _ in range(2):
            server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.servers.append(server)
        return [s.sockets[0].getsockname()[1] for s in self.servers]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                self.waiting.append(writer)
                if len(self.waiting) == 2:
                    waiting, self.waiting = self.waiting, []
                    statuses = (200, self.loser_status)
                    for each, status in zip(waiting, statuses, strict=True):
                        # both answers leave in one callback, or one iteration apart
                        each.write(b"HTTP/1.1 %d X\r\nContent-Length: 2\r\n\r\nok" % status)
                        if self.apart:
                            await asyncio.sleep(0)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()


@pytest.mark.parametrize("loser_status", [200, 500])
@pytest.mark.parametrize(
    "apart", [False, True], ids=["in-the-same-instant", "one-iteration-after-the-winner"]
)
async def test_a_loser_whose_answer_arrived_whole_keeps_its_connection(
    harness: Harness, apart: bool, loser_status: int
) -> None:
    from skyctl.types import Backend

    pair = AnswerTogether(apart, loser_status)
    ports = await pair.start()
    try:
        backends = [
            Backend(i + 1, f"http://127.0.0.1:{port}", loc)
            for i, (port, loc) in enumerate(zip(ports, (Z1, GCP), strict=True))
        ]
        router, url = await harness.router(backends, section("fan_out"))
        for _ in range(5):
            assert await get_text(harness, url + "/") == (200, "ok")
        stats = router.replica_stats()
        assert sum(s["wins"] for s in stats.values()) == 5
        # every loser counted once: cancelled, or an error when it answered 5xx
        lost = "cancelled" if loser_status == 200 else "errors"
        kept = "errors" if loser_status == 200 else "cancelled"
        assert sum(s[lost] for s in stats.values()) == 5
        assert sum(s[kept] for s in stats.values()) == 0
        assert pair.connections == 2  # no reconnect: the losers' connections were reused
        assert router._upstream is not None and router._upstream.pool.connects == 2
    finally:
        await pair.stop()

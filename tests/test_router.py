"""The core router as the controller uses it: routing, streaming, retries, hygiene, life cycle."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from skyctl.router import Router
from skyctl.router.stats import Reservoir
from skyctl.types import Backend
from tests.helpers.waiting import eventually
from tests.test_router_helpers import (
    FakeReplica,
    Harness,
    harness,
    in_flight,
    refused_backend,
    section,
)

__all__ = ["harness"]  # the fixture, used by name


async def blocked_until_gate(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
    await replica.gate.wait()
    return web.Response(text=f"replica-{replica.replica_id}")


async def get_text(h: Harness, url: str, **kwargs: object) -> tuple[int, str]:
    async with h.client.get(url, **kwargs) as resp:  # type: ignore[arg-type]
        return resp.status, await resp.text()


# ---- policies ------------------------------------------------------------------------


async def test_round_robin_sends_requests_to_replicas_in_turn(harness: Harness) -> None:
    replicas = [await harness.replica(i) for i in (1, 2, 3)]
    _, url = await harness.router([r.backend for r in replicas], section("round_robin"))
    bodies = [(await get_text(harness, url + "/"))[1] for _ in range(6)]
    assert bodies[:3] == bodies[3:]
    assert sorted(bodies[:3]) == ["replica-1", "replica-2", "replica-3"]


async def test_least_load_sends_to_the_replica_with_fewest_in_flight(harness: Harness) -> None:
    one = await harness.replica(1, behaviour=blocked_until_gate)
    two = await harness.replica(2, behaviour=blocked_until_gate)
    router, url = await harness.router([one.backend, two.backend], section("least_load"))
    first = asyncio.ensure_future(get_text(harness, url + "/a"))
    await eventually(lambda: one.hits + two.hits == 1, "first request arrives")
    busy, idle = (one, two) if one.hits else (two, one)
    second = asyncio.ensure_future(get_text(harness, url + "/b"))
    await eventually(lambda: idle.hits == 1, "second request goes to the idle replica")
    assert busy.hits == 1
    assert in_flight(router) == {1: 1.0, 2: 1.0}
    one.gate.set()
    two.gate.set()
    assert {(await first)[0], (await second)[0]} == {200}
    assert in_flight(router) == {1: 0.0, 2: 0.0}


async def test_set_backends_takes_effect_for_the_very_next_request(harness: Harness) -> None:
    one, two = await harness.replica(1), await harness.replica(2)
    router, url = await harness.router([one.backend])
    assert (await get_text(harness, url + "/"))[1] == "replica-1"
    router.set_backends([two.backend])
    assert (await get_text(harness, url + "/"))[1] == "replica-2"
    router.reconfigure(section(wait_for_replica_seconds=0))
    router.set_backends([])
    assert (await get_text(harness, url + "/"))[0] == 503


async def test_no_backend_gives_503_json_naming_the_service(harness: Harness) -> None:
    _, url = await harness.router([], section(wait_for_replica_seconds=0))
    async with harness.client.get(url + "/v1/models") as resp:
        assert resp.status == 503
        assert resp.content_type == "application/json"
        assert await resp.json() == {"error": "no ready replicas", "service": "svc"}
        assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-Id"])


async def test_a_request_arriving_while_no_replica_is_ready_waits_for_one(
    harness: Harness,
) -> None:
    one = await harness.replica(1)
    router, url = await harness.router([], section(wait_for_replica_seconds=30))
    pending = asyncio.ensure_future(get_text(harness, url + "/"))
    await eventually(lambda: router._waiting == 1, "the request to wait")
    router.set_backends([one.backend])
    assert await pending == (200, "replica-1")
    assert router._waiting == 0


async def test_waiting_for_a_replica_is_bounded_in_time_and_in_numbers(harness: Harness) -> None:
    router, url = await harness.router(
        [], section(wait_for_replica_seconds=0.2, max_waiting_requests=1)
    )
    first = asyncio.ensure_future(get_text(harness, url + "/"))
    await eventually(lambda: router._waiting == 1, "the first request to wait")
    assert (await get_text(harness, url + "/"))[0] == 503  # over the cap: at once
    assert (await first)[0] == 503  # the waiting one after its 0.2 s
    assert router._waiting == 0


# ---- streaming --------------------------------------------------------------------------


async def stream_then_wait(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(b"data: first\n\n")
    await replica.gate.wait()
    await resp.write(b"data: second\n\n")
    await resp.write_eof()
    return resp


async def test_streamed_chunks_reach_the_client_before_the_replica_finishes(
    harness: Harness,
) -> None:
    replica = await harness.replica(1, behaviour=stream_then_wait)
    _, url = await harness.router([replica.backend])
    async with harness.client.get(url + "/stream") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        first = await resp.content.readuntil(b"\n\n")
        assert first == b"data: first\n\n"
        assert not replica.gate.is_set()  # the replica is still blocked mid-stream
        replica.gate.set()
        assert await resp.content.read() == b"data: second\n\n"


async def test_large_response_bodies_pass_through_intact(harness: Harness) -> None:
    payload = bytes(range(256)) * 16384  # 4 MiB

    async def big(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(body=payload)

    replica = await harness.replica(1, behaviour=big)
    _, url = await harness.router([replica.backend])
    async with harness.client.get(url + "/big") as resp:
        assert int(resp.headers["Content-Length"]) == len(payload)
        assert await resp.read() == payload


async def broken_mid_stream(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    await resp.write(b"partial")
    assert request.transport is not None
    request.transport.abort()
    return resp


async def test_a_replica_failing_mid_stream_aborts_the_client_connection(
    harness: Harness,
) -> None:
    replica = await harness.replica(1, behaviour=broken_mid_stream)
    router, url = await harness.router([replica.backend])
    with pytest.raises(aiohttp.ClientPayloadError):
        async with harness.client.get(url + "/") as resp:
            assert resp.status == 200
            await resp.read()
    await eventually(lambda: harness.backend_errors == [1], "the controller is told")
    assert router.replica_stats()[1]["errors"] == 1


# ---- retries and errors -----------------------------------------------------------------


async def test_connection_errors_retry_on_other_replicas_never_the_same(
    harness: Harness,
) -> None:
    reset = await harness.resetting()
    good = await harness.replica(3)
    backends = [refused_backend(1), reset.backend(2), good.backend]
    router, url = await harness.router(backends, section("round_robin", retries=2))
    for _ in range(6):
        assert await get_text(harness, url + "/") == (200, "replica-3")
    stats = router.replica_stats()
    assert stats[3]["requests"] == 6
    # each failing replica is tried at most once per request
    assert stats[1]["requests"] <= 6 and stats[2]["requests"] <= 6
    assert stats[1]["errors"] == stats[1]["requests"] > 0
    assert reset.connections == stats[2]["requests"] > 0
    assert set(harness.backend_errors) == {1, 2}


async def test_a_single_failing_replica_is_not_retried_and_gives_502(harness: Harness) -> None:
    router, url = await harness.router([refused_backend(7)], section(retries=3))
    async with harness.client.get(url + "/") as resp:
        assert resp.status == 502
        body = await resp.json()
    assert body["service"] == "svc" and "failed" in body["error"]
    assert router.replica_stats()[7]["requests"] == 1
    assert harness.backend_errors == [7]


@pytest.mark.parametrize(
    ("method", "first", "status", "second_hits"),
    [
        ("POST", "refused", 200, 1),  # nothing reached replica 1: safe to send elsewhere
        ("POST", "reset", 502, 0),  # replica 1 read it and died: it may have run
        ("PATCH", "reset", 502, 0),
        ("GET", "reset", 200, 1),  # idempotent: retried as before
        ("PUT", "reset", 200, 1),
        ("DELETE", "reset", 200, 1),
    ],
)
async def test_a_non_idempotent_request_is_retried_only_if_no_replica_can_have_seen_it(
    harness: Harness, method: str, first: str, status: int, second_hits: int
) -> None:
    good = await harness.replica(2)
    if first == "refused":
        failing = refused_backend(1)
    else:
        failing = (await harness.resetting()).backend(1)
    router, url = await harness.router([failing, good.backend], section("round_robin", retries=2))
    router._cursor = 0  # the first try goes to the failing replica
    async with harness.client.request(method, url + "/do", data=b"charge-once") as resp:
        assert resp.status == status
        if status == 502:
            body = await resp.json()
            assert body["service"] == "svc" and f"a {method} is not retried" in body["error"]
    assert good.hits == second_hits
    assert router.replica_stats()[1]["errors"] == 1
    assert harness.backend_errors == [1]


async def test_retries_are_bounded_by_the_option(harness: Harness) -> None:
    backends = [refused_backend(i) for i in range(1, 6)]
    router, url = await harness.router(backends, section(retries=2))
    assert (await get_text(harness, url + "/"))[0] == 502
    assert sum(s["requests"] for s in router.replica_stats().values()) == 3


async def test_a_replica_5xx_is_passed_through_not_retried(harness: Harness) -> None:
    async def fail(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(status=503, text="overloaded")

    one = await harness.replica(1, behaviour=fail)
    two = await harness.replica(2)
    _, url = await harness.router([one.backend, two.backend], section("round_robin"))
    assert await get_text(harness, url + "/") == (503, "overloaded")
    assert two.hits == 0


async def test_no_response_within_the_request_timeout_gives_504(harness: Harness) -> None:
    replica = await harness.replica(1, behaviour=blocked_until_gate)
    _, url = await harness.router([replica.backend], section(request_timeout_seconds=0.2))
    async with harness.client.get(url + "/") as resp:
        assert resp.status == 504
        assert (await resp.json())["service"] == "svc"


async def echo(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
    resp = web.StreamResponse()
    await resp.prepare(request)
    async for chunk in request.content.iter_any():
        await resp.write(chunk)
    await resp.write_eof()
    return resp


@pytest.mark.parametrize(("size", "status"), [(100, 200), (5000, 502)])
async def test_only_bodies_within_the_replay_buffer_are_retried(
    harness: Harness, size: int, status: int
) -> None:
    replica = await harness.replica(2, behaviour=echo)
    sec = section("round_robin", max_buffer_bytes=1024, retries=2)
    router, url = await harness.router([refused_backend(1), replica.backend], sec)
    router._cursor = 0  # the first try goes to the refusing replica
    async with harness.client.post(url + "/echo", data=b"b" * size) as resp:
        assert resp.status == status
        if status == 200:
            assert await resp.read() == b"b" * size
    assert replica.hits == (1 if status == 200 else 0)


async def test_large_request_bodies_stream_through_intact(harness: Harness) -> None:
    replica = await harness.replica(1, behaviour=echo)
    _, url = await harness.router([replica.backend], section(max_buffer_bytes=1024))
    payload = bytes(range(256)) * 8192  # 2 MiB, far above the replay buffer

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 65536):
            yield payload[i : i + 65536]

    async with harness.client.post(url + "/echo", data=chunks()) as resp:
        assert resp.status == 200
        assert await resp.read() == payload


# ---- headers ----------------------------------------------------------------------------


async def test_hop_by_hop_headers_are_stripped_and_forwarding_headers_set(
    harness: Harness,
) -> None:
    async def headers_back(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(
            text="ok",
            headers={
                "Keep-Alive": "timeout=5",
                "Connection": "X-Secret",
                "X-Secret": "hop",
                "Proxy-Authenticate": "Basic",
                "X-Model": "llama",
                "Set-Cookie": "a=1",
            },
        )

    replica = await harness.replica(1, behaviour=headers_back)
    _, url = await harness.router([replica.backend])
    sent = {
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "secret",
        "Proxy-Authorization": "Basic abc",
        "TE": "trailers",
        "Upgrade": "websocket",
        "Authorization": "Bearer token",
        "X-Forwarded-For": "10.0.0.1",
        "X-Request-Id": "client-id-1",
    }
    async with harness.client.get(url + "/p?q=1", headers=sent) as resp:
        got = resp.headers
        assert resp.status == 200
    seen = replica.seen[0].headers
    for hop in ("X-Hop", "Proxy-Authorization", "TE", "Upgrade"):
        assert hop not in seen
    assert seen["Authorization"] == "Bearer token"
    assert seen["X-Forwarded-For"] == "10.0.0.1, 127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["X-Forwarded-Host"].startswith("127.0.0.1:")
    assert seen["X-Request-Id"] == "client-id-1"
    assert replica.seen[0].path == "/p?q=1"
    for hop in ("Keep-Alive", "X-Secret", "Proxy-Authenticate"):
        assert hop not in got
    assert got["X-Model"] == "llama" and got["Set-Cookie"] == "a=1"
    assert got["X-Request-Id"] == "client-id-1"


async def test_a_request_id_is_generated_when_the_client_sends_none(harness: Harness) -> None:
    replica = await harness.replica(1)
    _, url = await harness.router([replica.backend])
    async with harness.client.get(url + "/") as resp:
        rid = resp.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert replica.seen[0].headers["X-Request-Id"] == rid


# ---- router-local endpoints ---------------------------------------------------------------


async def test_router_paths_do_not_shadow_user_paths(harness: Harness) -> None:
    replica = await harness.replica(1)
    _, url = await harness.router([replica.backend])
    async with harness.client.get(url + "/-/skyctl/health") as resp:
        health = await resp.json()
    assert health["service"] == "svc" and health["status"] == "ok"
    assert health["ready_replicas"] == 1
    assert (await get_text(harness, url + "/health"))[1] == "replica-1"
    assert (await get_text(harness, url + "/metricsx"))[1] == "replica-1"
    assert (await get_text(harness, url + "/metrics/x"))[1] == "replica-1"
    assert replica.hits == 3


async def test_the_router_serves_its_metrics_at_slash_metrics_unless_told_not_to(
    harness: Harness,
) -> None:
    replica = await harness.replica(1)
    router, url = await harness.router([replica.backend])
    for path in ("/metrics", "/metrics?x=1", "/-/skyctl/metrics"):
        status, text = await get_text(harness, url + path)
        assert status == 200 and "skyctl_router_requests_total" in text, path
    assert replica.hits == 0
    # metrics_path: null hands /metrics to the model server (its own metrics)
    router.reconfigure(section("least_load", metrics_path=None))
    assert (await get_text(harness, url + "/metrics"))[1] == "replica-1"
    router.reconfigure(section("least_load", metrics_path="/-/router-metrics"))
    assert "skyctl_router_requests_total" in (await get_text(harness, url + "/-/router-metrics"))[1]
    assert (await get_text(harness, url + "/metrics"))[1] == "replica-1"


# ---- accounting -------------------------------------------------------------------------


async def test_request_rate_counts_by_the_injected_clock(harness: Harness) -> None:
    replica = await harness.replica(1)
    router, url = await harness.router([replica.backend])
    for _ in range(6):
        await get_text(harness, url + "/")
    assert router.request_rate(60.0) == pytest.approx(6 / 60)
    await harness.clock.advance(30)
    for _ in range(3):
        await get_text(harness, url + "/")
    assert router.request_rate(60.0) == pytest.approx(9 / 60)
    assert router.request_rate(10.0) == pytest.approx(3 / 10)
    await harness.clock.advance(45)
    assert router.request_rate(60.0) == pytest.approx(3 / 60)
    await harness.clock.advance(3600)
    assert router.request_rate() == 0.0


async def test_in_flight_never_goes_negative_through_errors_and_disconnects(
    harness: Harness,
) -> None:
    streaming = await harness.replica(1, behaviour=stream_then_wait)
    blocked = await harness.replica(2, behaviour=blocked_until_gate)
    reset = await harness.resetting()
    router, url = await harness.router([streaming.backend], section("round_robin", retries=3))
    # clients that disconnect mid-stream
    for _ in range(2):
        async with harness.client.get(url + "/") as resp:
            await resp.content.read(1)
    await eventually(lambda: streaming.hung_up == 2, "the replica sees the hang-ups")
    # a client cancelled while waiting for response headers
    router.set_backends([streaming.backend, blocked.backend])
    router.set_backends([blocked.backend])
    waiting = asyncio.ensure_future(get_text(harness, url + "/"))
    await eventually(lambda: blocked.hits == 1, "request in flight")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await eventually(lambda: blocked.hung_up == 1, "the replica sees the cancellation")
    # connection errors and resets
    router.set_backends([reset.backend(3), refused_backend(4)])
    for _ in range(3):
        assert (await get_text(harness, url + "/"))[0] == 502
    await eventually(lambda: all(v == 0 for v in in_flight(router).values()), "all released")
    stats = router.replica_stats()
    assert set(stats) == {3, 4}  # retired replicas are forgotten once idle
    assert all(s["in_flight"] == 0 for s in stats.values())
    assert sum(s["errors"] for s in stats.values()) == 6


async def test_stop_finishes_in_flight_requests_and_releases_the_port(harness: Harness) -> None:
    replica = await harness.replica(1, behaviour=blocked_until_gate)
    router = Router("svc", section(), clock=harness.clock)
    port = await router.start("127.0.0.1", 0)
    router.set_backends([replica.backend])
    url = f"http://127.0.0.1:{port}"
    tasks_before = asyncio.all_tasks()
    pending = asyncio.ensure_future(get_text(harness, url + "/"))
    await eventually(lambda: replica.hits == 1, "request in flight")
    stopping = asyncio.ensure_future(router.stop(grace_seconds=30.0))
    await eventually(lambda: not router.listening, "stopped accepting")
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as other:
            await other.get(url + "/")
    replica.gate.set()
    assert await pending == (200, "replica-1")
    await stopping
    assert router._upstream is None
    leftover = asyncio.all_tasks() - tasks_before - {asyncio.current_task()}
    # the replica's side notices the closed keep-alive connection a loop turn later
    await eventually(lambda: all(t.done() for t in leftover), "no task left running")


async def test_a_router_can_be_restarted_on_the_same_port(harness: Harness) -> None:
    replica = await harness.replica(1)
    router = Router("svc", section(), clock=harness.clock)
    port = await router.start("127.0.0.1", None)
    await router.stop()
    harness.routers.append(router)
    assert await router.start("127.0.0.1", port) == port
    router.set_backends([replica.backend])
    assert (await get_text(harness, f"http://127.0.0.1:{port}/"))[1] == "replica-1"


def test_an_unknown_policy_is_rejected_with_the_allowed_ones() -> None:
    from skyctl.clock import FakeClock

    with pytest.raises(ValueError, match=r"load_balancing_policy.*'fastest'.*least_load"):
        Router("svc", section("fastest"), clock=FakeClock())


def test_duplicate_replica_ids_keep_the_first_backend() -> None:
    from skyctl.clock import FakeClock
    from skyctl.types import Location

    router = Router("svc", section(), clock=FakeClock())
    router.set_backends(
        [
            Backend(1, "http://127.0.0.1:1", Location("local", "r")),
            Backend(1, "http://127.0.0.1:2", Location("local", "r")),
        ]
    )
    assert list(router.replica_stats()) == [1]


def router_tasks() -> list[asyncio.Task[object]]:
    """Tasks running code of the router package (the test's own are elsewhere)."""
    tasks = []
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and "skyctl/router/" in code.co_filename:
            tasks.append(task)
    return tasks


async def test_a_plain_request_in_flight_has_no_task_of_its_own(harness: Harness) -> None:
    """The hot path runs on callbacks: a request that needs no waiting (a replica
    ready, no body to stream) holds no task while its replica works on it."""
    held = await harness.replica(1, behaviour=blocked_until_gate)
    router, url = await harness.router([held.backend], section("least_load"))
    waiting = asyncio.ensure_future(get_text(harness, url + "/"))
    await eventually(lambda: held.hits == 1, "the request reaches the replica")
    assert router_tasks() == []
    assert in_flight(router) == {1: 1}
    held.gate.set()
    assert await waiting == (200, "replica-1")
    assert in_flight(router) == {1: 0}


async def test_pipelined_requests_are_answered_in_order(harness: Harness) -> None:
    one = await harness.replica(1)
    _, url = await harness.router([one.backend], section("least_load"))
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3)))
    answers = []
    for _ in range(3):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
        answers.append(await reader.readexactly(length))
    writer.close()
    assert answers == [b"replica-1"] * 3
    assert [s.path for s in one.seen] == ["/p0", "/p1", "/p2"]


def test_the_latency_reservoir_keeps_the_most_recent_samples_and_no_more() -> None:
    reservoir = Reservoir(size=100)
    for value in range(250):
        reservoir.add(float(value))
    assert len(reservoir) == 100 and reservoir.total == 250
    assert sorted(reservoir.values()) == [float(v) for v in range(150, 250)]
    assert reservoir.percentile(50.0) in (199.0, 200.0)

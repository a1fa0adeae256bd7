"""The routing watch between the controller and the router process (issue 14).

- :class:`RoutingFeed` versions every change; a watch from another epoch (a
  router that just started, or a controller that restarted) gets the full state,
  one from this epoch only what changed since its version, removals included,
  and a watch with nothing new waits until something changes;
- :class:`RemoteRouter` is what the controller reads instead of an in-process
  router: the request rate and per-replica figures the router processes
  reported (summed), their ejections, and the replica errors they raised
  (each probes the replica);
- the routing table is not published before the first tick gave candidates (a
  restarted controller must not replace the table the router keeps serving
  with an empty one);
- the router process (:class:`Watch` + :class:`Endpoints`, real sockets): opens
  each endpoint with the spec's settings (auth keys included), keeps serving
  the last table when the controller's API goes away, and a new controller's
  full state replaces that table (a service it no longer has is closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from policies.model import ReplicaView
from skyctl.clock import FakeClock, SystemClock
from skyctl.controller.routing_feed import RemoteRouter, RoutingFeed, add_routes
from skyctl.controller.routing_table import RoutingTable
from skyctl.lifecycle import ReplicaStatus
from skyctl.router.endpoints import Endpoints
from skyctl.router.process import Watch
from skyctl.routing_wire import REPORT_PATH, WATCH_PATH, backend_from_json, backend_to_json
from skyctl.secrets import Secrets
from skyctl.spec_yaml import parse_spec
from skyctl.store import VersionRecord
from skyctl.types import Backend, Location
from tests.helpers.waiting import eventually

LOC = Location("local", "us-east", "us-east-a")
TOKEN = "t0ken"
SPEC = f"""\
name: svc
secrets:
  KEY: sk-one
service:
  readiness_probe: /health
  replicas: 1
  auth:
    api_key_secrets: [KEY]
resources:
  cloud: local
run: exec {sys.executable} -c pass
"""


def backend(rid: int, port: int = 1) -> Backend:
    return Backend(replica_id=rid, url=f"http://127.0.0.1:{port}", location=LOC, spot=False)


def record(version: int = 1) -> VersionRecord:
    return VersionRecord(service="svc", version=version, yaml_text=SPEC, created_at=0.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ the feed
def test_a_new_epoch_gets_everything_and_this_epoch_only_what_changed() -> None:
    feed = RoutingFeed(FakeClock())
    feed.put("a", port=1, backends=None)
    feed.put("b", port=2, backends=None)
    full = feed.changes(None, 0)
    assert full["full"] and set(full["services"]) == {"a", "b"} and full["version"] == 2

    feed.put("a", backends=[backend_to_json(backend(1))])
    feed.remove("b")
    delta = feed.changes(full["epoch"], full["version"])
    assert not delta["full"]
    assert list(delta["services"]) == ["a"] and delta["removed"] == ["b"]
    assert delta["services"]["a"]["port"] == 1  # an entry is always whole
    assert delta["services"]["a"]["version"] == 3 and delta["version"] == 4

    # another controller's epoch (it restarted): the whole state, "b" simply absent
    again = feed.changes("an-older-controller", 3)
    assert again["full"] and set(again["services"]) == {"a"} and again["removed"] == []
    # nothing new since the last version: nothing
    none = feed.changes(full["epoch"], delta["version"])
    assert none["services"] == {} and none["removed"] == []


def test_a_service_added_back_is_no_longer_removed() -> None:
    feed = RoutingFeed(FakeClock())
    feed.put("a", port=1)
    seen = feed.changes(None, 0)
    feed.remove("a")
    feed.put("a", port=5)
    delta = feed.changes(seen["epoch"], seen["version"])
    assert delta["removed"] == [] and delta["services"]["a"]["port"] == 5


async def test_a_watch_waits_for_the_next_change_and_close_answers_it() -> None:
    feed = RoutingFeed(FakeClock())
    feed.put("a", port=1)
    epoch, version = feed.epoch, feed.version
    waiting = asyncio.ensure_future(feed.watch(epoch, version, 20))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    feed.put("a", backends=[])
    answer = await asyncio.wait_for(waiting, 5)
    assert answer["services"]["a"]["backends"] == []

    waiting = asyncio.ensure_future(feed.watch(epoch, feed.version, 20))
    await asyncio.sleep(0.05)
    feed.close()
    answer = await asyncio.wait_for(waiting, 5)
    assert answer["services"] == {}


async def test_no_state_is_given_before_the_controller_restored_its_services() -> None:
    """A full state taken while the controller is still restoring would close the
    endpoints of the services not restored yet: watches wait for it, then 503."""
    feed = RoutingFeed(FakeClock(), ready=False)
    with pytest.raises(web.HTTPServiceUnavailable):
        await feed.watch(None, 0, 0)
    waiting = asyncio.ensure_future(feed.watch(None, 0, 20))
    feed.put("a", port=1)  # restoring
    await asyncio.sleep(0)
    assert not waiting.done()
    feed.mark_ready()
    answer = await asyncio.wait_for(waiting, 5)
    assert answer["full"] and set(answer["services"]) == {"a"}


def test_backends_cross_the_wire_unchanged() -> None:
    b = Backend(7, "http://10.0.0.1:8080", Location("kubernetes", "ctx/a"), True, "A100:1", 3)
    assert backend_from_json(backend_to_json(b)) == b


# ----------------------------------------------------------- remote router
async def test_the_controller_reads_the_router_processes_reports() -> None:
    clock = FakeClock(1000.0)
    feed = RoutingFeed(clock)
    errors: list[tuple[int, str]] = []
    section = parse_spec(SPEC).service
    remote = RemoteRouter("svc", section, feed, record, lambda r, why: errors.append((r, why)))
    port = await remote.start("127.0.0.1", 0)
    entry = feed.changes(None, 0)["services"]["svc"]
    assert entry["port"] == port and entry["backends"] is None and entry["spec_version"] == 1

    stats = {"1": {"requests": 5.0, "in_flight": 1.0, "latency_p99_ms": 9.0}}
    feed.report({"router": "r1", "services": {"svc": {"rate_60": 2.0, "replica_stats": stats}}})
    stats2 = {"1": {"requests": 3.0, "in_flight": 2.0, "latency_p99_ms": 4.0}}
    feed.report(
        {
            "router": "r2",
            "services": {"svc": {"rate_60": 0.5, "replica_stats": stats2, "ejected": {"1": 5.0}}},
            "backend_errors": [["svc", 1, "connect: refused"], ["other", 2, "x"]],
        }
    )
    assert remote.request_rate(60.0) == 2.5  # summed over router processes
    assert remote.replica_stats() == {1: {"requests": 8.0, "in_flight": 3.0, "latency_p99_ms": 9.0}}
    assert remote.ejected() == {1: 5.0}
    assert errors == [(1, "connect: refused")]  # the other service's error is not ours

    await clock.advance(31.0)  # a router process that stopped reporting no longer counts
    assert remote.request_rate(60.0) == 0.0 and remote.replica_stats() == {}

    await remote.stop()
    assert feed.changes(None, 0)["services"] == {}


async def test_a_replica_left_the_router_only_once_every_router_process_applied_its_removal() -> (
    None
):
    """A drain reads the router processes' in-flight counts, which lag the table: they
    count for a replica only once each process reports having applied a table
    without it (a restarted controller included: its first table is the removal)."""
    clock = FakeClock(1000.0)
    feed = RoutingFeed(clock)
    remote = RemoteRouter("svc", parse_spec(SPEC).service, feed, record)
    await remote.start("127.0.0.1", 0)
    assert remote.settled(1) is False  # no table yet: the router process's old one holds
    remote.set_backends([backend(1), backend(2)])
    assert remote.settled(1) is False  # routed
    remote.set_backends([backend(2)])
    without_1 = feed.version
    assert remote.settled(1) is None  # no router process reports: unknown

    def report(router: str, version: int, epoch: str | None = feed.epoch) -> None:
        feed.report({"router": router, "services": {}, "epoch": epoch, "version": version})

    report("r1", without_1 - 1)
    assert remote.settled(1) is False  # its figures predate the removal
    report("r1", without_1)
    report("r2", without_1 + 5, epoch="an older controller's")
    assert remote.settled(1) is False  # r2 has not applied this controller's tables
    report("r2", without_1)
    assert remote.settled(1) is True
    assert remote.settled(7) is True  # never routed by this controller: gone with its first table
    remote.set_backends([backend(1), backend(2)])
    assert remote.settled(1) is False  # back in the table
    await clock.advance(31.0)  # the router processes stopped reporting
    remote.set_backends([backend(2)])
    assert remote.settled(1) is None


def test_the_table_is_published_once_the_first_tick_gave_candidates() -> None:
    published: list[list[Backend]] = []
    table = RoutingTable(published.append)
    table.gone(1)  # a provider signal before the first tick: nothing known, nothing sent
    assert published == []
    table.set_candidates({})  # the first tick: the table is known, even empty
    assert published == [[]]
    view = ReplicaView(
        replica_id=2,
        status=ReplicaStatus.READY,
        location=LOC,
        spot=False,
        version=1,
        price=1.0,
        created_at=0.0,
        status_since=0.0,
    )
    table.set_candidates({2: (backend(2), view)})
    assert published[-1] == [backend(2)] and table.version == 2


# ------------------------------------------------------ the router process
async def replica(name: str) -> tuple[web.AppRunner, int]:
    async def answer(_: web.Request) -> web.Response:
        return web.Response(text=name)

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


async def api(feed: RoutingFeed) -> tuple[web.AppRunner, str]:
    app = web.Application()
    add_routes(app, lambda: feed, TOKEN)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def sealed(tmp_path: Path) -> AsyncIterator[tuple[Secrets, dict[str, Any]]]:
    secrets = Secrets(tmp_path / "secret.key")
    s = secrets.seal(SPEC)
    yield secrets, {"spec_version": 1, "yaml": s.yaml_text, "source": None, "secrets": s.ciphertext}


async def get(url: str, key: str | None = "sk-one") -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(5)) as r:
            return r.status, await r.text()


async def test_the_router_keeps_its_last_table_without_the_controller_and_resyncs(
    sealed: tuple[Secrets, dict[str, Any]],
) -> None:
    secrets, spec = sealed
    one, port_one = await replica("one")
    two, port_two = await replica("two")
    feed = feed2 = RoutingFeed(SystemClock())
    api_runner, base = await api(feed)
    target: list[tuple[str, str]] = [(base, TOKEN)]
    endpoints = Endpoints(secrets, SystemClock())
    watch = Watch(endpoints, lambda: target[0], "test")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    async with aiohttp.ClientSession() as session:
        runs = [
            asyncio.create_task(watch.run(session)),
            asyncio.create_task(watch.report_loop(session)),
        ]
        try:
            feed.put("svc", host="127.0.0.1", port=port, backends=None, **spec)
            await eventually(lambda: "svc" in endpoints.routers, "the endpoint opens")
            assert (await get(url, key=None))[0] == 401  # the spec's auth came along
            feed.put("svc", backends=[backend_to_json(backend(1, port_one))])
            for _ in range(200):  # the table reaches the router within a few polls
                if await get(url) == (200, "one"):
                    break
                await asyncio.sleep(0.01)
            assert await get(url) == (200, "one")

            # reports reach the controller: rate and per-replica figures
            await eventually(lambda: feed.fresh_reports("svc"), "a report")

            # the controller goes away: the endpoint keeps answering from its last table
            feed.close()
            await api_runner.cleanup()
            target[0] = (base, TOKEN)
            await eventually(lambda: not watch.connected, "the watch notices")
            for _ in range(20):
                assert await get(url) == (200, "one")

            # a new controller (new epoch) whose table says replica 2: a full resync
            feed2 = RoutingFeed(SystemClock())
            feed2.put(
                "svc",
                host="127.0.0.1",
                port=port,
                backends=[backend_to_json(backend(2, port_two))],
                **spec,
            )
            api_runner, base2 = await api(feed2)
            target[0] = (base2, TOKEN)
            await eventually(lambda: watch.connected and watch.epoch == feed2.epoch, "resync")
            assert await get(url) == (200, "two")

            # its next full state lacks the service: the endpoint closes
            feed2.remove("svc")
            await eventually(lambda: "svc" not in endpoints.routers, "the endpoint closes")
            with pytest.raises(aiohttp.ClientConnectionError):
                await get(url)
        finally:
            for task in runs:
                task.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
            await endpoints.close(1.0)
            feed2.close()  # its waiting watch answers: the API closes at once
            await api_runner.cleanup()
            await one.cleanup()
            await two.cleanup()


async def test_a_service_the_controller_could_not_restore_keeps_its_endpoint(
    sealed: tuple[Secrets, dict[str, Any]],
) -> None:
    """A full state leaves out a stored service the controller could not restore yet
    (its port taken, its spec unreadable): the router keeps serving it as it was."""
    secrets, spec = sealed
    feed = RoutingFeed(FakeClock())
    feed.put("svc", host="127.0.0.1", port=free_port(), backends=[], **spec)
    endpoints = Endpoints(secrets, SystemClock())
    try:
        await endpoints.apply(feed.changes(None, 0))
        assert "svc" in endpoints.routers
        restarted = RoutingFeed(FakeClock())
        restarted.keep("svc")
        answer = restarted.changes(None, 0)
        assert answer["services"] == {} and answer["kept"] == ["svc"]
        await endpoints.apply(answer)
        assert "svc" in endpoints.routers  # kept, with its last table
        restarted.remove("svc")  # then deleted: the next full state closes it
        await endpoints.apply(restarted.changes(None, 0))
        assert "svc" not in endpoints.routers
    finally:
        await endpoints.close(1.0)


async def test_the_feed_needs_the_api_token() -> None:
    feed = RoutingFeed(FakeClock())
    runner, base = await api(feed)
    try:
        async with aiohttp.ClientSession() as session:
            for method, path in (("GET", WATCH_PATH), ("POST", REPORT_PATH)):
                async with session.request(method, base + path, json={}) as r:
                    assert r.status == 401
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with session.get(base + WATCH_PATH, headers=headers) as r:
                assert r.status == 200 and (await r.json())["full"]
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()


async def test_a_taken_port_is_refused_unless_the_router_process_holds_it() -> None:
    section = parse_spec(SPEC).service
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        feed = RoutingFeed(FakeClock())
        with pytest.raises(OSError):
            await RemoteRouter("svc", section, feed, record).start("127.0.0.1", port)
        assert feed.changes(None, 0)["services"] == {}  # nothing published
        # a restarted controller: the router process has that port open, as it should
        feed = RoutingFeed(FakeClock(), held_ports=lambda: {port})
        assert await RemoteRouter("svc", section, feed, record).start("127.0.0.1", port) == port


async def test_a_malformed_answer_does_not_stop_the_watch(
    sealed: tuple[Secrets, dict[str, Any]],
) -> None:
    secrets, spec = sealed
    port = free_port()
    answers: list[Any] = [
        {"epoch": "e", "version": 1, "full": True, "services": 5},  # not a mapping
        {"epoch": "e", "version": 2, "full": True, "services": {"svc": {}}},  # no fields
        {
            "epoch": "e",
            "version": 3,
            "full": True,
            "services": {"svc": {"host": "127.0.0.1", "port": port, "backends": [], **spec}},
        },
    ]

    async def watch_answer(_: web.Request) -> web.Response:
        if len(answers) > 1:
            return web.json_response(answers.pop(0))
        await asyncio.sleep(0.2)
        return web.json_response(answers[0])

    app = web.Application()
    app.router.add_get(WATCH_PATH, watch_answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    endpoints = Endpoints(secrets, SystemClock())
    watch = Watch(endpoints, lambda: (f"http://127.0.0.1:{runner.addresses[0][1]}", TOKEN), "t")
    async with aiohttp.ClientSession() as session:
        task = asyncio.create_task(watch.run(session))
        try:
            await eventually(lambda: "svc" in endpoints.routers, "the good answer applied", 15)
            assert watch.version == 3 and not task.done()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await endpoints.close(1.0)
            await runner.cleanup()

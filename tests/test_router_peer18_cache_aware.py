"""cache_aware and request bodies, as a peer would check them through the real router:
uploads the router must stream (never buffered whole, even keyed and raced), bodies in
encodings or shapes it must not misread, replicas joining, configured keys, retries."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web

from policies import cache_aware as ca
from tests.test_router_cache_aware import CHAT, SYSTEM, cache_section, echo_name, post, turn
from tests.test_router_helpers import FakeReplica, Harness, harness, refused_backend

__all__ = ["harness"]  # the fixture, used by name

PIECE = b"x" * 65536


def relaying(received: asyncio.Event) -> Any:
    """A replica that tells ``received`` once the first piece of a body reached it."""

    async def behaviour(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
        size = 0
        while chunk := await request.content.readany():
            size += len(chunk)
            received.set()
        return web.Response(text=f"replica-{replica.replica_id} {size}")

    return behaviour


async def test_uploads_stream_through_before_they_end_even_keyed_and_raced(
    harness: Harness,
) -> None:
    """An upload over ``max_buffer_bytes`` (with a length, or chunked) of a keyed session
    under ``race: hedge``: its first piece reaches the replica while the client still
    holds the rest back (a router that buffered it whole would wait forever)."""
    received = asyncio.Event()
    replicas = [await harness.replica(i, behaviour=relaying(received)) for i in (1, 2)]
    sec = cache_section(race="hedge")
    sec = replace(
        sec, router=replace(sec.router, fan_out_methods=("POST",), max_buffer_bytes=100_000)
    )
    _, url = await harness.router([r.backend for r in replicas], sec)
    headers = {"X-Session-Id": "upload-1", "Content-Type": "application/octet-stream"}
    homes = set()
    for length in (True, False):
        received.clear()

        async def body() -> AsyncIterator[bytes]:
            yield PIECE
            await received.wait()  # the rest only once the first piece is through
            for _ in range(7):
                yield PIECE

        if length:
            headers["Content-Length"] = str(8 * len(PIECE))
        else:
            headers.pop("Content-Length", None)
        sent = post(harness, url + "/upload", data=body(), headers=headers)
        status, text = await asyncio.wait_for(sent, 20)
        assert status == 200 and text.endswith(f" {8 * len(PIECE)}")
        homes.add(text.split()[0])
    assert len(homes) == 1  # the session's home, by its header (no body read)
    seen = [s for r in replicas for s in r.seen]
    assert len(seen) == 2  # no hedge copies of a body not kept
    assert seen[0].headers["Content-Length"] == str(8 * len(PIECE))
    assert seen[1].headers["Transfer-Encoding"] == "chunked"


def gzipped(doc: Any) -> tuple[bytes, dict[str, str]]:
    return gzip.compress(json.dumps(doc).encode()), {"Content-Encoding": "gzip"}


def form(doc: Any) -> tuple[bytes, dict[str, str]]:
    return b"payload=" + json.dumps(doc).encode(), {
        "Content-Type": "application/x-www-form-urlencoded"
    }


def with_bom(doc: Any) -> tuple[bytes, dict[str, str]]:
    return b"\xef\xbb\xbf" + json.dumps(doc).encode(), {"Content-Type": "application/json"}


@pytest.mark.parametrize("encode", [gzipped, form, with_bom])
async def test_bodies_not_readable_as_json_go_by_load_and_arrive_unchanged(
    harness: Harness, encode: Any
) -> None:
    replicas = [await harness.replica(i, behaviour=echo_name) for i in (1, 2, 3, 4)]
    router, url = await harness.router([r.backend for r in replicas], cache_section())
    data, headers = encode(turn(1, 2, SYSTEM))
    for _ in range(4):  # the same chat each time: were it read, one home
        assert (await post(harness, url + CHAT, data=data, headers=headers))[0] == 200
    assert [r.hits for r in replicas] == [1, 1, 1, 1]
    for r in replicas:
        (seen,) = r.seen
        assert seen.headers.get("Content-Encoding") == headers.get("Content-Encoding")
        expect = gzip.decompress(data) if "Content-Encoding" in headers else data
        assert seen.body == expect  # (aiohttp's server inflates gzip bodies)
    assert router._affinity is not None and router._affinity.keyed == 0


async def test_existing_chats_keep_their_homes_when_a_replica_joins_and_it_takes_new_ones(
    harness: Harness,
) -> None:
    replicas = [await harness.replica(i, behaviour=echo_name) for i in (1, 2, 3, 4)]
    router, url = await harness.router([r.backend for r in replicas[:3]], cache_section())
    homes = {c: (await post(harness, url + CHAT, turn(c, 0)))[1] for c in range(9)}
    assert len(set(homes.values())) == 3
    router.set_backends([r.backend for r in replicas])  # replica 4 joins
    after = {c: (await post(harness, url + CHAT, turn(c, 1)))[1] for c in range(9)}
    assert after == homes
    new = {(await post(harness, url + CHAT, turn(c, 0)))[1] for c in range(100, 108)}
    assert "replica-4" in new


async def test_a_prefix_unused_for_ttl_seconds_of_the_routers_clock_is_forgotten(
    harness: Harness,
) -> None:
    replicas = [await harness.replica(i, behaviour=echo_name) for i in (1, 2, 3)]
    router, url = await harness.router([r.backend for r in replicas], cache_section(ttl_seconds=60))
    affinity = router._affinity
    assert affinity is not None
    await post(harness, url + CHAT, turn(1, 0))
    await harness.clock.advance(59.0)
    await post(harness, url + CHAT, turn(1, 1))  # within the ttl: home
    assert affinity.outcomes["hit"] == 1
    await harness.clock.advance(61.0)
    await post(harness, url + CHAT, turn(1, 2))  # a minute past its last use: forgotten
    assert affinity.outcomes["hit"] == 1 and affinity.outcomes["miss"] == 2
    assert affinity.index.evicted > 0


async def test_a_configured_session_header_and_json_path_key_other_apis(
    harness: Harness,
) -> None:
    replicas = [await harness.replica(i, behaviour=echo_name) for i in (1, 2, 3, 4)]
    router, url = await harness.router(
        [r.backend for r in replicas],
        cache_section(session_header="X-Conversation", json_path="inputs"),
    )
    tgi = {"inputs": SYSTEM + "Translate: hello", "parameters": {"max_new_tokens": 9}}
    assert len({(await post(harness, url + "/generate", tgi))[1] for _ in range(4)}) == 1
    by_header = {"X-Conversation": "c-42"}
    names = {(await post(harness, url + "/other", headers=by_header))[1] for _ in range(4)}
    assert len(names) == 1
    default = {"X-Session-Id": "c-42"}  # not the configured header: by load
    names = {(await post(harness, url + "/other", headers=default))[1] for _ in range(4)}
    assert len(names) == 4
    assert router._affinity is not None and router._affinity.keyed == 8


async def test_a_retry_after_a_refused_connection_goes_to_the_next_best_holder(
    harness: Harness,
) -> None:
    """Not raced: the one copy's retry goes down the prefix's order too, to the replica
    holding the next longest match, not to the least loaded one."""
    others = [await harness.replica(i, behaviour=echo_name) for i in (2, 3, 4)]
    sec = cache_section()
    sec = replace(sec, router=replace(sec.router, retries=1))
    backends = [refused_backend(1)] + [o.backend for o in others]
    router, url = await harness.router(backends, sec)
    doc = turn(5, 1)
    keys = ca.block_keys(ca.prompt_bytes(CHAT, json.dumps(doc).encode()) or b"")
    assert router._affinity is not None
    now = harness.clock.now()
    router._affinity.index.record(keys, 1, now)  # the home, whose port is closed
    router._affinity.index.record(keys[: len(keys) // 2], 3, now)  # half of it
    assert await post(harness, url + CHAT, doc) == (200, "replica-3")
    assert [o.hits for o in others] == [0, 1, 0]

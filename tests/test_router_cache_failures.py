"""cache_aware through the real router: a copy that fails at its replica (a refused
connection, a 5xx, a shed 429) does not make that replica the prefix's home."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

from aiohttp import web

from policies import cache_aware as ca
from tests.helpers.waiting import eventually
from tests.test_router_cache_aware import CHAT, cache_section, echo_name, held, post, turn
from tests.test_router_helpers import FakeReplica, Harness, harness, refused_backend

__all__ = ["harness"]  # the fixture, used by name


def status(code: int) -> Any:
    async def behaviour(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
        await request.read()
        return web.Response(status=code, text=f"replica-{replica.replica_id} says {code}")

    return behaviour


def keys_of(doc: dict[str, Any]) -> list[int]:
    return ca.block_keys(ca.prompt_bytes(CHAT, json.dumps(doc).encode()) or b"")


async def test_a_replica_answering_an_error_or_shedding_does_not_become_the_home(
    harness: Harness,
) -> None:
    for code in (503, 500, 429):
        failing = await harness.replica(1, behaviour=status(code))
        good = await harness.replica(2, behaviour=echo_name)
        router, url = await harness.router([failing.backend, good.backend], cache_section())
        affinity = router._affinity
        assert affinity is not None
        doc = turn(code, 0)  # a new prefix: the first replica (ties rotate from it) takes it
        got, text = await post(harness, url + CHAT, doc)
        assert (got, text) == (code, f"replica-1 says {code}")
        now = harness.clock.now()
        assert affinity.index.depths(keys_of(doc), now) == {}  # was {1: ...}: its home
        assert affinity.pending.of(1) == 0 and len(affinity.index) == 0
        await harness.clock.advance(1.0)
        assert await post(harness, url + CHAT, doc) == (200, "replica-2")  # by load
        assert affinity.outcomes[ca.HIT] == 0 and affinity.outcomes[ca.MISS] == 2
        assert set(affinity.index.depths(keys_of(doc), harness.clock.now())) == {2}
        await router.stop()


async def test_a_refused_connection_retried_elsewhere_leaves_only_the_replica_that_answered(
    harness: Harness,
) -> None:
    others = [await harness.replica(i, behaviour=echo_name) for i in (2, 3)]
    sec = cache_section()
    sec = replace(sec, router=replace(sec.router, retries=2))
    router, url = await harness.router([refused_backend(1)] + [o.backend for o in others], sec)
    affinity = router._affinity
    assert affinity is not None
    doc = turn(7, 0)
    assert await post(harness, url + CHAT, doc) == (200, "replica-2")  # 1 refused: retried
    assert affinity.index.depths(keys_of(doc), harness.clock.now()) == {2: len(keys_of(doc))}
    assert affinity.pending.of(1) == 0


async def test_a_successful_answer_keeps_its_replica_the_home(harness: Harness) -> None:
    replicas = [await harness.replica(i, behaviour=echo_name) for i in (1, 2)]
    router, url = await harness.router([r.backend for r in replicas], cache_section())
    affinity = router._affinity
    assert affinity is not None
    doc = turn(9, 0)
    assert await post(harness, url + CHAT, doc) == (200, "replica-1")
    assert affinity.index.depths(keys_of(doc), harness.clock.now()) == {1: len(keys_of(doc))}
    await harness.clock.advance(1.0)
    assert await post(harness, url + CHAT, doc) == (200, "replica-1")
    assert affinity.outcomes[ca.HIT] == 1


async def test_a_race_whose_every_copy_fails_leaves_no_holder(harness: Harness) -> None:
    failing = [await harness.replica(i, behaviour=status(503)) for i in (1, 2)]
    sec = cache_section(race="fan_out")
    sec = replace(sec, router=replace(sec.router, fan_out_methods=("POST",), fan_out=2))
    router, url = await harness.router([f.backend for f in failing], sec)
    affinity = router._affinity
    assert affinity is not None
    doc = turn(11, 0)
    got, _ = await post(harness, url + CHAT, doc)
    assert got == 503 and [f.hits for f in failing] == [1, 1]
    assert affinity.index.depths(keys_of(doc), harness.clock.now()) == {}
    assert affinity.pending.of(1) == affinity.pending.of(2) == 0


async def test_a_raced_copy_that_fails_while_another_wins_is_no_holder(harness: Harness) -> None:
    failing = await harness.replica(1, behaviour=status(503))
    slow = await harness.replica(2, behaviour=held)
    sec = cache_section(race="fan_out")
    sec = replace(sec, router=replace(sec.router, fan_out_methods=("POST",), fan_out=2))
    router, url = await harness.router([failing.backend, slow.backend], sec)
    affinity = router._affinity
    assert affinity is not None
    doc = turn(13, 0)
    answer = asyncio.ensure_future(post(harness, url + CHAT, doc))
    await eventually(lambda: failing.finished == 1 and slow.hits == 1, "both copies sent")
    slow.gate.set()
    assert await answer == (200, "replica-2")
    assert affinity.index.depths(keys_of(doc), harness.clock.now()) == {2: len(keys_of(doc))}
    assert affinity.pending.of(1) == 0

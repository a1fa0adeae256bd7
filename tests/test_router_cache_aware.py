"""cache_aware through the real router: affinity, the bound, hedges that keep affinity,
and bodies that are not read (large, chunked) or responses that stream, untouched."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

from aiohttp import web

from policies import cache_aware as ca
from skyctl.router import Router
from skyctl.spec import CacheAware
from tests.helpers.waiting import eventually
from tests.test_router_helpers import FakeReplica, Harness, harness, section

__all__ = ["harness"]  # the fixture, used by name

CHAT = "/v1/chat/completions"
SYSTEM = "You are an agent with these tools and rules. " * 30  # ~1.4 KB shared


def turn(conversation: int, turns: int, system: str = "") -> dict[str, Any]:
    """A chat's request for its turn ``turns`` (0 first): the history, then a question."""
    messages = [{"role": "system", "content": system}] if system else []
    for n in range(turns + 1):
        if n:
            messages.append({"role": "assistant", "content": f"answer {n} " * 40})
        messages.append({"role": "user", "content": f"conversation {conversation} q{n} " * 10})
    return {"model": "m", "messages": messages, "stream": False}


async def echo_name(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
    body = await request.read()
    replica.seen[-1].body = body
    return web.Response(text=f"replica-{replica.replica_id}")


async def held(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
    await request.read()
    await replica.gate.wait()
    return web.Response(text=f"replica-{replica.replica_id}")


async def post(h: Harness, url: str, doc: Any = None, **kwargs: Any) -> tuple[int, str]:
    if doc is not None:
        kwargs["data"] = json.dumps(doc).encode()
    async with h.client.post(url, **kwargs) as resp:
        return resp.status, await resp.text()


def cache_section(**options: Any) -> Any:
    sec = section("cache_aware", hedge_delay_seconds=0.5, hedge_budget=1.0)
    return replace(sec, router=replace(sec.router, cache_aware=CacheAware(**options)))


async def four(h: Harness, **options: Any) -> tuple[Router, str, list[FakeReplica]]:
    replicas = [await h.replica(i, behaviour=echo_name) for i in (1, 2, 3, 4)]
    router, url = await h.router([r.backend for r in replicas], cache_section(**options))
    return router, url, replicas


async def test_every_turn_of_a_conversation_goes_to_its_first_replica(harness: Harness) -> None:
    _, url, _ = await four(harness)
    homes: dict[int, set[str]] = {}
    for n in range(4):
        for conversation in range(8):
            status, name = await post(harness, url + CHAT, turn(conversation, n))
            assert status == 200
            homes.setdefault(conversation, set()).add(name)
    assert all(len(names) == 1 for names in homes.values())  # affinity
    assert len({next(iter(n)) for n in homes.values()}) == 4  # new prefixes spread by load


async def test_a_chat_whose_first_question_is_short_still_goes_home(harness: Harness) -> None:
    """A first question of one partial block ("hi"), which the next turn does not share:
    the router finds the home by the turn key of the prompt that produced the answer."""
    _, url, _ = await four(harness)
    homes: dict[int, set[str]] = {}
    for n in range(3):
        for conversation in range(7):  # not a multiple of 4: rotating ties would move them
            messages: list[dict[str, str]] = [{"role": "user", "content": f"hi {conversation}"}]
            for m in range(1, n + 1):
                messages += [
                    {"role": "assistant", "content": f"answer {m} " * 40},
                    {"role": "user", "content": f"q{m}"},
                ]
            status, name = await post(harness, url + CHAT, {"model": "m", "messages": messages})
            assert status == 200
            homes.setdefault(conversation, set()).add(name)
    assert all(len(names) == 1 for names in homes.values())


async def test_the_session_header_keys_requests_without_a_readable_body(harness: Harness) -> None:
    _, url, _ = await four(harness)
    for session in ("a", "b", "c"):
        names = {
            (await post(harness, url + "/generate", headers={"X-Session-Id": session}))[1]
            for _ in range(5)
        }
        assert len(names) == 1
    no_key = {(await post(harness, url + "/generate"))[1] for _ in range(8)}
    assert len(no_key) == 4  # no key: least load, ties rotating


async def test_a_long_shared_system_prompt_draws_new_conversations_to_its_holder(
    harness: Harness,
) -> None:
    _, url, _ = await four(harness)
    names = {(await post(harness, url + CHAT, turn(c, 0, SYSTEM)))[1] for c in range(6)}
    assert len(names) == 1  # idle replicas: the holder of the system prompt serves them all


async def test_an_overloaded_home_loses_the_prefix_and_the_new_home_keeps_it(
    harness: Harness,
) -> None:
    replicas = [await harness.replica(i, behaviour=held) for i in (1, 2, 3)]
    router, url = await harness.router([r.backend for r in replicas], cache_section())
    doc = turn(7, 1)
    pending = [asyncio.ensure_future(post(harness, url + CHAT, doc))]
    await eventually(lambda: sum(r.hits for r in replicas) == 1, "the first turn")
    home = next(r for r in replicas if r.hits)
    while all(r.hits == 0 for r in replicas if r is not home):  # load the home until it spills
        assert len(pending) < 10
        pending.append(asyncio.ensure_future(post(harness, url + CHAT, doc)))
        await eventually(lambda: sum(r.hits for r in replicas) == len(pending), "arrives")
    moved = next(r for r in replicas if r is not home and r.hits)
    loads = [float(home.hits), 0.0, 0.0]  # in flight when the one that moved came
    assert home.hits + 1 > ca.bound(loads, 1.25)  # it was over the bound
    for r in replicas:
        r.gate.set()
    for task in pending:
        assert (await task)[0] == 200
    # the prefix now lives on both: the next ones go to either, never to the third
    names = {(await post(harness, url + CHAT, doc))[1] for _ in range(4)}
    assert names <= {f"replica-{home.replica_id}", f"replica-{moved.replica_id}"}
    assert router._affinity is not None and router._affinity.keyed == len(pending) + 4


async def test_a_replica_leaving_moves_only_its_own_conversations(harness: Harness) -> None:
    router, url, replicas = await four(harness)
    homes = {c: (await post(harness, url + CHAT, turn(c, 0)))[1] for c in range(12)}
    gone = replicas[1]
    router.set_backends([r.backend for r in replicas if r is not gone])
    after = {c: (await post(harness, url + CHAT, turn(c, 1)))[1] for c in range(12)}
    for c, name in homes.items():
        if name != f"replica-{gone.replica_id}":
            assert after[c] == name
        else:
            assert after[c] != name


async def test_large_and_chunked_bodies_stream_untouched_by_least_load(harness: Harness) -> None:
    _, url, replicas = await four(harness, max_body_bytes=1000)
    big = json.dumps(turn(1, 30)).encode()
    assert len(big) > 1000
    for _ in range(4):  # not read: routed by load (ties rotate), not by prefix
        assert (await post(harness, url + CHAT, data=big))[0] == 200
    assert sorted(r.hits for r in replicas) == [1, 1, 1, 1]

    async def chunks() -> Any:
        for start in range(0, len(big), 700):
            yield big[start : start + 700]

    assert (await post(harness, url + CHAT, data=chunks()))[0] == 200
    assert [s.body for r in replicas for s in r.seen] == [big] * 5
    assert all("chunked" in s.headers.get("Transfer-Encoding", "") for s in replicas[0].seen[1:])


async def test_a_streamed_answer_passes_through_as_it_is_written(harness: Harness) -> None:
    async def sse(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: first\n\n")
        await replica.gate.wait()
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    one = await harness.replica(1, behaviour=sse)
    _, url = await harness.router([one.backend], cache_section())
    async with harness.client.post(url + CHAT, data=json.dumps(turn(1, 0))) as resp:
        assert await resp.content.readuntil(b"\n\n") == b"data: first\n\n"  # before the end
        one.gate.set()
        assert await resp.content.read() == b"data: [DONE]\n\n"


async def test_a_new_prefix_avoids_a_replica_still_prefilling_until_its_first_bytes_come(
    harness: Harness,
) -> None:
    """vLLM sends a stream's headers at once and its first bytes after the prefill:
    until then the request's uncached blocks count as pending at its replica."""
    first_bytes = asyncio.Event()  # replica 1 has prefilled

    async def sse(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
        body = await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)  # the head goes out before the first token
        if replica.replica_id == 1 and b"conversation 1 " in body:
            await first_bytes.wait()
        await resp.write(f"data: replica-{replica.replica_id}\n\n".encode())
        await replica.gate.wait()
        await resp.write_eof()
        return resp

    one = await harness.replica(1, behaviour=sse)
    two = await harness.replica(2, behaviour=sse)
    router, url = await harness.router([one.backend, two.backend], cache_section())
    affinity = router._affinity
    assert affinity is not None

    async def stream(doc: dict[str, Any]) -> tuple[Any, str]:
        """The response, and its first event (the client sees nothing before it)."""
        resp = await harness.client.post(url + CHAT, data=json.dumps(doc))
        return resp, (await resp.content.readuntil(b"\n\n")).decode()

    # replica 1 takes conversation 1's long prompt and sits on its prefill; replica 2
    # answers (first bytes) two others and decodes them: 1 in flight against 2
    waiting = asyncio.ensure_future(stream(turn(1, 3, system=SYSTEM)))
    await eventually(lambda: one.hits == 1, "replica 1 prefilling")
    assert affinity.pending.of(1) > 0
    opened = [await stream(turn(n, 0)) for n in (2, 3)]
    assert [text for _, text in opened] == ["data: replica-2\n\n"] * 2
    assert affinity.pending.of(2) == 0  # their first bytes came
    loads = {rid: state.in_flight for rid, state in router._states.items()}
    assert loads == {1: 1, 2: 2}
    # a new conversation: by load replica 1, but replica 2 has no prefill ahead of it
    opened.append(await stream(turn(4, 0)))
    assert (one.hits, two.hits) == (1, 3)
    first_bytes.set()  # replica 1's first token: its prefill is done
    opened.append(await waiting)
    assert affinity.pending.of(1) == 0
    opened.append(await stream(turn(5, 0)))
    assert (one.hits, two.hits) == (2, 3)  # the least loaded again
    one.gate.set()
    two.gate.set()
    for resp, _ in opened:
        await resp.read()
        resp.release()


async def test_a_hedge_goes_to_the_next_best_holder_of_the_prefix(harness: Harness) -> None:
    home = await harness.replica(1, behaviour=held)
    others = [await harness.replica(i, behaviour=echo_name) for i in (2, 3, 4)]
    sec = cache_section(race="hedge")
    sec = replace(sec, router=replace(sec.router, fan_out_methods=("POST",)))
    router, url = await harness.router([home.backend] + [o.backend for o in others], sec)
    doc = turn(3, 2)
    keys = ca.block_keys(ca.prompt_bytes(CHAT, json.dumps(doc).encode()) or b"")
    assert router._affinity is not None
    now = harness.clock.now()
    router._affinity.index.record(keys, 1, now)  # the home holds all of it
    router._affinity.index.record(keys[: len(keys) // 2], 4, now)  # replica 4 half of it
    answer = asyncio.ensure_future(post(harness, url + CHAT, doc))
    # asleep: the hedge's delay, and the read of the replicas' metrics (their caches' size)
    await eventually(lambda: home.hits == 1 and harness.clock.pending_sleepers == 2, "racing")
    await harness.clock.advance(0.6)
    assert await answer == (200, "replica-4")
    assert [o.hits for o in others] == [0, 0, 1]
    assert router._affinity.pending.of(4) == 0  # the hedge answered: its prefill is done
    # the hedge that answered holds the whole prefix now, as the first copy's replica does
    assert router._affinity.index.depths(keys, harness.clock.now()) == {
        1: len(keys),
        4: len(keys),
    }


async def test_every_fan_out_copy_and_a_retry_replacing_one_become_holders(
    harness: Harness,
) -> None:
    broken = await harness.resetting()  # the home: drops the connection, a spare replaces it
    others = [await harness.replica(i, behaviour=held) for i in (2, 3, 4)]
    sec = cache_section(race="fan_out")
    sec = replace(sec, router=replace(sec.router, fan_out_methods=("POST",), fan_out=2, retries=1))
    router, url = await harness.router([broken.backend(1)] + [o.backend for o in others], sec)
    doc = turn(5, 1)
    keys = ca.block_keys(ca.prompt_bytes(CHAT, json.dumps(doc).encode()) or b"")
    affinity = router._affinity
    assert affinity is not None
    affinity.index.record(keys, 1, harness.clock.now())
    answer = asyncio.ensure_future(post(harness, url + CHAT, doc))
    await eventually(lambda: sum(o.hits for o in others) == 2, "a copy and its replacement")
    for o in others:
        o.gate.set()
    assert (await answer)[0] == 200
    answered = {o.replica_id for o in others if o.hits}
    holders = affinity.index.depths(keys, harness.clock.now())
    assert answered <= set(holders) and all(holders[r] == len(keys) for r in answered)


async def test_the_router_exports_cache_aware_outcomes_and_evictions(harness: Harness) -> None:
    replicas = [await harness.replica(i, behaviour=echo_name) for i in (1, 2)]
    sec = cache_section(max_prefixes=30)
    sec = replace(sec, router=replace(sec.router, metrics_path="/metrics"))
    router, url = await harness.router([r.backend for r in replicas], sec)
    for c in range(3):  # three misses, then their second turns: three hits
        await post(harness, url + CHAT, turn(c, 0))
    for c in range(3):
        await post(harness, url + CHAT, turn(c, 1))
    await post(harness, url + "/v1/models", None)  # no prefix: by load alone
    async with harness.client.get(url + "/metrics") as resp:
        page = await resp.text()
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in page.splitlines()
        if line.startswith("skyctl_router_cache_aware")
    }
    name = "skyctl_router_cache_aware_requests_total"
    for outcome, count in (("hit", 3), ("miss", 3), ("overflow", 0), ("unkeyed", 1)):
        assert values[f'{name}{{outcome="{outcome}",service="svc"}}'] == count, values
    assert router._affinity is not None and router._affinity.index.evicted > 0  # 30 pairs at most
    evicted = values['skyctl_router_cache_aware_evictions_total{service="svc"}']
    assert evicted == router._affinity.index.evicted
    assert values['skyctl_router_cache_aware_index_entries{service="svc"}'] <= 30


async def test_simulated_llm_servers_report_the_prefix_cache_hits_cache_aware_earns(
    harness: Harness,
) -> None:
    """The benchmark's OpenAI-compatible server behind the real router: a chat's
    second turn, resending the first and its streamed answer, finds all of it cached
    (whole 16-token blocks), as usage.prompt_tokens_details.cached_tokens says."""
    from benchmarks.llm_routing.server import SimServer

    servers = [SimServer(i, time_scale=0.001) for i in range(3)]
    backends = []
    for i, server in enumerate(servers):
        await server.start()
        backends.append(replace(harness_backend(i), url=f"http://127.0.0.1:{server.port}"))
    try:
        _, url = await harness.router(backends, cache_section())
        for chat_id in range(4):
            question = " ".join(str(100 + chat_id * 1000 + n) for n in range(40))
            messages = [{"role": "user", "content": question}]
            first, answer = await stream_chat(harness, url, messages)
            assert len(answer.split()) == 24 and first["prompt_tokens_details"] == {
                "cached_tokens": 0
            }
            messages += [
                {"role": "assistant", "content": answer},
                {"role": "user", "content": "1 2 3"},
            ]
            usage, _ = await stream_chat(harness, url, messages)
            resent = first["prompt_tokens"] + 24  # the first prompt and its answer
            assert usage["prompt_tokens_details"]["cached_tokens"] == resent // 16 * 16
    finally:
        for server in servers:
            await server.stop()


def harness_backend(i: int) -> Any:
    from skyctl.types import Backend, Location

    return Backend(i + 1, "http://127.0.0.1:1", Location("local", "r1", f"z{i}"))


async def stream_chat(
    h: Harness, url: str, messages: list[dict[str, str]]
) -> tuple[dict[str, Any], str]:
    """(usage, answer text) of a streamed chat completion: tokens arrive as separate
    events, usage in the last."""
    doc = {"model": "sim", "messages": messages, "stream": True, "max_tokens": 24}
    events: list[dict[str, Any]] = []
    async with h.client.post(url + CHAT, data=json.dumps(doc)) as resp:
        assert resp.status == 200
        async for line in resp.content:
            if line.startswith(b"data: {"):
                events.append(json.loads(line[6:]))
    tokens = [e["choices"][0]["delta"]["content"] for e in events if e["choices"]]
    assert len(tokens) == 24  # one event per token
    return events[-1]["usage"], "".join(tokens).strip()


# ---- load published by the replicas (vLLM /metrics) -------------------------------------


def test_vllm_metrics_pages_give_running_plus_waiting() -> None:
    from skyctl.router.replica_load import parse

    page = (
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{model_name="a"} 3.0\n'
        'vllm:num_requests_running{model_name="b"} 1.0\n'
        'vllm:num_requests_waiting{model_name="a"} 2.0\n'
        'vllm:gpu_cache_usage_perc{model_name="a"} 0.75\n'
    )
    sample = parse(page, at=5.0)
    assert sample is not None and (sample.queued, sample.kv_usage, sample.at) == (6.0, 0.75, 5.0)
    assert parse("process_cpu_seconds_total 1.0\n", at=5.0) is None  # not a vLLM server


def publishing(running: dict[int, float], kv: dict[int, float] | None = None) -> Any:
    async def behaviour(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
        if request.path == "/metrics":
            value = running.get(replica.replica_id)
            if value is None:
                return web.Response(status=500)
            page = f'vllm:num_requests_running{{m="x"}} {value}\n'
            usage = (kv or {}).get(replica.replica_id)
            if usage is not None:
                page += f'vllm:gpu_cache_usage_perc{{m="x"}} {usage}\n'
            return web.Response(text=page)
        await request.read()
        return web.Response(text=f"replica-{replica.replica_id}")

    return behaviour


async def test_published_load_steers_requests_and_a_stale_one_is_dropped(
    harness: Harness,
) -> None:
    running = {1: 40.0, 2: 0.0}
    one = await harness.replica(1, behaviour=publishing(running))
    two = await harness.replica(2, behaviour=publishing(running))
    router, url = await harness.router(
        [one.backend, two.backend], cache_section(replica_metrics_seconds=5.0)
    )
    affinity = router._affinity
    assert affinity is not None and affinity.poller is not None
    poller = affinity.poller
    await eventually(lambda: len(poller.samples) == 2, "both replicas polled")
    doc = turn(1, 0)
    keys = ca.block_keys(ca.prompt_bytes(CHAT, json.dumps(doc).encode()) or b"")
    affinity.index.record(keys, 1, harness.clock.now())  # replica 1 holds the prefix
    # replica 1 reports 40 requests of other clients: over the bound, so not its home
    assert {(await post(harness, url + CHAT, doc))[1] for _ in range(3)} == {"replica-2"}
    del running[1]  # replica 1 stops publishing: its sample goes stale, in-flight counts
    rounds = poller.rounds
    await harness.clock.advance(16.0)
    await eventually(lambda: poller.rounds > rounds, "another round")
    assert poller.load(1, 0.0) == 0.0 and poller.load(2, 0.0) == 0.0
    await router.stop()
    assert affinity.poller is None  # the polling task ended with the router


async def test_serve_update_turns_the_policy_and_its_polling_on_and_off(harness: Harness) -> None:
    one = await harness.replica(1, behaviour=publishing({1: 0.0}))
    router, url = await harness.router([one.backend], section("least_load"))
    assert router._affinity is None
    router.reconfigure(cache_section(replica_metrics_seconds=5.0))
    affinity = router._affinity
    assert affinity is not None and affinity.poller is not None
    poller = affinity.poller
    await eventually(lambda: 1 in poller.samples, "polled")
    task = poller._task
    router.reconfigure(section("least_load"))
    assert router._affinity is None and affinity.poller is None
    assert task is not None
    await eventually(task.done, "the polling task ends")
    assert (await post(harness, url + CHAT, turn(1, 0)))[1] == "replica-1"


async def test_a_replica_publishing_a_full_kv_cache_loses_new_work_to_the_others(
    harness: Harness,
) -> None:
    running, kv = {1: 0.0, 2: 0.0}, {1: 0.97, 2: 0.2}
    one = await harness.replica(1, behaviour=publishing(running, kv))
    two = await harness.replica(2, behaviour=publishing(running, kv))
    router, url = await harness.router(
        [one.backend, two.backend], cache_section(replica_metrics_seconds=5.0)
    )
    affinity = router._affinity
    assert affinity is not None and affinity.poller is not None
    poller = affinity.poller
    await eventually(lambda: len(poller.samples) == 2, "both replicas polled")
    doc = turn(2, 0)
    keys = ca.block_keys(ca.prompt_bytes(CHAT, json.dumps(doc).encode()) or b"")
    affinity.index.record(keys, 1, harness.clock.now())  # replica 1 holds the prefix
    # no requests running on either, but 1's KV blocks are 97% in use: 2 takes it
    assert (await post(harness, url + CHAT, doc))[1] == "replica-2"
    assert affinity.outcomes[ca.OVERFLOW] == 1
    kv[1] = 0.5  # blocks freed: the next round brings the prefix home again
    rounds = poller.rounds
    await harness.clock.advance(5.0)
    await eventually(lambda: poller.rounds > rounds, "another round")
    assert (await post(harness, url + CHAT, turn(2, 0)))[1] in {"replica-1", "replica-2"}
    assert poller.kv_usage(1) == 0.5

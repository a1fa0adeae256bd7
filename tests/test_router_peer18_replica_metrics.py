"""cache_aware's replica-published load (vLLM ``/metrics``) as a peer would check it:
pages that come in pieces, are large, malformed, hang, or use vLLM's current names."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from policies import cache_aware as ca
from skyctl.router.replica_load import MAX_BYTES, parse
from tests.helpers.waiting import eventually
from tests.test_router_cache_aware import CHAT, cache_section, post, turn
from tests.test_router_helpers import FakeReplica, Harness, harness
from tests.test_router_tls import write_cert

__all__ = ["harness"]  # the fixture, used by name

# what a vLLM page is mostly made of: histograms, before and after the gauges
HISTOGRAM = "".join(
    f'vllm:request_prompt_tokens_bucket{{le="{n}",model_name="meta-llama/Llama-3.1-8B"}} 12.0\n'
    for n in range(2500)
)


def test_only_the_gauges_lines_count_and_non_finite_values_are_absent() -> None:
    page = (
        "# TYPE vllm:num_requests_running gauge\n"
        'vllm:num_requests_running{model_name="m"} 3.0\n'
        "another_exporter's line the text format refuses {{{\n"
        'vllm:num_requests_waiting{model_name="m"} 1.0\n'
        'vllm:kv_cache_usage_perc{model_name="m"} 0.93\n'  # vLLM 0.10 and later
    )
    sample = parse(HISTOGRAM + page + HISTOGRAM, at=1.0)
    assert sample is not None and (sample.queued, sample.kv_usage) == (4.0, 0.93)
    old = parse("vllm:num_requests_running 2\nvllm:gpu_cache_usage_perc 0.5\n", at=1.0)
    assert old is not None and (old.queued, old.kv_usage) == (2.0, 0.5)  # before vLLM 0.10
    for value in ("+Inf", "-Inf", "NaN"):
        assert parse(f"vllm:num_requests_running {value}\n", at=1.0) is None
        usage = parse(f"vllm:num_requests_running 1\nvllm:kv_cache_usage_perc {value}\n", 1.0)
        assert usage is not None and usage.kv_usage is None
    # two finite gauges whose sum is not
    assert parse("vllm:num_requests_running 1e308\nvllm:num_requests_waiting 1e308\n", 1) is None


def test_the_load_bound_of_loads_too_large_for_a_float_is_no_bound() -> None:
    assert ca.bound([1e308, 1e308, 0.0], 1.25) == float("inf")
    assert ca.rank([0, 4, 0], [1e308, 1e308, 0.0], 4) == [1, 2, 0]  # the holder, then by load


def vllm(
    pages: dict[int, Any], gate: asyncio.Event | None = None, head_out: asyncio.Event | None = None
) -> Any:
    """A replica answering ``pages[id]`` at /metrics: a string; or (head, tail), the
    tail written once ``gate`` is set (a page arriving in pieces; ``head_out`` is set
    once the head is written); or None: it hangs."""

    async def behaviour(replica: FakeReplica, request: web.BaseRequest) -> web.StreamResponse:
        if request.path != "/metrics":
            await request.read()
            return web.Response(text=f"replica-{replica.replica_id}")
        page = pages[replica.replica_id]
        if page is None:
            await asyncio.Event().wait()
        if isinstance(page, str):
            return web.Response(text=page)
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(page[0].encode())
        assert gate is not None and head_out is not None
        head_out.set()
        await gate.wait()
        await resp.write(page[1].encode())
        await resp.write_eof()
        return resp

    return behaviour


async def test_a_page_arriving_in_pieces_is_read_whole(harness: Harness) -> None:
    """The gauges come after a first piece cut in the middle of a line (a page larger
    than one read, as a vLLM page over a network): its first piece alone was parsed,
    failed, and the replica never had a published load."""
    cut = len(HISTOGRAM) // 2 + 7
    pages: dict[int, Any] = {
        1: (HISTOGRAM[:cut], HISTOGRAM[cut:] + "vllm:num_requests_running 40\n")
    }
    gate, head_out = asyncio.Event(), asyncio.Event()
    one = await harness.replica(1, behaviour=vllm(pages, gate, head_out))
    router, _ = await harness.router([one.backend], cache_section(replica_metrics_seconds=5.0))
    assert router._affinity is not None and router._affinity.poller is not None
    poller = router._affinity.poller
    await eventually(head_out.is_set, "the page's first piece sent")
    gate.set()
    await eventually(lambda: poller.rounds == 1, "a round")
    assert poller.load(1, 0.0) == 40.0


async def test_malformed_or_hanging_pages_leave_requests_to_in_flight_counts(
    harness: Harness,
) -> None:
    """+Inf (a broken exporter) crashed every cache_aware request while it was fresh;
    a page that hangs costs its round a timeout, not the requests; a page over 1 MiB
    is not read."""
    pages: dict[int, Any] = {
        1: "vllm:num_requests_running +Inf\n",
        2: "vllm:num_requests_running NaN\nvllm:num_requests_waiting {{{\n",
        3: None,
        4: "vllm:num_requests_running 0\n",
        5: "vllm:num_requests_running 0\n" + HISTOGRAM * 6,
    }
    assert len(pages[5]) > MAX_BYTES
    replicas = [await harness.replica(i, behaviour=vllm(pages)) for i in (1, 2, 3, 4, 5)]
    router, url = await harness.router(
        [r.backend for r in replicas], cache_section(replica_metrics_seconds=0.2)
    )
    assert router._affinity is not None and router._affinity.poller is not None
    poller = router._affinity.poller
    await eventually(lambda: poller.rounds == 1, "a round past the hanging page")
    assert set(poller.samples) == {4}
    for conversation in range(10):
        assert (await post(harness, url + CHAT, turn(conversation, 0)))[0] == 200
    served = [sum(s.path == CHAT for s in r.seen) for r in replicas]
    assert served == [2, 2, 2, 2, 2]  # idle replicas: by load, ties rotating


@pytest.mark.parametrize("pages", [{1: "+Inf", 2: "0"}, {1: "1e308", 2: "1e308"}])
async def test_a_published_load_beyond_floats_still_routes(
    harness: Harness, pages: dict[int, str]
) -> None:
    """A gauge of +Inf, or two whose sum across replicas is no float: requests still go."""
    page = {rid: f"vllm:num_requests_running {value}\n" for rid, value in pages.items()}
    one = await harness.replica(1, behaviour=vllm(page))
    two = await harness.replica(2, behaviour=vllm(page))
    router, url = await harness.router(
        [one.backend, two.backend], cache_section(replica_metrics_seconds=5.0)
    )
    assert router._affinity is not None and router._affinity.poller is not None
    poller = router._affinity.poller
    await eventually(lambda: poller.rounds == 1, "a round")
    for conversation in range(3):
        assert (await post(harness, url + CHAT, turn(conversation, 0)))[0] == 200


@pytest.mark.parametrize("updated", [False, True])
async def test_https_replicas_metrics_are_polled_trusting_the_replica_ca_file(
    harness: Harness, tmp_path: Path, updated: bool
) -> None:
    """``router.replica_ca_file`` is what https replicas are verified against: the
    metrics polls too (they used the system CAs, failed, and the published load was
    silently never used)."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    replica_tls = write_cert(ca, tmp_path, "replica")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(replica_tls.certfile, replica_tls.keyfile)
    pages: dict[int, Any] = {1: "vllm:num_requests_running 7\n"}
    one = await harness.replica(1, behaviour=vllm(pages), ssl_context=context)
    sec = cache_section(replica_metrics_seconds=5.0)
    sec = replace(sec, router=replace(sec.router, replica_ca_file=str(ca_file)))
    if updated:  # turned on by serve update in a running router
        plain = replace(sec, load_balancing_policy="least_load")
        router, url = await harness.router([one.backend], plain)
        router.reconfigure(sec)
    else:
        router, url = await harness.router([one.backend], sec)
    assert router._affinity is not None and router._affinity.poller is not None
    poller = router._affinity.poller
    await eventually(lambda: poller.rounds == 1, "a round")
    assert poller.load(1, 0.0) == 7.0
    assert (await post(harness, url + CHAT, turn(1, 0))) == (200, "replica-1")

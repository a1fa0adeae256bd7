"""The router's metrics follow Prometheus conventions, so they sum across routers.

Counters and histograms (request duration and time to first byte, by
replica and status class); no quantile-labelled gauge and no precomputed rate
(both impossible to aggregate); the autoscaler's request rate stays an
internal figure (``Router.request_rate``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from skyctl.router.stats import BUCKETS, FOLD_AT, Histogram
from tests.test_router_helpers import (
    FakeReplica,
    Harness,
    open_harness,
    refused_backend,
    section,
)


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    async with open_harness() as harness:
        yield harness


async def answers_404(replica: FakeReplica, request: web.BaseRequest) -> web.Response:
    return web.Response(status=404)


async def scrape(h: Harness, url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with h.client.get(url + "/-/skyctl/metrics") as resp:
        text = await resp.text()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **want: str
) -> float:
    return sum(
        v
        for (n, labels), v in samples.items()
        if n == name and all(dict(labels).get(k) == x for k, x in want.items())
    )


async def test_histograms_by_replica_and_status_class_and_no_unsummable_figures(
    h: Harness,
) -> None:
    ok = await h.replica(1)
    missing = await h.replica(2, behaviour=answers_404)
    router, url = await h.router(
        [ok.backend, missing.backend], section(wait_for_replica_seconds=0.0)
    )
    for _ in range(6):
        async with h.client.get(url + "/") as resp:
            await resp.read()
    samples = await scrape(h, url)
    for name in ("request_duration", "time_to_first_byte"):
        metric = f"skyctl_router_{name}_seconds"
        assert total(samples, metric + "_count", replica="1", status_class="2xx") == 3
        assert total(samples, metric + "_count", replica="2", status_class="4xx") == 3
        # the fake clock stands still: every request took 0 s, in the first bucket
        first = total(samples, metric + "_bucket", replica="1", le=repr(BUCKETS[0]))
        inf = total(samples, metric + "_bucket", replica="1", status_class="2xx", le="+Inf")
        assert first == inf == 3
    router.set_backends([])  # the router answers 503 itself: replica "none"
    async with h.client.get(url + "/") as resp:
        assert resp.status == 503
    samples = await scrape(h, url)
    for name in ("request_duration", "time_to_first_byte"):
        metric = f"skyctl_router_{name}_seconds"
        assert total(samples, metric + "_count", replica="none", status_class="5xx") == 1
    assert total(samples, "skyctl_router_requests_total") == 7
    names = {name for name, _ in samples}
    assert not any("quantile" in dict(labels) for _, labels in samples)
    assert not {n for n in names if "rate" in n or "latency" in n}
    assert router.request_rate(60.0) == pytest.approx(7 / 60)  # internal, for the autoscaler


async def test_two_routers_figures_add_up(h: Harness) -> None:
    replica = await h.replica(1)
    urls = [(await h.router([replica.backend]))[1] for _ in range(2)]
    for i, url in enumerate(urls):
        for _ in range(i + 1):
            async with h.client.get(url + "/") as resp:
                await resp.read()
    scraped = [await scrape(h, url) for url in urls]
    name = "skyctl_router_request_duration_seconds_count"
    assert sum(total(s, name, replica="1") for s in scraped) == 3
    assert sum(total(s, "skyctl_router_replica_requests_total") for s in scraped) == 3


async def test_a_refused_replica_counts_as_an_error_not_an_answer(h: Harness) -> None:
    good = await h.replica(1)
    _, url = await h.router([refused_backend(2), good.backend])
    for _ in range(2):
        async with h.client.get(url + "/") as resp:
            assert resp.status == 200
    samples = await scrape(h, url)
    assert total(samples, "skyctl_router_replica_errors_total", replica="2") >= 1
    assert total(samples, "skyctl_router_request_duration_seconds_count", replica="2") == 0


def test_histogram_buckets_are_inclusive_upper_bounds_and_series_are_forgotten() -> None:
    histogram = Histogram()
    histogram.observe(1, 200, BUCKETS[0])
    histogram.observe(1, 204, BUCKETS[-1] * 2)
    counts = histogram.series[(1, 2)]
    assert (
        counts[0] == 1 and counts[len(BUCKETS)] == 1 and counts[-1] == BUCKETS[0] + BUCKETS[-1] * 2
    )
    histogram.observe(-1, 503, 0.0)
    histogram.forget({2})
    assert list(histogram.series) == [(-1, 5)]


def test_histogram_samples_wait_in_a_bounded_list_and_count_when_read() -> None:
    histogram = Histogram()
    for _ in range(FOLD_AT - 1):
        histogram.observe(3, 200, 0.001)
    assert len(histogram.pending) == FOLD_AT - 1  # the request path only appends
    histogram.observe(3, 500, 0.2)
    assert histogram.pending == []  # counted once FOLD_AT were waiting
    histogram.observe(3, 201, 0.03)
    counts = histogram.series[(3, 2)]  # reading counts what waits
    assert counts[0] == FOLD_AT - 1 and counts[BUCKETS.index(0.05)] == 1
    assert histogram.series[(3, 5)][BUCKETS.index(0.25)] == 1 and not histogram.pending

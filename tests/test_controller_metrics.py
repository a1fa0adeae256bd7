"""The controller's /metrics: Prometheus text, the API token as bearer, facts that add up.

Against the in-process controller of tests/test_controller.py (fake clock,
replicas as tiny aiohttp servers) behind the real API app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from skyctl.controller.api import make_app
from skyctl.lifecycle import ReplicaStatus
from skyctl.types import Location
from tests.fakes.memory_provider import ZONES
from tests.helpers.waiting import eventually
from tests.test_controller import SPOT, Harness

TOKEN = "t" * 32


@pytest.fixture
async def api(h: Harness) -> AsyncIterator[TestServer]:
    server = TestServer(make_app(h.controller, TOKEN, lambda: None))
    await server.start_server()
    yield server
    await server.close()


async def scrape(api: TestServer, token: str | None = TOKEN) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as s,
        s.get(api.make_url("/metrics"), headers=headers) as r,
    ):
        return r.status, r.headers.get("Content-Type", ""), await r.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_need_the_api_token(api: TestServer) -> None:
    status, _, body = await scrape(api, token=None)
    assert status == 401 and "API token" in body
    status, _, _ = await scrape(api, token="wrong")
    assert status == 401
    status, ctype, body = await scrape(api)
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    assert "# TYPE skyctl_controller_tick_seconds histogram" in body


async def test_the_event_loop_lag_is_sampled_while_the_api_runs(
    h: Harness, api: TestServer
) -> None:
    lag = h.controller.metrics.loop_lag_seconds

    def sampled() -> bool:
        return any(s.name.endswith("_count") and s.value >= 1 for s in lag.collect()[0].samples)

    await eventually(sampled, "an event-loop lag sample", limit=10)
    _, _, body = await scrape(api)
    assert value(body, "skyctl_controller_event_loop_lag_seconds_count") >= 1


async def test_replicas_launches_preemptions_and_notices_are_counted(
    h: Harness, api: TestServer
) -> None:
    await h.controller.create_service(SPOT.format(name="spot", replicas=2), None)
    await h.until(lambda: h.ready("spot") == 2)
    _, _, body = await scrape(api)
    assert value(body, "skyctl_replicas", service="spot", status="READY", kind="spot") == 2
    assert value(body, "skyctl_replicas", service="spot", status="PENDING", kind="spot") == 0
    launched = sum(v for (name, _), v in samples(body).items() if name == "skyctl_launches_total")
    assert launched >= 2
    assert value(body, "skyctl_controller_tick_seconds_count") >= 1
    assert (
        sum(v for (n, _), v in samples(body).items() if n == "skyctl_probe_duration_seconds_count")
        >= 2
    )

    victim = h.replicas("spot", ReplicaStatus.READY)[0]
    where = str(victim.location)
    h.provider.notice("spot", victim.replica_id, h.clock.now() + 30)
    await h.until(
        lambda: h.store.get_replica("spot", victim.replica_id).interruption_at is not None
    )  # type: ignore[union-attr]
    await h.provider.preempt("spot", victim.replica_id)
    await h.until(lambda: not h.store.get_replica("spot", victim.replica_id).is_live)  # type: ignore[union-attr]
    _, _, body = await scrape(api)
    assert value(body, "skyctl_preemptions_total", service="spot", location=where) == 1
    assert value(body, "skyctl_interruption_notices_total", service="spot", location=where) == 1
    cost = value(body, "skyctl_accrued_cost_usd_total", service="spot", location=where, kind="spot")
    assert cost > 0
    # counters never go down: not when the ended replica's row is purged
    h.store.purge_terminated("spot", before=h.clock.now() + 1)
    _, _, body = await scrape(api)
    assert value(body, "skyctl_preemptions_total", service="spot", location=where) == 1
    assert (
        value(body, "skyctl_accrued_cost_usd_total", service="spot", location=where, kind="spot")
        >= cost
    )


async def test_failed_launches_and_open_breakers_are_visible(h: Harness, api: TestServer) -> None:
    h.provider.out_of_capacity.update(ZONES)  # every spot launch fails for capacity
    await h.controller.create_service(SPOT.format(name="spot", replicas=1), None)
    await h.until(
        lambda: any(
            r.end_reason is not None and r.end_reason.value == "FAILED_PROVISION"
            for r in h.store.list_replicas("spot", include_terminated=True)
        )
    )
    _, _, body = await scrape(api)
    failed = sum(
        v
        for (n, labels), v in samples(body).items()
        if n == "skyctl_launch_failures_total" and ("reason", "FAILED_PROVISION") in labels
    )
    assert failed >= 1

    sick = Location("local", "r9", "r9-z")
    breakers = h.controller.reconciler.launcher.breakers
    for _ in range(3):
        breakers.failure(sick)
    _, _, body = await scrape(api)
    assert value(body, "skyctl_breaker_open", location=str(sick)) == 1.0

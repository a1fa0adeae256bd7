"""A forged or corrupt routing report is refused whole, and breaks nothing.

The router process reports its figures to ``POST /v1/routing/report``
(:mod:`skyctl.routing_wire`). A report was taken if its outer shape held and
its figures read later: a rate of ``"abc"``, ``NaN`` or ``Infinity``, a
replica id ``"x"``, stats that are a list were stored with ``200 ok``, and
then ``serve status`` and ``/metrics`` answered 500 and every tick of the
service failed until the report aged out. A ``backend_errors`` entry that
was bad was refused only after the figures before it were stored. Now the
report is checked whole first: a one-line 400 naming the key, nothing taken.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from skyctl.controller import Controller
from skyctl.controller.routing_feed import RoutingFeed
from skyctl.routing_wire import REPORT_PATH
from tests.helpers.fake_controller import api_client, fake_controller

TOKEN = "r" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SPEC = "name: web\nservice:\n  replicas: 1\nrun: sleep 1000\n"
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[Controller]:
    async with fake_controller(tmp_path) as controller:
        controller.routing_feed = RoutingFeed(controller.clock)  # routers in the router process
        yield controller


@pytest.fixture
async def client(controller: Controller) -> AsyncIterator[Client]:
    async with api_client(controller, TOKEN, SPEC) as c:
        yield c


def _service(**fields: Any) -> dict[str, Any]:
    return {"router": "r1", "services": {"web": {"rate_60": 1.0, **fields}}}


FORGED = {
    "rate as text": (_service(rate_60="abc"), "services.web.rate_60: expected a number"),
    "rate NaN": (_service(rate_60=float("nan")), "services.web.rate_60: nan is not a finite"),
    "rate Infinity": (_service(rate_60=float("inf")), "rate_60: inf is not a finite number"),
    "rate negative": (_service(rate_60=-5), "rate_60: a rate cannot be negative"),
    "replica id not a number": (
        _service(replica_stats={"x": {"in_flight": 1}}),
        "replica_stats: 'x' is not a replica id",
    ),
    "stats a list": (_service(replica_stats=[1]), "replica_stats: expected an object, got list"),
    "stat as text": (
        _service(replica_stats={"1": {"in_flight": "z"}}),
        "replica_stats.1.in_flight: expected a number, got str",
    ),
    "stats a number": (_service(replica_stats={"1": 5}), "replica_stats.1: expected an object"),
    "ejected id": (_service(ejected={"a": 1.0}), "ejected: 'a' is not a replica id"),
    "error an object": (_service(error={"a": 1}), "services.web.error: expected a string"),
    "histograms text": (_service(histograms="x"), "histograms: expected a list"),
    "version text": ({"version": "x"}, "version: expected a whole number"),
    "router an object": ({"router": {"a": 1}}, "router: expected a string"),
    "backend error short": (
        {**_service(), "backend_errors": [["web"]]},
        "backend_errors: ['web'] is not [service, replica id, reason]",
    ),
    "backend error id too big": (
        {"backend_errors": [["web", 10**30, "down"]]},
        "is not [service, replica id, reason]",
    ),
}


@pytest.mark.parametrize(("body", "says"), list(FORGED.values()), ids=list(FORGED))
async def test_a_corrupt_report_is_a_one_line_400_and_status_metrics_and_ticks_still_work(
    client: Client, controller: Controller, body: dict[str, Any], says: str
) -> None:
    resp = await client.post(REPORT_PATH, headers=AUTH, data=json.dumps(body))
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert says in error and "\n" not in error
    feed = controller.routing_feed
    assert feed is not None and feed.reports == {}  # nothing of it taken
    for path in ("/v1/services", "/metrics"):
        assert (await client.get(path, headers=AUTH)).status == 200
    await controller.tick_all()
    assert [e for e in controller.events("web") if e["kind"] == "error"] == []


async def test_an_honest_report_is_still_taken(client: Client, controller: Controller) -> None:
    body = _service(
        replica_stats={"1": {"requests": 3.0, "in_flight": 0.0, "latency_p99_ms": 12.5}},
        ejected={"1": 1700000030.0},
        histograms=[],
        error="",
    )
    body.update(backend_errors=[["web", 1, "connection refused"]], epoch="e", version=4)
    resp = await client.post(REPORT_PATH, headers=AUTH, json=body)
    assert resp.status == 200, await resp.text()
    feed = controller.routing_feed
    assert feed is not None and list(feed.reports) == ["r1"]

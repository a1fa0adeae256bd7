"""Readiness probes: only HTTP 200 counts; GET or POST with post_data; headers; timeout."""

from __future__ import annotations

import asyncio
import json

import pytest

from skyctl.clock import FakeClock
from skyctl.controller.prober import Prober, Target
from skyctl.spec import ReadinessProbe
from tests.helpers.probed import ProbedServer


async def probe_once(probe: ReadinessProbe, url: str) -> Prober:
    clock = FakeClock()
    changes: list[int] = []
    prober = Prober(probe, clock=clock, on_change=lambda: changes.append(1))
    prober.set_targets([Target(1, url)])
    prober.start()
    try:
        for _ in range(400):
            await clock.advance(0.25)
            await asyncio.sleep(0.005)
            if prober.results[1].ok is not None:
                break
    finally:
        await prober.close()
    return prober


@pytest.mark.parametrize(
    ("status", "ready"), [(200, True), (204, False), (301, False), (404, False), (503, False)]
)
async def test_only_http_200_counts_as_ready(stub: ProbedServer, status: int, ready: bool) -> None:
    stub.status = status
    prober = await probe_once(ReadinessProbe(path="/health"), stub.url)
    assert prober.results[1].ok is ready
    assert stub.seen[0][:2] == ("GET", "/health")


async def test_post_data_makes_a_json_post_with_the_given_headers(stub: ProbedServer) -> None:
    probe = ReadinessProbe(
        path="/v1/completions",
        post_data=json.dumps({"prompt": "hi"}),
        headers={"Authorization": "Bearer probe"},
    )
    prober = await probe_once(probe, stub.url)
    assert prober.results[1].ok is True
    method, path, headers, body = stub.seen[0]
    assert (method, path) == ("POST", "/v1/completions")
    assert json.loads(body) == {"prompt": "hi"}
    assert headers["Authorization"] == "Bearer probe"
    assert headers["Content-Type"] == "application/json"


async def test_a_probe_that_exceeds_its_timeout_fails(stub: ProbedServer) -> None:
    stub.block = True
    prober = await probe_once(ReadinessProbe(timeout_seconds=0.2), stub.url)
    assert prober.results[1].ok is False
    assert prober.results[1].detail == "TimeoutError"


async def test_an_unreachable_replica_fails_and_failures_accumulate() -> None:
    clock = FakeClock()
    prober = Prober(ReadinessProbe(period_seconds=1), clock=clock, on_change=lambda: None)
    prober.set_targets([Target(7, "http://127.0.0.1:9")])  # discard port: refused
    prober.start()
    try:
        for _ in range(40):
            await clock.advance(0.25)
            await asyncio.sleep(0.01)
    finally:
        await prober.close()
    assert prober.results[7].ok is False
    assert prober.results[7].consecutive_failures >= 3


async def test_forgotten_replicas_are_no_longer_probed(stub: ProbedServer) -> None:
    clock = FakeClock()
    prober = Prober(ReadinessProbe(period_seconds=1), clock=clock, on_change=lambda: None)
    prober.set_targets([Target(1, stub.url)])
    prober.start()
    try:
        for _ in range(8):
            await clock.advance(0.25)
            await asyncio.sleep(0.01)
        prober.set_targets([])
        seen = len(stub.seen)
        for _ in range(20):
            await clock.advance(0.25)
            await asyncio.sleep(0.005)
    finally:
        await prober.close()
    assert seen >= 1 and len(stub.seen) == seen
    assert 1 not in prober.results


async def test_probes_of_a_replica_reuse_one_kept_alive_connection(stub: ProbedServer) -> None:
    clock = FakeClock()
    prober = Prober(ReadinessProbe(period_seconds=1), clock=clock, on_change=lambda: None)
    prober.set_targets([Target(1, stub.url)])
    prober.start()
    try:
        for _ in range(24):
            await clock.advance(0.25)
            await asyncio.sleep(0.01)
    finally:
        await prober.close()
    assert len(stub.peers) >= 4
    assert len(set(stub.peers)) == 1  # one TCP connection for every probe


async def test_each_probe_result_is_heard_at_once(stub: ProbedServer) -> None:
    clock = FakeClock()
    heard: list[tuple[int, bool]] = []
    prober = Prober(
        ReadinessProbe(period_seconds=1),
        clock=clock,
        on_change=lambda: None,
        on_result=lambda rid, ok: heard.append((rid, ok)),
    )
    prober.set_targets([Target(3, stub.url)])
    prober.start()
    try:
        for _ in range(20):
            await asyncio.sleep(0.01)
            if heard:
                break
    finally:
        await prober.close()
    assert heard[:1] == [(3, True)]  # probed as soon as it became a target, no clock step

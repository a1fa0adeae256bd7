"""An endpoint's ``/metrics`` is the sum over the router workers sharing its port.

Real router processes (``python -m skyctl.router.process --worker I
--reuse-port``, as the supervisor runs ``router.workers: 2``), serving from
their last table (``routes.cache``, no controller needed) in front of one
replica. Requests on fresh connections spread over both workers; whichever
worker answers a scrape, its counters and histograms (request duration, time
to first byte) equal the total. A SIGKILLed worker's counts stay in the sum
after the supervisor would restart it, the scrape never goes backwards, and
once every worker stopped no file is left.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from skyctl.metric_samples import Family, merge, pack, snapshot, unpack
from skyctl.router.worker_metrics import ROOT_NAME
from tests.helpers.waiting import eventually

ROOT = Path(__file__).resolve().parent.parent
SPEC = "service:\n  readiness_probe: /\n  replicas: 1\n"
REQUESTS = 'skyctl_router_replica_requests_total{replica="1",service="w"}'
DURATIONS = (
    'skyctl_router_request_duration_seconds_count{replica="1",service="w",status_class="2xx"}'
)
FIRST_BYTES = (
    'skyctl_router_time_to_first_byte_seconds_count{replica="1",service="w",status_class="2xx"}'
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def samples(text: str) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


@pytest.fixture
async def replica() -> AsyncIterator[str]:
    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


class Workers:
    """Router worker processes of one home, started as the supervisor starts them."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, worker: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SKYCTL_HOME": str(self.home)}
        argv = [sys.executable, "-m", "skyctl.router.process", "--home", str(self.home)]
        argv += ["--worker", str(worker), "--reuse-port"]
        log = open(self.home / f"worker-{worker}.log", "ab")
        self.procs[worker] = subprocess.Popen(argv, env=env, stdout=log, stderr=log, cwd=ROOT)
        log.close()

    def port_of(self, worker: int) -> int | None:
        name = "router.json" if worker == 0 else f"router-{worker}.json"
        try:
            info = json.loads((self.home / name).read_text())
        except (OSError, ValueError):
            return None
        return info["ports"].get("w") if info["pid"] == self.procs[worker].pid else None

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
async def workers(skyctl_home: Path) -> AsyncIterator[Workers]:
    w = Workers(skyctl_home)
    try:
        yield w
    finally:
        await asyncio.to_thread(w.stop)


async def get(url: str) -> tuple[int, str]:
    """One request on a connection of its own (the kernel picks a worker for each)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session, session.get(url) as r:
        return r.status, await r.text()


def published(home: Path, port: int) -> list[float]:
    """Each live worker's own count of requests to replica 1, from its published file."""
    out = []
    for path in sorted((home / ROOT_NAME / str(port)).glob("*-*.json")):
        data = json.loads(path.read_text())
        families = unpack(data["families"])
        for f in families:
            for name, labels, value in f["samples"]:
                if name == "skyctl_router_replica_requests_total" and labels["replica"] == "1":
                    out.append(value)
    return out


@pytest.mark.timeout(180)
async def test_a_scrape_sums_every_worker_and_survives_a_killed_one(
    skyctl_home: Path, replica: str, workers: Workers
) -> None:
    port = free_port()
    entry = {
        "version": 1,
        "spec_version": 1,
        "yaml": SPEC,
        "source": "w.yaml",
        "secrets": None,
        "host": "127.0.0.1",
        "port": port,
        "backends": [{"replica_id": 1, "url": replica, "location": "local/r/z"}],
    }
    for cache in ("routes.cache", "routes-1.cache"):
        (skyctl_home / cache).write_text(json.dumps({"w": entry}))
    for i in (0, 1):
        workers.start(i)
    for i in (0, 1):
        await eventually(lambda i=i: workers.port_of(i) == port, f"worker {i} on the port", 60)
    url = f"http://127.0.0.1:{port}/"
    answers = [await get(url) for _ in range(60)]
    assert answers == [(200, "hello")] * 60

    # both workers served some (each publishes its own share), 60 in all
    await eventually(lambda: sum(published(skyctl_home, port)) == 60, "60 published", 30)
    assert sorted(published(skyctl_home, port))[0] > 0, "one worker took every connection"

    async def scrape() -> dict[str, float]:
        status, text = await get(url + "-/skyctl/metrics")
        assert status == 200
        return samples(text)

    for _ in range(12):  # fresh connections: both workers answer some of these
        m = await scrape()
        assert (m[REQUESTS], m[DURATIONS], m[FIRST_BYTES]) == (60, 60, 60)
        assert m['skyctl_router_ready_replicas{service="w"}'] == 1  # the same in each: not summed
        assert m['skyctl_router_replica_in_flight{replica="1",service="w"}'] == 0

    # worker 1 SIGKILLed, then started again as the supervisor would
    killed = workers.procs[1]
    killed.kill()
    killed.wait()
    workers.start(1)
    await eventually(lambda: workers.port_of(1) == port, "worker 1 back on the port", 60)
    answers = [await get(url) for _ in range(20)]
    assert answers == [(200, "hello")] * 20
    seen = []
    for _ in range(400):  # the counts never go back, and reach the 80 requests
        m = await scrape()
        seen.append(m[REQUESTS])
        if seen[-1] == 80 and m[DURATIONS] == 80:
            break
        await asyncio.sleep(0.05)
    assert seen[-1] == 80, seen
    assert seen == sorted(seen) and seen[0] >= 60, seen
    shared = skyctl_home / ROOT_NAME / str(port)
    names = sorted(p.name for p in shared.iterdir())
    assert f"{killed.pid}-" not in " ".join(names), names  # the dead worker's file retired
    assert "retired.json" in names
    assert {oct(p.stat().st_mode & 0o777) for p in shared.iterdir()} == {"0o600"}

    # every worker stopped: nothing left
    await asyncio.to_thread(workers.stop)
    assert not (skyctl_home / ROOT_NAME).exists()
    assert not [p for p in os.listdir(skyctl_home) if p.startswith("router")]


def test_merge_sums_counters_and_histograms_keeps_bucket_order_and_one_ready_count() -> None:
    def worker(requests: float, buckets: tuple[float, float], ready: float) -> list[Family]:
        bounds = zip(("0.1", "+Inf"), buckets, strict=True)
        le = [["h_bucket", {"replica": "1", "le": b}, v] for b, v in bounds]
        return [
            {"name": "c", "type": "counter", "help": "", "samples": [["c_total", {}, requests]]},
            {"name": "h", "type": "histogram", "help": "", "samples": le},
            {
                "name": "skyctl_router_ready_replicas",
                "type": "gauge",
                "help": "",
                "samples": [["skyctl_router_ready_replicas", {}, ready]],
            },
        ]

    summed = {f["name"]: f["samples"] for f in merge([worker(3, (1, 3), 2), worker(4, (2, 4), 2)])}
    assert summed["c"] == [["c_total", {}, 7.0]]
    assert summed["h"] == [
        ["h_bucket", {"replica": "1", "le": "0.1"}, 3.0],
        ["h_bucket", {"replica": "1", "le": "+Inf"}, 7.0],
    ]
    assert summed["skyctl_router_ready_replicas"] == [["skyctl_router_ready_replicas", {}, 2.0]]


def test_packed_histograms_are_a_row_per_series_and_unpack_to_the_same_samples() -> None:
    from prometheus_client import CollectorRegistry, Histogram

    registry = CollectorRegistry()
    h = Histogram("d_seconds", "durations", ["replica", "status_class"], registry=registry)
    h.labels("1", "2xx").observe(0.02)
    h.labels("2", "5xx").observe(3.0)
    families = snapshot(registry, types=("histogram",))
    [packed] = pack(families)
    assert len(packed["rows"]) == 2 and packed["samples"] == []  # one row per series
    assert [c[1] for c in packed["columns"]][:2] == ["0.005", "0.01"]  # the le bounds, once
    assert unpack([packed]) == families

"""A supervisor started after ``router.workers`` changed does not leave the old
workers running (stand-in processes, as in tests/test_supervisor.py).

A killed supervisor leaves its router processes running; the next one adopts
them. When ``config.yaml``'s ``router.workers`` changed meanwhile, a worker
beyond the new count was neither adopted nor stopped: it kept its port
(``SO_REUSEPORT``) and its watch, unsupervised, and outlived ``serve down``
(found by hand: 2 workers, the supervisor SIGKILLed, ``workers: 1``, the next
command, then ``serve down``: worker 1 still running). And a worker started
with other options (``--reuse-port`` or not) cannot share the ports with the
new ones. Both are now stopped before the routers start; one started as
asked is still adopted.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from skyctl.config import paths
from skyctl.supervisor import Supervisor
from tests.helpers.waiting import eventually
from tests.test_supervisor import SLEEPER, left_running


async def left_worker(home: Path, *options: str) -> asyncio.subprocess.Process:
    """A router process a killed supervisor left (a stand-in that sleeps, killed
    by SIGTERM), with ``options`` after its module, as its command line shows."""
    return await left_running(home, "skyctl.router.process", *options)


@pytest.mark.parametrize("workers", [1, 2])
async def test_workers_left_with_other_options_are_stopped_and_started_afresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, workers: int
) -> None:
    home = tmp_path / "home"
    sup = Supervisor(paths(home), workers=workers)
    # left by a supervisor that ran 3 workers: 0 and 1 with --reuse-port, and 2
    old = [await left_worker(home, "--worker", str(i), "--reuse-port") for i in range(3)]
    names = ["router.json", "router-1.json", "router-2.json"]
    if workers == 1:  # a single router process runs without --reuse-port: none fits
        expected_stopped = old
    else:  # workers 0 and 1 fit the new count and options: adopted
        expected_stopped = old[2:]
    for proc, name in zip(old, names, strict=True):
        (home / name).write_text(json.dumps({"pid": proc.pid, "ports": {}}))
    sup.controller.argv = SLEEPER
    for router in sup.routers:
        router.argv = SLEEPER  # what it starts (a stand-in)
    caplog.set_level(logging.INFO, logger="skyctl.supervisor")
    running = asyncio.create_task(sup.run())
    try:
        for proc in expected_stopped:
            assert await asyncio.wait_for(proc.wait(), 30) is not None  # stopped
        adopted = [p for p in old if p not in expected_stopped]
        for router, proc in zip(sup.routers, adopted, strict=False):
            await eventually(lambda r=router, p=proc: r.adopted == p.pid, "adopted")
            assert proc.returncode is None
        if workers == 1:
            (router,) = sup.routers
            await eventually(lambda: router.proc is not None, "a router process started afresh")
            assert router.adopted is None
        assert caplog.text.count("left by a previous supervisor") == len(expected_stopped)
    finally:
        sup.stopping.set()
        await asyncio.wait_for(running, 30)
        for proc in old:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


async def test_a_router_process_as_asked_is_still_adopted(tmp_path: Path) -> None:
    home = tmp_path / "home"
    sup = Supervisor(paths(home))
    old = await left_running(home, "skyctl.router.process")
    (home / "router.json").write_text(json.dumps({"pid": old.pid, "ports": {}}))
    sup.controller.argv = SLEEPER
    running = asyncio.create_task(sup.run())
    try:
        (router,) = sup.routers
        await eventually(lambda: router.adopted == old.pid, "adopted")
        assert old.returncode is None and router.proc is None
    finally:
        sup.stopping.set()
        await asyncio.wait_for(running, 30)
        if old.returncode is None:
            old.kill()
        await old.wait()

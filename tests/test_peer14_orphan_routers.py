"""Nothing is left when the supervisor was killed before the end (real processes).

A SIGKILLed supervisor leaves the controller and the router process running
(the endpoints keep answering); the CLI then talks to that controller and
starts no supervisor. Before, ``serve down`` of the last service (the
controller exits, with no supervisor to stop the router process) and
``controller stop --all`` (it stopped the controller only) left the router
process running for good. Now whoever ends last stops it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from skyctl.client import ControllerClient
from skyctl.config import paths
from skyctl.supervisor import stop_orphan_routers
from tests.helpers.cli import run_cli
from tests.helpers.crash import spec_text
from tests.helpers.processes import wait_until_gone
from tests.helpers.waiting import eventually
from tests.test_peer14_supervisor import left_worker


def router_pid(home: Path) -> int:
    return int(json.loads((home / "router.json").read_text())["pid"])


async def started_then_supervisor_killed(home: Path) -> int:
    """A service READY under the supervisor, then the supervisor SIGKILLed: the
    router process's pid (still running)."""
    client = ControllerClient.ensure(paths(home))
    client.call("POST", "/v1/services", {"yaml": spec_text("o", replicas=1, tag="a", spot=False)})
    await eventually(
        lambda: client.call("GET", "/v1/services?name=o")[0]["ready_replicas"] == 1, "READY", 60
    )
    await eventually(lambda: (home / "router.json").exists(), "the router process runs")
    os.kill(int(json.loads((home / "supervisor.json").read_text())["pid"]), signal.SIGKILL)
    return router_pid(home)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", [("serve", "down", "o"), ("controller", "stop", "--all")])
async def test_the_router_process_of_a_killed_supervisor_is_not_left(
    skyctl_home: Path, command: tuple[str, ...]
) -> None:
    await started_then_supervisor_killed(skyctl_home)
    done = await asyncio.to_thread(run_cli, skyctl_home, *command)
    assert done.returncode == 0, done.stderr
    if command[0] == "serve":  # no service left: the controller goes too, and so does all
        assert await asyncio.to_thread(wait_until_gone, str(skyctl_home), 30) == []
    else:  # the replicas keep running, as ever after controller stop
        router_of_home = f"skyctl.router.process\0--home\0{skyctl_home}\0"  # as in cmdline
        assert await asyncio.to_thread(wait_until_gone, router_of_home, 30) == []


async def test_a_supervisor_running_keeps_its_router_processes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    worker = await left_worker(home)
    try:
        (home / "router.json").write_text(json.dumps({"pid": worker.pid, "ports": {}}))
        (home / "supervisor.json").write_text(json.dumps({"pid": os.getpid()}))
        assert stop_orphan_routers(paths(home)) == []  # a supervisor runs: its own to stop
        assert worker.returncode is None
        (home / "supervisor.json").unlink()
        assert stop_orphan_routers(paths(home)) == [worker.pid]
        assert await asyncio.wait_for(worker.wait(), 10) is not None
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()

"""Crash safety: a controller killed (SIGKILL) at random points restarts and converges.

The campaign (``tests/helpers/crash.py``) keeps a spot service busy with
seeded random preemptions, rolling updates and a second service created and
deleted, kills the daemon after a seeded random delay, restarts it on the same
home, and checks: no service or acknowledged version lost, routers back on
their ports, the store's live replicas equal the local provider's records and
the replica processes alive (no orphan), and no replica started twice.

The long version: ``python benchmarks/crash.py --kills 100``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest

from providers.base import LaunchRequest
from providers.local import LocalProvider
from providers.local_records import processes_with_env
from skyctl.clock import FakeClock
from skyctl.spec import Resources, ServiceSpec
from tests.helpers.crash import run_campaign
from tests.helpers.daemon import ECHO

ECHO_RUN = f"exec {sys.executable} {ECHO}"

KILLS = 5


@pytest.mark.timeout(170)
async def test_a_controller_killed_at_random_points_converges_without_orphans_or_duplicates(
    skyctl_home: Path,
) -> None:
    lines: list[str] = []
    result = await run_campaign(skyctl_home, seed=7, kills=KILLS, report=lines.append)
    print("\n".join(lines))
    assert len(result.kills) == KILLS
    assert result.checks == KILLS


async def test_a_launch_cut_before_its_record_was_saved_is_adopted_not_started_twice(
    tmp_path: Path,
) -> None:
    """What a kill between starting a replica's process and saving its record leaves."""
    state = tmp_path / "local"
    spec = ServiceSpec(name="svc", resources=Resources(use_spot=False), run=ECHO_RUN)
    first = LocalProvider(None, clock=FakeClock(), state_dir=state)
    offering = next(o for o in await first.offerings(spec) if not o.spot)
    req = LaunchRequest(
        service="svc", replica_id=1, version=1, offering=offering, client_token="tok", spec=spec
    )
    launched = await first.launch(req)
    await first.close()
    pid = replica_processes_of(tmp_path, launched.instance_id)
    try:
        (state / "instances" / f"{launched.instance_id}.json").unlink()  # the record never landed
        second = LocalProvider(None, clock=FakeClock(), state_dir=state)  # the next controller
        assert await second.list_instances("svc") == []
        again = await second.launch(req)  # same client token
        assert (again.instance_id, again.endpoint) == (launched.instance_id, launched.endpoint)
        assert replica_processes_of(tmp_path, launched.instance_id) == pid
        log = state / "logs" / "svc" / "replica-1.log"
        assert log.read_text().count("echo server (replica") <= 1
        await second.terminate(again.instance_id)
        assert replica_processes_of(tmp_path, launched.instance_id) == []
        await second.close()
    finally:
        for p in pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p, signal.SIGKILL)


def replica_processes_of(tmp: Path, instance_id: str) -> list[int]:
    return sorted(processes_with_env("SKYCTL_INSTANCE_ID", instance_id))

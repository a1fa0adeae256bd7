"""Soak: the local provider keeps an ended replica's log for an hour, not forever.

A service that churns replicas (preemptions, crashes, updates) for months used to
keep every replica's log until `serve down`: one file per replica ever launched.
Now an ended replica's log is stamped with its end and removed an hour later (as
its row leaves `serve status -a`), checked at most every 5 minutes per service in
a worker thread; a live replica's log is never removed, however old."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from providers.local import LocalProvider
from providers.local_records import LOG_KEEP_SECONDS, LOG_PRUNE_EVERY_SECONDS, group_alive
from skyctl.clock import FakeClock
from tests.helpers.waiting import eventually
from tests.test_local_provider import pick, request, spec_for

T0 = 1_700_000_000.0


@pytest.fixture
async def provider(tmp_path: Path) -> AsyncIterator[tuple[LocalProvider, FakeClock, Path]]:
    clock = FakeClock(T0)
    state = tmp_path / "state"
    p = LocalProvider(None, clock=clock, state_dir=state, base_dir=str(tmp_path))
    yield p, clock, state
    await p.close()
    pgids = [json.loads(f.read_text())["pgid"] for f in state.glob("instances/*.json")]
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    await eventually(lambda: not any(group_alive(g) for g in pgids), "leftover replicas gone")


async def test_an_ended_replicas_log_goes_an_hour_after_it_ended_a_live_ones_stays(
    provider: tuple[LocalProvider, FakeClock, Path],
) -> None:
    p, clock, state = provider
    spec = spec_for(None, run="exec sleep 600")
    offering = pick(list(await p.offerings(spec)), "us-east-a", False)
    one, two, three = [await p.launch(request(spec, offering, i)) for i in (1, 2, 3)]
    logs = state / "logs" / "svc"
    os.utime(logs / "replica-3.log", (T0 - 10 * LOG_KEEP_SECONDS,) * 2)  # live, long silent

    await p.terminate(one.instance_id)
    assert (logs / "replica-1.log").exists()  # serve logs svc 1 still reads it
    await clock.advance(LOG_KEEP_SECONDS + LOG_PRUNE_EVERY_SECONDS)
    await p.terminate(two.instance_id)

    assert sorted(f.name for f in logs.iterdir()) == ["replica-2.log", "replica-3.log"]
    assert p.log_path(one.instance_id) is None
    assert p.log_path(two.instance_id) == str(logs / "replica-2.log")
    assert p.log_path(three.instance_id) == str(logs / "replica-3.log")


async def test_many_ended_replicas_leave_at_most_an_hours_worth_of_logs(
    provider: tuple[LocalProvider, FakeClock, Path],
) -> None:
    """60 replicas, one ending every 5 minutes for 5 hours: about 12 logs left, not 60."""
    p, clock, state = provider
    spec = spec_for(None, run="exec sleep 600")
    offering = pick(list(await p.offerings(spec)), "us-east-a", False)
    for i in range(1, 61):
        inst = await p.launch(request(spec, offering, i))
        await p.terminate(inst.instance_id)
        await clock.advance(LOG_PRUNE_EVERY_SECONDS)
    left = sorted(int(f.stem.split("-")[1]) for f in (state / "logs" / "svc").iterdir())
    per_hour = int(LOG_KEEP_SECONDS // LOG_PRUNE_EVERY_SECONDS)
    assert len(left) <= per_hour + 1
    assert left[-1] == 60

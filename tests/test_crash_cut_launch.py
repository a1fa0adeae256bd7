"""A controller killed between starting a replica's process and saving its record.

The kill is injected at that exact point (the record file removed after the
spawn), not left to a random delay: the restarted controller must find the
process and either adopt it or stop it, whatever it then decides about the
replica. ``tests/test_crash_recovery.py`` covers the same window by random
kills of a real daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from providers import local_process
from providers.base import LaunchRequest
from providers.local import LocalProvider
from providers.local_records import processes_with_env
from providers.registry import ProviderSet
from skyctl.clock import FakeClock
from skyctl.controller import Controller
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.spec_yaml import parse_spec
from skyctl.store import Store
from tests.helpers.waiting import eventually

S = ReplicaStatus

# scales to zero: the restarted controller launches nothing of its own
SPEC = f"""\
name: web
service:
  readiness_probe: /
  replica_policy:
    min_replicas: 0
    max_replicas: 1
    target_qps_per_replica: 10
resources:
  cloud: local
run: exec {sys.executable} -c "import time; time.sleep(600)"
"""


def processes_of(state: Path) -> dict[int, str]:
    """This test's replica processes (pid -> instance id), by their environment."""
    found = processes_with_env("SKYCTL_LOCAL_STATE", str(state))
    return {pid: env.get("SKYCTL_INSTANCE_ID", "") for pid, env in found.items()}


async def test_a_launch_cut_before_its_record_and_then_unwanted_leaves_no_process(
    tmp_path: Path,
) -> None:
    """The tick had moved the launching replica to SHUTTING_DOWN (a scale-down, an
    update) when the controller died between the spawn and the record: the row has
    no instance id, so its termination calls no provider; the process must still go."""
    clock, state = FakeClock(), tmp_path / "local"
    store = Store(tmp_path / "state.db")
    first = Controller(store, ProviderSet(config={}, clock=clock, local_state=state), clock)
    await first.create_service(SPEC, None)  # no tick runs: nothing launched yet
    await first.stop(0)
    spec = parse_spec(SPEC)
    provider = LocalProvider(None, clock=clock, state_dir=state)
    offering = next(o for o in await provider.offerings(spec) if not o.spot)
    row = store.add_replica(
        "web",
        version=1,
        location=offering.location,
        spot=False,
        price=offering.price,
        instance_type=offering.instance_type,
        client_token="tok",
        now=clock.now(),
    )
    store.update_replica("web", row.replica_id, now=clock.now(), status=S.PROVISIONING)
    request = LaunchRequest("web", row.replica_id, 1, offering, "tok", spec)
    cut = await provider.launch(request)  # the spawn...
    (state / "instances" / f"{cut.instance_id}.json").unlink()  # ...but no record
    await provider.close()
    # its environment shows once it has exec'd (a restarting controller takes seconds)
    await eventually(lambda: cut.instance_id in processes_of(state).values(), "exec")
    store.update_replica(
        "web", row.replica_id, now=clock.now(), status=S.SHUTTING_DOWN, reason=EndReason.SCALED_DOWN
    )
    second = Controller(store, ProviderSet(config={}, clock=clock, local_state=state), clock)
    run: asyncio.Task[None] | None = None
    try:
        await second.start()
        run = asyncio.create_task(second.run())
        for _ in range(200):  # fake seconds; ends as soon as the replica is settled
            replica = store.get_replica("web", row.replica_id)
            if replica is not None and replica.status is S.TERMINATED:
                if cut.instance_id not in processes_of(state).values():
                    break
            await clock.advance(0.5)
            await asyncio.sleep(0.01)
        replica = store.get_replica("web", row.replica_id)
        assert replica is not None and replica.status is S.TERMINATED
        assert cut.instance_id not in processes_of(state).values(), "the cut launch's process"
    finally:
        second.request_stop()
        if run is not None:
            await run
        await second.stop(0)
        store.close()
        for pid in processes_of(state):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def fake_process(proc: Path, pid: int, *, environ: bytes, cmdline: bytes, flags: int = 0) -> Path:
    entry = proc / str(pid)
    entry.mkdir(parents=True)
    (entry / "environ").write_bytes(environ)
    (entry / "cmdline").write_bytes(cmdline)
    (entry / "stat").write_text(f"{pid} (bash) S 1 {pid} {pid} 0 -1 {flags} 0 0 0 0 0 0 0")
    return entry


def test_a_replica_caught_in_an_exec_is_read_again_not_passed_over(tmp_path: Path) -> None:
    """Its environment and command line read empty until the kernel has set the new
    program up (right after a spawn, and at each exec of the replica's shells): the
    stray sweeps and the adoption of a cut launch must not miss it for that moment."""
    proc = tmp_path / "proc"
    marker = b"SKYCTL_INSTANCE_ID=web-r1-0123456789\0SKYCTL_SERVICE=web\0"
    execing = fake_process(proc, 100, environ=b"", cmdline=b"")
    fake_process(proc, 2, environ=b"", cmdline=b"", flags=0x00200000)  # a kernel thread
    fake_process(proc, 300, environ=b"OTHER=1\0", cmdline=b"sleep\0")
    pauses: list[float] = []

    def sleep(seconds: float) -> None:  # the exec completes meanwhile
        pauses.append(seconds)
        if len(pauses) == 2:
            (execing / "environ").write_bytes(marker)
            (execing / "cmdline").write_bytes(b"python3\0")

    found = processes_with_env("SKYCTL_INSTANCE_ID", "web-r1-0123456789", proc=proc, sleep=sleep)
    assert list(found) == [100] and found[100]["SKYCTL_SERVICE"] == "web"
    assert len(pauses) == 2  # read again only while something was in an exec
    assert processes_with_env("OTHER", "1", proc=proc, sleep=sleep) == {300: {"OTHER": "1"}}
    assert len(pauses) == 2  # a kernel thread's empty environment is not waited for


async def test_a_launch_cancelled_while_its_process_starts_leaves_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missed launch deadline (or a stopping controller) cancels the launch while the
    worker thread forks: the thread goes on, and its process, which no record will
    name, is killed once it is there."""
    entered, release = threading.Event(), threading.Event()
    spawned: list[subprocess.Popen[bytes]] = []
    real = local_process._start

    def held_start(*args: Any) -> subprocess.Popen[bytes]:
        entered.set()
        release.wait(30)
        spawned.append(real(*args))
        return spawned[-1]

    monkeypatch.setattr(local_process, "_start", held_start)
    spec = parse_spec(SPEC)
    provider = LocalProvider(None, clock=FakeClock(), state_dir=tmp_path / "local")
    try:
        offering = next(o for o in await provider.offerings(spec) if not o.spot)
        launch = asyncio.create_task(
            provider.launch(LaunchRequest("web", 1, 1, offering, "tok", spec))
        )
        await asyncio.to_thread(entered.wait, 30)
        launch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await launch
        release.set()
        await eventually(lambda: bool(spawned) and spawned[0].poll() is not None, "killed")
        assert await provider.list_instances("web") == []
    finally:
        release.set()
        await provider.close()
        for popen in spawned:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)

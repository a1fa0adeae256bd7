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

import collections
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from providers.base import LaunchRequest
from providers.local import LocalProvider
from providers.local_records import processes_with_env
from skyctl.clock import FakeClock
from skyctl.spec import Resources, ServiceSpec
from skyctl.store import Store
from tests.helpers.crash import run_campaign, spec_text
from tests.helpers.daemon import ECHO, ROOT, Daemon
from tests.helpers.processes import pids_mentioning
from tests.helpers.waiting import eventually

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
    # a process shows its environment only once it has exec'd: wait for that (a
    # restarting controller takes seconds; this test restarts at once)
    await eventually(lambda: replica_processes_of(tmp_path, launched.instance_id), "exec")
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
        for p in {*pid, *replica_processes_of(tmp_path, launched.instance_id)}:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p, signal.SIGKILL)


def replica_processes_of(tmp: Path, instance_id: str) -> list[int]:
    """This test's replica processes: the instance id is deterministic, so the same
    test running at the same time elsewhere on a shared machine must not count."""
    found = processes_with_env("SKYCTL_INSTANCE_ID", instance_id)
    state = str(tmp / "local")
    return sorted(pid for pid, env in found.items() if env.get("SKYCTL_LOCAL_STATE") == state)


# ---- the store across kills and bad files ---------------------------------------------

WRITER = """
import sys
from skyctl.store import Store
store = Store(sys.argv[1])
store.create_service("w", "run: x\\nservice: {}\\n", now=0.0)
i = 0
while True:
    i += 1
    with store.transaction():  # one unit of work: two writes that must land together
        store.add_event("w", "a", str(i), now=float(i))
        store.add_event("w", "b", str(i), now=float(i))
    print(i, flush=True)
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_store_killed_mid_write_keeps_every_committed_transaction_whole(
    tmp_path: Path, seed: int
) -> None:
    db = tmp_path / "state.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    committed = 0
    try:
        for _ in range(random.Random(seed).randint(20, 400)):  # a seeded point mid-stream
            committed = int(writer.stdout.readline())
    finally:
        writer.kill()
        writer.wait()
        printed = writer.stdout.read().split()  # what it committed before the kill landed
        committed = int(printed[-1]) if printed else committed
        writer.stdout.close()
    store = Store(db)
    try:
        kinds = collections.Counter(e.kind for e in store.events("w", limit=100_000))
    finally:
        store.close()
    assert kinds["a"] == kinds["b"], "a transaction was torn"
    assert committed <= kinds["a"] <= committed + 1  # the one in flight may have landed
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def corrupt(db: Path) -> None:
    db.write_bytes(b"this is not a database\n" * 300)


def newer_schema(db: Path) -> None:
    Store(db).close()
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute("UPDATE schema_version SET version = 999")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all of it in the main file
    finally:
        conn.close()


BAD_DATABASES = {
    "corrupt": (corrupt, "file is not a database"),
    "newer schema": (newer_schema, "schema version 999"),
}
COMMANDS = {
    "serve status": ["-m", "skyctl.cli", "serve", "status"],
    "serve up": ["-m", "skyctl.cli", "serve", "up", "{spec}", "--detach"],
    "daemon start": ["-m", "skyctl.controller.daemon", "--home", "{home}"],
}


@pytest.mark.parametrize("command", list(COMMANDS.values()), ids=list(COMMANDS))
@pytest.mark.parametrize("bad", list(BAD_DATABASES.values()), ids=list(BAD_DATABASES))
def test_a_bad_database_is_one_clear_line_and_left_untouched(
    skyctl_home: Path, tmp_path: Path, command: list[str], bad: tuple[Any, str]
) -> None:
    make_bad, message = bad
    db = skyctl_home / "state.db"
    make_bad(db)
    before = db.read_bytes()
    spec = tmp_path / "svc.yaml"
    spec.write_text(f"name: svc\nservice:\n  replicas: 1\nrun: {ECHO_RUN}\n")
    args = [a.format(spec=spec, home=skyctl_home) for a in command]
    env = {**os.environ, "SKYCTL_HOME": str(skyctl_home)}
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and message in lines[0] and str(db) in lines[0], result.stderr
    assert db.read_bytes() == before, "the database must never be reset or rewritten"
    assert pids_mentioning(str(skyctl_home)) == []  # no controller left running


@pytest.mark.timeout(90)
def test_after_a_controller_crash_serve_status_restarts_it_and_shows_the_services(
    skyctl_home: Path,
) -> None:
    daemon = Daemon(skyctl_home)
    try:
        client = daemon.start()
        client.call("POST", "/v1/services", {"yaml": spec_text("kept", replicas=1, tag="k")})
        daemon.kill()
        env = {**os.environ, "SKYCTL_HOME": str(skyctl_home)}
        status = subprocess.run(
            [sys.executable, "-m", "skyctl.cli", "serve", "status", "-o", "json"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        assert [s["name"] for s in json.loads(status.stdout)] == ["kept"]
        assert "starting the skyctl controller" in status.stderr
    finally:
        daemon.close()

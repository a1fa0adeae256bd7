"""A real local replica's log rotated under it, and `serve logs` across the rotation.

The local provider watches each replica's log from its launch until its
termination (``providers/local_logs.ReplicaLogs``); here its rotator runs no thread
(``check()`` is called), so what is rotated when is the test's choice. The API's
replica-log stream (``serve logs NAME N``, ``--tail``, ``-f``) is read in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

import providers.local_logs as local_logs
from providers.base import LaunchRequest
from providers.local import LocalProvider
from providers.local_logs import LogLimits, LogRotator, ReplicaLogs, rotate
from skyctl.clock import FakeClock
from skyctl.controller.api import make_app
from skyctl.lifecycle import ReplicaStatus
from skyctl.logtail import LogReader
from skyctl.spec import Resources, ServiceSpec
from tests.helpers.waiting import eventually
from tests.test_controller import Harness

TOKEN = "c" * 32
CAP = LogLimits(max_bytes=2000, backups=1)
# 400 lines (~2.7 kB, over the cap), then, once told, 10 more into the rotated file
TWO_PHASES = (
    'for i in $(seq 0 399); do echo "a $i"; done; '
    'while [ ! -e "$GO" ]; do sleep 0.02; done; '
    'for i in $(seq 0 9); do echo "b $i"; done; exec sleep 60'
)


@pytest.fixture
async def provider(tmp_path: Path) -> AsyncIterator[tuple[LocalProvider, LogRotator]]:
    rotator = LogRotator(interval=None)
    p = LocalProvider(
        None,
        clock=FakeClock(),
        state_dir=tmp_path / "state",
        base_dir=str(tmp_path),
        logs=ReplicaLogs(CAP, rotator),
    )
    yield p, rotator
    await p.close()
    for f in (tmp_path / "state").rglob("instances/*.json"):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(json.loads(f.read_text())["pgid"], signal.SIGKILL)


async def test_a_replicas_log_is_rotated_while_it_writes_on_and_its_copy_goes_with_the_service(
    provider: tuple[LocalProvider, LogRotator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local, rotator = provider
    monkeypatch.setattr(local_logs, "_collapse", lambda fd, length: False)  # copy, truncate
    go = tmp_path / "go"
    spec = ServiceSpec(name="svc", resources=Resources(), run=TWO_PHASES, envs={"GO": str(go)})
    offering = next(o for o in await local.offerings(spec) if not o.spot)
    inst = await local.launch(LaunchRequest("svc", 1, 1, offering, "tok-1", spec, {}))
    log = Path(local.log_path(inst.instance_id) or "")
    await eventually(lambda: b"a 399\n" in log.read_bytes(), "the first 400 lines")

    assert rotator.watching() == [str(log)]  # watched from its launch
    assert await asyncio.to_thread(rotator.check) == 1
    go.touch()
    await eventually(lambda: log.read_bytes().endswith(b"b 9\n"), "the lines after it")
    # the replica's output went on into the log, from its start (no hole, nothing lost)
    assert log.read_bytes() == b"".join(b"b %d\n" % i for i in range(10))  # noqa: ASYNC240
    with LogReader(log) as reader:
        whole = b"".join(iter(reader.read, b""))
    assert whole.splitlines() == [b"a %d" % i for i in range(400)] + [
        b"b %d" % i for i in range(10)
    ]

    await local.terminate(inst.instance_id)
    assert rotator.watching() == []  # nothing watched (no thread) once it ended
    assert Path(f"{log}.1").exists()  # noqa: ASYNC240 - kept an hour, or until serve down
    await local.release_service("svc")
    assert not log.parent.exists()


async def test_serve_logs_reads_and_follows_a_replica_log_across_its_rotation(
    h: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = await h.one_ready_replica("web")
    log = tmp_path / "replica.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # the replica's
    os.write(fd, b"".join(b"old %03d\n" % i for i in range(300)))  # 2.4 kB
    monkeypatch.setattr(h.controller, "log_path", lambda name, replica: log)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = f"/v1/services/web/replicas/{rid}/log"
    async with TestClient(TestServer(make_app(h.controller, TOKEN, lambda: None))) as client:
        follow = await client.get(url + "?follow=1&tail=2", headers=auth)
        got: list[bytes] = []

        async def read_lines() -> None:
            while line := await follow.content.readline():
                got.append(line)

        reading = asyncio.create_task(read_lines())
        await h.until(lambda: got == [b"old 298\n", b"old 299\n"], seconds=10)
        os.write(fd, b"before\n")
        assert rotate(str(log), CAP)  # as the rotator thread does
        os.write(fd, b"after\n")
        # what came before the rotation (from the copy), then the new file's lines
        await h.until(lambda: got[2:] == [b"before\n", b"after\n"], seconds=10)

        tail = await client.get(url + "?tail=3", headers=auth)  # counted across both
        assert await tail.read() == b"old 299\nbefore\nafter\n"
        whole = await client.get(url, headers=auth)
        assert (await whole.read()).count(b"\n") == 302

        await h.controller.terminate_replica("web", rid)
        await h.until(lambda: _terminated(h, rid) and reading.done())  # it ends with it
    os.close(fd)
    assert len(got) == 4


def _terminated(h: Harness, rid: int) -> bool:
    r = h.store.get_replica("web", rid)
    return r is not None and r.status is ReplicaStatus.TERMINATED

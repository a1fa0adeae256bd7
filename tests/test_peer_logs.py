"""`serve logs NAME --replica N -f` ends when the replica does, as a peer reads
README ("-f follows any of them"): following a replica that was terminated (a
`serve down --replica-id`, a failure, a scale-down) printed nothing more and never
returned, since its row stays in the store for `serve status -a`.

The controller's API streams the log (`GET /v1/services/NAME/replicas/N/log?follow=1`);
it now reads what the replica wrote last and ends the stream once the replica is
TERMINATED.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from skyctl.controller.api import make_app
from skyctl.lifecycle import ReplicaStatus
from tests.test_controller import Harness

TOKEN = "t" * 32


def ended(h: Harness, rid: int) -> bool:
    r = h.store.get_replica("web", rid)
    return r is not None and r.status is ReplicaStatus.TERMINATED


async def test_following_a_replica_log_ends_once_the_replica_is_terminated(
    h: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = await h.one_ready_replica("web")
    log = tmp_path / "replica.log"
    log.write_bytes(b"serving\n")
    monkeypatch.setattr(h.controller, "log_path", lambda name, replica: log)

    async with TestClient(TestServer(make_app(h.controller, TOKEN, lambda: None))) as client:
        resp = await client.get(
            f"/v1/services/web/replicas/{rid}/log?follow=1",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert resp.status == 200
        body = asyncio.create_task(resp.read())
        await h.until(lambda: False if body.done() else log.stat().st_size > 0, seconds=2)
        assert not body.done()  # a live replica's log is followed

        await h.controller.terminate_replica("web", rid)
        with log.open("ab") as f:
            f.write(b"shutting down\n")  # its last words, written as it goes
        await h.until(lambda: ended(h, rid))
        await h.until(body.done, seconds=5)
        assert await body == b"serving\nshutting down\n"

"""SIGTERM stops the controller gracefully; a new controller adopts what it left.

A slow request is in flight through the service's endpoint when the daemon
gets SIGTERM: the router stops accepting connections at once, the slow request
still completes with 200, the daemon exits 0 and removes ``controller.json``;
the replica keeps running, and the next daemon adopts it (same replica, same
instance, no new launch) and serves on the same port.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skyctl.client import ControllerClient
from skyctl.errors import StoreError
from skyctl.store import Store
from tests.helpers.crash import spec_text
from tests.helpers.daemon import Daemon, replica_processes

SLOW_MS = 6000  # far longer than the controller needs to react; well inside its 10 s grace


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def service(client: ControllerClient) -> dict[str, Any]:
    return dict(client.call("GET", "/v1/services?name=grace")[0])


def refuses(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.status, r.read().decode()


@pytest.mark.timeout(120)
async def test_sigterm_finishes_in_flight_requests_exits_0_and_leaves_replicas_to_adopt(
    skyctl_home: Path,
) -> None:
    daemon = Daemon(skyctl_home)
    try:
        client = daemon.start()
        text = spec_text("grace", replicas=1, tag="g", spot=False)
        port = int(
            client.call("POST", "/v1/services", {"yaml": text})["endpoint"].rsplit(":", 1)[1]
        )
        await asyncio.to_thread(wait_for, lambda: service(client)["ready_replicas"] == 1, "ready")
        (replica,) = [r for r in service(client)["replicas"] if r["status"] == "READY"]
        instance = next(iter(replica_processes(skyctl_home)))

        slow = asyncio.create_task(
            asyncio.to_thread(get, f"http://127.0.0.1:{port}/slow?ms={SLOW_MS}")
        )
        await asyncio.to_thread(
            wait_for,
            lambda: service(client)["replicas"][0]["router"].get("in_flight", 0) >= 1,
            "the slow request to reach the replica",
        )
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)

        await asyncio.to_thread(wait_for, lambda: refuses(port), "the router to stop accepting")
        assert not slow.done(), "the slow request ended before the router stopped accepting"
        status, body = await slow
        assert (status, body) == (200, f"slow {replica['id']}")
        assert await asyncio.to_thread(daemon.proc.wait, 30) == 0
        assert not (skyctl_home / "controller.json").exists()
        assert instance in replica_processes(skyctl_home), "the replica must keep running"

        client = daemon.start()
        await asyncio.to_thread(wait_for, lambda: service(client)["ready_replicas"] == 1, "adopt")
        assert await asyncio.to_thread(get, f"http://127.0.0.1:{port}/health") == (200, "ok")
        store = Store(skyctl_home / "state.db")
        try:
            replicas = store.list_replicas("grace", include_terminated=True)
        finally:
            store.close()
        assert [(r.replica_id, r.instance_id) for r in replicas] == [(replica["id"], instance)]
    finally:
        daemon.close()


class _FailingRunner:
    async def cleanup(self) -> None:
        raise RuntimeError("the API would not close")


class _Controller:
    def __init__(self) -> None:
        self.stopped_with: float | None = None

    async def stop(self, grace_seconds: float = 10.0) -> None:
        self.stopped_with = grace_seconds


async def test_a_step_of_the_way_out_that_fails_is_logged_and_the_next_steps_still_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The daemon's shutdown (after SIGTERM): the API failing to close still stops the
    services' runtimes and closes the store, and the daemon says what failed: it exits
    as a stop, not as a crash with its providers and store left open."""
    from skyctl.controller import daemon

    store = Store(tmp_path / "state.db")
    controller = _Controller()
    empty = await daemon._shut_down(_FailingRunner(), controller, store, 7.0)  # type: ignore[arg-type]
    assert controller.stopped_with == 7.0
    assert empty  # nothing stored
    assert "closing the API failed" in caplog.text and "would not close" in caplog.text
    with pytest.raises(StoreError):  # closed: no more statements
        store.list_services()

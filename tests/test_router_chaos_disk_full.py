"""A full disk under $SKYCTL_HOME does not close the endpoints.

The router process rewrites ``router.json`` and ``routes.cache`` on each change
of the routing table. Before, a write failing with ENOSPC ended its watch task,
the process exited and closed every endpoint, and the supervisor's fresh one
died on its first write: no endpoint until space was freed. Now the router
says once that it cannot write its files and keeps serving; the files are
written again at the first change once there is space. The router process runs
in-process here against a real routing feed; the disk is full by a stand-in for
``write_private`` that raises ENOSPC. The controller, whose state database is
on that disk, says so in one log line (no traceback) and as the service's last
error.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from providers import local_records
from skyctl import config
from skyctl.clock import FakeClock
from skyctl.config import paths
from skyctl.controller.routing_feed import RoutingFeed
from skyctl.errors import StoreError
from skyctl.router import process
from skyctl.routing_wire import backend_to_json
from skyctl.secrets import KEY_FILE_NAME, Secrets
from tests.helpers.waiting import eventually
from tests.test_controller import FIXED, Harness
from tests.test_router_watch import SPEC, TOKEN, api, backend, free_port


async def test_the_router_keeps_serving_when_its_files_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "skyctl.router.process")
    p = paths(str(tmp_path / "home"))
    sealed = Secrets(p.home / KEY_FILE_NAME).seal(SPEC)
    spec: dict[str, Any] = {
        "spec_version": 1,
        "yaml": sealed.yaml_text,
        "source": None,
        "secrets": sealed.ciphertext,
    }
    port = free_port()
    feed = RoutingFeed(FakeClock())
    feed.put("svc", host="127.0.0.1", port=port, backends=None, **spec)
    runner, base = await api(feed)

    full = True
    refused: list[Path] = []

    def write_private(path: Path, text: str) -> None:
        if full:
            refused.append(path)
            raise OSError(errno.ENOSPC, "No space left on device")
        config.write_private(path, text)

    monkeypatch.setattr(process, "write_private", write_private)
    loop = asyncio.get_running_loop()
    router = asyncio.create_task(process.serve(p, locate=lambda: (base, TOKEN), stop_grace=1.0))
    try:
        for _ in range(2000):  # the endpoint opens once the watch answered (a deadline)
            if await listening(port):
                break
            await asyncio.sleep(0.01)
        feed.put("svc", backends=[process_backend(1)])  # a change: the files again
        tries = len(refused)
        await eventually(lambda: len(refused) > tries, "the router tried to write again", 20)
        assert not router.done(), router.exception() if router.done() else None
        assert await listening(port)
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(said) == 1 and "No space left on device" in said[0], said
        assert not (p.home / "router.json").exists()

        full = False  # space freed: the next change writes the files
        feed.put("svc", backends=[process_backend(2)])
        info = p.home / "router.json"
        await eventually(info.exists, "router.json written once space is back", 20)
        assert json.loads(info.read_text())["ports"] == {"svc": port}
        assert (p.home / "routes.cache").exists()
    finally:
        router.cancel()
        await asyncio.gather(router, return_exceptions=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        feed.close()
        await runner.cleanup()


async def listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


def process_backend(rid: int) -> dict[str, Any]:
    return backend_to_json(backend(rid, free_port()))


class FullDisk:
    """A file object whose writes fail as on a full disk."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("writer", ["config", "local_records"])
def test_a_write_that_fails_on_a_full_disk_leaves_no_tmp_file_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    """The state files (router.json, an instance record) are written aside and
    renamed; a write the disk refused removes its ``.tmp`` and keeps the old file."""
    target = tmp_path / "http-server-r1-abc.json"
    target.write_text('{"old": 1}')
    monkeypatch.setattr(os, "fdopen", lambda fd, mode: FullDisk(fd))
    with pytest.raises(OSError, match="No space left"):
        if writer == "config":
            config.write_private(target, "{}")
        else:
            local_records._write_json(target, {"new": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    assert target.read_text() == '{"old": 1}'


async def test_a_full_disk_under_the_controller_is_one_log_line_and_the_services_last_error(
    h: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A tick whose store write fails (the state database on a full disk) logs one
    line saying so, no traceback, and ``serve status`` shows it as the last error."""
    await h.controller.create_service(FIXED.format(name="web", replicas=1), None)
    await h.until(lambda: h.ready("web") == 1)
    full = "state database /h/state.db: write failed: database or disk is full"

    async def tick(*_: object) -> None:
        raise StoreError(full)

    monkeypatch.setattr(h.controller.reconciler, "tick", tick)
    caplog.set_level(logging.INFO, "skyctl.controller")
    await h.controller.tick_all()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [f"service web: tick failed: StoreError({full!r})"]
    assert errors[0].exc_info is None
    assert h.controller.runtimes["web"].last_error == f"StoreError: {full}"


def test_serve_up_in_a_new_home_on_a_full_disk_names_the_file_and_leaves_no_empty_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first command in a home creates the API token: on a full disk the error
    names the file (the CLI prints ``error: No space left on device: <path>``) and
    no empty token file is left for the next command to trip on."""
    p = paths(str(tmp_path / "home"))
    monkeypatch.setattr(os, "fdopen", lambda fd, mode: FullDisk(fd))
    with pytest.raises(OSError) as raised:
        config.read_or_create_token(p)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(p.token)
    assert list(p.home.iterdir()) == []

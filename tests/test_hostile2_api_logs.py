"""``serve logs --replica N --tail K`` does not stall the controller.

Finding where a replica log's last K lines begin scanned the log (and its
rotated copies) backwards a byte at a time in Python, on the controller's event
loop: for one 32 MiB log (the local provider's cap) of progress-bar output
(``\\r``, no newline, as a model download prints) or a large K, 4.3 s in which
no tick, probe, API call or embedded router ran, and up to ten such files are
scanned. Now the scan counts newlines a block at a time (``bytes.count`` and
``rfind``: 0.08 s for the same log) and the log is opened in a thread.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from skyctl.controller import Controller, api
from skyctl.controller.api import make_app
from skyctl.logtail import LogReader, _tail_start, tail_offset
from tests.helpers.fake_controller import fake_controller

TOKEN = "t" * 40
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SPEC = "name: web\nservice:\n  replicas: 1\nrun: sleep 1000\n"


def reference(data: bytes, lines: int) -> int:
    """Where the last ``lines`` lines of ``data`` begin (its own last newline not counted)."""
    if lines <= 0:
        return len(data)
    body = data[:-1] if data.endswith(b"\n") else data
    starts = [0] + [i + 1 for i, c in enumerate(body) if c == 10]
    return starts[-lines] if lines <= len(starts) else 0


@pytest.mark.parametrize(
    "data",
    [b"", b"\n", b"a", b"a\nb\nc\n", b"a\nb\nc", b"\n\n\n", b"x\r" * 50 + b"\n" + b"y\r" * 50],
)
@pytest.mark.parametrize("block", [1, 2, 5, 64 * 1024])
def test_the_tail_begins_at_the_kth_last_line_whatever_the_block(data: bytes, block: int) -> None:
    for lines in (0, 1, 2, 3, 4, 100):
        assert tail_offset(io.BytesIO(data), lines, block) == reference(data, lines), lines


@pytest.mark.parametrize("block", [1, 3, 64 * 1024])
def test_the_tail_of_a_log_and_its_copies_begins_at_the_kth_last_line(block: int) -> None:
    parts = [b"a\nb", b"\r\r", b"\nc\n", b"", b"d\ne\n"]  # oldest copy first, the log last
    whole = b"".join(parts)
    for lines in (0, 1, 2, 3, 4, 5, 6, 100):
        idx, offset = _tail_start([io.BytesIO(p) for p in parts], lines, block)
        assert sum(map(len, parts[:idx])) + offset == reference(whole, lines), lines


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[Controller]:
    async with fake_controller(tmp_path) as controller:
        yield controller


async def test_the_api_finds_a_logs_tail_off_the_event_loop(
    controller: Controller, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "replica-1.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(1000)))
    monkeypatch.setattr(controller, "log_path", lambda name, rid: log)
    on_loop: list[bool] = []

    def recorded(*args: Any) -> LogReader:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:  # no loop runs in this thread
            on_loop.append(False)
        return LogReader(*args)

    monkeypatch.setattr(api, "LogReader", recorded)
    client: TestClient[web.Request, web.Application]
    client = TestClient(TestServer(make_app(controller, TOKEN, lambda: None)))
    await client.start_server()
    try:
        async with client.get("/v1/services/web/replicas/1/log?tail=3", headers=AUTH) as r:
            assert r.status == 200
            assert await r.text() == "line 997\nline 998\nline 999\n"
    finally:
        await client.close()
    assert on_loop == [False]

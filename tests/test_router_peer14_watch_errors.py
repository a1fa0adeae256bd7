"""A router whose controller never answers says why (``skyctl router run --controller``).

A standalone router (the Kubernetes Deployment) given a wrong ``--controller``
URL or token retries for ever; before, it logged nothing until it had once
connected, and its ``/readyz`` said only ``"controller": false``. Now the
reason is logged once per reason after a few tries, and kept for ``/readyz``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import aiohttp
import pytest

from skyctl.clock import SystemClock
from skyctl.controller.routing_feed import RoutingFeed
from skyctl.router.endpoints import Endpoints
from skyctl.router.process import WARN_AFTER_TRIES, Watch
from skyctl.secrets import Secrets
from tests.helpers.waiting import eventually
from tests.test_router_watch import api


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "skyctl.router.process" and r.levelno == logging.WARNING
    ]


async def follow(watch: Watch, until: object) -> None:
    async with aiohttp.ClientSession() as session:
        task = asyncio.create_task(watch.run(session))
        try:
            await eventually(until, "the watch gave up its first tries", 20)  # type: ignore[arg-type]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_a_wrong_token_is_logged_once_with_the_refusal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "skyctl.router.process")
    feed = RoutingFeed(SystemClock())
    runner, base = await api(feed)
    endpoints = Endpoints(Secrets(tmp_path / "secret.key"), SystemClock())
    tries: list[int] = []

    def locate() -> tuple[str, str]:
        tries.append(1)
        return base, "not-the-token"

    watch = Watch(endpoints, locate, "t")
    try:
        await follow(watch, lambda: len(tries) > WARN_AFTER_TRIES + 2)
    finally:
        feed.close()
        await runner.cleanup()
        await endpoints.close(1.0)
    said = warnings(caplog)
    assert len(said) == 1, said  # once, not once per try
    assert base in said[0] and "401" in said[0]
    assert watch.error is not None and "401" in watch.error and not watch.connected


async def test_nothing_listening_at_the_url_is_logged_with_the_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "skyctl.router.process")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # closed: connections refused
    endpoints = Endpoints(Secrets(tmp_path / "secret.key"), SystemClock())
    watch = Watch(endpoints, lambda: (url, "t"), "t")
    try:
        await follow(watch, lambda: warnings(caplog))
    finally:
        await endpoints.close(1.0)
    said = warnings(caplog)
    assert len(said) == 1 and url in said[0] and "serving the last table" in said[0]
    assert watch.error

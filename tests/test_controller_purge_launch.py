"""A launch still running when its service is purged (``serve down --purge`` removes
the rows while the controller runs) terminates what it made: the purge's sweep
listed nothing of it yet and no tick of the service comes again, so nothing else
would (its instance would run, and bill, with the service gone).

Specified against the in-process provider and a fake clock (tests.test_controller).
"""

from __future__ import annotations

import asyncio

import pytest

from providers.base import LaunchRequest
from skyctl.types import Instance
from tests.test_controller import FIXED, Harness


async def test_a_launch_that_lands_after_its_service_was_purged_terminates_its_instance(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    real_launch = h.provider.launch

    async def slow_launch(request: LaunchRequest) -> Instance:
        started.set()
        await release.wait()  # the cloud answers after the purge
        return await real_launch(request)

    monkeypatch.setattr(h.provider, "launch", slow_launch)
    await h.controller.create_service(FIXED.format(name="web", replicas=1), None)
    await h.until(started.is_set)
    h.store.delete_service("web")  # what `serve down --purge` does (skyctl.client)
    await h.until(lambda: "web" not in h.controller.runtimes)  # swept, runtime dropped
    release.set()
    actuator = h.controller.reconciler.actuator
    await h.until(lambda: h.provider.launches == 1 and actuator.idle)
    assert h.provider.instances == {}, "the late launch's instance runs on"

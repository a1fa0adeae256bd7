"""A cloud the controller cannot use (no credentials): shown, not a crash loop; down works.

A provider whose every call raises ``ConfigError`` (SkyServe's ``infra: aws``
on a machine without AWS credentials) leaves the service's last error saying
so, logged once rather than a traceback a tick; ``serve down`` of a service
that never placed a replica there ends without that cloud's listing (every
launch is recorded before its call, so there is nothing it could have left);
credentials that come back let it launch, and the error goes. The CLI refuses such a spec before
it reaches a controller (tests/test_check.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from skyctl.errors import ConfigError
from skyctl.spec import ServiceSpec
from skyctl.types import Instance, Offering
from tests.fakes.memory_provider import MemoryProvider
from tests.test_controller import FIXED, Harness

NO_CREDENTIALS = "credentials: Unable to locate credentials; run `aws configure`"


@dataclass
class LockedProvider(MemoryProvider):
    locked: bool = True

    def _check(self) -> None:
        if self.locked:
            raise ConfigError(NO_CREDENTIALS)

    async def offerings(self, spec: ServiceSpec) -> Sequence[Offering]:
        self._check()
        return await super().offerings(spec)

    async def list_instances(self, service: str) -> Sequence[Instance]:
        self._check()
        return await super().list_instances(service)


class LockedHarness(Harness):
    provider: LockedProvider
    provider_type = LockedProvider


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[LockedHarness]:
    harness = LockedHarness(tmp_path)
    await harness.start()
    yield harness
    await harness.close()


def last_error(h: Harness, name: str) -> str:
    return str(h.controller.describe(name)["last_error"])


async def test_no_credentials_is_the_services_last_error_logged_once_and_nothing_launches(
    h: LockedHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    await h.controller.create_service(FIXED.format(name="web", replicas=2), None)
    await h.until(lambda: bool(last_error(h, "web")))
    start = h.clock.now()
    await h.until(lambda: h.clock.now() >= start + 30)
    assert last_error(h, "web") == f"local: {NO_CREDENTIALS}"
    assert h.replicas("web") == []
    said = [r for r in caplog.records if NO_CREDENTIALS in r.getMessage()]
    assert len(said) == 1 and not any(r.exc_info for r in said), said
    assert not [r for r in caplog.records if "tick failed" in r.getMessage()]


async def test_down_ends_without_the_listing_of_a_cloud_no_replica_was_placed_in(
    h: LockedHarness,
) -> None:
    await h.controller.create_service(FIXED.format(name="web", replicas=2), None)
    await h.until(lambda: bool(last_error(h, "web")))
    await h.controller.delete_service("web")
    await h.until(lambda: h.store.get_service("web") is None, seconds=30)


async def test_down_waits_for_a_cloud_it_cannot_list_where_replicas_were_placed(
    h: LockedHarness,
) -> None:
    h.provider.locked = False
    await h.controller.create_service(FIXED.format(name="web", replicas=1), None)
    await h.until(lambda: h.ready("web") == 1)
    h.provider.locked = True  # the credentials went away
    await h.controller.delete_service("web")
    start = h.clock.now()
    await h.until(lambda: h.clock.now() >= start + 60)
    assert h.store.get_service("web") is not None  # its instance may still run: not forgotten
    h.provider.locked = False
    await h.until(lambda: h.store.get_service("web") is None, seconds=60)


async def test_credentials_that_come_back_let_the_service_launch(h: LockedHarness) -> None:
    await h.controller.create_service(FIXED.format(name="web", replicas=1), None)
    await h.until(lambda: bool(last_error(h, "web")))
    h.provider.locked = False
    await h.until(lambda: h.ready("web") == 1)
    assert last_error(h, "web") == ""  # no stale error once the cloud answers


async def test_an_error_that_recurs_after_the_cloud_answered_is_shown_but_logged_once(
    h: LockedHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    await h.controller.create_service(FIXED.format(name="web", replicas=1), None)
    await h.until(lambda: bool(last_error(h, "web")))
    h.provider.locked = False
    await h.until(lambda: last_error(h, "web") == "")
    h.provider.locked = True
    await h.until(lambda: bool(last_error(h, "web")))
    said = [r for r in caplog.records if NO_CREDENTIALS in r.getMessage()]
    assert len(said) == 2  # once each time it became unusable, never a tick

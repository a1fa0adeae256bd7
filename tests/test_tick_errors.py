"""A tick that fails is the service's last error while it fails, and no longer after.

An unexpected exception in one service's tick (a bug, a provider raising what
it should have translated) is logged with its traceback once, kept as an
event, and shown as the service's last error; the next good tick clears the
error, and the same failure coming back is shown again without a second
traceback.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from skyctl.spec import ServiceSpec
from skyctl.types import Offering
from tests.fakes.memory_provider import MemoryProvider
from tests.test_controller import FIXED, Harness


@dataclass
class BrokenProvider(MemoryProvider):
    broken: bool = True

    async def offerings(self, spec: ServiceSpec) -> Sequence[Offering]:
        if self.broken:
            raise RuntimeError("offerings table corrupt")
        return await super().offerings(spec)


class BrokenHarness(Harness):
    provider: BrokenProvider
    provider_type = BrokenProvider


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[BrokenHarness]:
    harness = BrokenHarness(tmp_path)
    await harness.start()
    yield harness
    await harness.close()


def last_error(h: Harness) -> str:
    return str(h.controller.describe("web")["last_error"])


async def test_a_failing_tick_is_shown_while_it_fails_and_cleared_by_a_good_one(
    h: BrokenHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    await h.controller.create_service(FIXED.format(name="web", replicas=1), None)
    await h.until(lambda: "offerings table corrupt" in last_error(h))
    start = h.clock.now()
    await h.until(lambda: h.clock.now() >= start + 30)  # many failing ticks
    h.provider.broken = False
    await h.until(lambda: h.ready("web") == 1)
    assert last_error(h) == ""

    h.provider.broken = True
    await h.controller.update_service("web", FIXED.format(name="web", replicas=2), None)
    await h.until(lambda: "offerings table corrupt" in last_error(h))
    failed = [r for r in caplog.records if "tick failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info, failed  # one traceback in all
    events = [e for e in h.store.events("web") if "offerings table corrupt" in e.message]
    assert len(events) == 1

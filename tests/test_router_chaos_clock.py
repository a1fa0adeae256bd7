"""A step of the wall clock (an NTP correction, ``date -s``) does not move the
controller's time.

The controller measures initial delays, backoff and billed time as differences
of its clock's ``now()``. Its clock (:class:`SteadyClock`) reads the wall clock
once and then advances with the monotonic clock, so a replica starting when the
wall clock jumps forward two hours is not failed for its initial delay, and a
launch backing off when it jumps back two hours is retried after seconds, not
hours. Time is fake throughout: the "wall" is the fake clock plus a step.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from providers.registry import ProviderSet
from skyctl import cli_status
from skyctl import clock as clock_module
from skyctl.clock import FakeClock, SteadyClock
from skyctl.controller import Controller, daemon
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.router import process as router_process
from skyctl.router.stats import RateWindow
from tests.test_controller import FIXED, Harness


class SteppedWallHarness(Harness):
    """The controller runs on a SteadyClock over a fake wall clock that can step."""

    def __init__(self, tmp: Path) -> None:
        self.wall_step = 0.0
        super().__init__(tmp)

    def wall(self) -> float:
        return self.clock.now() + self.wall_step

    def _controller(self) -> Controller:
        steady = SteadyClock(wall=self.wall, monotonic=self.clock.now, sleep=self.clock.sleep)
        providers = ProviderSet(config={}, clock=steady, local_state=self.tmp / "local")
        providers.add(self.provider)
        return Controller(self.store, providers, steady, tick_seconds=1.0)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[SteppedWallHarness]:
    harness = SteppedWallHarness(tmp_path)
    await harness.start()
    yield harness
    await harness.close()


def test_the_steady_clock_ignores_steps_of_the_wall_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wall, mono = [1_700_000_000.0], [50.0]

    # what skyctl.clock reads as the time module (not the real one: other threads use it)
    def steady(clock_id: int) -> float:
        # CLOCK_BOOTTIME: it counts time the machine spent suspended, where
        # CLOCK_MONOTONIC stops (a laptop's sleep would leave timestamps behind)
        assert clock_id == time.CLOCK_BOOTTIME
        return mono[0]

    fake_time = SimpleNamespace(time=lambda: wall[0], clock_gettime=steady, monotonic=None)
    monkeypatch.setattr(clock_module, "time", fake_time)
    clock = SteadyClock()
    assert clock.now() == 1_700_000_000.0
    mono[0] += 10
    wall[0] += 10 + 7200  # ten seconds pass, and NTP steps the clock two hours ahead
    assert clock.now() == 1_700_000_010.0
    mono[0] += 5
    wall[0] -= 3 * 7200  # five more, then a step six hours back
    assert clock.now() == 1_700_000_015.0


@pytest.mark.parametrize(
    "serve", [daemon.serve, router_process.serve], ids=["controller", "router"]
)
def test_the_controller_and_router_processes_run_on_the_steady_clock(serve: object) -> None:
    source = inspect.getsource(serve)  # type: ignore[arg-type]
    assert "SteadyClock()" in source and "SystemClock()" not in source


async def test_a_backward_step_does_not_zero_the_routers_request_rate() -> None:
    """The router's request rate (what the autoscaler reads) over the steady clock
    is the same after the wall clock steps back two hours; over the wall clock it
    read 0 req/s for those two hours (every request counted in a future second)."""
    fake, step = FakeClock(), [0.0]
    steady = SteadyClock(wall=lambda: fake.now() + step[0], monotonic=fake.now)
    window = RateWindow()
    for _ in range(10):
        await fake.advance(1.0)
        window.record(steady.now(), 5)
    step[0] = -7200.0
    await fake.advance(0.5)
    window.record(steady.now(), 5)
    assert window.rate(steady.now(), 10) == 5.5  # 55 requests in the last 10 s
    assert window.rate(fake.now() + step[0], 10) == 0.0  # what the wall clock reads


async def test_a_forward_step_does_not_fail_a_starting_replica_for_its_initial_delay(
    h: SteppedWallHarness,
) -> None:
    h.provider.born_unhealthy = True
    await h.controller.create_service(FIXED.format(name="web", replicas=1), None)
    await h.until(lambda: len(h.replicas("web", ReplicaStatus.STARTING)) == 1)
    await h.clock.advance(5)
    h.wall_step += 7200  # the wall clock jumps two hours ahead
    await h.clock.advance(5)
    starting = h.replicas("web", ReplicaStatus.STARTING)[0]
    h.provider.find("web", starting.replica_id).healthy = True  # ready 10 s in, within 60
    await h.until(lambda: h.ready("web") == 1, seconds=30)
    rows = h.store.list_replicas("web", include_terminated=True)
    assert [r.end_reason for r in rows if r.end_reason is EndReason.FAILED_INITIAL_DELAY] == []
    assert [r.replica_id for r in rows] == [starting.replica_id]


async def test_a_backward_step_does_not_stall_a_launch_backing_off(
    h: SteppedWallHarness,
) -> None:
    h.provider.transient_launch_errors = 1  # the first launch fails: backoff of seconds
    await h.controller.create_service(FIXED.format(name="web", replicas=1), None)
    await h.until(lambda: h.provider.transient_launch_errors == 0)
    h.wall_step -= 7200  # the wall clock jumps two hours back
    await h.until(lambda: h.ready("web") == 1, seconds=60)


async def test_serve_status_ages_use_the_controllers_time_not_the_wall_clock(
    h: SteppedWallHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a wall-clock step the controller's timestamps are off the wall clock by
    the step; ``serve status`` measures ages against the controller's time (``as_of``
    in its answer), so a replica launched seconds ago does not read hours (here the
    fake clock is years behind the real one: the same difference, larger)."""
    await h.controller.create_service(FIXED.format(name="web", replicas=1), None)
    await h.until(lambda: h.ready("web") == 1)
    await h.clock.advance(30)
    cli_status.show([h.controller.describe("web")], all_replicas=False)
    row = next(line for line in capsys.readouterr().out.splitlines() if " ago " in line)
    assert row.split()[4:6] == ["30s", "ago"], row  # LAUNCHED

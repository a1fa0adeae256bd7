"""Failure discipline through the live controller (fake provider, fake clock).

SkyServe's smoke scenarios ``failures`` and ``user_bug_restart``, specified:
a replica whose run exits is not relaunched in a loop; the service ends FAILED
with the exit code in one line; a never-ready server ends FAILED_INITIAL_DELAY
with backoff; a READY replica of a new version that breaks ends FAILED_PROBING.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from skyctl.controller.failure_facts import classify, read_tail
from skyctl.lifecycle import EndReason, ReplicaStatus
from skyctl.store import ServiceStatus
from tests.test_controller import FIXED, Harness

R = ReplicaStatus


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    harness.provider.log_dir = str(tmp_path)
    await harness.start()
    yield harness
    await harness.close()


def status(h: Harness, name: str) -> ServiceStatus:
    svc = h.store.get_service(name)
    assert svc is not None
    return svc.status


async def test_a_run_that_exits_fails_the_service_with_its_exit_code(h: Harness) -> None:
    h.provider.exit_code = 3
    await h.controller.create_service(FIXED.format(name="bug", replicas=2), None)
    await h.until(lambda: status(h, "bug") is ServiceStatus.FAILED, seconds=60)
    seen = h.controller.describe("bug")
    assert "exit code 3" in seen["failure"] and "\n" not in seen["failure"]
    assert seen["last_error"] == seen["failure"]
    launches = h.provider.launches
    await h.clock.advance(240.0)  # the rest of the first 5 minutes: nothing more
    for _ in range(5):
        await h.clock.advance(1.0)
    assert h.provider.launches == launches == 2  # as SkyServe: the exits are not relaunched
    rows = seen["replicas"]
    assert rows and all(r["reason"] == "FAILED" and r["exit_code"] == 3 for r in rows)
    assert "boom: bad config" in rows[0]["log_tail"]
    assert ".log" in rows[0]["failure"]  # names the replica's log file
    assert status(h, "bug") is ServiceStatus.FAILED


async def test_an_update_resumes_a_failed_service(h: Harness) -> None:
    h.provider.exit_code = 3
    await h.controller.create_service(FIXED.format(name="bug", replicas=1), None)
    await h.until(lambda: status(h, "bug") is ServiceStatus.FAILED, seconds=60)
    h.provider.exit_code = None  # the user fixed the bug
    await h.controller.update_service("bug", FIXED.format(name="bug", replicas=1), None)
    await h.until(lambda: h.ready("bug") == 1)
    assert status(h, "bug") is ServiceStatus.READY and h.controller.describe("bug")["failure"] == ""


async def test_a_server_that_never_gets_ready_fails_initial_delay_then_the_service(
    h: Harness,
) -> None:
    h.provider.born_unhealthy = True
    spec = FIXED.format(name="slow", replicas=1).replace(
        "initial_delay_seconds: 60", "initial_delay_seconds: 5"
    )
    await h.controller.create_service(spec, None)
    await h.until(lambda: status(h, "slow") is ServiceStatus.FAILED, seconds=600)
    ended = h.store.list_replicas("slow", include_terminated=True)
    assert {r.end_reason for r in ended if r.status is R.TERMINATED} == {
        EndReason.FAILED_INITIAL_DELAY
    }
    assert h.provider.launches == 3
    assert "FAILED_INITIAL_DELAY" in h.controller.describe("slow")["failure"]


async def test_a_ready_v2_replica_that_breaks_ends_failed_probing(h: Harness) -> None:
    await h.controller.create_service(FIXED.format(name="web", replicas=1), None)
    await h.until(lambda: h.ready("web") == 1)
    v2 = FIXED.format(name="web", replicas=1).replace("period_seconds: 1", "period_seconds: 2")
    await h.controller.update_service("web", v2, None)
    await h.until(lambda: [r.version for r in h.replicas("web", R.READY)] == [2])
    sick = h.replicas("web", R.READY)[0]
    h.provider.find("web", sick.replica_id).healthy = False
    await h.until(
        lambda: (
            (r := h.store.get_replica("web", sick.replica_id)) is not None
            and r.status is R.TERMINATED
        )
    )
    ended = h.store.get_replica("web", sick.replica_id)
    assert ended is not None and ended.end_reason is EndReason.FAILED_PROBING
    assert ended.failure and "failed probes" in ended.failure
    await h.until(lambda: h.ready("web") == 1)  # replaced: v2 was READY once, not FAILED
    assert status(h, "web") is ServiceStatus.READY


# (case, provider's reason and detail, log tail, kind, exit code, one-line failure)
CLASSIFY = [
    (
        "run exits",
        (EndReason.FAILED, "process exited with code 3"),
        "loading\nboom",
        (EndReason.FAILED, 3, "run failed with exit code 3; log /l/r.log"),
    ),
    (
        "run exits 0 (its server started in the background, or quit)",
        (EndReason.FAILED, "process exited with code 0"),
        "started",
        (
            EndReason.FAILED,
            0,
            "run exited with code 0 (it must keep the server in the foreground); log /l/r.log",
        ),
    ),
    (
        "run killed by a signal",
        (EndReason.FAILED, "process exited with code -9"),
        "loading",
        (EndReason.FAILED, -9, "run killed by signal 9 (SIGKILL); log /l/r.log"),
    ),
    (
        "setup exits",
        (EndReason.FAILED, "process exited with code 1"),
        "pip: no such package\nskyctl: setup failed with exit code 1",
        (EndReason.FAILED_SETUP, 1, "setup failed with exit code 1; log /l/r.log"),
    ),
    (
        "gone without a code",
        (EndReason.FAILED, "instance gone"),
        "",
        (EndReason.FAILED, None, "instance gone; log /l/r.log"),
    ),
    (
        "initial delay",
        (EndReason.FAILED_INITIAL_DELAY, "not ready 20s after it started"),
        "still loading",
        (EndReason.FAILED_INITIAL_DELAY, None, "not ready 20s after it started; log /l/r.log"),
    ),
]


@pytest.mark.parametrize("given,tail,want", [c[1:] for c in CLASSIFY], ids=[c[0] for c in CLASSIFY])
def test_failure_facts_classify(
    given: tuple[EndReason, str], tail: str, want: tuple[EndReason, int | None, str]
) -> None:
    assert classify(given[0], given[1], tail, "/l/r.log") == want


def test_read_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "r.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert read_tail(str(log), lines=3) == "line 97\nline 98\nline 99"
    assert read_tail(str(tmp_path / "missing.log")) == ""


async def test_an_explicit_retry_resumes_a_failed_service(h: Harness) -> None:
    h.provider.exit_code = 3
    await h.controller.create_service(FIXED.format(name="bug", replicas=1), None)
    await h.until(lambda: status(h, "bug") is ServiceStatus.FAILED, seconds=60)
    launches = h.provider.launches
    h.provider.exit_code = None  # the fault was outside the spec (a missing file, say)
    seen = await h.controller.retry_service("bug")
    assert seen["failure"] == "" and seen["version"] == 1  # the same version, no update
    await h.until(lambda: h.ready("bug") == 1)
    assert h.provider.launches == launches + 1 and status(h, "bug") is ServiceStatus.READY


async def test_a_service_going_down_is_shut_down_by_the_plan(h: Harness) -> None:
    await h.controller.create_service(FIXED.format(name="web", replicas=2), None)
    await h.until(lambda: h.ready("web") == 2)
    await h.controller.delete_service("web")
    await h.until(lambda: h.store.get_service("web") is None)
    assert not h.provider.running("web")

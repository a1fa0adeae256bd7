"""``serve up`` and ``serve update`` that see a service or version FAILED report it once
its replicas still SHUTTING_DOWN have ended (their final rows carry the exit code and
the log file), and give up waiting for them after ``SETTLE_SECONDS``.

The watch is a script of the controller's answers; the module's clock is fake, so the
waits cost no time."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from skyctl import cli_update, cli_wait
from skyctl.cli_status import SETTLE_SECONDS
from skyctl.errors import SkyctlError

WHY = "version 1: 1 replica failed, none ever READY; last replica 1: FAILED_INITIAL_DELAY"


def service(replica: str, failure: str = "", version: int = 1) -> dict[str, Any]:
    return {
        "status": "FAILED" if version == 1 else "READY",
        "failure": WHY.replace("version 1", f"version {version}"),
        "version": version,
        "serving_versions": [1] if version != 1 else [],
        "ready_replicas": 0,
        "endpoint": "http://127.0.0.1:1",
        "plan": {"version": version, "target": 1},
        "last_error": "",
        "replicas": [
            {"id": 1, "version": version, "status": replica, "failure": failure},
        ],
    }


ENDED = "FAILED_INITIAL_DELAY (not ready 1s after it started); log /h/replica-1.log"


class Script:
    """The controller's answers, in order; the last one repeats."""

    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)
        self.asked = 0

    def watch(self, *args: Any) -> SimpleNamespace:
        def get() -> dict[str, Any]:
            self.asked += 1
            return self.answers[min(self.asked, len(self.answers)) - 1]

        return SimpleNamespace(get=get)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    fake = SimpleNamespace(monotonic=lambda: now[0], sleep=sleep)
    monkeypatch.setattr(cli_wait, "time", fake)
    monkeypatch.setattr(cli_update, "time", fake)
    return now


@pytest.mark.parametrize("command", ["up", "update"])
def test_the_failure_is_reported_with_the_log_once_the_replica_has_ended(
    command: str, clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    version = 1 if command == "up" else 2
    script = Script(
        service("SHUTTING_DOWN", version=version),
        service("SHUTTING_DOWN", version=version),
        service("TERMINATED", ENDED, version=version),
    )
    with pytest.raises(SkyctlError) as failed:
        if command == "up":
            monkeypatch.setattr(cli_wait, "ServiceWatch", script.watch)
            cli_wait.wait_ready(None, "svc", None)  # type: ignore[arg-type]
        else:
            monkeypatch.setattr(cli_update, "ServiceWatch", script.watch)
            cli_update._wait_rolled(None, "svc", version, None, 1)  # type: ignore[arg-type]
    assert script.asked == 3
    assert "(log /h/replica-1.log)" in str(failed.value)


def test_a_replica_that_never_ends_holds_the_report_back_only_so_long(
    clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script(service("SHUTTING_DOWN"))
    monkeypatch.setattr(cli_wait, "ServiceWatch", script.watch)
    with pytest.raises(SkyctlError, match="service svc FAILED: version 1: "):
        cli_wait.wait_ready(None, "svc", None)  # type: ignore[arg-type]
    assert SETTLE_SECONDS <= clock[0] < SETTLE_SECONDS + 1

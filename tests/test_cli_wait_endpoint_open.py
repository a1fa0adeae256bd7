"""``serve up`` says a service is ready only once its endpoint listens: a READY
replica behind a router process that has not opened the port yet is not "ready at
URL" (a client would be refused)."""

from __future__ import annotations

from typing import Any

import pytest

from skyctl import cli_wait
from skyctl.cli_wait import wait_ready
from skyctl.errors import SkyctlError


class _Controller:
    """Answers each GET with the next description; the last one for ever after."""

    def __init__(self, *svcs: dict[str, Any]) -> None:
        self.svcs = list(svcs)
        self.gets = 0

    def call(self, method: str, path: str, body: Any = None) -> list[dict[str, Any]]:
        assert method == "GET"
        self.gets += 1
        return [self.svcs[min(self.gets, len(self.svcs)) - 1]]


def ready(endpoint_open: bool) -> dict[str, Any]:
    return {
        "status": "READY",
        "ready_replicas": 1,
        "endpoint": "http://127.0.0.1:1",
        "endpoint_open": endpoint_open,
        "replicas": [{"id": 1, "status": "READY"}],
        "plan": {"target": 1},
    }


@pytest.fixture(autouse=True)
def no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_wait.time, "sleep", lambda _: None)


def test_a_ready_replica_behind_an_endpoint_not_yet_open_is_waited_for(
    capsys: pytest.CaptureFixture[str],
) -> None:
    controller = _Controller(ready(False), ready(False), ready(True))
    wait_ready(controller, "llm", timeout=60)  # type: ignore[arg-type]
    assert controller.gets == 3
    assert "Service llm is ready at http://127.0.0.1:1" in capsys.readouterr().out


def test_an_endpoint_that_never_opens_ends_at_the_timeout_not_as_ready(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SkyctlError, match="no replica of llm became ready within 0s"):
        wait_ready(_Controller(ready(False)), "llm", timeout=0)  # type: ignore[arg-type]
    assert "is ready at" not in capsys.readouterr().out


def test_a_controller_that_does_not_say_is_taken_as_open() -> None:
    """An older controller's description has no endpoint_open: READY is ready."""
    svc = ready(True)
    del svc["endpoint_open"]
    controller = _Controller(svc)
    wait_ready(controller, "llm", timeout=60)  # type: ignore[arg-type]
    assert controller.gets == 1

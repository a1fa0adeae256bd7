"""``serve up``'s wait ending on a FAILED service: one line, and where to read why.

A setup or run that exited names its log in the failure line already; a server
that never became ready (FAILED_INITIAL_DELAY) or stopped answering its probes
(FAILED_PROBING) is stopped by skyctl, which says only why it stopped it, so the
line also says how to read the last replica's output.
"""

from __future__ import annotations

from typing import Any

import pytest

from skyctl.cli_wait import wait_ready
from skyctl.errors import SkyctlError


class _Controller:
    """Answers the service's GET with one fixed description."""

    def __init__(self, svc: dict[str, Any]) -> None:
        self.svc = svc

    def call(self, method: str, path: str, body: Any = None) -> list[dict[str, Any]]:
        assert method == "GET"
        return [self.svc]


def failed(failure: str, ids: list[int]) -> dict[str, Any]:
    return {
        "status": "FAILED",
        "failure": failure,
        "ready_replicas": 0,
        "endpoint": "http://127.0.0.1:1",
        "replicas": [{"id": i, "status": "TERMINATED"} for i in ids],
        "plan": {"target": 1},
    }


def error_of(svc: dict[str, Any]) -> str:
    with pytest.raises(SkyctlError) as e:
        wait_ready(_Controller(svc), "llm", timeout=5)  # type: ignore[arg-type]
    assert "\n" not in str(e.value)
    return str(e.value)


def test_a_server_never_ready_names_the_command_that_shows_its_output() -> None:
    line = "version 1: 3 replicas failed, none ever READY; last replica 3: FAILED_INITIAL_DELAY"
    said = error_of(failed(line, [1, 2, 3]))
    assert said.startswith(f"service llm FAILED: {line}; its output: ")
    assert "`skyctl serve logs llm --replica 3`" in said
    assert said.endswith("fix the spec and `skyctl serve update llm FILE`")


def test_a_run_that_exited_keeps_the_log_it_names_and_no_second_pointer() -> None:
    line = "version 1: last replica 1: run failed with exit code 3 (log /h/local/logs/i-1.log)"
    said = error_of(failed(line, [1]))
    assert said == f"service llm FAILED: {line}; fix the spec and `skyctl serve update llm FILE`"

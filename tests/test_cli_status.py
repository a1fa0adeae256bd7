"""`serve status` tables: sky serve status's columns; rich on a terminal (no colour
under NO_COLOR), plain aligned columns in a pipe; `-o json` keeps its shape."""

from __future__ import annotations

import time
from typing import Any

import click
import pytest
from click.testing import CliRunner

from skyctl import cli_status


def service(now: float) -> dict[str, Any]:
    replica = {
        "id": 3,
        "version": 2,
        "status": "READY",
        "reason": None,
        "exit_code": None,
        "location": "aws/us-east-1/us-east-1a",
        "spot": True,
        "instance_type": "g5.xlarge",
        "endpoint": "http://10.0.0.3:8080",
        "launched_at": now - 3700,
        "uptime_seconds": 3600.0,
        "price_per_hour": 0.4,
        "accrued_cost": 0.41,
        "router": {"requests": 12},
    }
    ended = {**replica, "id": 1, "version": 1, "status": "TERMINATED", "reason": "PREEMPTED"}
    return {
        "name": "llm",
        "version": 2,
        "status": "READY",
        "endpoint": "http://127.0.0.1:30001",
        "ready_replicas": 1,
        "cost_per_hour": 0.4,
        "accrued_cost": 0.5,
        "savings": 1.2,
        "plan": {"policy": "spot_fallback"},
        "created_at": now - 2 * 86400 - 3 * 3600,
        "replicas": [ended, replica],
        "failure": "",
        "last_error": "",
    }


def render(all_replicas: bool = False, **env: str) -> str:
    result = CliRunner(env=env).invoke(
        cli_status_command, ["-a"] if all_replicas else [], catch_exceptions=False
    )
    return result.output


@pytest.fixture(autouse=True)
def _services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)


@click.command()
@click.option("-a", "all_replicas", is_flag=True)
def cli_status_command(all_replicas: bool) -> None:
    cli_status.show([service(time.time())], all_replicas)


def test_a_pipe_gets_plain_columns_with_sky_serve_status_headers() -> None:
    out = render()
    assert "\x1b[" not in out
    lines = out.splitlines()
    assert lines[0] == "Services"
    headers = [h.strip() for h in lines[1].split("  ") if h.strip()]
    assert headers == cli_status.SERVICE_COLUMNS
    assert lines[2].split()[:6] == ["llm", "2", "2d", "3h", "READY", "1/1"]
    replicas = lines[lines.index("Service Replicas") + 1 :]
    assert replicas[0].split()[:8] == cli_status.REPLICA_COLUMNS[:8]
    (row,) = replicas[1:]  # the terminated one only with -a
    assert "1h 1m ago" in row and "g5.xlarge (spot)" in row and "1h 0m" in row
    assert len(render(all_replicas=True).splitlines()) == len(lines) + 1
    assert "TERMINATED (PREEMPTED)" in render(all_replicas=True)


def test_a_terminal_gets_colour_unless_no_color() -> None:
    coloured = render(FORCE_COLOR="1", COLUMNS="200")
    assert "\x1b[32mREADY" in coloured  # green
    assert "SERVICE_NAME" in coloured and "g5.xlarge (spot)" in coloured
    narrow = render(FORCE_COLOR="1", COLUMNS="80")
    assert all(h in narrow for h in cli_status.REPLICA_COLUMNS)  # folded cells, whole headers
    plain = render(FORCE_COLOR="1", NO_COLOR="1")
    assert "\x1b[32m" not in plain and "READY" in plain


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "-"), (5, "5s"), (125, "2m 5s"), (3720, "1h 2m"), (90000, "1d 1h")]
)
def test_durations_read_as_sky_serve_status(seconds: float | None, text: str) -> None:
    assert cli_status.duration(seconds) == text


def row(rid: int, version: int, status: str = "READY") -> dict[str, Any]:
    return {"id": rid, "version": version, "status": status}


@pytest.mark.parametrize(
    ("replicas", "mode", "serving", "cell"),
    [
        ([row(3, 2), row(1, 1, "TERMINATED")], "blue_green", [2], "2"),  # update done
        ([row(1, 1), row(3, 2, "STARTING")], "blue_green", [1], "2 (blue_green, serving 1)"),
        ([row(1, 1), row(3, 2)], "rolling", [1, 2], "2 (rolling, serving 1,2)"),
        ([row(1, 1, "SHUTTING_DOWN")], "rolling", [], "2 (rolling, serving none)"),
    ],
)
def test_the_version_cell_shows_an_update_in_progress(
    replicas: list[dict[str, Any]], mode: str, serving: list[int], cell: str
) -> None:
    svc = {"version": 2, "replicas": replicas, "update_mode": mode, "serving_versions": serving}
    assert cli_status.version_cell(svc) == cell


def test_a_failed_services_log_tail_is_the_replica_its_line_names() -> None:
    # two replicas that exit together: the line named replica 1 and printed replica 2's tail
    now = time.time()
    svc = service(now)
    one = {**svc["replicas"][0], "id": 1, "reason": "FAILED", "log_tail": ["one: boom"]}
    two = {**svc["replicas"][0], "id": 2, "reason": "FAILED", "log_tail": ["two: boom"]}
    svc.update(
        status="FAILED",
        replicas=[one, two],
        failure="version 1: 2 replicas failed, none ever READY; last replica 1: run failed",
    )
    assert cli_status.failed_replica(svc) is one
    svc["failure"] = "version 1: 2 replicas failed, none ever READY"  # naming none: the newest
    assert cli_status.failed_replica(svc) is two

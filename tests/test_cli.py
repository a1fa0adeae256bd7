"""The CLI against a real controller daemon: status, logs, events, update, down."""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.status import wait_status
from tests.test_e2e_local import ECHO, cli

SPEC = """\
name: cli-demo
envs:
  ECHO_SERVER_LOG: "1"
  GREETING: "{greeting}"
service:
  readiness_probe:
    path: /health
    period_seconds: 0.5
  replicas: 1
run: exec {python} {echo}
"""


def wait_for(home: Path, predicate, seconds: float = 60):  # type: ignore[no-untyped-def]
    """Polled through the controller's API, then shown by ``serve status -o json``
    (tests/helpers/status.py)."""
    return wait_status(home, "cli-demo", predicate, "the awaited status", seconds)


@pytest.mark.timeout(180)
def test_status_logs_events_update_and_down(tmp_path: Path, skyctl_home: Path) -> None:
    spec = tmp_path / "svc.yaml"
    spec.write_text(SPEC.format(greeting="v1", python=sys.executable, echo=ECHO))
    before_up = time.time()
    up = cli(skyctl_home, "serve", "up", str(spec))
    assert up.returncode == 0, up.stderr
    after_up = time.time()
    assert "is ready at http://127.0.0.1:" in up.stdout

    table = cli(skyctl_home, "serve", "status").stdout
    assert "cli-demo" in table and "READY" in table and "on-demand" in table
    services, replicas = table.split("Service Replicas")  # plain columns: not a terminal
    assert services.split()[1:7] == ["NAME", "VERSION", "UPTIME", "STATUS", "REPLICAS", "ENDPOINT"]
    assert "ACCRUED $" in services and "ACCRUED $" in replicas  # the service's, per replica
    assert replicas.split()[:8] == [
        "SERVICE_NAME", "ID", "VERSION", "ENDPOINT", "LAUNCHED", "INFRA", "RESOURCES", "STATUS",
    ]  # fmt: skip
    assert " ago " in replicas  # LAUNCHED

    svc = wait_for(skyctl_home, lambda s: s["ready_replicas"] == 1)
    endpoint = cli(skyctl_home, "serve", "status", "--endpoint", "cli-demo")
    assert endpoint.returncode == 0 and endpoint.stdout == svc["endpoint"] + "\n"

    # cost: the replica has billed since its launch (inside `serve up`), at its price
    time.sleep(1.0)
    asked = time.time()
    (r1,) = json.loads(cli(skyctl_home, "serve", "status", "cli-demo", "-o", "json").stdout)[0][
        "replicas"
    ]
    answered = time.time()
    assert asked - after_up <= r1["billed_seconds"] <= answered - before_up
    assert r1["accrued_cost"] == pytest.approx(
        r1["billed_seconds"] * r1["price_per_hour"] / 3600, rel=0.01
    )
    with urllib.request.urlopen(svc["endpoint"] + "/hello-from-test", timeout=10) as r:
        assert r.status == 200
    logs = cli(skyctl_home, "serve", "logs", "cli-demo")
    assert logs.returncode == 0 and "/hello-from-test" in logs.stdout

    events = cli(skyctl_home, "serve", "logs", "cli-demo", "--events").stdout
    assert "launch" in events and "ready" in events

    spec.write_text(SPEC.format(greeting="v2", python=sys.executable, echo=ECHO))
    update = cli(skyctl_home, "serve", "update", "cli-demo", str(spec))
    assert update.returncode == 0 and "version 2" in update.stdout
    svc = wait_for(
        skyctl_home,
        lambda s: (
            [r["version"] for r in s["replicas"] if r["status"] != "TERMINATED"] == [2]
            and s["ready_replicas"] == 1
        ),
    )
    ended = [r for r in svc["replicas"] if r["status"] == "TERMINATED"]
    assert [r["reason"] for r in ended] == ["UPDATED"]

    down = cli(skyctl_home, "serve", "down", "cli-demo")
    assert down.returncode == 0
    assert cli(skyctl_home, "serve", "status").stdout.strip() == "No services."


def test_commands_about_a_missing_service_fail_in_one_line(skyctl_home: Path) -> None:
    for args in (["serve", "status", "nope"], ["serve", "down", "nope"], ["serve", "logs", "nope"]):
        result = cli(skyctl_home, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
        assert "nope" in result.stderr


def test_down_needs_a_name_or_all(skyctl_home: Path) -> None:
    result = cli(skyctl_home, "serve", "down")
    assert result.returncode == 2
    assert "NAME or --all" in result.stderr

"""`serve update` as `sky serve update`: NAME wins over the spec's name (a service
started with -n), an identical spec relaunches nothing, and a real change is shown
rolling out until every replica runs the new version and is READY."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from policies.update import UpdateMode
from skyctl.controller.updates import parse_mode
from skyctl.errors import ServiceError
from tests.test_e2e_local import ECHO, cli

SPEC = """\
name: http
envs:
  GREETING: "{greeting}"
service:
  readiness_probe:
    path: /health
    period_seconds: 0.5
  replicas: 1
run: exec {python} {echo}
"""


def write_spec(spec: Path, greeting: str, *, exits: bool = False) -> None:
    """The echo service greeting ``greeting``; ``exits``: its run exits 3 at once."""
    text = SPEC.replace("run: exec", "run: exit 3; exec") if exits else SPEC
    spec.write_text(text.format(greeting=greeting, python=sys.executable, echo=ECHO))


def replicas(home: Path) -> list[tuple[int, int, str]]:
    (svc,) = json.loads(cli(home, "serve", "status", "http2", "-a", "-o", "json").stdout)
    return [(r["id"], r["version"], r["status"]) for r in svc["replicas"]]


@pytest.mark.timeout(180)
def test_update_by_name_identical_is_a_no_op_and_a_change_waits_for_the_rollout(
    tmp_path: Path, skyctl_home: Path
) -> None:
    spec = tmp_path / "svc.yaml"
    write_spec(spec, "v1")
    up = cli(skyctl_home, "serve", "up", str(spec), "-n", "http2")
    assert up.returncode == 0, up.stderr
    before = replicas(skyctl_home)
    assert [v for _, v, _ in before] == [1]

    same = cli(skyctl_home, "serve", "update", "http2", str(spec))
    assert same.returncode == 0, same.stderr
    assert "nothing to update" in same.stdout
    assert replicas(skyctl_home) == before  # no new version, no relaunch

    write_spec(spec, "v2")
    changed = cli(skyctl_home, "serve", "update", "http2", str(spec), "--timeout", "90")
    assert changed.returncode == 0, changed.stderr
    assert "rolling update to version 2 started" in changed.stdout
    assert "version 2: 0/1 ready" in changed.stdout or "version 2: 0/0 ready" in changed.stdout
    assert changed.stdout.rstrip().endswith("runs version 2 on 1 ready replica(s)")
    live = [(v, s) for _, v, s in replicas(skyctl_home) if s != "TERMINATED"]
    assert live == [(2, "READY")]

    detached = cli(skyctl_home, "serve", "update", "http2", str(spec), "--detach")
    assert "nothing to update" in detached.stdout  # v2 again: identical
    assert cli(skyctl_home, "serve", "down", "http2").returncode == 0


def test_an_unknown_update_mode_is_one_line_naming_the_allowed_ones() -> None:
    with pytest.raises(
        ServiceError, match=r"^mode: 'canary' is not an update mode; allowed: rolling, blue_green$"
    ):
        parse_mode("canary")
    assert (
        parse_mode(None) is UpdateMode.ROLLING and parse_mode("blue_green") is UpdateMode.BLUE_GREEN
    )


@pytest.mark.timeout(180)
def test_an_update_whose_version_fails_exits_non_zero_and_the_old_version_keeps_serving(
    tmp_path: Path, skyctl_home: Path
) -> None:
    spec = tmp_path / "svc.yaml"
    write_spec(spec, "v1")
    assert cli(skyctl_home, "serve", "up", str(spec), "-n", "http2").returncode == 0
    write_spec(spec, "v2", exits=True)
    # no --timeout: a rolling update keeps the service READY on version 1, so only
    # the failure of version 2 itself can end the wait
    broken = cli(skyctl_home, "serve", "update", "http2", str(spec))
    assert broken.returncode != 0
    (line,) = [x for x in broken.stderr.splitlines() if "FAILED" in x]
    assert "version 2 of http2 FAILED" in line and "exit code 3" in line
    assert "still serving version(s): 1" in line
    live = [(v, s) for _, v, s in replicas(skyctl_home) if s != "TERMINATED"]
    assert live == [(1, "READY")]
    assert cli(skyctl_home, "serve", "down", "http2").returncode == 0

"""`serve down` as `sky serve down`: several names, --all asks first (-y skips),
--replica-id takes one replica down and the service replaces it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from skyctl.cli import cli as skyctl
from tests.helpers.status import wait_services
from tests.test_e2e_local import ECHO, cli

SPEC = """\
name: {name}
service:
  readiness_probe:
    path: /health
    period_seconds: 0.5
  replicas: {replicas}
run: exec {python} {echo}
"""


def up(home: Path, tmp: Path, name: str, replicas: int = 1) -> None:
    spec = tmp / f"{name}.yaml"
    spec.write_text(SPEC.format(name=name, replicas=replicas, python=sys.executable, echo=ECHO))
    result = cli(home, "serve", "up", str(spec), "--timeout", "60")
    assert result.returncode == 0, result.stderr


def services(home: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    out = json.loads(cli(home, "serve", "status", "-o", "json").stdout)
    return {s["name"]: s for s in out}


@pytest.mark.timeout(240)
def test_replica_id_then_several_names_then_all_with_confirmation(
    tmp_path: Path, skyctl_home: Path
) -> None:
    up(skyctl_home, tmp_path, "one", replicas=2)
    up(skyctl_home, tmp_path, "two")
    up(skyctl_home, tmp_path, "three")
    runner = CliRunner()
    home = ["--home", str(skyctl_home)]

    # one replica: it goes (reason USER) and the controller launches a replacement
    first = services(skyctl_home)["one"]["replicas"][0]["id"]
    result = runner.invoke(skyctl, [*home, "serve", "down", "one", "--replica-id", str(first)])
    assert result.exit_code == 0, result.output
    assert "replacement" in result.output

    def replaced(shown: list[dict[str, Any]]) -> bool:
        (svc,) = [s for s in shown if s["name"] == "one"]
        gone = [r for r in svc["replicas"] if r["id"] == first]
        ready = [r for r in svc["replicas"] if r["status"] == "READY"]
        return (not gone or gone[0]["status"] == "TERMINATED") and len(ready) == 2

    shown = wait_services(skyctl_home, replaced, "replica replaced: 2 READY", 90)
    (svc,) = [s for s in shown if s["name"] == "one"]
    ready = [r for r in svc["replicas"] if r["status"] == "READY"]
    assert first not in [r["id"] for r in ready]
    ended = cli(skyctl_home, "serve", "status", "one", "-a", "-o", "json").stdout
    (old,) = [r for r in json.loads(ended)[0]["replicas"] if r["id"] == first]
    assert old["reason"] == "USER"
    missing = runner.invoke(skyctl, [*home, "serve", "down", "one", "--replica-id", "99"])
    assert missing.exit_code != 0

    # two names at once (one given twice): both verified down, once each, the third untouched
    result = runner.invoke(skyctl, [*home, "serve", "down", "one", "two", "one"])
    assert result.exit_code == 0, result.output
    assert "Shutting down one, two..." in result.output
    assert result.output.count("Service one is down") == 1
    assert result.output.count("Service two is down") == 1
    assert list(services(skyctl_home)) == ["three"]

    # --all asks first; "no" leaves everything running
    no = runner.invoke(skyctl, [*home, "serve", "down", "--all"], input="n\n")
    assert no.exit_code != 0 and "Terminate every service" in no.output
    assert list(services(skyctl_home)) == ["three"]
    yes = runner.invoke(skyctl, [*home, "serve", "down", "--all"], input="y\n")
    assert yes.exit_code == 0, yes.output
    assert "Service three is down" in yes.output


def test_replica_id_needs_exactly_one_name(skyctl_home: Path) -> None:
    result = cli(skyctl_home, "serve", "down", "a", "b", "--replica-id", "1")
    assert result.returncode == 2 and "--replica-id" in result.stderr

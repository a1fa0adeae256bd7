"""More of SkyServe's smoke tests, ported to the local provider through the real CLI.

The rest of SkyPilot's ``tests/smoke_tests/test_sky_serve.py`` after
tests/test_skyserve_smoke.py (same approach, same helpers): the per-cloud
``*_http`` tests as one local one, the LLM test on a stand-in for vLLM, the
controller killed while a replica is PENDING or SHUTTING_DOWN, the replica log
synced down with no line repeated, and a task's own dependencies. Each command is
SkyServe's with ``sky serve`` read ``skyctl serve`` (docs/skyserve-compat.md says
where a flag is spelled differently); each assertion is the one SkyServe's test
greps for, on ``serve status``, ``serve logs`` or the endpoint's reply.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.processes import pids_mentioning, wait_until_gone
from tests.helpers.status import api_services
from tests.test_e2e_local import cli
from tests.test_skyserve_smoke import (
    DATA,
    kill_controller,
    live,
    one_ready_replica_after_restart,
    states,
    status,
    teardown,
    text,
    wait_status,
)


def wait_until_ready(home: Path, name: str, replicas: int, limit: float = 60) -> str:
    """_SERVE_WAIT_UNTIL_READY: poll the ``serve status NAME`` table until it shows
    ``N/N``, failing at once if it shows FAILED; the table, for more greps. Polled
    through the API (tests/helpers/status.py) until its READY/live count is N/N or
    the service FAILED; then the table is shown, and checked, by the CLI."""
    deadline = time.monotonic() + limit

    def shown(s: dict[str, Any]) -> bool:  # the table's READY column: ready/live
        ready = (s["ready_replicas"], len(live(s))) == (replicas, replicas)
        return ready or s["status"] == "FAILED"

    while True:
        seen = api_services(home, name)
        if seen is None or shown(seen[0]):  # no controller answers: the CLI starts one
            result = cli(home, "serve", "status", name)
            assert result.returncode == 0, result.stdout + result.stderr
            table = result.stdout
            if f"{replicas}/{replicas}" in table:
                return table
            assert "FAILED" not in table, table
        assert time.monotonic() < deadline, f"never {replicas}/{replicas}: {seen}"
        time.sleep(0.3)


def endpoint_of(home: Path, name: str) -> str:
    """_SERVE_ENDPOINT_WAIT: ``serve status --endpoint NAME``."""
    result = cli(home, "serve", "status", "--endpoint", name)
    assert result.returncode == 0, result.stdout + result.stderr
    endpoint = result.stdout.strip()
    assert endpoint.startswith("http://127.0.0.1:"), endpoint
    return endpoint


def up(home: Path, yaml: str, name: str, *args: str) -> None:
    result = cli(home, "serve", "up", "-n", name, "-y", str(DATA / yaml), *args)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(120)
def test_skyserve_local_http(skyctl_home: Path) -> None:
    """test_skyserve_{gcp,aws,azure,kubernetes,oci}_http, on the local provider:
    2 replicas of SkyPilot's http_server; ``serve status`` reaches 2/2, the endpoint
    ``serve status --endpoint`` prints answers "Hi, SkyPilot here"; the teardown
    (_TEARDOWN_SERVICE) takes it down and ``serve status`` then no longer knows it."""
    up(skyctl_home, "http/local.yaml", "http", "--detach")
    table = wait_until_ready(skyctl_home, "http", 2)
    assert table.count(" READY ") >= 2, table  # the service's row and both replicas'
    assert "Hi, SkyPilot here" in text(endpoint_of(skyctl_home, "http"))
    teardown(skyctl_home, "http")


@pytest.mark.timeout(120)
def test_skyserve_llm(skyctl_home: Path) -> None:
    """test_skyserve_llm: an OpenAI-compatible server behind the endpoint, its API key
    a secret given by ``--secret AUTH_TOKEN=...`` that the readiness probe sends in its
    Authorization header; each prompt of SkyServe's prompt_output.json, asked by its
    get_response.py (POST /v1/chat/completions, ``Bearer`` token), gets an answer that
    matches the expected regex. No GPU: vLLM is tests/data/skyserve/llm/fake_vllm.py,
    which checks the key and answers as vLLM does (the answers are a table)."""
    import re

    auth_token = "123456"
    up(skyctl_home, "llm/service.yaml", "llm", "--secret", f"AUTH_TOKEN={auth_token}", "-d")
    wait_until_ready(skyctl_home, "llm", 1)
    endpoint = endpoint_of(skyctl_home, "llm")
    prompts = json.loads((DATA / "llm/prompt_output.json").read_text())
    assert len(prompts) == 2
    for prompt, expected in prompts.items():
        got = subprocess.run(
            [
                sys.executable,
                str(DATA / "llm/get_response.py"),
                "--endpoint",
                endpoint,
                "--prompt",
                prompt,
                "--auth_token",
                auth_token,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert got.returncode == 0, got.stdout + got.stderr
        assert re.search(expected, got.stdout), (prompt, got.stdout)
    # the key is the replica's: a wrong one is refused through the endpoint (401)
    client = [sys.executable, str(DATA / "llm/get_response.py"), "--endpoint", endpoint]
    wrong = subprocess.run(
        [*client, "--prompt", "Introduce yourself!", "--auth_token", "654321"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert wrong.returncode != 0 and "Status code: 401" in wrong.stderr, wrong.stderr
    teardown(skyctl_home, "llm")


@pytest.mark.timeout(120)
def test_skyserve_ha_kill_during_pending(skyctl_home: Path) -> None:
    """test_skyserve_ha_kill_during_pending: the controller is killed before the
    first replica's launch went through; once it is back: 1/1 READY, the endpoint
    answers, and one replica process (SkyServe counts one GCP instance).

    SkyServe's replica stays PENDING while its launch process starts (seconds);
    skyctl's goes from PENDING to PROVISIONING as its launch task begins, within the
    tick that recorded it (well under a millisecond locally), so no ``serve status``
    can show it. The closest: the kill lands right after ``serve up --detach``
    returned, before the first tick can have launched anything that is READY (the
    server starts 3 s late); the events then show replica 1 launched once."""
    up(skyctl_home, "high_availability/service.yaml", "hapend", "--detach")
    kill_controller(skyctl_home)
    svc = one_ready_replica_after_restart(skyctl_home, "hapend")
    assert [(r["id"], r["status"]) for r in svc["replicas"]] == [(1, "READY")]
    assert "Hi, SkyPilot here" in text(endpoint_of(skyctl_home, "hapend"))
    events = cli(skyctl_home, "serve", "logs", "hapend", "--events").stdout
    launches = [e for e in events.splitlines() if " launch replica " in e]
    assert len(launches) <= 1, events  # none when the kill came before the first tick
    teardown(skyctl_home, "hapend")


@pytest.mark.timeout(120)
def test_skyserve_ha_kill_during_shutdown(skyctl_home: Path) -> None:
    """test_skyserve_ha_kill_during_shutdown: a READY replica is being shut down
    (SHUTTING_DOWN in ``serve status``) when the controller is killed; once it is
    back the replica is still SHUTTING_DOWN, then its process is gone.

    SkyServe's test runs ``sky serve down -y NAME 1``, which takes the whole service
    down (SkyPilot reads ``1`` as another service name); here ``serve down -y NAME
    --no-wait`` (skyctl's down otherwise waits for the end). The replica ignores
    SIGTERM, so its termination takes the provider's grace period (5 s), as a VM's
    deletion takes a while."""
    up(skyctl_home, "high_availability/slow_shutdown.yaml", "hashut", "--detach")
    wait_until_ready(skyctl_home, "hashut", 1)
    assert "Hi, SkyPilot here" in text(endpoint_of(skyctl_home, "hashut"))
    replicas = str(skyctl_home / "local")
    assert len(pids_mentioning(replicas)) == 1  # one instance
    down = cli(skyctl_home, "serve", "down", "-y", "hashut", "--no-wait")
    assert down.returncode == 0, down.stdout + down.stderr
    wait_status(
        skyctl_home, "hashut", lambda s: "SHUTTING_DOWN" in states(s), "replica SHUTTING_DOWN"
    )
    kill_controller(skyctl_home)
    svc = status(skyctl_home, "hashut")  # the controller restarted by this command
    assert states(svc) == ["SHUTTING_DOWN"], svc["replicas"]
    assert wait_until_gone(replicas, 30) == []  # the instance is terminated
    teardown(skyctl_home, "hashut")


@pytest.mark.timeout(120)
def test_skyserve_log_expansion_no_duplicates(skyctl_home: Path) -> None:
    """test_skyserve_log_expansion_no_duplicates: ``serve logs NAME 1 --sync-down
    --no-follow`` prints "Service NAME logs: DIR"; DIR/replica-1.log holds the
    replica's "Provisioning" banner at most twice (here: once).

    SkyServe's duplicates came from expanding a Kubernetes image pull's spinner
    lines; the local provider pulls nothing. Its way to repeat lines was another:
    a service of a name used before got the old replica-1.log appended to, so
    replica 1 showed two starts. So the service is taken down and started again
    under the same name before the logs are synced down."""
    yaml = "log_expansion/local.yaml"
    banner = "==================== Provisioning ===================="
    up(skyctl_home, yaml, "logs", "--detach")
    wait_until_ready(skyctl_home, "logs", 1)
    teardown(skyctl_home, "logs")
    up(skyctl_home, yaml, "logs", "--detach")
    wait_until_ready(skyctl_home, "logs", 1)
    result = cli(skyctl_home, "serve", "logs", "logs", "1", "--sync-down", "--no-follow")
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = [ln for ln in result.stdout.splitlines() if "logs logs: " in ln]
    log_dir = Path(line.split("logs logs: ", 1)[1])
    log_file = log_dir / "replica-1.log"
    assert log_file.is_file(), sorted(log_dir.iterdir())
    assert log_file.read_text().count(banner) == 1, log_file.read_text()
    assert [p.name for p in log_dir.iterdir()] == ["replica-1.log"]  # only what was asked
    # the synced file is what `serve logs NAME 1 --no-follow` shows, up to when it ran
    shown = cli(skyctl_home, "serve", "logs", "logs", "1", "--no-follow").stdout
    assert shown.startswith(log_file.read_text()), (shown, log_file.read_text())
    teardown(skyctl_home, "logs")


@pytest.mark.timeout(150)
def test_user_dependencies(skyctl_home: Path) -> None:
    """test_user_dependencies: SkyPilot launches a cluster whose task installs its
    own packages (``pip install ray``) and another whose setup makes a different
    Python the default, and checks its runtime still works (``sky logs --status``,
    ``sky exec``, ``sky status`` UP). skyctl has no clusters to launch or exec on;
    the closest: a service whose setup makes a virtual environment in the replica's
    directory and installs a dependency there, whose run makes it the default
    ``python`` (and checks so, as SkyPilot's ``python --version`` check); the
    replica is READY, serves through the dependency, the log shows the setup, and
    after ``serve update`` (a new replica, its own setup) it still does, while
    skyctl's probes, router and CLI are untouched by the replica's environment."""
    env = ("--env", f"SERVER_DIR={DATA / 'user_dependencies'}")
    up(skyctl_home, "user_dependencies/service.yaml", "deps", *env, "--detach")
    wait_until_ready(skyctl_home, "deps", 1)
    endpoint = endpoint_of(skyctl_home, "deps")
    first = text(endpoint)
    assert first.startswith("Hi, SkyPilot here, with a user dependency ("), first
    assert "/userenv" in first  # from the replica's own virtual environment
    log = cli(skyctl_home, "serve", "logs", "deps", "1", "--no-follow").stdout
    assert log.count("setup done: userdep in ") == 1, log

    spec = str(DATA / "user_dependencies/service.yaml")
    update = cli(skyctl_home, "serve", "update", "deps", spec, *env, "--env", "GREETING=Hi again")
    assert update.returncode == 0, update.stdout + update.stderr
    svc = wait_status(
        skyctl_home,
        "deps",
        lambda s: [(r["version"], r["status"]) for r in live(s)] == [(2, "READY")],
        "1/1 READY at version 2",
    )
    second = text(endpoint)
    assert second.startswith("Hi again, with a user dependency ("), second
    assert len(live(svc)) == 1
    assert second.split("(")[1] != first.split("(")[1]  # its own environment
    teardown(skyctl_home, "deps")

"""Waiting on services' status: polled through the controller's API in this process,
then shown once by the CLI (``serve status [NAME] -o json``), which must show it too.

A ``skyctl`` CLI call costs ~0.5 s of CPU (mostly imports); a test that polled the CLI
every 0.3 s for a 40 s wait ran ~100 of them. ``serve status -o json`` prints the
controller's answer to ``GET /v1/services[?name=NAME]`` as it is (skyctl/cli.py:
``json.dumps(services)``, every replica: ``--all-replicas`` only matters to the
table), so a condition on the API's answer means the same on the CLI's JSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skyctl.client import ControllerClient, services_query
from skyctl.config import paths
from skyctl.errors import ServiceNotFound, SkyctlError
from tests.helpers.cli import run_cli

Services = list[dict[str, Any]]


def cli_services(home: Path, name: str | None = None) -> Services:
    """``serve status [NAME] -o json --all-replicas``: the services, every replica row."""
    result = run_cli(home, "serve", "status", *([name] if name else []), "-o", "json", "-a")
    assert result.returncode == 0, result.stdout + result.stderr
    return list(json.loads(result.stdout))


def cli_status(home: Path, name: str) -> dict[str, Any]:
    """``serve status NAME -o json --all-replicas``: the service and every replica row."""
    (svc,) = cli_services(home, name)
    return dict(svc)


def api_services(home: Path, name: str | None = None) -> Services | None:
    """The controller's answer, read in this process; None when no controller answers
    (killed, restarting: the CLI is what restarts one). An unknown NAME raises
    ServiceNotFound, as the CLI exits 2."""
    client = _clients.get(home) or ControllerClient.find(paths(str(home)))
    if client is None:
        return None
    try:
        answer = list(client.call("GET", services_query(name)))
    except ServiceNotFound:
        raise
    except SkyctlError:  # found again next time: a restarted controller has a new port
        _clients.pop(home, None)
        return None
    _clients[home] = client
    return answer


_clients: dict[Path, ControllerClient] = {}  # found once per home, not at every poll


def wait_services(
    home: Path,
    check: Callable[[Services], object],
    what: str,
    limit: float = 60,
    name: str | None = None,
    period: float = 0.5,
) -> Services:
    """Wait until ``check(services)`` holds, then return what ``serve status [NAME] -o
    json -a`` shows, where it must hold too (a state the API showed but the CLI has left
    already is waited for again). Polled in this process through the API; when no
    controller answers, through the CLI (which starts one for a home with services, as
    a user's ``serve status`` would). Fails naming ``what`` and the last status."""
    deadline = time.monotonic() + limit
    while True:
        seen = api_services(home, name)
        if seen is None or check(seen):
            seen = cli_services(home, name)
            if check(seen):
                return seen
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}; last status: {json.dumps(seen)}")
        time.sleep(period)


def wait_status(
    home: Path, name: str, check: Callable[..., object], what: str, limit: float = 60
) -> dict[str, Any]:
    """:func:`wait_services` for the one service NAME: ``check(service)``; the service
    as ``serve status NAME -o json -a`` shows it."""
    (svc,) = wait_services(home, lambda s: len(s) == 1 and check(s[0]), what, limit, name)
    return dict(svc)

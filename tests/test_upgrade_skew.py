"""Version skew after an upgrade: the new CLI talks to a controller of an older
skyctl that still runs (installing a release does not restart it).

Commands the older controller knows work (checked by hand against the previous
commit's controller: docs/reliability.md#upgrading-skyctl). A command it does
not know (an API route added since, e.g. `serve retry` against a controller from
before it) must say what to do, in one line, not "error: Not Found" (exit 2, as
if the service did not exist) or "error: HTTP 404 Not Found".
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent


def older_controller(*, json_errors: bool) -> web.Application:
    """An API without the retry route: the health check and the services list only.
    ``json_errors``: unknown routes answer JSON, as controllers with the error
    middleware do; else aiohttp's plain text, as the first ones did."""

    @web.middleware
    async def errors(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as e:
            return web.json_response({"error": e.reason, "exit_code": 1}, status=e.status)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True, "pid": os.getpid(), "ticks": 1})

    async def services(request: web.Request) -> web.Response:
        if request.query.get("name") not in (None, "web"):
            return web.json_response({"error": "no service named 'x'", "exit_code": 2}, status=404)
        return web.json_response([{"name": "web", "status": "READY", "replicas": []}])

    app = web.Application(middlewares=[errors] if json_errors else [])
    app.router.add_get("/v1/health", health)
    app.router.add_get("/v1/services", services)
    return app


@pytest.fixture(params=[True, False], ids=["json-404", "plain-404"])
def running_older_controller(request: pytest.FixtureRequest, skyctl_home: Path) -> Iterator[Path]:
    """``skyctl_home`` with that controller running, named by controller.json."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(older_controller(json_errors=request.param))
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    info = {"pid": os.getpid(), "host": "127.0.0.1", "port": port}  # this process serves it
    named = skyctl_home / "controller.json"
    named.write_text(json.dumps(info))
    try:
        yield skyctl_home
    finally:
        named.unlink()  # else the leak check would stop "the controller": this process
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SKYCTL_HOME": str(home), "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "skyctl", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_command_the_older_controller_does_not_know_says_to_restart_it(
    running_older_controller: Path,
) -> None:
    result = cli(running_older_controller, "serve", "retry", "web")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "does not know POST /v1/services/web/retry" in lines[0]
    assert "older skyctl" in lines[0]
    assert "skyctl controller stop && skyctl controller start" in lines[0]


def test_what_the_older_controller_knows_still_works_and_a_missing_service_is_still_one(
    running_older_controller: Path,
) -> None:
    status = cli(running_older_controller, "serve", "status", "web", "-o", "json")
    assert status.returncode == 0, status.stderr
    assert [s["name"] for s in json.loads(status.stdout)] == ["web"]
    missing = cli(running_older_controller, "serve", "status", "x")
    assert missing.returncode == 2, missing.stderr
    assert "no service named 'x'" in missing.stderr and "restart" not in missing.stderr

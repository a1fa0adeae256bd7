"""The web console over HTTP: login by token for a read-only cookie, the page, live updates.

Against the in-process controller of tests/test_controller.py behind the real
API app (the browser test is tests/test_console_browser.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from skyctl.console import auth
from skyctl.console.snapshot import Rates
from skyctl.controller.api import make_app
from skyctl.lifecycle import ReplicaStatus
from tests.helpers.cli import run_cli
from tests.test_controller import SPOT, Harness

TOKEN = "k" * 32


@pytest.fixture
async def api(h: Harness) -> AsyncIterator[TestServer]:
    server = TestServer(make_app(h.controller, TOKEN, lambda: None))
    await server.start_server()
    yield server
    await server.close()


async def logged_in(api: TestServer) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    url = auth.login_url(str(api.make_url("")).rstrip("/"), TOKEN)
    async with session.get(url) as r:
        assert r.status == 200 and r.url.path == "/console/" and not r.url.query
    return session


def test_the_login_token_and_cookie_reveal_nothing_of_the_api_token() -> None:
    login, cookie = auth.login_token(TOKEN), auth.cookie_value(TOKEN)
    assert TOKEN not in login and TOKEN not in cookie and login != cookie
    assert auth.login_token("other") != login
    assert auth.login_url("http://127.0.0.1:5", TOKEN) == (
        f"http://127.0.0.1:5/console/login?token={login}"
    )


async def test_a_wrong_or_missing_login_token_gets_no_cookie(api: TestServer) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        for query in ("", "?token=nope", f"?token={TOKEN}"):  # the API token is not a login
            async with s.get(api.make_url(f"/console/login{query}")) as r:
                assert r.status == 401 and "skyctl console" in await r.text()
        async with s.get(api.make_url("/console/")) as r:
            assert r.status == 401
        assert not s.cookie_jar.filter_cookies(api.make_url("/"))


async def test_the_cookie_reads_but_never_writes(h: Harness, api: TestServer) -> None:
    session = await logged_in(api)
    async with session:
        url = auth.login_url(str(api.make_url("")).rstrip("/"), TOKEN)
        async with session.get(url, allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/console/"
            set_cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
        async with session.get(api.make_url("/console/")) as r:
            assert r.status == 200
        for path in ("/v1/services", "/metrics"):  # the console's paths only
            async with session.get(api.make_url(path)) as r:
                assert r.status == 401
        spec = SPOT.format(name="sneaky", replicas=1)
        async with session.post(api.make_url("/v1/services"), json={"yaml": spec}) as r:
            assert r.status == 401
        async with session.post(api.make_url("/v1/shutdown")) as r:
            assert r.status == 401
    assert h.store.get_service("sneaky") is None


async def test_the_page_shows_a_live_service_and_the_stream_follows_a_preemption(
    h: Harness, api: TestServer
) -> None:
    await h.controller.create_service(SPOT.format(name="spot", replicas=2), None)
    await h.until(lambda: h.ready("spot") == 2)
    session = await logged_in(api)
    async with session:
        async with session.get(api.make_url("/console/")) as r:
            page = await r.text()
            csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert 'data-name="spot"' in page and "READY" in page and "accrued" in page
        assert page.count('class="replica st-READY"') == 2
        assert "<script>" not in page  # no inline script (CSP)

        victim = h.replicas("spot", ReplicaStatus.READY)[0]
        await h.provider.preempt("spot", victim.replica_id)
        await h.until(lambda: not h.store.get_replica("spot", victim.replica_id).is_live)  # type: ignore[union-attr]
        async with session.get(api.make_url("/console/events")) as r:
            assert r.headers["Content-Type"] == "text/event-stream"
            line = await r.content.readline()
        update = json.loads(line.decode().removeprefix("data: "))
        assert update["names"] == ["spot"]
        part = update["parts"]["svc-spot"]
        assert f'data-replica="{victim.replica_id}" data-status="TERMINATED"' in part
        assert "(PREEMPTED)" in part and "end-PREEMPTED" in part  # table and timeline
        assert "preempted" in part.lower()
        times, accrued, ondemand = update["charts"]["spot"]["cost"]
        assert len(times) == len(accrued) == len(ondemand) and 0 < accrued[-1] < ondemand[-1]


async def test_static_files_are_served_with_the_vendored_licence(api: TestServer) -> None:
    session = await logged_in(api)
    async with session:
        for name, kind in (
            ("console.js", "text/javascript"),
            ("uPlot.iife.min.js", "text/javascript"),
            ("uPlot.LICENSE", "text/plain"),
        ):
            async with session.get(api.make_url(f"/console/static/{name}")) as r:
                assert r.status == 200 and r.headers["Content-Type"] == kind
                if name == "uPlot.LICENSE":
                    assert "MIT License" in await r.text()
        async with session.get(api.make_url("/console/static/..%2Fweb.py")) as r:
            assert r.status == 404


def test_request_rates_come_from_counter_differences() -> None:
    rates = Rates()
    assert rates.rate("s", 1, 100.0, now=10.0) == 0.0  # first sight: no rate yet
    assert rates.rate("s", 1, 130.0, now=12.0) == 15.0
    assert rates.rate("s", 1, 5.0, now=13.0) == 0.0  # a counter reset never goes negative


async def test_an_open_event_stream_does_not_hold_up_the_api_shutdown(
    h: Harness, tmp_path: Path
) -> None:
    server = TestServer(make_app(h.controller, TOKEN, lambda: None))
    await server.start_server()
    session = await logged_in(server)
    async with session:
        stream = await session.get(server.make_url("/console/events"))
        await stream.content.readline()  # the first update arrived; the stream stays open
        loop = asyncio.get_running_loop()
        started = loop.time()
        await server.close()
        assert loop.time() - started < 5.0  # not aiohttp's 60 s shutdown timeout
        stream.release()


def test_skyctl_console_prints_the_address_and_opens_it_in_a_browser(
    tmp_path: Path, skyctl_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.py"
    browser.write_text(f"import sys\nopen({str(opened)!r}, 'w').write(sys.argv[1])\n")
    monkeypatch.setenv("BROWSER", f"{sys.executable} {browser} %s")
    try:
        out = run_cli(skyctl_home, "console")
        assert out.returncode == 0, out.stderr
        url = out.stdout.strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/console/login\?token=[0-9a-f]{64}", url)
        for _ in range(100):
            if opened.exists() and opened.read_text():
                break
            time.sleep(0.05)
        assert opened.read_text() == url
        browse = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with browse.open(url, timeout=10) as r:  # the printed address logs in
            assert r.status == 200 and r.url.endswith("/console/")
            assert "skyctl console" in r.read().decode()
        quiet = run_cli(skyctl_home, "console", "--no-browser")
        assert quiet.stdout.strip() == url
    finally:
        stopped = run_cli(skyctl_home, "controller", "stop")
        assert stopped.returncode == 0
        # no service: no endpoint is kept (the supervisor and router process exit too)
        assert stopped.stdout.strip() == "Controller stopped.", stopped.stdout

"""The controller API lets in only its user: token, constant-time check, loopback, file modes.

- every route answers 401 without the exact ``Authorization: Bearer <token>``
  (no token, a wrong, shorter, longer or differently framed one), and an
  unauthenticated ``POST /v1/shutdown`` stops nothing;
- the token comparison goes through ``hmac.compare_digest`` (constant time);
- a daemon started the way the CLI starts it listens on 127.0.0.1 only, and
  its home is 0700 while the token, the database (and its WAL files),
  ``controller.json`` and ``controller.log`` are 0600; the token is written
  nowhere else.
"""

from __future__ import annotations

import hmac
import json
import os
import signal
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from providers.registry import ProviderSet
from skyctl.client import ControllerClient
from skyctl.clock import FakeClock
from skyctl.config import paths
from skyctl.controller import Controller
from skyctl.controller.api import make_app
from skyctl.store import Store

TOKEN = "s3cret-token-value_0123456789abcdefghijklmno"
SPEC = "name: sec\nservice:\n  replicas: 1\nrun: sleep 1000\n"


class Calls:
    shutdowns = 0

    def shutdown(self) -> None:
        self.shutdowns += 1


@pytest.fixture
async def api(
    tmp_path: Path,
) -> AsyncIterator[tuple[TestClient[web.Request, web.Application], Calls]]:
    clock = FakeClock()
    store = Store(tmp_path / "state.db")
    providers = ProviderSet(config={}, clock=clock, local_state=tmp_path / "local")
    controller = Controller(store, providers, clock)
    calls = Calls()
    client = TestClient(TestServer(make_app(controller, TOKEN, calls.shutdown)))
    await client.start_server()
    try:
        yield client, calls
    finally:
        await client.close()
        await controller.stop(0)
        store.close()


BAD_HEADERS = {
    "no header": None,
    "empty": "",
    "wrong token": "Bearer not-the-token",
    "token cut short": f"Bearer {TOKEN[:-1]}",
    "token with extra": f"Bearer {TOKEN}x",
    "no scheme": TOKEN,
    "basic scheme": f"Basic {TOKEN}",
    "two spaces": f"Bearer  {TOKEN}",
}
ROUTES = [
    ("GET", "/v1/health"),
    ("GET", "/v1/services"),
    ("POST", "/v1/services"),
    ("PUT", "/v1/services/sec"),
    ("DELETE", "/v1/services/sec"),
    ("GET", "/v1/services/sec/events"),
    ("GET", "/v1/services/sec/replicas/1/log"),
    ("POST", "/v1/shutdown"),
    ("GET", "/no/such/route"),
]


@pytest.mark.parametrize("header", list(BAD_HEADERS.values()), ids=list(BAD_HEADERS))
@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
async def test_every_route_answers_401_without_the_exact_bearer_token(
    api: tuple[TestClient[web.Request, web.Application], Calls],
    method: str,
    path: str,
    header: str | None,
) -> None:
    client, calls = api
    headers = {} if header is None else {"Authorization": header}
    resp = await client.request(method, path, headers=headers, json={"yaml": SPEC})
    assert resp.status == 401
    assert (await resp.json())["error"] == "missing or wrong API token"
    assert calls.shutdowns == 0
    listed = await client.get("/v1/services", headers={"Authorization": f"Bearer {TOKEN}"})
    assert await listed.json() == []  # nothing was created or changed


async def test_the_right_token_is_let_in(
    api: tuple[TestClient[web.Request, web.Application], Calls],
) -> None:
    client, calls = api
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.get("/v1/health", headers=auth)).status == 200
    assert (await client.post("/v1/shutdown", headers=auth)).status == 202
    await client.get("/v1/health", headers=auth)  # let the scheduled shutdown callback run
    assert calls.shutdowns == 1


async def test_the_token_is_compared_in_constant_time(
    api: tuple[TestClient[web.Request, web.Application], Calls],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, _ = api
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    for header in (f"Bearer {TOKEN}", "Bearer nope"):
        await client.get("/v1/health", headers={"Authorization": header})
    assert seen == [
        (f"Bearer {TOKEN}".encode(), f"Bearer {TOKEN}".encode()),
        (b"Bearer nope", f"Bearer {TOKEN}".encode()),
    ]


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} write them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.timeout(60)
def test_a_cli_started_daemon_listens_on_loopback_only_with_private_files(
    tmp_path: Path,
) -> None:
    old_umask = os.umask(0o022)  # a common, permissive umask: modes must not depend on it
    home = tmp_path / "fresh-home"  # created by skyctl itself
    try:
        p = paths(home)
        client = ControllerClient.ensure(p)
    finally:
        os.umask(old_umask)
    info = json.loads(p.daemon_info.read_text())
    try:
        assert info["host"] == "127.0.0.1"
        assert listening_addresses(int(info["port"])) == {"0100007F"}  # 127.0.0.1 only
        assert client.call("GET", "/v1/health")["ok"] is True
        files = {
            "api-token": p.token,
            "state.db": p.db,
            "controller.json": p.daemon_info,
            "controller.log": p.daemon_log,
        }
        files.update({f.name: f for f in home.glob("state.db-*")})
        assert mode(home) == 0o700
        assert {name: oct(mode(f)) for name, f in files.items()} == {
            name: "0o600" for name in files
        }
        token = p.token.read_text().strip()
        for name in ("controller.json", "controller.log"):
            assert token not in files[name].read_text(), f"the token leaked into {name}"
    finally:
        os.kill(int(info["pid"]), signal.SIGTERM)
        deadline = time.monotonic() + 30
        while ControllerClient.find(p) is not None and time.monotonic() < deadline:
            time.sleep(0.05)

"""A client holding the token cannot hold a controller API handler by never sending its body.

aiohttp waits for a request body without end: a complete, authenticated head
with a ``Content-Length`` and then nothing (or a byte every few seconds, or
chunks without the last one) kept its handler, and its connection, busy for
ever; a ``Content-Length`` of 10**12 was waited for too, where a 413 was due at
once. Now the body must all arrive within ``body_seconds`` of the head (408),
and a length over the 1 MiB limit is refused before any of it is read (413);
both close the connection (``skyctl.http_guard.read_body``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from skyctl.controller import Controller
from skyctl.controller.api import MAX_BODY, make_app
from skyctl.http_guard import GuardedSite, make_runner
from tests.helpers.fake_controller import API_TOKEN as TOKEN
from tests.helpers.fake_controller import DEADLINE, Conn, fake_controller

BODY_SECONDS = 0.3  # short for the test
LINGER_SECONDS = 0.05  # after an answer, for the rest of a body (cleanup waits for it)


@pytest.fixture
async def controller(tmp_path: Path) -> AsyncIterator[Controller]:
    async with fake_controller(tmp_path) as controller:
        yield controller


@asynccontextmanager
async def api(controller: Controller, body_seconds: float) -> AsyncIterator[Conn]:
    """A connection to the API served with ``body_seconds``."""
    app = make_app(controller, TOKEN, lambda: None, body_seconds=body_seconds)
    runner = make_runner(app, linger_seconds=LINGER_SECONDS)
    await runner.setup()
    site = GuardedSite(runner, "127.0.0.1", 0, what="the controller API")
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    conn = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield conn
    finally:
        conn[1].close()
        await runner.cleanup()


def head(method: str, path: str, framing: str, token: str | None = TOKEN) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}{framing}\r\n\r\n".encode()


async def answer(conn: Conn) -> tuple[int, dict[str, str], bytes]:
    async with asyncio.timeout(DEADLINE):
        status = int((await conn[0].readline()).split()[1])
        raw = (await conn[0].readuntil(b"\r\n\r\n")).decode().lower()
        fields = dict(line.split(": ", 1) for line in raw.split("\r\n") if ": " in line)
        return status, fields, await conn[0].readexactly(int(fields["content-length"]))


async def trickle(conn: Conn) -> None:
    while True:
        await asyncio.sleep(BODY_SECONDS / 5)
        conn[1].write(b" ")


NEVER_ENDS: dict[str, tuple[str, str, bytes, Callable[[Conn], object] | None]] = {
    "no body after its Content-Length": ("POST", "Content-Length: 100", b"", None),
    "a body trickled a byte at a time": ("POST", "Content-Length: 100000", b"{", trickle),
    "chunks without the last one": ("POST", "Transfer-Encoding: chunked", b"1\r\n{\r\n", None),
    "a GET whose body never comes": ("GET", "Content-Length: 100", b"", None),
}


@pytest.mark.parametrize("case", list(NEVER_ENDS))
async def test_an_authenticated_body_not_complete_in_time_is_a_408_and_the_connection_closes(
    controller: Controller, case: str
) -> None:
    method, framing, sent, feed = NEVER_ENDS[case]
    path = "/v1/health" if method == "GET" else "/v1/services"
    async with api(controller, BODY_SECONDS) as conn:
        conn[1].write(head(method, path, framing) + sent)
        feeder = asyncio.ensure_future(feed(conn)) if feed is not None else None  # type: ignore[arg-type]
        try:
            status, fields, body = await answer(conn)
        finally:
            if feeder is not None:
                feeder.cancel()
    assert status == 408
    assert json.loads(body) == {
        "error": f"request body not complete within {BODY_SECONDS:g} s",
        "exit_code": 1,
    }
    assert fields["connection"] == "close"
    assert not controller.store.list_services()  # nothing half-read was acted on


async def test_a_content_length_over_the_limit_is_a_413_before_any_byte_is_read(
    controller: Controller,
) -> None:
    # a body deadline far past DEADLINE: the 413 comes from the length alone
    async with api(controller, DEADLINE * 3) as conn:
        conn[1].write(head("POST", "/v1/services", f"Content-Length: {10**12}"))
        status, fields, body = await answer(conn)
    assert status == 413
    assert json.loads(body)["error"] == f"request body over {MAX_BODY} bytes"
    assert fields["connection"] == "close"


async def test_a_body_that_arrives_in_pieces_within_the_deadline_is_read(
    controller: Controller,
) -> None:
    payload = json.dumps({"name": "x"}).encode()
    async with api(controller, DEADLINE * 3) as conn:
        conn[1].write(head("POST", "/v1/services", f"Content-Length: {len(payload)}"))
        conn[1].write(payload[:3])
        await asyncio.sleep(0)
        conn[1].write(payload[3:])
        status, _, body = await answer(conn)
    assert (status, json.loads(body)["error"]) == (
        400,
        "request body: missing key 'yaml' (the spec's text)",
    )


async def test_without_the_token_a_body_is_not_waited_for(controller: Controller) -> None:
    async with api(controller, DEADLINE * 3) as conn:
        conn[1].write(head("POST", "/v1/services", "Content-Length: 100", token=None))
        status, _, _ = await answer(conn)
    assert status == 401

"""Talking to replicas: one shared client session, attempts, streaming relay.

:class:`Upstream` owns the single keep-alive :class:`aiohttp.ClientSession`
of a router and opens requests on replicas, translating aiohttp's errors into
:class:`AttemptFailed` with a ``kind``:

- ``"connect"``: the connection failed or was reset before a response came;
  the replica is reported (``on_backend_error``) and the request may be
  retried on another replica;
- ``"timeout"``: no response headers within the deadline (a 504).

:func:`relay` streams a response to the client chunk by chunk as it arrives.
A replica failing after response bytes went out aborts the client connection,
so a client never mistakes a truncated body for a complete one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, Literal

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from skyctl.router.headers import REQUEST_ID, downstream_headers
from skyctl.router.stats import ReplicaState

log = logging.getLogger(__name__)

FailureKind = Literal["connect", "timeout"]
ERROR_BODY_LIMIT = 64 * 1024  # bytes of a replica's 5xx body kept to pass on


class AttemptFailed(Exception):
    """A request to one replica failed before its response headers arrived."""

    def __init__(self, kind: FailureKind, replica_id: int, detail: str) -> None:
        self.kind = kind
        self.replica_id = replica_id
        self.detail = detail
        super().__init__(f"replica {replica_id}: {kind}: {detail}")


class MidStreamError(Exception):
    """The replica failed after the response to the client had started."""


def json_response(status: int, body: dict[str, Any], rid: str) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers={REQUEST_ID: rid},
    )


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


class Upstream:
    """The router's client side: one session, shared by every request and replica."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        on_backend_error: Callable[[int], None] | None,
    ) -> None:
        # idle connections are dropped before common servers drop them (uvicorn: 5 s),
        # so a reused connection is rarely one the replica is closing
        self._connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=4.0)
        self.session = aiohttp.ClientSession(
            connector=self._connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        # aiohttp resends an idempotent request once to the same host after a
        # disconnect; we retry on another replica instead, never the one that failed
        self.session._retry_connection = False
        self._on_backend_error = on_backend_error
        self._timeout = aiohttp.ClientTimeout()
        self.set_timeouts(connect_timeout=connect_timeout, read_timeout=read_timeout)

    def set_timeouts(self, *, connect_timeout: float, read_timeout: float) -> None:
        """Connect deadline, and the longest silence while reading a response."""
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )

    async def close(self) -> None:
        await self.session.close()

    def report(self, replica_id: int) -> None:
        """Tell the controller a replica refused or dropped a connection."""
        if self._on_backend_error is None:
            return
        try:
            self._on_backend_error(replica_id)
        except Exception:  # the controller's callback must never break a request
            log.exception("on_backend_error(%s) raised", replica_id)

    async def open(
        self,
        replica: ReplicaState,
        method: str,
        raw_path: str,
        headers: CIMultiDict[str],
        data: Any,
        header_timeout: float | None,
    ) -> aiohttp.ClientResponse:
        """Send a request to ``replica``; return once its response headers arrive."""
        url = URL(replica.url + raw_path, encoded=True)
        try:
            if header_timeout is None:
                return await self.session.request(
                    method,
                    url,
                    headers=headers,
                    data=data,
                    allow_redirects=False,
                    timeout=self._timeout,
                )
            async with asyncio.timeout(header_timeout):
                return await self.session.request(
                    method,
                    url,
                    headers=headers,
                    data=data,
                    allow_redirects=False,
                    timeout=self._timeout,
                )
        except aiohttp.ConnectionTimeoutError as exc:  # never connected: safe to retry
            self.report(replica.replica_id)
            raise AttemptFailed("connect", replica.replica_id, _describe(exc)) from exc
        except TimeoutError as exc:  # asyncio's deadline or aiohttp's read timeout
            raise AttemptFailed("timeout", replica.replica_id, "no response in time") from exc
        except (aiohttp.ClientConnectionError, OSError) as exc:
            self.report(replica.replica_id)
            raise AttemptFailed("connect", replica.replica_id, _describe(exc)) from exc


async def read_error_body(resp: aiohttp.ClientResponse) -> bytes:
    """Up to :data:`ERROR_BODY_LIMIT` bytes of a (5xx) response body; the response is closed."""
    parts: list[bytes] = []
    size = 0
    try:
        while size < ERROR_BODY_LIMIT:
            chunk = await resp.content.read(ERROR_BODY_LIMIT - size)
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
    except (aiohttp.ClientError, TimeoutError):
        pass
    finally:
        resp.close()
    return b"".join(parts)


class _StreamResponse(web.StreamResponse):
    """A streamed response whose headers go out with its first body bytes (one write)."""

    _send_headers_immediately = False


async def relay(
    request: web.BaseRequest,
    resp: aiohttp.ClientResponse,
    rid: str,
    on_midstream_error: Callable[[], None] | None = None,
) -> web.StreamResponse:
    """Stream ``resp`` to the client as it arrives; abort the client on a mid-stream failure.

    The response starts with the first body bytes the replica sends; a body
    already complete by then goes out in one write with the headers. The
    upstream connection goes back to the pool only when the body was read to
    its end; otherwise it is closed.
    """
    content = resp.content
    try:
        try:
            first = await content.readany()
        except (aiohttp.ClientError, TimeoutError) as exc:
            if on_midstream_error is not None:
                on_midstream_error()
            body = {"error": f"replica failed before its body: {_describe(exc)}"}
            return json_response(502, body, rid)
        headers = downstream_headers(resp.headers, rid=rid)
        if content.at_eof():
            return web.Response(status=resp.status, reason=resp.reason, headers=headers, body=first)
        out = _StreamResponse(status=resp.status, reason=resp.reason, headers=headers)
        await out.prepare(request)
        await out.write(first)
        while True:
            try:
                chunk = await content.readany()
            except (aiohttp.ClientError, TimeoutError) as exc:
                if on_midstream_error is not None:
                    on_midstream_error()
                log.warning("replica stream broke after the response started: %s", _describe(exc))
                transport = request.transport
                if transport is not None:
                    transport.abort()
                return out
            if not chunk:
                break
            await out.write(chunk)
        await out.write_eof()
        return out
    finally:
        resp.close()  # no-op once the body was fully read (already back in the pool)

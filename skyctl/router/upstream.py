"""Talking to replicas: attempts with error translation, and the streaming relay.

:class:`Upstream` owns the router's keep-alive :class:`~skyctl.router.client.Pool`,
writes request heads for replicas (:meth:`Upstream.prepare`; the requests
themselves go out through :mod:`skyctl.router.exchange`) and translates the
client's errors into :class:`AttemptFailed` with a ``kind``
(:meth:`Upstream.failure`):

- ``"connect"``: the connection failed or was reset before a response came;
  the replica is reported (``on_backend_error``). ``unsent`` says whether no
  byte of the request can have reached the replica (refused, connect timeout,
  a pooled connection found reset as we wrote): the caller retries an
  idempotent request on another replica either way, a non-idempotent one only
  when ``unsent`` (:func:`may_retry`);
- ``"timeout"``: no response headers within the deadline (a 504).

A request body that fails on the client's side while it is uploaded (too
slow, too large, malformed, cut) is no attempt failure: the exchange answers
its cause (a :class:`~skyctl.router.http1.ProtocolError` carrying the status
to answer, or the disconnect) and the replica is not blamed.

:func:`relay` streams a response to the client chunk by chunk as it arrives.
A replica failing after response bytes went out aborts the client connection,
so a client never mistakes a truncated body for a complete one.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Final, Literal

from skyctl.router.client import ClientBodyError, Pool, Response, UpstreamError
from skyctl.router.front import Connection
from skyctl.router.headers import downstream_lines
from skyctl.router.http1 import BodyStream
from skyctl.router.stats import ReplicaState

log = logging.getLogger(__name__)

FailureKind = Literal["connect", "timeout"]
ERROR_BODY_LIMIT: Final = 64 * 1024  # bytes of a replica's 5xx body kept to pass on
# RFC 9110 section 9.2.2: running these twice has the effect of running them once
IDEMPOTENT_METHODS: Final = frozenset((b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"))


class AttemptFailed(Exception):
    """A request to one replica failed before its response headers arrived.

    ``unsent``: no byte of the request can have reached the replica.
    """

    def __init__(
        self, kind: FailureKind, replica_id: int, detail: str, *, unsent: bool = False
    ) -> None:
        self.kind = kind
        self.replica_id = replica_id
        self.detail = detail
        self.unsent = unsent
        super().__init__(f"replica {replica_id}: {kind}: {detail}")


def may_retry(method: bytes, failure: AttemptFailed) -> bool:
    """Whether a request that failed so may be sent to another replica.

    As nginx's ``proxy_next_upstream`` without ``non_idempotent``: an idempotent
    method after any connection error, any other method only when the replica
    cannot have seen a byte of it (so a POST never runs twice).
    """
    if failure.kind != "connect":
        return False
    return failure.unsent or method in IDEMPOTENT_METHODS


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


class Upstream:
    """The router's client side: one pool, shared by every request and replica."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        on_backend_error: Callable[[int, str], None] | None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.pool = Pool(
            connect_timeout=connect_timeout, read_timeout=read_timeout, ssl_context=ssl_context
        )
        self._on_backend_error = on_backend_error

    def set_timeouts(self, *, connect_timeout: float, read_timeout: float) -> None:
        """Connect deadline, and the longest silence while reading a response."""
        self.pool.connect_timeout = connect_timeout
        self.pool.read_timeout = read_timeout

    async def close(self) -> None:
        await self.pool.close()

    def report(self, replica_id: int, reason: str) -> None:
        """Tell the controller something is wrong with a replica (it probes it soon)."""
        if self._on_backend_error is None:
            return
        try:
            self._on_backend_error(replica_id, reason)
        except Exception:  # the controller's callback must never break a request
            log.exception("on_backend_error(%s) raised", replica_id)

    def prepare(
        self,
        replica: ReplicaState,
        method: bytes,
        target: bytes,
        lines: bytes,
        body: bytes | BodyStream | None,
        length: int | None,
    ) -> tuple[bytes, bool]:
        """The request head for ``replica``, and whether its body goes chunked.

        ``lines``: the forwarded header lines (:func:`~skyctl.router.headers.upstream_lines`).
        A bytes body is sent with its length when non-empty or when ``length``
        is given (the client declared one); a stream body with ``length`` as
        its Content-Length, or chunked when None.
        """
        origin = replica.origin
        chunked = False
        if isinstance(body, BodyStream):
            if length is None:
                framing, chunked = b"Transfer-Encoding: chunked\r\n", True
            else:
                framing = b"Content-Length: %d\r\n" % length
        elif body or length is not None:
            framing = b"Content-Length: %d\r\n" % len(body or b"")
        else:
            framing = b""
        # (headers.request_head, inline: the hot path)
        host, prefix = origin.host_header, origin.prefix
        start = (method, b" ", prefix, target, b" HTTP/1.1\r\nHost: ", host, b"\r\n", lines)
        return b"".join(start) + framing + b"\r\n", chunked

    def failure(self, replica: ReplicaState, exc: BaseException) -> AttemptFailed:
        """The :class:`AttemptFailed` for a client error (the replica is reported if at fault)."""
        if isinstance(exc, AttemptFailed):
            return exc
        if isinstance(exc, TimeoutError):
            return AttemptFailed("timeout", replica.replica_id, "no response in time")
        self.report(replica.replica_id, f"connection: {_describe(exc)}")  # refused, reset, not HTTP
        unsent = isinstance(exc, UpstreamError) and exc.unsent
        return AttemptFailed("connect", replica.replica_id, _describe(exc), unsent=unsent)


async def read_error_body(resp: Response) -> bytes:
    """Up to :data:`ERROR_BODY_LIMIT` bytes of a (5xx) response body; the response is released."""
    parts: list[bytes] = []
    size = 0
    try:
        while size < ERROR_BODY_LIMIT:
            chunk = await resp.body.read()
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
    except (UpstreamError, TimeoutError):
        pass
    finally:
        resp.release()
    return b"".join(parts)[:ERROR_BODY_LIMIT]


async def relay(
    out: Connection,
    resp: Response,
    rid: bytes,
    on_midstream_error: Callable[[], None] | None = None,
    on_first: Callable[[], None] | None = None,
) -> None:
    """Stream ``resp`` to the client as it arrives; abort the client on a mid-stream failure.

    The response starts with the first body bytes the replica sends; a body
    already complete by then goes out in one write with the headers. A
    Content-Length from the replica is kept, other bodies are chunked. The
    upstream connection goes back to the pool only when the body arrived
    whole; otherwise it is closed. ``on_first`` is told when the first body
    bytes arrived (an LLM server's first token), before they go out.
    """
    body = resp.body
    try:
        try:
            # a body that arrived whole (the common small response) needs no await
            first = body.take() if body.complete else await body.read()
        except ClientBodyError as client_failed:  # (mypyc: one name per exception type)
            raise client_failed.cause from None  # the client's side failed: the front answers
        except (UpstreamError, TimeoutError) as exc:
            if on_midstream_error is not None:
                on_midstream_error()
            out.send_json(502, {"error": f"replica failed before its body: {_describe(exc)}"}, rid)
            return
        if on_first is not None:
            on_first()
        head = resp.head
        lines = downstream_lines(head, rid=rid)
        if body.at_eof:
            out.send(head.status, head.reason, lines, first, head.content_length)
            return
        out.start(head.status, head.reason, lines, head.content_length, first)
        while True:
            await out.drain()
            try:
                chunk = await body.read()
            except (UpstreamError, TimeoutError) as exc:
                if on_midstream_error is not None and not isinstance(exc, ClientBodyError):
                    on_midstream_error()
                log.warning("replica stream broke after the response started: %s", _describe(exc))
                out.abort()
                return
            if not chunk:
                break
            out.write(chunk)
        out.finish()
    except ConnectionResetError:  # the client went away; the replica's connection closes below
        return
    finally:
        resp.release()  # no-op once the body arrived whole (already back in the pool)

"""A response from a replica as the router's client hands it on, and who is told of it.

:class:`Response` is made by a connection of :mod:`skyctl.router.client` for
each request it sends; a :class:`Listener` is told, from the connection's own
callbacks, when its head is in (or the request failed); :class:`HeadFuture`
is the listener for callers that would rather await.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final, Protocol

from skyctl.router.body import BodyStream
from skyctl.router.http1 import Head

if TYPE_CHECKING:
    from skyctl.router.client import _Conn

_NO_HEAD: Final = Head()  # a response's head until its own is in (heads are never changed)


class Listener(Protocol):
    """Told, from the connection's own callbacks (no future, no task), how a
    request sent with a listener went: exactly one of the two, once. A listener
    with an ``on_interim(head)`` method is also told of each 1xx head (not 101)
    before the final one (:class:`~skyctl.router.forward.Forward` passes them on);
    without one they are dropped (racing copies, checks, probes)."""

    def on_head(self, resp: Response) -> None:
        """The head is in (``resp.head``); the body bytes that came with it are
        fed, so ``resp.body.complete`` says whether the response arrived whole."""

    def on_error(self, resp: Response | None, exc: BaseException) -> None:
        """The request failed before its head (an :class:`UpstreamError`, or a
        :class:`TimeoutError` past the head deadline); the connection is closed.
        ``resp`` is None when no connection could be made."""


class HeadFuture:
    """A :class:`Listener` that resolves ``future`` at the head (or fails it), for
    callers that would rather await (:meth:`Pool.request`)."""

    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()

    def on_head(self, resp: Response) -> None:
        if not self.future.done():
            self.future.set_result(resp)

    def on_error(self, resp: Response | None, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class Response:
    """The response to one request: once the head is in, its listener is told,
    ``head`` is set and ``body`` streams the rest.

    ``whole``: a body that arrived complete with its head, as bytes (b"" for
    none), until taken (the common small answer needs no stream); ``body``
    makes it a complete stream when asked.
    """

    __slots__ = ("_body", "_conn", "head", "listener", "whole")

    def __init__(self, listener: Listener) -> None:
        self.head = _NO_HEAD
        self.whole: bytes | None = None
        self._body: BodyStream | None = None  # made at the head, unless whole
        self.listener: Listener | None = listener  # cleared once told
        self._conn: _Conn | None = None  # set while the connection still carries it

    @property
    def body(self) -> BodyStream:
        body = self._body
        if body is None:
            body = self._body = BodyStream()
            whole, self.whole = self.whole, None
            if whole is not None:  # complete: arrived with the head
                if whole:
                    body.feed(whole)
                body.finish()
        return body

    @property
    def status(self) -> int:
        return self.head.status

    @property
    def reason(self) -> bytes:
        return self.head.reason

    def release(self) -> None:
        """Done with the response: close its connection unless it already arrived whole.

        A response still awaited is cancelled (the replica sees the disconnect);
        its listener is not told.
        """
        self.listener = None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn._pool.deadlines.discard(self)
            conn.abort()

    # the head deadline (an Expirable for Deadlines)
    def done(self) -> bool:
        return self.listener is None

    def set_exception(self, exc: BaseException) -> None:
        """The head deadline passed: close the connection and tell the listener."""
        listener = self.listener
        self.release()
        if listener is not None:
            listener.on_error(self, exc)

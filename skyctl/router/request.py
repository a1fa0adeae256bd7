"""One client request as the router's front hands it on, and the hooks that answer it.

Built by :class:`~skyctl.router.front.Connection` for every request it parses,
read by the fast hook and the handlers (:mod:`skyctl.router.server`); its
head may be shared with other requests that sent the same bytes
(:mod:`skyctl.router.headcache`), so nothing changes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from skyctl.router.body import BodyStream
from skyctl.router.http1 import Head

if TYPE_CHECKING:
    from skyctl.router.front import Connection


class Request:
    """One client request: the parsed head, the body stream (None: no body), the peer.

    ``whole``: a Content-Length body that arrived complete with its head, as
    bytes (``body`` is then None): the fast hook takes it as it is, with no
    stream built; :meth:`stream` makes it a stream for a handler.
    """

    __slots__ = ("body", "head", "remote", "whole")

    def __init__(self, head: Head, remote: bytes | None) -> None:
        self.head = head
        self.remote = remote
        self.body: BodyStream | None = None
        self.whole: bytes | None = None

    def stream(self, on_first_read: Callable[[], None] | None = None) -> None:
        """Make a ``whole`` body the ``body`` stream (complete), for a reader of streams."""
        whole = self.whole
        if whole is not None:
            self.whole = None
            body = self.body = BodyStream()
            body.on_first_read = on_first_read
            body.feed(whole)
            body.finish()

    @property
    def method(self) -> str:
        """The method as text (decoded when asked: most requests never are)."""
        return self.head.method.decode("ascii")

    @property
    def target(self) -> bytes:
        return self.head.target

    @property
    def path(self) -> str:
        """The target without its query, decoded (for the router's own endpoints)."""
        return self.head.target.split(b"?", 1)[0].decode("latin-1")


Handler = Callable[[Request, "Connection"], Awaitable[None]]


class Exchange(Protocol):
    """A request answered by callbacks instead of a task (see ``FastHandler``)."""

    def start(self) -> None:
        """Begin; :meth:`Connection.exchange_done` is called once it has answered
        (possibly before ``start`` returns)."""

    def cancel(self) -> None:
        """The client hung up: stop, release everything, answer nothing."""

    def tasks(self) -> list[asyncio.Task[Any]]:
        """Tasks it runs now (a streamed relay, a connect), for a server closing."""


# returns the exchange that will answer the request, or None to run ``Handler``
FastHandler = Callable[[Request, "Connection"], "Exchange | None"]

"""One client request as the router's front hands it on: the parsed head, the body, the peer.

Built by :class:`~skyctl.router.front.Connection` for every request it parses,
read by the fast hook and the handlers (:mod:`skyctl.router.server`); its
head may be shared with other requests that sent the same bytes
(:mod:`skyctl.router.headcache`), so nothing changes it.
"""

from __future__ import annotations

from skyctl.router.body import BodyStream
from skyctl.router.http1 import Head


class Request:
    """One client request: the parsed head, the body stream (None: no body), the peer."""

    __slots__ = ("body", "head", "remote")

    def __init__(self, head: Head, remote: bytes | None) -> None:
        self.head = head
        self.remote = remote
        self.body: BodyStream | None = None

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

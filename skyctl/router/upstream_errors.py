"""The errors of a request to a replica (the tree is in :mod:`skyctl.router.client`).

``UpstreamError.unsent`` is True only when no byte of the request can have
reached the replica (:class:`ConnectFailed`, :class:`NotSent`): the one case
where a non-idempotent request may be sent again elsewhere.
"""

from __future__ import annotations

from typing import ClassVar


class UpstreamError(Exception):
    """A request to a replica failed (see the module docstring for the tree)."""

    # True when no byte of the request can have reached the replica (a class
    # attribute: ClassVar keeps it one for mypyc too)
    unsent: ClassVar[bool] = False


class ConnectFailed(UpstreamError):
    unsent: ClassVar[bool] = True


class Disconnected(UpstreamError):
    pass


class NotSent(Disconnected):
    """The connection broke as the request was written, before the kernel took any byte."""

    unsent: ClassVar[bool] = True


class BadResponse(UpstreamError):
    pass


class ClientBodyError(UpstreamError):
    """The request body being uploaded failed on the client's side (see ``cause``)."""

    def __init__(self, cause: BaseException) -> None:
        self.cause = cause
        super().__init__(f"request body failed: {cause}")

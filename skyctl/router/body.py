"""A message body as it arrives, for the router's wire layer (:mod:`skyctl.router.http1`).

:class:`BodyStream` is one body: the protocol feeds it, one consumer reads it
(``await read()``), and a high-water mark pauses the transport's reading
while the consumer lags.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

HIGH_WATER: Final = 256 * 1024  # bytes buffered in a BodyStream before reading pauses
LOW_WATER: Final = 64 * 1024


class BodyStream:
    """One body as it arrives: fed by a protocol, read by one consumer.

    :meth:`read` returns everything buffered so far (b"" at the end) and
    raises the failure the protocol reported (the connection's error, a
    :class:`ProtocolError`, a :class:`TimeoutError` after ``timeout``
    seconds of silence). ``pause``/``resume`` are called around the
    high-water mark; ``on_first_read`` once, before the first read (a server
    answers ``100 Continue`` there).
    """

    __slots__ = (
        "_chunks",
        "_done",
        "_error",
        "_paused",
        "_size",
        "_waiter",
        "complete",
        "on_first_read",
        "pause",
        "resume",
        "timeout",
    )

    def __init__(
        self,
        pause: Callable[[], None] | None = None,
        resume: Callable[[], None] | None = None,
        timeout: float | None = None,
    ) -> None:
        self._chunks: list[bytes] = []  # a list: no 64-slot block per body, as a deque has
        self._size = 0
        self._done = False
        # every byte of the body has arrived (it may still sit in the buffer); an
        # attribute, not a property: read once or twice per request
        self.complete = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self.pause = pause
        self.resume = resume
        self.timeout = timeout
        self.on_first_read: Callable[[], None] | None = None

    # -- producer side
    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._waiter is not None:
            self._wake()
        if self._size > HIGH_WATER and not self._paused and self.pause is not None:
            self._paused = True
            self.pause()

    def finish(self) -> None:
        if not self._done:
            self.complete = True
        self._done = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if not self._done:
            self._error = exc
            self._done = True
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- consumer side
    @property
    def at_eof(self) -> bool:
        """Complete and all read."""
        return self._done and self._error is None and not self._chunks

    @property
    def failed(self) -> bool:
        return self._error is not None

    def take(self) -> bytes:
        """Everything buffered now, without waiting."""
        chunks = self._chunks
        if not chunks:
            return b""
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._chunks = []
        self._size = 0
        if self._paused and self.resume is not None:
            self._paused = False
            self.resume()
        return data

    async def read(self) -> bytes:
        if self.on_first_read is not None:
            first, self.on_first_read = self.on_first_read, None
            first()
        while True:
            if self._chunks:
                return self.take()
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            await self._wait()

    async def read_all(self) -> bytes:
        """The rest of the body (callers bound it first, e.g. by its Content-Length)."""
        parts: list[bytes] = []
        while True:
            data = await self.read()
            if not data:
                return b"".join(parts)
            parts.append(data)

    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None
        if self.timeout is not None:
            timer = loop.call_later(self.timeout, _expire, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no data in time"))

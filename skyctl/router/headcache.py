"""Parsed heads kept by their bytes: a head seen again is not parsed again.

A keep-alive client tends to repeat its request head byte for byte (the same
path, the same headers), and a replica its response head (nginx's changes
once a second, with its ``Date``). Parsing a head is a pure function of its
bytes (:func:`~skyctl.router.http1.parse_request_head`,
:func:`~skyctl.router.http1.parse_response_head`), so the
:class:`~skyctl.router.http1.Head` parsed once serves every later head with
the same bytes, with the header lines the router forwards for it
(:mod:`skyctl.router.headers` keeps them on the head). Heads are never
changed once parsed; a head that fails to parse is not kept (it raises again).

Bounded: only heads up to :data:`MAX_KEY_BYTES` are kept, and a cache holding
:data:`MAX_ENTRIES` starts over (a client sending ever-new heads costs one
dict store per request, and at most about a megabyte). Callers look up with
the dict's ``get`` inline (the hit is the hot path) and call :func:`remember`
on a miss.
"""

from __future__ import annotations

from typing import Final

from skyctl.router.http1 import Head

MAX_KEY_BYTES: Final = 2048  # longer heads are parsed each time
MAX_ENTRIES: Final = 256


def remember(cache: dict[bytes, Head], raw: bytes, head: Head) -> None:
    """Keep ``head``, parsed from ``raw``, in ``cache`` (within the bounds above)."""
    if len(raw) > MAX_KEY_BYTES:
        return
    if len(cache) >= MAX_ENTRIES:
        cache.clear()
    cache[raw] = head

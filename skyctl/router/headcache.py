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
:data:`MAX_ENTRIES` starts over (at most about a megabyte). Callers look up with
the dict's ``get`` inline (the hit is the hot path) and call :func:`remember`
on a miss.

Where heads do not repeat (real API traffic: each request has its own
``Content-Length`` and request id, each reply its own id), looking costs
without ever paying: a copy of the head for the key, its hash, a dict store.
So each cache's owner counts the heads parsed since its last hit
(``misses``, reset by a hit): it looks while the count is under
:data:`LOOKUPS`, then parses the next :data:`PAUSE` heads without looking,
and starts over (the count back to 0): while nothing repeats, 32 heads in
1,056 are looked up, and a head that does repeat is a hit again within
:data:`PAUSE` heads.
"""

from __future__ import annotations

from typing import Final

from skyctl.router.http1 import Head

MAX_KEY_BYTES: Final = 2048  # longer heads are parsed each time
MAX_ENTRIES: Final = 256
LOOKUPS: Final = 32  # misses in a row before the cache stops looking
PAUSE: Final = 1024  # heads then parsed without looking, before looking again


def remember(cache: dict[bytes, Head], raw: bytes, head: Head) -> None:
    """Keep ``head``, parsed from ``raw``, in ``cache`` (within the bounds above)."""
    if len(raw) > MAX_KEY_BYTES:
        return
    if len(cache) >= MAX_ENTRIES:
        cache.clear()
    cache[raw] = head

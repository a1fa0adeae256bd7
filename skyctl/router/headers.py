"""Proxy header hygiene on raw header lines: hop-by-hop, X-Forwarded-*, request ids.

A proxy must not forward headers that describe one connection (RFC 9110
section 7.6.1): ``Connection``, ``Keep-Alive``, ``Proxy-*``, ``TE``,
``Trailer``, ``Transfer-Encoding``, ``Upgrade`` and every header named in
``Connection``. Everything else passes through, in both directions, as the
very bytes that arrived (no decoding, no re-serialising). Framing
(``Content-Length``, chunked) is set by whoever sends the body, and
``X-Request-Id``, ``X-Forwarded-*`` are set by the router.
"""

from __future__ import annotations

import re
import secrets

from skyctl.router.http1 import Head

REQUEST_ID = "X-Request-Id"
MAX_REQUEST_ID_LENGTH = 128
_PRINTABLE_ID = re.compile(rb"[\x20-\x7e]{1,%d}" % MAX_REQUEST_ID_LENGTH).fullmatch

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
# dropped on the way to a replica: Host is the replica's, the rest the router sets
_DROP_UPSTREAM = HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"expect",
    b"x-request-id",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
}
_DROP_DOWNSTREAM = HOP_BY_HOP | {b"content-length", b"x-request-id"}


def new_request_id() -> bytes:
    """A fresh 128-bit request id (32 hex characters)."""
    return secrets.token_hex(16).encode("ascii")


def request_id(value: bytes | None) -> bytes:
    """Keep a client's id when it is printable ASCII of at most 128 bytes, else make one."""
    if value and _PRINTABLE_ID(value):
        return value
    return new_request_id()


def _kept(head: Head, drop: frozenset[bytes]) -> list[bytes]:
    if head.connection:
        drop = drop | head.connection
    return [raw for lower, _, raw in head.fields if lower not in drop and lower[:6] != b"proxy-"]


def upstream_lines(head: Head, *, rid: bytes, client_ip: bytes | None, scheme: bytes) -> bytes:
    """Header lines (each ending in CRLF) to send to a replica for a client request.

    ``Host`` and the framing are added per attempt; see :func:`request_head`.
    """
    kept = _kept(head, _DROP_UPSTREAM)
    chain = head.forwarded_for
    if client_ip:
        chain = [*chain, client_ip]
    if chain:
        kept.append(b"X-Forwarded-For: " + b", ".join(chain))
    kept.append(b"X-Forwarded-Proto: " + scheme)
    if head.host:
        kept.append(b"X-Forwarded-Host: " + head.host)
    kept.append(b"X-Request-Id: " + rid)
    kept.append(b"")
    return b"\r\n".join(kept)


def request_head(
    method: bytes, target: bytes, host: bytes, lines: bytes, framing: bytes = b""
) -> bytes:
    """A complete request head: request line, Host, ``lines``, ``framing``, blank line."""
    return b"%b %b HTTP/1.1\r\nHost: %b\r\n%b%b\r\n" % (method, target, host, lines, framing)


def downstream_lines(head: Head, *, rid: bytes) -> bytes:
    """Header lines (each ending in CRLF) to send to the client for a replica's response."""
    kept = _kept(head, _DROP_DOWNSTREAM)
    kept.append(b"X-Request-Id: " + rid)
    kept.append(b"")
    return b"\r\n".join(kept)

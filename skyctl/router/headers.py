"""Proxy header hygiene: hop-by-hop headers, X-Forwarded-*, request ids.

A proxy must not forward headers that describe one connection (RFC 9110
section 7.6.1): ``Connection``, ``Keep-Alive``, ``Proxy-*``, ``TE``,
``Trailer``, ``Transfer-Encoding``, ``Upgrade`` and every header named in
``Connection``. Everything else passes through, in both directions.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from multidict import CIMultiDict, CIMultiDictProxy

REQUEST_ID = "X-Request-Id"
MAX_REQUEST_ID_LENGTH = 128

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# dropped on the way to a replica: the client session sets Host for the replica
_DROP_UPSTREAM = HOP_BY_HOP | {"host"}


def new_request_id() -> str:
    """A fresh 128-bit request id (32 hex characters)."""
    return secrets.token_hex(16)


def request_id(value: str | None) -> str:
    """Keep a client's id when it is short printable ASCII, else make a new one."""
    if value and len(value) <= MAX_REQUEST_ID_LENGTH and value.isascii() and value.isprintable():
        return value
    return new_request_id()


def _connection_named(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> frozenset[str]:
    values = headers.getall("Connection", ())
    if not values:
        return frozenset()
    return frozenset(
        token.strip().lower() for value in values for token in value.split(",") if token.strip()
    )


def _filtered(
    items: Iterable[tuple[str, str]], drop: frozenset[str], named: frozenset[str]
) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in items:
        lower = name.lower()
        if lower in drop or lower in named or lower.startswith("proxy-"):
            continue
        out.add(name, value)
    return out


def upstream_headers(
    headers: CIMultiDictProxy[str],
    *,
    rid: str,
    client_ip: str | None,
    scheme: str,
    host: str | None,
) -> CIMultiDict[str]:
    """Headers to send to a replica for a client request."""
    out = _filtered(headers.items(), _DROP_UPSTREAM, _connection_named(headers))
    forwarded_for = out.getall("X-Forwarded-For", ())
    if client_ip:
        chain = ", ".join([*forwarded_for, client_ip])
        out["X-Forwarded-For"] = chain
    out["X-Forwarded-Proto"] = scheme
    if host:
        out["X-Forwarded-Host"] = host
    out[REQUEST_ID] = rid
    return out


def downstream_headers(headers: CIMultiDictProxy[str], *, rid: str) -> CIMultiDict[str]:
    """Headers to send back to the client for a replica's response."""
    out = _filtered(headers.items(), HOP_BY_HOP, _connection_named(headers))
    out[REQUEST_ID] = rid
    return out

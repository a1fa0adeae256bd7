"""Where a replica listens, parsed once from its URL."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit


class Origin(NamedTuple):
    """Where a replica listens: ``http[s]://host:port[/prefix]``.

    A tuple, so the connection pool's lookups hash it in C (a frozen
    dataclass's ``__hash__`` is a Python call on every request).
    """

    scheme: str
    host: str
    port: int
    prefix: bytes = b""  # a path prefix every request target gets
    host_header: bytes = b""  # the Host header for it (the URL's host[:port])

    @classmethod
    def parse(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"replica url must be http(s)://host[:port], got {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(
            parts.scheme,
            parts.hostname,
            port,
            parts.path.rstrip("/").encode("ascii"),
            parts.netloc.encode("idna"),
        )
